#!/usr/bin/env python
"""Documentation tools for CLAPP: README.md and a static docs site, both made from the notebooks.

    python tools/docs.py readme                  # regenerate README.md (and images/readme/) from nbs/index.ipynb
    python tools/docs.py readme --check          # exit 1 if README.md would change (CI)
    python tools/docs.py site [--out _site]      # the docs site as static HTML: sidebar, search; no Quarto needed

Every notebook first goes through nbdev's own documentation processors (`nbdev.processors.FilterDefaults`, the
ones `nbdev_proc_nbs`, `nbdev_docs` and `nbdev_readme` run): the title cell becomes frontmatter, `#| hide` and
`#| export` cells are dropped, `show_doc` cells are added and executed, backticked names become doc links.
nbdev leaves Quarto's cell options (`#| echo: false`, `#| output: false`, `#| include: false`, `#| code-fold`)
for Quarto to apply; here they are applied the way Quarto does, then nbconvert writes Markdown or HTML.

README engine: with `--engine auto` (the default) Quarto renders it (`nbdev_readme`) when Quarto is installed,
nbconvert otherwise. The committed README is made with `--engine nbconvert`, the engine CI has, so that its
freshness can be checked anywhere; `--check` therefore uses nbconvert unless told `--engine quarto`.
With Quarto installed, `nbdev_docs` / `nbdev_preview` build the Quarto site from nbs/_quarto.yml, nbs/nbdev.yml
and nbs/sidebar.yml; `site` builds the same pages, in the same sidebar order, without it.
"""
import argparse, concurrent.futures, difflib, html, json, os, re, shutil, subprocess, sys, tempfile, textwrap, time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
README, README_IMAGES = ROOT/'README.md', ROOT/'images'/'readme'
SITE_MARKER = '.clapp-docs-site'  # written into every site build; `site` only ever deletes a folder that has it


class DocsError(Exception):
    "A documentation build problem the user has to fix (the message says where and how)"


def settings() -> dict:
    "The [DEFAULT] section of settings.ini"
    import configparser
    cp = configparser.ConfigParser(interpolation=None)
    cp.read(ROOT/'settings.ini')
    return dict(cp['DEFAULT'])


def nbs_path() -> Path: return ROOT/settings().get('nbs_path', 'nbs')


# ---------------------------------------------------------------------------------------------------------------
# 1. nbdev's processing, one notebook per fresh interpreter (as `nbdev_proc_nbs` does with its worker pool)

_NOISE = ('UserWarning: Found cells containing imports and other code', 'warn(f\'Found cells')


def process_notebook(src: Path, dst: Path, timeout: float = 900) -> list:
    "Run nbdev's docs processors on `src`, writing the processed notebook to `dst`; returns nbdev's warnings"
    dst.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, MPLBACKEND='Agg', PYTHONWARNINGS='default')
    cmd = [sys.executable, str(Path(__file__).resolve()), '_process', str(src.resolve()), str(dst.resolve())]
    cwd = src.parent if src.resolve().is_relative_to(ROOT) else ROOT  # like nbdev_test; nbdev needs settings.ini above
    try: p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired: raise DocsError(f'{_rel(src)}: nbdev processing took more than {timeout:.0f}s')
    if p.returncode != 0 or not dst.exists():
        raise DocsError(f'{_rel(src)}: nbdev could not process it for the docs (nbdev_docs fails the same way):\n'
                        + textwrap.indent(_tail(p.stderr, 30), '    '))
    return _nbdev_warnings(p.stderr)


def _nbdev_warnings(stderr: str) -> list:
    "nbdev's 'imports and other code' warnings, one line each (such a cell is executed by every docs build)"
    out = []
    for m in re.finditer(r'Found cells containing imports and other code.*?\n---\n(.*?)\n---', stderr, re.S):
        first = next((l for l in m.group(1).splitlines() if l.strip() and not l.startswith('#|')), '')
        out.append(f'a cell mixes imports with other code, so every docs build runs it: {first.strip()[:90]!r}')
    return out


def _tail(s: str, n: int) -> str:
    lines = [l for l in s.rstrip().splitlines() if not any(x in l for x in _NOISE)]
    return '\n'.join(lines[-n:])


def _rel(p: Path) -> str:
    try: return Path(p).resolve().relative_to(ROOT).as_posix()
    except ValueError: return str(p)


def _process_main(src: str, dst: str):
    "Child side of `process_notebook`: exactly nbdev's `serve_drv.main` with nbdev's default processors"
    import nbdev.serve_drv
    from nbdev.processors import FilterDefaults
    nbdev.serve_drv.main((Path(src), Path(dst), FilterDefaults))


