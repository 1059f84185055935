#!/usr/bin/env python
"""Documentation tools for CLAPP.

    python tools/docs.py readme            # regenerate README.md from nbs/index.ipynb
    python tools/docs.py readme --check    # exit 1 if README.md is stale (CI)

The notebook goes through nbdev's own processors (the ones `nbdev_docs` uses: `#| hide`, `#| echo`,
show_doc, frontmatter, ...). Then Quarto renders it when it is installed (`--engine quarto`, the same as
`nbdev_readme`), and nbconvert's markdown exporter otherwise (`--engine nbconvert`). The committed README
is made with `--engine nbconvert`, the engine CI has, so its freshness can be checked anywhere.
"""
import argparse, copy, re, shutil, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def processed_notebook(path: Path):
    "`path` read and run through nbdev's documentation processors, as an nbformat notebook"
    import nbformat
    from execnb.nbio import read_nb
    from fastcore.xtras import working_directory
    from nbdev.processors import FilterDefaults
    nb = read_nb(path)
    with working_directory(path.parent): FilterDefaults()(nb)
    return nbformat.from_dict(_plain(nb))


def _plain(o):
    if isinstance(o, dict): return {k: _plain(v) for k, v in o.items() if not k.startswith('_')}
    if isinstance(o, list): return [_plain(v) for v in o]
    return o


def _frontmatter_to_markdown(nb):
    "nbdev turns the title cell into YAML frontmatter; a README wants it back as a heading and a quote"
    import yaml
    for c in nb.cells:
        src = ''.join(c.source) if isinstance(c.source, list) else c.source
        m = re.match(r'^---\n(.*?)\n---\s*$', src, re.S)
        if c.cell_type == 'raw' and m:
            fm = yaml.safe_load(m.group(1)) or {}
            c.cell_type, c.source = 'markdown', f"# {fm.get('title', '')}\n\n> {fm.get('description', '')}".strip()
            c.pop('attachments', None)
            break
    return nb


def render_readme_nbconvert(nb_path: Path, images_dir: Path) -> str:
    "Markdown of the processed notebook, writing output images under `images_dir`"
    from nbconvert import MarkdownExporter
    nb = _frontmatter_to_markdown(processed_notebook(nb_path))
    nb.metadata['language_info'] = {'name': 'python'}
    for c in nb.cells:
        if c.cell_type == 'raw': c.cell_type = 'markdown'
    exp = MarkdownExporter()
    body, res = exp.from_notebook_node(nb, resources={'output_files_dir': images_dir.relative_to(ROOT).as_posix()})
    for name, data in sorted(res.get('outputs', {}).items()):
        out = ROOT / name
        out.parent.mkdir(parents=True, exist_ok=True)
        if not out.exists() or out.read_bytes() != data: out.write_bytes(data)
    body = re.sub(r'\n{3,}', '\n\n', body).strip() + '\n'
    return body


def readme(engine: str = 'auto', check: bool = False) -> int:
    nb_path, out = ROOT / 'nbs' / 'index.ipynb', ROOT / 'README.md'
    if engine == 'auto': engine = 'quarto' if shutil.which('quarto') and not check else 'nbconvert'
    if engine == 'quarto':
        if not shutil.which('quarto'): sys.exit('Quarto is not installed; use --engine nbconvert')
        return subprocess.call(['nbdev_readme'], cwd=ROOT)
    text = render_readme_nbconvert(nb_path, ROOT / 'images' / 'readme')
    if check:
        if not out.exists() or out.read_text() != text:
            print('README.md is stale: run `python tools/docs.py readme --engine nbconvert` and commit it')
            return 1
        print('README.md is up to date')
        return 0
    out.write_text(text)
    print(f'wrote {out.relative_to(ROOT)} ({len(text)} characters)')
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    sub = ap.add_subparsers(dest='cmd', required=True)
    r = sub.add_parser('readme', help='regenerate README.md from nbs/index.ipynb')
    r.add_argument('--check', action='store_true', help='exit 1 if README.md would change')
    r.add_argument('--engine', choices=['auto', 'quarto', 'nbconvert'], default='auto')
    a = ap.parse_args(argv)
    if a.cmd == 'readme': return readme(a.engine, a.check)


if __name__ == '__main__':
    sys.exit(main())
