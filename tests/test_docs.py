"""The documentation tooling (issue 9, and the README of issue 2).

* The Quarto project (nbs/_quarto.yml, nbs/nbdev.yml, nbs/sidebar.yml) parses, matches settings.ini and lists
  every notebook, in order; the notebooks keep imports in cells of their own (nbdev executes every cell that
  imports something while building docs).
* `tools/docs.py readme` honours nbdev's directives and Quarto's cell options, writes output images as files,
  and gives the same bytes every time (a fixture notebook, so this holds whatever index.ipynb says).
* `tools/docs.py site` builds the site, which is served on 127.0.0.1 and opened page by page in headless
  Chromium: no broken image, no broken same-site link or anchor, no error output or script error, every
  module page shows its API, and search finds things. A screenshot goes to test-artifacts/docs-home.png.
"""
import base64, importlib, inspect, json, os, re, shutil, signal, socket, subprocess, sys, time
import urllib.error, urllib.request
from pathlib import Path
from urllib.parse import urldefrag, urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
NBS = ROOT/'nbs'
ARTIFACTS = ROOT/'test-artifacts'
sys.path.insert(0, str(ROOT/'tools'))
import docs  # tools/docs.py

CHROMIUM = shutil.which('chromium')
CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                 '--disable-background-networking', '--disable-component-update', '--disable-sync']
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason='needs the chromium package (apt-get install chromium)')
MODULE_NB = re.compile(r'^\d\d_\w+\.ipynb$')


# ---------------------------------------------------------------------------------------------------------------
# The Quarto project

def test_quarto_yml():
    q = yaml.safe_load((NBS/'_quarto.yml').read_text())
    assert q['project']['type'] == 'website'
    html = q['format']['html']
    assert html['theme'] == 'cosmo' and html['toc'] is True
    assert (NBS/html['css']).exists(), html['css']
    assert q['website']['navbar']['search'] is True
    for f in q['metadata-files']: assert (NBS/f).exists(), f
    assert {'nbdev.yml', 'sidebar.yml'} <= set(q['metadata-files'])


def test_nbdev_yml_matches_settings():
    "nbdev rewrites nbdev.yml from settings.ini on every docs build; the committed one must be what it writes"
    from nbdev.quarto import _nbdev_yml
    s = docs.settings()
    vals = {k: s[k] for k in ['title', 'description', 'branch', 'git_url', 'doc_host', 'doc_baseurl']}
    vals['doc_path'] = Path(s['doc_path']).name
    assert (NBS/'nbdev.yml').read_text() == _nbdev_yml.format(**vals), 'regenerate nbs/nbdev.yml (nbdev_proc_nbs does)'
    w = yaml.safe_load((NBS/'nbdev.yml').read_text())['website']
    assert w['title'] == s['title'] and w['site-url'] == s['doc_host'] + s['doc_baseurl']
    assert w['description'] == s['description'] and w['repo-url'] == s['git_url']


def test_sidebar_lists_every_notebook_in_order():
    items = docs.read_sidebar(NBS/'sidebar.yml')
    listed = docs.sidebar_files(items)
    missing = [f for f in listed if not (NBS/f).exists()]
    assert not missing, f'sidebar.yml lists files that do not exist: {missing}'
    assert len(listed) == len(set(listed)), 'sidebar.yml lists a file twice'
    unlisted = [p.relative_to(NBS).as_posix() for p in docs.all_notebooks(NBS) if p.relative_to(NBS).as_posix() not in listed]
    assert not unlisted, f'notebooks missing from nbs/sidebar.yml (nbdev would render them, unlinked): {unlisted}'
    assert listed[0] == 'index.ipynb'
    modules = [f for f in listed if MODULE_NB.match(f)]
    assert modules == sorted(modules), f'module notebooks out of order: {modules}'
    assert [m[:2] for m in modules] == [f'{i:02d}' for i in range(len(modules))], f'expected 00_, 01_, ... notebooks: {modules}'
    sections = {it[1]: it[2] for it in items if it[0] == 'section'}
    assert sections.get('Tutorials'), 'sidebar.yml needs a Tutorials section'
    assert all(f.startswith('tutorials/') for f in sections['Tutorials'])