def process_notebooks(srcs: list, dest: Path, base: Path, workers: int = 0, timeout: float = 300) -> dict:
    "Process `srcs` (under `base`) into `dest` in parallel; {src: processed path}; every failure is reported at once"
    workers = workers or max(1, min(len(srcs), os.cpu_count() or 1))
    out, errors, warns = {}, [], []
    with concurrent.futures.ThreadPoolExecutor(workers) as ex:
        futs = {ex.submit(process_notebook, s, dest/s.relative_to(base), timeout): s for s in srcs}
        for f in concurrent.futures.as_completed(futs):
            s = futs[f]
            try:
                warns += [f'{_rel(s)}: {w}' for w in f.result()]
                out[s] = dest/s.relative_to(base)
            except DocsError as e: errors.append(str(e))
    for w in sorted(warns): print(f'warning: {w}', file=sys.stderr)
    if errors: raise DocsError('\n\n'.join(sorted(errors)))
    return out


# ---------------------------------------------------------------------------------------------------------------
# 2. Quarto's cell options, applied to a processed notebook

_re_opt = re.compile(r'^\s*#\|\s*([\w-]+)\s*:\s*(.*?)\s*$')
_re_fm = re.compile(r'^---\s*\n(.*?)\n---\s*$', re.S)
_re_pandoc_link = re.compile(r'\[([^\]]*)\]\(([^)\s]+)\)\{([^}]*)\}')  # [text](url){target="_blank" style=...}
WIDGET_MIME = 'application/vnd.jupyter.widget-view+json'
WIDGET_NOTE = '*(An interactive widget: open the notebook in Jupyter to use it.)*'
WARNING_MD = ('<!-- WARNING: THIS FILE WAS AUTOGENERATED FROM nbs/index.ipynb BY `python tools/docs.py readme`! '
              'DO NOT EDIT! -->')


def read_processed(path: Path):
    "A processed notebook as an nbformat node (nbdev's private keys dropped)"
    import nbformat
    def plain(o):
        if isinstance(o, dict): return {k: plain(v) for k, v in o.items() if not k.endswith('_') and k != 'has_sd'}
        if isinstance(o, list): return [plain(v) for v in o]
        return o
    return nbformat.reads(json.dumps(plain(json.loads(Path(path).read_text(encoding='utf-8')))), as_version=4)


def _src(c) -> str: return ''.join(c.source) if isinstance(c.source, list) else (c.source or '')


def _cell_options(source: str):
    "Quarto options at the top of a code cell, and the source without them"
    import yaml
    lines, opts = source.splitlines(), {}
    while lines and _re_opt.match(lines[0]):
        k, v = _re_opt.match(lines.pop(0)).groups()
        try: opts[k] = yaml.safe_load(v) if v else None
        except yaml.YAMLError: opts[k] = v
    return opts, '\n'.join(lines)


def _md_links(md: str, target: str) -> str:
    "Pandoc link attributes (`[source](url){target=...}`, from show_doc) in a form nbconvert's Markdown understands"
    if target == 'md': return _re_pandoc_link.sub(r'[\1](\2)', md)
    def a(m):
        cls = ' class="source-link"' if m.group(1) == 'source' else ''
        tgt = ' target="_blank" rel="noopener"' if 'target=' in m.group(3) else ''
        return f'<a href="{html.escape(m.group(2))}"{cls}{tgt}>{m.group(1)}</a>'
    return _re_pandoc_link.sub(a, md)


def apply_quarto_options(nb, target: str = 'html') -> dict:
    "Apply the Quarto options nbdev leaves in `nb` (in place); returns the page's frontmatter"
    import yaml
    fm, cells = {}, []
    for c in nb.cells:
        src = _src(c)
        if c.cell_type == 'raw' and not fm and _re_fm.match(src.strip() + '\n'):
            fm = yaml.safe_load(_re_fm.match(src.strip() + '\n').group(1)) or {}
            continue
        if c.cell_type == 'markdown':
            if src.startswith('<!-- WARNING: THIS FILE WAS AUTOGENERATED'):
                if target == 'html': continue
                src = WARNING_MD
            c.source = _md_links(src, target)
        elif c.cell_type == 'code':
            opts, c.source = _cell_options(src)
            if opts.get('include') is False: continue
            if re.match(r'\s*show_doc\(', c.source): c.metadata['tags'] = [*c.metadata.get('tags', []), 'clapp-showdoc']
            if opts.get('output') is False: c.outputs = []
            if opts.get('echo') is False or not c.source.strip():
                c.metadata.setdefault('transient', {})['remove_source'] = True
            fold = opts.get('code-fold')
            if fold not in (None, False) and target == 'html':
                c.metadata['clapp_fold'] = str(opts.get('code-summary') or 'Code')
                c.metadata['clapp_fold_open'] = fold == 'show'
            for o in c.get('outputs', []):
                data = o.get('data', {})
                if WIDGET_MIME in data:
                    del data[WIDGET_MIME]
                    if not (data.keys() - {'text/plain'}): o['data'] = {'text/markdown': WIDGET_NOTE}
                if 'text/markdown' in o.get('data', {}):
                    o.data['text/markdown'] = _md_links(_src_text(o.data['text/markdown']), target)
            if not c.source.strip() and not c.get('outputs'): continue
        cells.append(c)
    nb.cells = cells
    nb.metadata.pop('widgets', None)
    nb.metadata['language_info'] = {'name': 'python'}
    return fm