def _runs_code(tree) -> bool:
    "Whether executing this top-level statement does more than import or define"
    import ast
    return not isinstance(tree, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))


def _mixed_import_cells(nb_path: Path) -> list:
    "Cells nbdev executes on every docs build (they import something) that also run other code"
    from nbdev.process import NBProcessor
    from nbdev.processors import _do_eval
    out = []
    for c in NBProcessor(nb_path).nb.cells:
        if c.cell_type != 'code' or c.directives_.keys() & {'export', 'exports', 'exporti'}: continue
        trees = c.parsed_() or []
        if _do_eval(c) and any(_runs_code(t) for t in trees) and 'show_doc' not in c.source:
            first = next((l for l in c.source.splitlines() if l.strip() and not l.startswith('#|')), '')
            out.append(f'cell {c.idx_}: {first[:80]!r}')
    return out


def test_notebooks_keep_imports_in_their_own_cells():
    "nbdev_docs (and tools/docs.py) execute every cell that imports something; one that also computes slows or breaks docs"
    import warnings
    problems = []
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        for nb in docs.all_notebooks(NBS):
            problems += [f'{nb.relative_to(ROOT).as_posix()} {c}' for c in _mixed_import_cells(nb)]
    assert not problems, ('these cells import something and also run code, so nbdev executes them on every docs build '
                          '(nbdev FAQ, "imports and other code"); move the imports to a cell of their own '
                          '(cells counted from 0, markdown included):\n  ' + '\n  '.join(problems))


# ---------------------------------------------------------------------------------------------------------------
# README rendering, on a fixture notebook that uses every directive

PNG_1x1 = base64.b64decode('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==')


def _fixture_nb(path: Path):
    import nbformat
    v4 = nbformat.v4
    def code(src, outputs=()): c = v4.new_code_cell(src); c.outputs = list(outputs); return c
    text = lambda s: v4.new_output('execute_result', {'text/plain': s}, execution_count=1)
    nb = v4.new_notebook(cells=[
        v4.new_markdown_cell('# Fixture title\n> The fixture summary'),
        code('#| hide\nHIDDEN_PLUMBING = 1'),
        v4.new_markdown_cell('Some prose about `shout`.'),
        code('#| export\ndef shout(word:str, # the word to shout\n          times:int=2, # how often\n         )->str:\n'
             '    "`word` in capitals, `times` times"\n    return word.upper() * times'),
        code("shout('hi')", [text("'HIHI'")]),
        code('#| echo: false\nSECRET_SOURCE = 42\nSECRET_SOURCE', [text('OUTPUT_SHOWN_WITHOUT_SOURCE')]),
        code('#| output: false\nSOURCE_WITHOUT_OUTPUT = 1', [text('OUTPUT_NOT_SHOWN')]),
        code('#| include: false\nNOT_INCLUDED = 1', [text('NOT_INCLUDED_OUTPUT')]),
        code('show_picture()', [v4.new_output('display_data', {'image/png': base64.b64encode(PNG_1x1).decode(),
                                                               'text/plain': '<Figure>'})]),
    ])
    nb.metadata['kernelspec'] = {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'}
    nbformat.write(nb, path)


@pytest.fixture(scope='module')
def fixture_render(tmp_path_factory):
    "The fixture notebook rendered twice by `docs.render_readme`"
    nb = tmp_path_factory.mktemp('readme')/'fixture.ipynb'
    _fixture_nb(nb)
    return nb, docs.render_readme(nb), docs.render_readme(nb)


def test_readme_rendering_honours_directives_and_is_deterministic(fixture_render):
    _, (md, images), (md2, images2) = fixture_render
    assert md == md2 and images == images2, 'two renders of the same notebook differ'
    assert md.startswith('# Fixture title\n\n> The fixture summary\n'), md[:200]
    assert 'AUTOGENERATED' in md
    for absent in ['HIDDEN_PLUMBING', 'return word.upper()', 'SECRET_SOURCE', 'OUTPUT_NOT_SHOWN', 'NOT_INCLUDED', '#|']:
        assert absent not in md, f'{absent!r} should not be in the README:\n{md}'
    for present in ['### shout', 'the word to shout', 'OUTPUT_SHOWN_WITHOUT_SOURCE', 'SOURCE_WITHOUT_OUTPUT', "'HIHI'"]:
        assert present in md, f'{present!r} missing from the README:\n{md}'
    assert '{target=' not in md, 'pandoc link attributes must not leak into Markdown'
    assert list(images.values()) == [PNG_1x1] and all(k.startswith('images/readme/') for k in images)
    (name,) = images
    assert f'({name})' in md and 'base64' not in md, 'images are files referenced by path, never inline'


def test_readme_check_mode_reports_and_never_writes(fixture_render, tmp_path, monkeypatch, capsys):
    "`readme --check` on a stale README exits 1, says what to run, and leaves the files alone; then a write makes it fresh"
    _, rendered, _ = fixture_render
    readme, images = tmp_path/'README.md', tmp_path/'images'/'readme'
    readme.write_text('stale\n')
    monkeypatch.setattr(docs, 'README', readme)
    monkeypatch.setattr(docs, 'README_IMAGES', images)
    monkeypatch.setattr(docs, 'ROOT', tmp_path)
    monkeypatch.setattr(docs, 'render_readme', lambda nb_path=None: rendered)
    assert docs.readme('nbconvert', check=True) == 1
    assert 'python tools/docs.py readme --engine nbconvert' in capsys.readouterr().out
    assert readme.read_text() == 'stale\n' and not images.exists()
    assert docs.readme('nbconvert', check=False) == 0
    assert readme.read_text().startswith('# Fixture title') and len(list(images.iterdir())) == 1
    assert docs.readme('nbconvert', check=True) == 0
    (images/'old.png').write_bytes(b'x')  # a stale image is reported, then removed
    assert docs.readme('nbconvert', check=True) == 1
    assert docs.readme('nbconvert', check=False) == 0 and not (images/'old.png').exists()


def test_pandoc_ids_match_quarto():
    used = set()
    assert [docs.pandoc_id(t, used) for t in ['Install and run', 'FilterNet.forward', 'load_config', 'load_config',
                                              '2. Data: sources!']] == \
        ['install-and-run', 'filternet.forward', 'load_config', 'load_config-1', 'data-sources']


# ---------------------------------------------------------------------------------------------------------------
# The static site in a real browser

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _page_url(rel: str) -> str:
    "nbdev's page name for a notebook: `01_filters.ipynb` -> `filters.html` (its output-file)"
    from nbdev.doclinks import _nbpath2html
    return _nbpath2html(Path(rel)).as_posix()


@pytest.fixture(scope='module')
def site(tmp_path_factory):
    """The site built by `tools/docs.py site`, served by http.server on 127.0.0.1 (always stopped at the end).
    CLAPP_DOCS_SITE=folder tests an existing build instead (quicker while working on the tests)."""
    if os.environ.get('CLAPP_DOCS_SITE'): out = Path(os.environ['CLAPP_DOCS_SITE']).resolve()
    else:
        out = tmp_path_factory.mktemp('docs')/'site'
        t0 = time.monotonic()
        p = subprocess.run([sys.executable, str(ROOT/'tools'/'docs.py'), 'site', '--out', str(out)],
                           cwd=ROOT, capture_output=True, text=True, timeout=900)
        if p.returncode != 0: pytest.fail(f'tools/docs.py site failed:\n{p.stdout}\n{p.stderr}', pytrace=False)
        print(f'site built in {time.monotonic() - t0:.0f}s\n{p.stderr}')
    port = _free_port()
    server = subprocess.Popen([sys.executable, '-m', 'http.server', str(port), '--bind', '127.0.0.1', '--directory', str(out)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        base = f'http://127.0.0.1:{port}/'
        end = time.monotonic() + 30
        while True:
            try: urllib.request.urlopen(base, timeout=2); break
            except OSError:
                if server.poll() is not None or time.monotonic() > end: raise RuntimeError('http.server did not start')
                time.sleep(0.1)
        yield base, out
    finally:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if server.poll() is not None: break
            os.killpg(server.pid, sig)
            try: server.wait(5)
            except subprocess.TimeoutExpired: pass


def _status(url: str) -> int:
    for method in ('HEAD', 'GET'):
        try:
            with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=10) as r: return r.status
        except urllib.error.HTTPError as e:
            if method == 'GET': return e.code
        except OSError:
            if method == 'GET': return -1
    return -1


_PAGE_FACTS = r"""() => ({
  brokenImages: Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).map(i => (i.currentSrc || i.src).slice(0, 120)),
  images: document.images.length,
  links: Array.from(document.querySelectorAll('a[href]')).map(a => a.href),
  ids: Array.from(document.querySelectorAll('[id]')).map(e => e.id),
  headings: Array.from(document.querySelectorAll('main h2, main h3, main h4')).map(h => h.textContent.replace(/#$/, '').trim()),
  errors: Array.from(document.querySelectorAll('.output_error, .jp-RenderedText[data-mime-type="application/vnd.jupyter.stderr"]')).map(e => e.textContent.trim().slice(0, 300)),
  tracebacks: (document.querySelector('main') || document.body).innerText.includes('Traceback (most recent call last)'),
  nav: Array.from(document.querySelectorAll('.sidebar a')).map(a => a.getAttribute('href')),
  active: Array.from(document.querySelectorAll('.sidebar a.active')).map(a => a.getAttribute('href')),
  title: (document.querySelector('h1.title') || {}).textContent || '',
})"""


@pytest.fixture(scope='module')
def crawl(site):
    "Every page of the sidebar opened in headless Chromium: what each shows, plus script errors"
    from playwright.sync_api import sync_playwright
    base, out = site
    listed = docs.sidebar_files(docs.read_sidebar(NBS/'sidebar.yml'))
    urls = [_page_url(rel) for rel in listed]
    facts, js_errors = {}, []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={'width': 1400, 'height': 1000})
            page.on('pageerror', lambda e: js_errors.append(f'{page.url}: {e}'))
            for u in urls:
                resp = page.goto(base + u, wait_until='load')
                facts[u] = page.evaluate(_PAGE_FACTS) if resp is not None and resp.status == 200 else None
            page.goto(base + 'index.html', wait_until='load')
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS/'docs-home.png'), full_page=False)
            yield {'base': base, 'urls': urls, 'facts': facts, 'js_errors': js_errors, 'browser': browser, 'listed': listed}
        finally:
            browser.close()