def _src_text(s) -> str: return ''.join(s) if isinstance(s, list) else s


# ---------------------------------------------------------------------------------------------------------------
# 3. README.md

def render_readme(nb_path: Path = None) -> tuple:
    "README Markdown from `nb_path` (default nbs/index.ipynb) and its output images {path under ROOT: bytes}"
    from nbconvert import MarkdownExporter
    from traitlets.config import Config
    nb_path = Path(nb_path or nbs_path()/settings().get('readme_nb', 'index.ipynb'))
    with tempfile.TemporaryDirectory() as tmp:
        dst = Path(tmp)/nb_path.name
        for w in process_notebook(nb_path, dst): print(f'warning: {_rel(nb_path)}: {w}', file=sys.stderr)
        nb = read_processed(dst)
    fm = apply_quarto_options(nb, 'md')
    head = f"# {fm.get('title', settings().get('title', ''))}"
    if fm.get('description'): head += f"\n\n> {fm['description']}"
    import nbformat
    nb.cells.insert(0, nbformat.v4.new_markdown_cell(head))
    c = Config()
    c.ExtractOutputPreprocessor.output_filename_template = 'index_{cell_index}_{index}{extension}'
    exp = MarkdownExporter(config=c, exclude_input_prompt=True, exclude_output_prompt=True)
    body, res = exp.from_notebook_node(nb, resources={'output_files_dir': _rel(README_IMAGES)})
    body = _readme_links(body, nb_path.parent)
    body = re.sub(r'[ \t]+\n', '\n', body)
    body = re.sub(r'\n{3,}', '\n\n', body).strip() + '\n'
    return body, {name: data for name, data in sorted(res.get('outputs', {}).items())}


def _readme_links(md: str, nb_dir: Path) -> str:
    "Links that work on GitHub: the index's relative links (`03_model.ipynb`) from the root, API links to the notebooks"
    s = settings()
    doc_base = (s.get('doc_host', '') + s.get('doc_baseurl', '')).rstrip('/') + '/'
    pages = {re.sub(r'^\d\d[a-z]?_', '', p.stem) + '.html': p for p in all_notebooks(nb_dir)}
    def fix(m):
        url = m.group(2)
        if doc_base != '/' and url.startswith(doc_base):   # nbdev's API links point at the published site
            page = url[len(doc_base):].partition('#')[0] or 'index.html'
            if page in pages: return f'{m.group(1)}({pages[page].resolve().relative_to(ROOT).as_posix()})'
            return m.group(0)
        parts = urlsplit(url)
        if parts.scheme or parts.netloc or not parts.path or parts.path.startswith('/'): return m.group(0)
        f = (nb_dir/parts.path).resolve()
        if not f.exists(): return m.group(0)
        try: rel = f.relative_to(ROOT).as_posix()
        except ValueError: return m.group(0)
        return f'{m.group(1)}({rel}' + (f'#{parts.fragment}' if parts.fragment else '') + ')'
    return re.sub(r'(\]\s?)\(([^)\s]+)\)', fix, md)


def _readme_state() -> dict:
    "What is on disk now: README.md and every file under images/readme/"
    d = {'README.md': README.read_bytes() if README.exists() else None}
    if README_IMAGES.exists():
        for p in sorted(README_IMAGES.rglob('*')):
            if p.is_file(): d[_rel(p)] = p.read_bytes()
    return d


def _diff(old: dict, new: dict) -> list:
    msgs = []
    for k in sorted(old.keys() | new.keys()):
        a, b = old.get(k), new.get(k)
        if a == b: continue
        if a is None: msgs.append(f'{k}: missing'); continue
        if b is None: msgs.append(f'{k}: no longer produced (delete it)'); continue
        msgs.append(f'{k}: differs')
        if k.endswith('.md'):
            d = difflib.unified_diff(a.decode().splitlines(), b.decode().splitlines(), 'committed', 'regenerated', lineterm='', n=1)
            msgs += ['    ' + l for l in list(d)[:40]]
    return msgs