@needs_chromium
def test_site_pages_and_navigation(crawl):
    facts, urls = crawl['facts'], crawl['urls']
    problems = [f'{u} ({rel}): not built' for u, rel in zip(urls, crawl['listed']) if facts[u] is None]
    for u in urls:
        f = facts[u]
        if f is None: continue
        if not f['title'].strip(): problems.append(f'{u}: no page title')
        if len(f['nav']) != len(urls): problems.append(f'{u}: sidebar has {len(f["nav"])} links, expected {len(urls)}')
        if len(f['active']) != 1: problems.append(f'{u}: sidebar marks {len(f["active"])} pages as current')
    assert not problems, '\n'.join(problems)
    assert (ARTIFACTS/'docs-home.png').stat().st_size > 10_000


@needs_chromium
def test_site_has_no_broken_images(crawl):
    broken = {u: f['brokenImages'] for u, f in crawl['facts'].items() if f and f['brokenImages']}
    assert not broken, f'images that did not load: {json.dumps(broken, indent=1)}'


@needs_chromium
def test_site_has_no_broken_links(crawl):
    base, facts = crawl['base'], crawl['facts']
    ids = {u: set(f['ids']) for u, f in facts.items() if f}
    checked, problems = {}, []
    for u, f in facts.items():
        for href in (f or {}).get('links', []):
            if not href.startswith(base): continue  # other sites are not checked (no network in CI)
            target, frag = urldefrag(href)
            if target not in checked: checked[target] = _status(target)
            if checked[target] != 200: problems.append(f'{u}: link to {href[len(base):]} -> HTTP {checked[target]}'); continue
            path = urlsplit(target).path.lstrip('/') or 'index.html'
            if frag and path in ids and frag not in ids[path]:
                problems.append(f'{u}: link to {href[len(base):]}: no element with id {frag!r} on {path}')
    assert checked, 'no same-site links found at all'
    assert not problems, 'broken links:\n' + '\n'.join(sorted(set(problems)))


@needs_chromium
def test_site_shows_no_errors(crawl):
    facts = {u: f for u, f in crawl['facts'].items() if f}
    problems = [f'{u}: error output: {e!r}' for u, f in facts.items() for e in f['errors']]
    problems += [f'{u}: a traceback is shown' for u, f in facts.items() if f['tracebacks']]
    problems += [f'script error: {e}' for e in crawl['js_errors']]
    assert not problems, '\n'.join(problems)


def _api_names(module) -> list:
    "Functions and classes a module exports and defines: each gets a show_doc entry on its page"
    return [n for n in getattr(module, '__all__', [])
            if (inspect.isfunction(getattr(module, n, None)) or inspect.isclass(getattr(module, n, None)))
            and getattr(getattr(module, n), '__module__', None) == module.__name__]


def _default_exp(nb: Path):
    src = '\n'.join(''.join(c.get('source', '')) for c in json.loads(nb.read_text()).get('cells', []) if c['cell_type'] == 'code')
    m = re.search(r'^#\|\s*default_exp\s+(\S+)', src, re.M)
    return m.group(1) if m else None


@needs_chromium
def test_module_pages_show_their_api(crawl):
    lib = docs.settings()['lib_name']
    problems, pages = [], 0
    for rel in crawl['listed']:
        if not (NBS/rel).exists(): continue
        mod = _default_exp(NBS/rel)
        if not mod: continue
        pages += 1
        module = importlib.import_module(f'{lib}.{mod}')
        f = crawl['facts'][_page_url(rel)]
        if f is None: problems.append(f'{rel}: page not built'); continue
        headings = set(f['headings'])
        missing = [n for n in _api_names(module) if n not in headings]
        if missing: problems.append(f'{rel} ({lib}.{mod}): no show_doc entry for {", ".join(missing)}')
    assert pages >= 10, f'only {pages} module pages found'
    assert not problems, ('API entries missing from the docs (exported from a `#| export` cell that is not hidden, '
                          'or shown with show_doc):\n' + '\n'.join(problems))


@needs_chromium
def test_search_finds_a_known_term(crawl):
    from playwright.sync_api import expect
    page = crawl['browser'].new_page()
    try:
        page.goto(crawl['base'] + 'index.html')
        box = page.locator('#search')
        box.fill('load_config')
        first = page.locator('#search-results a').first
        expect(first).to_be_visible(timeout=5000)
        assert 'config.html#load_config' in first.get_attribute('href'), first.get_attribute('href')
        first.click()
        page.wait_for_url(re.compile(r'/config\.html#load_config'))
        expect(page.locator('h1.title')).not_to_be_empty()
        box = page.locator('#search')
        box.fill('zzqx-no-such-term')
        expect(page.locator('#search-results')).to_contain_text('No results')
        box.fill('sobel canny')  # several words: all must match
        expect(page.locator('#search-results a').first).to_be_visible(timeout=5000)
    finally:
        page.close()