def readme(engine: str = 'auto', check: bool = False) -> int:
    "Regenerate README.md from the readme notebook, or with `check` say whether it is stale"
    if engine == 'auto': engine = 'quarto' if shutil.which('quarto') and not check else 'nbconvert'
    if engine == 'quarto': return _readme_quarto(check)
    text, images = render_readme()
    new = {'README.md': text.encode(), **{k: v for k, v in images.items()}}
    old = _readme_state()
    if check:
        diffs = _diff(old, new)
        if diffs:
            print('README.md is stale: it is not what `python tools/docs.py readme --engine nbconvert` makes from '
                  'nbs/index.ipynb.\nRun that command and commit README.md (and images/readme/).\n' + '\n'.join(diffs))
            return 1
        print('README.md is up to date')
        return 0
    for k in old.keys() - new.keys(): (ROOT/k).unlink()
    for k, v in new.items():
        if old.get(k) != v: (ROOT/k).parent.mkdir(parents=True, exist_ok=True); (ROOT/k).write_bytes(v)
    if README_IMAGES.exists() and not any(README_IMAGES.iterdir()): README_IMAGES.rmdir()
    extra = f' and {len(images)} image(s) in {_rel(README_IMAGES)}/' if images else ''
    print(f'wrote README.md ({len(text)} characters){extra}')
    return 0


def _readme_quarto(check: bool) -> int:
    "nbdev's own `nbdev_readme` (Quarto); with `check`, compare and put the committed README back"
    if not shutil.which('quarto'): raise DocsError('Quarto is not installed: use `--engine nbconvert`')
    if not check: return subprocess.call(['nbdev_readme'], cwd=ROOT)
    before = README.read_bytes() if README.exists() else None
    try:
        rc = subprocess.call(['nbdev_readme'], cwd=ROOT)
        after = README.read_bytes() if README.exists() else None
    finally:
        if before is None: README.unlink(missing_ok=True)
        else: README.write_bytes(before)
    if rc: return rc
    if after != before:
        print('README.md is stale: run `python tools/docs.py readme --engine quarto` and commit it'); return 1
    print('README.md is up to date'); return 0


# ---------------------------------------------------------------------------------------------------------------
# 4. The static site

@dataclass
class Page:
    src: Path        # the notebook, e.g. nbs/01_filters.ipynb
    rel: str         # its path under nbs/, as in sidebar.yml: '01_filters.ipynb'
    url: str = ''    # its page under the site root: 'filters.html' (nbdev's `output-file`)
    title: str = ''
    description: str = ''
    body: str = ''
    toc: list = field(default_factory=list)


def read_sidebar(path: Path) -> list:
    "sidebar.yml as [('page', rel) | ('section', title, [rel, ...])]"
    import yaml
    d = yaml.safe_load(path.read_text()) or {}
    contents = (((d.get('website') or {}).get('sidebar') or {}).get('contents')) or []
    def entry(e):
        if isinstance(e, str): return e
        if isinstance(e, dict) and 'href' in e: return e['href']
        if isinstance(e, dict) and 'file' in e: return e['file']
        raise DocsError(f'{_rel(path)}: cannot read sidebar entry {e!r}')
    out = []
    for e in contents:
        if isinstance(e, dict) and 'section' in e:
            out.append(('section', str(e['section']), [entry(x) for x in e.get('contents') or []]))
        else: out.append(('page', entry(e)))
    return out


def sidebar_files(items: list) -> list:
    "Every file the sidebar lists, in order"
    return [f for it in items for f in ([it[1]] if it[0] == 'page' else it[2])]


def all_notebooks(nbs: Path) -> list:
    "The notebooks nbdev renders: under nbs/, skipping files and folders that start with `_` or `.`"
    return sorted(p for p in nbs.rglob('*.ipynb')
                  if not any(part[0] in '_.' for part in p.relative_to(nbs).parts))


_TEMPLATE = r"""{%- extends 'basic/index.html.j2' -%}
{% block input_group -%}
{%- if cell.metadata.get('clapp_fold') -%}
<details class="code-fold"{% if cell.metadata.get('clapp_fold_open') %} open{% endif %}><summary>{{ cell.metadata.clapp_fold | e }}</summary>
{{ super() }}
</details>
{%- else -%}
{{ super() }}
{%- endif -%}
{%- endblock input_group %}
"""


def _html_exporter():
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter
    return HTMLExporter(template_name='basic', template_file='clapp_page.html.j2',
                        extra_loaders=[DictLoader({'clapp_page.html.j2': _TEMPLATE})],
                        exclude_input_prompt=True, exclude_output_prompt=True)


def pandoc_id(text: str, used: set) -> str:
    "The id pandoc (so Quarto and nbdev's doc links) gives a heading with this text"
    s = re.sub(r'[^\w\s.-]', '', text.strip().lower(), flags=re.UNICODE)
    s = re.sub(r'\s+', '-', s)
    s = re.sub(r'^[^a-z]+', '', s) or 'section'
    base, i = s, 1
    while s in used: s, i = f'{base}-{i}', i + 1
    used.add(s)
    return s


_re_heading = re.compile(r'<h([1-6])([^>]*)>(.*?)</h\1>', re.S)


def _text(fragment: str) -> str:
    return html.unescape(re.sub(r'<[^>]+>', '', fragment)).replace('\u00b6', '').strip()


def _fix_headings(body: str) -> tuple:
    "Pandoc-style heading ids (what nbdev's doc links point at); returns body and [(level, id, text)]"
    used, toc = set(), []
    def sub(m):
        level, inner = int(m.group(1)), re.sub(r'<a class="anchor-link"[^>]*>.*?</a>', '', m.group(3), flags=re.S)
        text = _text(inner)
        hid = pandoc_id(text, used)
        toc.append((level, hid, text))
        return f'<h{level} id="{hid}">{inner}<a class="anchor-link" href="#{hid}" aria-label="link to this section">#</a></h{level}>'
    return _re_heading.sub(sub, body), toc


class _Sections(HTMLParser):
    "Split a page body into (heading id, heading text, text) sections for the search index"
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.sections, self.cur, self.skip, self.in_h = [['', '', []]], None, 0, None
    def handle_starttag(self, tag, attrs):
        if tag in ('script', 'style'): self.skip += 1
        if re.fullmatch(r'h[1-4]', tag):
            self.in_h = dict(attrs).get('id', '')
            self.sections.append([self.in_h, '', []])
    def handle_endtag(self, tag):
        if tag in ('script', 'style'): self.skip -= 1
        if re.fullmatch(r'h[1-4]', tag): self.in_h = None
    def handle_data(self, data):
        if self.skip: return
        if self.in_h is not None: self.sections[-1][1] += data.replace('#', '')
        else: self.sections[-1][2].append(data)


def _search_entries(page: Page) -> list:
    p = _Sections(); p.feed(page.body)
    out = []
    for hid, head, parts in p.sections:
        text = re.sub(r'\s+', ' ', ' '.join(parts)).strip()
        if not hid and not text: continue
        if not hid: text = f'{page.description} {text}'.strip()
        out.append({'t': page.title, 's': head.strip(), 'u': page.url + (f'#{hid}' if hid else ''), 'x': text[:4000]})
    return out


def _relurl(target: str, page_url: str) -> str:
    "URL of site path `target` as seen from page `page_url` (both relative to the site root)"
    return os.path.relpath(target, os.path.dirname(page_url) or '.').replace(os.sep, '/')


def _rewrite_links(page: Page, pages_by_src: dict, out: Path, nbs: Path, doc_base: str) -> str:
    "Doc links to the published site become local; links to notebooks go to their page; local files are copied"
    def fix(m):
        attr, url = m.group(1), html.unescape(m.group(2))
        if url.startswith(('data:', '#', 'mailto:', 'javascript:')): return m.group(0)
        if doc_base and url.startswith(doc_base):  # https://clapp.github.io/clapp/filters.html#x -> filters.html#x
            path, _, frag = url[len(doc_base):].lstrip('/').partition('#')
            new = _relurl(path or 'index.html', page.url) + (f'#{frag}' if frag else '')
            return f'{attr}="{html.escape(new)}"'
        parts = urlsplit(url)
        if parts.scheme or parts.netloc or not parts.path: return m.group(0)
        f = (page.src.parent/parts.path).resolve()
        if not f.exists() and (ROOT/parts.path).exists(): f = (ROOT/parts.path).resolve()  # README-style paths
        frag = f'#{parts.fragment}' if parts.fragment else ''
        if f.suffix == '.ipynb' and f in pages_by_src:
            return f'{attr}="{html.escape(_relurl(pages_by_src[f].url, page.url) + frag)}"'
        if f.is_file():
            try: site_path = f.relative_to(nbs.resolve())
            except ValueError:
                try: site_path = f.relative_to(ROOT)
                except ValueError: return m.group(0)
            dest = out/site_path
            if not dest.exists(): dest.parent.mkdir(parents=True, exist_ok=True); shutil.copy2(f, dest)
            return f'{attr}="{html.escape(_relurl(site_path.as_posix(), page.url) + frag)}"'
        return m.group(0)
    return re.sub(r'\b(href|src)="([^"]*)"', fix, page.body)


def _nav_html(items: list, pages: dict, current: Page) -> str:
    def link(rel):
        p = pages.get(rel)
        if p is None: return ''
        cur = ' class="active" aria-current="page"' if p is current else ''
        return f'<li><a href="{html.escape(_relurl(p.url, current.url))}"{cur}>{html.escape(p.title)}</a></li>'
    out = ['<ul class="nav">']
    for it in items:
        if it[0] == 'page': out.append(link(it[1]))
        elif any(r in pages for r in it[2]):
            out.append(f'<li class="nav-section"><span>{html.escape(it[1])}</span><ul>')
            out += [link(r) for r in it[2]]
            out.append('</ul></li>')
    out.append('</ul>')
    return '\n'.join(out)


def _toc_html(toc: list) -> str:
    rows = [f'<li class="toc-{lvl}"><a href="#{hid}">{html.escape(text)}</a></li>' for lvl, hid, text in toc if lvl in (2, 3)]
    return f'<nav class="toc" aria-label="On this page"><h2>On this page</h2><ul>{"".join(rows)}</ul></nav>' if rows else ''


_PAGE = """<!DOCTYPE html>
<html lang="en" data-root="{root}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} – {site}</title>
<meta name="description" content="{description}">
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{root}assets/site.css">
<link rel="stylesheet" href="{root}styles.css">
</head>
<body>
<header class="topbar">
  <a class="brand" href="{root}index.html">{site}</a>
  <div class="search" role="search">
    <input id="search" type="search" placeholder="Search the docs" aria-label="Search the docs" autocomplete="off">
    <ul id="search-results" hidden></ul>
  </div>
  <a class="repo" href="{repo}">Source</a>
</header>
<div class="layout">
<nav class="sidebar" aria-label="Pages">
{nav}
</nav>
<main id="content">
<header class="page-header"><h1 class="title">{title}</h1>{desc_html}</header>
{body}
</main>
{toc}
</div>
<footer class="footer">{copyright} · built from the notebooks by <code>python tools/docs.py site</code></footer>
<script src="{root}assets/search-index.js"></script>
<script src="{root}assets/search.js"></script>
</body>
</html>
"""

_SEARCH_JS = r"""// Client-side search over assets/search-index.js (one entry per page section)
(function () {
  const input = document.getElementById('search'), list = document.getElementById('search-results');
  if (!input || !list) return;
  const root = document.documentElement.dataset.root || '';
  const index = window.CLAPP_SEARCH || [];
  const esc = s => s.replace(/[&<>"]/g, c => ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;'}[c]));
  function search(q) {
    const words = q.toLowerCase().split(/\s+/).filter(Boolean);
    if (!words.length) return [];
    const hits = [];
    for (const e of index) {
      const head = (e.s + ' ' + e.t).toLowerCase(), text = e.x.toLowerCase();
      let score = 0;
      for (const w of words) {
        if (e.s.toLowerCase() === w) score += 100;
        else if (head.includes(w)) score += 10;
        else if (text.includes(w)) score += 1;
        else { score = 0; break; }
      }
      if (score) hits.push([score, e]);
    }
    hits.sort((a, b) => b[0] - a[0]);
    return hits.slice(0, 20).map(h => h[1]);
  }
  function snippet(e, q) {
    const w = q.toLowerCase().split(/\s+/).filter(Boolean)[0] || '', i = e.x.toLowerCase().indexOf(w);
    const s = Math.max(0, i - 50);
    return (s ? '…' : '') + e.x.slice(s, s + 140) + (e.x.length > s + 140 ? '…' : '');
  }
  function show() {
    const q = input.value.trim();
    if (!q) { list.hidden = true; list.innerHTML = ''; return; }
    const hits = search(q);
    list.innerHTML = hits.length ? hits.map(e =>
      `<li><a href="${root}${e.u}"><strong>${esc(e.s || e.t)}</strong> <span class="page">${esc(e.t)}</span>` +
      `<small>${esc(snippet(e, q))}</small></a></li>`).join('') : '<li class="none">No results</li>';
    list.hidden = false;
  }
  input.addEventListener('input', show);
  input.addEventListener('keydown', ev => {
    if (ev.key === 'Enter') { const a = list.querySelector('a'); if (a) window.location.href = a.href; }
    if (ev.key === 'Escape') { input.value = ''; show(); }
  });
  document.addEventListener('click', ev => { if (!ev.target.closest('.search')) list.hidden = true; });
  const q = new URLSearchParams(window.location.search).get('q');
  if (q) { input.value = q; show(); }
})();
"""

_SITE_CSS = """
:root { --fg: #212529; --muted: #6c757d; --line: #dee2e6; --accent: #2780e3; --code: #f8f9fa; }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: var(--fg); }
a { color: var(--accent); text-decoration: none; } a:hover { text-decoration: underline; }
.topbar { position: sticky; top: 0; z-index: 10; display: flex; align-items: center; gap: 1.5rem; padding: .6rem 1.5rem; background: var(--accent); color: #fff; }
.topbar a { color: #fff; } .brand { font-weight: 600; font-size: 1.2rem; } .repo { margin-left: auto; }
.search { position: relative; flex: 0 1 26rem; }
#search { width: 100%; padding: .35rem .6rem; border: 0; border-radius: 4px; font-size: .95rem; }
#search-results { position: absolute; left: 0; right: 0; margin: .2rem 0 0; padding: 0; list-style: none; background: #fff; color: var(--fg); border: 1px solid var(--line); border-radius: 4px; box-shadow: 0 4px 16px rgba(0,0,0,.15); max-height: 70vh; overflow: auto; }
#search-results li a { display: block; padding: .45rem .7rem; color: var(--fg); border-bottom: 1px solid var(--line); }
#search-results li a:hover { background: #eef5fd; text-decoration: none; }
#search-results .page { color: var(--muted); font-size: .85rem; } #search-results small { display: block; color: var(--muted); }
#search-results .none { padding: .5rem .7rem; color: var(--muted); }
.layout { display: grid; grid-template-columns: 15rem minmax(0, 1fr) 14rem; gap: 2rem; max-width: 90rem; margin: 0 auto; padding: 0 1.5rem; }
.sidebar, .toc { position: sticky; top: 3.5rem; align-self: start; max-height: calc(100vh - 4rem); overflow: auto; padding-top: 1.5rem; font-size: .92rem; }
.nav, .nav ul, .toc ul { list-style: none; margin: 0; padding: 0; }
.nav a { display: block; padding: .2rem .5rem; color: var(--fg); border-radius: 4px; }
.nav a.active { background: #e7f1fc; color: var(--accent); font-weight: 600; }
.nav-section > span { display: block; margin-top: .8rem; padding: .2rem .5rem; font-weight: 600; color: var(--muted); text-transform: uppercase; font-size: .78rem; letter-spacing: .04em; }
.toc h2 { font-size: .85rem; margin: 0 0 .4rem; color: var(--muted); } .toc a { color: var(--muted); display: block; padding: .1rem 0; }
.toc .toc-3 a { padding-left: .8rem; font-size: .85rem; }
main { min-width: 0; padding: 1.5rem 0 3rem; }
.page-header { margin-bottom: 1.5rem; border-bottom: 1px solid var(--line); }
.page-header .title { margin: 0 0 .3rem; font-size: 2.1rem; }
.description { font-size: 1.15rem; color: var(--muted); font-style: italic; }
h2, h3, h4 { margin-top: 1.8rem; } .anchor-link { margin-left: .4rem; color: var(--line); font-size: .8em; } h1:hover .anchor-link, h2:hover .anchor-link, h3:hover .anchor-link, h4:hover .anchor-link { color: var(--accent); }
.cell { margin: .8rem 0; } .prompt { display: none; }
.input_area, div.highlight { background: var(--code); border-radius: 4px; }
pre { margin: 0; padding: .6rem .8rem; overflow-x: auto; font: 13.5px/1.45 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
code { font: .9em ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background: var(--code); padding: .05em .25em; border-radius: 3px; }
pre code { background: none; padding: 0; }
.output_wrapper { margin: .2rem 0 0 .8rem; border-left: 2px solid lightsalmon; }
.output_text pre { background: none; }
.output_subarea img { max-width: 100%; height: auto; }
.output_error pre { background: #fdecea; }
.rendered_html table { border-collapse: collapse; margin: .8rem 0; font-size: .92rem; }
.rendered_html th, .rendered_html td { border: 1px solid var(--line); padding: .3rem .6rem; text-align: left; }
.rendered_html img { max-width: 100%; }
.output_markdown hr { border: 0; border-top: 1px solid var(--line); margin: 1.5rem 0 .5rem; }
.source-link { float: right; font-size: .85rem; }
.clapp-showdoc .output_wrapper { margin-left: 0; border-left: 0; }
.clapp-showdoc .output_markdown > hr:first-child { margin-top: 1rem; }
details.code-fold > summary { cursor: pointer; color: var(--muted); font-size: .9rem; }
.footer { border-top: 1px solid var(--line); padding: 1rem 1.5rem; color: var(--muted); font-size: .85rem; text-align: center; }
@media (max-width: 1100px) { .layout { grid-template-columns: 13rem minmax(0, 1fr); } .toc { display: none; } }
@media (max-width: 700px) { .layout { display: block; } .sidebar { position: static; max-height: none; } }
"""


def build_site(out: Path, workers: int = 0, only: str = '', timeout: float = 300) -> dict:
    "Build the static docs site into `out` (only notebooks matching glob `only`, if given); {'pages', 'warnings'}"
    from pygments.formatters import HtmlFormatter
    s, nbs = settings(), nbs_path()
    out = Path(out).resolve()
    if out.exists() and any(out.iterdir()):
        if not (out/SITE_MARKER).exists():
            raise DocsError(f'{out} is not empty and is not a docs build; choose another --out or empty it')
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out/SITE_MARKER).write_text('made by tools/docs.py site; deleted and rebuilt by it\n')

    warnings = []
    items = read_sidebar(nbs/'sidebar.yml')
    listed = sidebar_files(items)
    for rel in listed:
        if not (nbs/rel).exists(): warnings.append(f'sidebar.yml lists {rel}, which does not exist (skipped)')
    notebooks = all_notebooks(nbs)
    for p in notebooks:
        if p.relative_to(nbs).as_posix() not in listed: warnings.append(f'{_rel(p)} is not in sidebar.yml (rendered, not linked)')
    if only:
        globs = [g.strip() for g in only.split(',') if g.strip()]
        notebooks = [p for p in notebooks if any(p.relative_to(nbs).match(g) for g in globs)]
        if not notebooks: raise DocsError(f'no notebook under {_rel(nbs)} matches {only!r}')

    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix='clapp-proc-') as tmp:
        processed = process_notebooks(notebooks, Path(tmp), nbs, workers, timeout)
        print(f'processed {len(processed)} notebooks with nbdev in {time.monotonic() - t0:.0f}s', file=sys.stderr)
        pages, exp = {}, _html_exporter()
        for src in notebooks:
            nb = read_processed(processed[src])
            fm = apply_quarto_options(nb, 'html')
            rel = src.relative_to(nbs).as_posix()
            url = (Path(rel).parent/fm.get('output-file', src.with_suffix('.html').name)).as_posix()
            body, _ = exp.from_notebook_node(nb)
            pages[rel] = Page(src.resolve(), rel, url, str(fm.get('title') or src.stem), str(fm.get('description') or ''), body)

    by_src = {p.src: p for p in pages.values()}
    doc_base = (s.get('doc_host', '') + s.get('doc_baseurl', '')).rstrip('/') + '/' if s.get('doc_host') else ''
    search = []
    for p in pages.values():
        p.body = _rewrite_links(p, by_src, out, nbs, doc_base)
        p.body, p.toc = _fix_headings(p.body)
        search += _search_entries(p)

    nav_items = [it for it in items if it[0] == 'section' or it[1] in pages]
    for p in pages.values():
        root = _relurl('.', p.url) + '/' if '/' in p.url else ''
        desc = f'<p class="description">{html.escape(p.description)}</p>' if p.description else ''
        page_html = _PAGE.format(root=root, title=html.escape(p.title), site=html.escape(s.get('title', 'docs')),
                                 description=html.escape(p.description), repo=html.escape(s.get('git_url', '')),
                                 nav=_nav_html(nav_items, pages, p), desc_html=desc, body=p.body,
                                 toc=_toc_html(p.toc), copyright=html.escape(s.get('copyright', '')))
        (out/p.url).parent.mkdir(parents=True, exist_ok=True)
        (out/p.url).write_text(page_html, encoding='utf-8')

    assets = out/'assets'
    assets.mkdir(exist_ok=True)
    (assets/'site.css').write_text(_SITE_CSS + HtmlFormatter(style='default').get_style_defs('.highlight'))
    (assets/'search.js').write_text(_SEARCH_JS)
    (assets/'search-index.js').write_text('window.CLAPP_SEARCH = ' + json.dumps(search, ensure_ascii=False) + ';\n')
    css = nbs/'styles.css'
    (out/'styles.css').write_text(css.read_text() if css.exists() else '')
    for w in warnings: print(f'warning: {w}', file=sys.stderr)
    return {'pages': [p.url for p in pages.values()], 'warnings': warnings}


# ---------------------------------------------------------------------------------------------------------------

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog='tools/docs.py', description=__doc__.split('\n\n')[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split('\n\n', 1)[1])
    sub = ap.add_subparsers(dest='cmd', required=True)
    r = sub.add_parser('readme', help='regenerate README.md from nbs/index.ipynb')
    r.add_argument('--check', action='store_true', help='exit 1, saying what differs, if README.md would change')
    r.add_argument('--engine', choices=['auto', 'quarto', 'nbconvert'], default='auto',
                   help='auto: Quarto (nbdev_readme) when installed, else nbconvert; --check defaults to nbconvert')
    st = sub.add_parser('site', help='build the static docs site (sidebar, search) without Quarto')
    st.add_argument('--out', default='_site', help='output folder (default _site, git-ignored)')
    st.add_argument('--workers', type=int, default=0, help='notebooks processed at once (default: CPU count)')
    st.add_argument('--only', default='', help="only the notebooks matching these globs, e.g. 'index.ipynb,03_*' (a quick look at some pages)")
    st.add_argument('--timeout', type=float, default=300, help='seconds nbdev may spend on one notebook (default 300)')
    p = sub.add_parser('_process')  # internal: one notebook through nbdev's processors (see process_notebook)
    p.add_argument('src'); p.add_argument('dst')
    a = ap.parse_args(argv)
    if a.cmd == '_process': _process_main(a.src, a.dst); return 0
    os.chdir(ROOT)
    try:
        if a.cmd == 'readme': return readme(a.engine, a.check)
        if a.cmd == 'site':
            res = build_site(ROOT/a.out if not Path(a.out).is_absolute() else Path(a.out), a.workers, a.only, a.timeout)
            print(f'wrote {len(res["pages"])} pages to {a.out}/ (open {a.out}/index.html, or serve it: '
                  f'python -m http.server -d {a.out})')
            return 0
    except DocsError as e:
        print(f'error: {e}', file=sys.stderr)
        return 1


if __name__ == '__main__':
    sys.exit(main())
