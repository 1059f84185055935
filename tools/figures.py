#!/usr/bin/env python
"""One source of truth for figures: every measured figure in prose must come from a stored output (issue 22).

    python tools/figures.py            # check nbs/**/*.ipynb, README.md and images/bench.md; exit 1 on a mismatch
    python tools/figures.py nbs/04_train.ipynb README.md   # only these files
    python tools/figures.py --known    # the mismatches as tests/test_figures.py's KNOWN list (files not fixed yet)

A *figure* is a number with a unit in Markdown prose: `dB`, `s`/`seconds`/`minutes`, `ms`, `steps`, `KB`/`MB`/`GB`,
`Mpixel/s`, `pairs/s`, `samples/s`, `steps/s`, `%`, `MFLOPs`, `parameters`; or a number right after a score name
(`PSNR 38.9`, `SSIM 0.908`, `F1 0.74`, `L2 0.068`); or a number in a Markdown table column whose header names a
unit (`PSNR (dB)`, `seconds to the rule`, `pairs/s`). Ranges (`850 to 1,870 pairs/s`, `2-5 s`) give two figures.

A figure is **backed** when one of these holds:

1. a number in the same notebook's stored cell outputs (text, Markdown, HTML, streams) equals it after rounding
   to the precision written (`29.1 s` matches 29.07; `330 steps` matches 330.4); a figure written with `about`,
   `~`, `around`, `roughly`, `nearly` or `almost` before it may be 10% off. The way to write a measured figure is
   therefore to let a cell print it, e.g. a cell ending in `Markdown(f"... {secs:.1f} s ...")`: its output is
   the prose, and it is always the number of the last run;
2. for README.md, nbs/index.ipynb, images/bench.md, nbs/09_bench.ipynb and nbs/09a_report.ipynb: a number of
   images/bench.json (the project's stored benchmark run) equals it the same way (README.md is also compared
   with nbs/index.ipynb's outputs, which it renders);
3. it is a **setting or a goal, not a measurement**: the same number, exactly, is a literal in the notebook's
   code cells (a config value such as `train.max_iterations=60` backs "60 steps", `0.95` backs "95%"); or it is a
   confidence level (`95% confidence`); or a bound or goal word stands in the 30 characters before it in the
   same sentence: `goal`, `target`, `threshold`, `budget`, `limit`, `cap`, `at most`, `at least`, `up to`,
   `more than`, `less than`, `fewer than`, `below`, `above`, `under`, `over`, `within`, `every`, `<`, `>`,
   `<=`, `>=` (so "the goal is at most 2 GB" and "checks it every 60 s" pass: such a claim must be one a test
   asserts, which this tool cannot read: keep the prose and the assertion together);
4. it is **quoted from outside the project** and the cell says so in a comment that does not render:
   `<!-- quoted: "130 MFLOPs" (the original system's paper) -->` lists the figures, each in double quotes.

Code (inline backticks, fenced or indented blocks) is never read as prose. Each unbacked figure is reported as
`nbs/04_train.ipynb: cell 12: "25.1 s" not found in outputs (nearest: 30.45)` (README.md and bench.md: `line N`).
tests/test_figures.py runs the check on the repository under pytest.
"""
import json, math, re, sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH_FILES = {'README.md', 'index.ipynb', 'bench.md', '09_bench.ipynb', '09a_report.ipynb'}  # may quote bench.json

_N = r'(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)(k)?'
_NUM = r'(?<![\w.,/-])' + _N
_UNITS = (r'dB|ms|s|secs?|seconds?|minutes?|min|steps|step|KB|kB|MB|GB|Mpix(?:el)?/s|pairs/s|samples/s|steps/s'
          r'|%|[MG]FLOPs?|parameters|params')
_UNIT_FIG = re.compile(rf'(?<![\w.,/-])(?:{_N}\s?(?:to|-|–)\s?)?{_N}\s?({_UNITS})(?![\w/])')
_SCORE_FIG = re.compile(rf'\b(?:PSNR|SSIM|F1|L2)(?: at 1 px)?(?: of)?\s+{_NUM}(?![\w/])')
_HEADER_UNIT = re.compile(rf'\((?:{_UNITS})\)|(?<![\w/])(?:{_UNITS})(?![\w/])|\b(?:seconds|PSNR|SSIM|F1)\b')
_BOUND = re.compile(r'\b(?:goals?|targets?|threshold|budget|limits?|caps?|at most|at least|up to|more than|less than'
                    r'|fewer than|below|above|under|over|within|every)\b|[<>≤≥]', re.I)
_APPROX = re.compile(r'(?:\babout|~|\baround|\broughly|\bnearly|\balmost)\s*$', re.I)
_QUOTED = re.compile(r'<!--\s*quoted:(.*?)-->', re.S)
_OUT_NUM = re.compile(r'(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][+-]?\d+)?')


@dataclass
class Figure:
    "A figure written in prose: its text, its value and the half-width of the rounding it was written with"
    text: str
    value: float
    tol: float
    approx: bool = False
    percent: bool = False


def _value(num: str, k: str = None) -> tuple:
    "The value of a written number and the half-width of its rounding: '29.1' -> (29.1, 0.05), '2.5k' -> (2500, 50)"
    dec = len(num.split('.')[1]) if '.' in num else 0
    v, tol = float(num.replace(',', '')), 0.5 * 10 ** -dec
    return (v * 1000, tol * 1000) if k else (v, tol)


def strip_code(md: str) -> str:
    "Markdown with code (fenced and indented blocks, inline backticks) blanked out, line numbers kept"
    md = re.sub(r'```.*?```', lambda m: '\n' * m.group(0).count('\n'), md, flags=re.S)
    md = re.sub(r'<!--.*?-->', lambda m: '\n' * m.group(0).count('\n'), md, flags=re.S)
    md = '\n'.join('' if l.startswith('    ') else l for l in md.split('\n'))
    return re.sub(r'`[^`\n]*`', '``', md)


def _declared(prose: str, start: int) -> bool:
    "A bound or goal word in the 30 characters before `start`, in the same sentence"
    before = re.split(r'[.;:!?|\n]\s', prose[max(0, start - 30):start])[-1]
    return bool(_BOUND.search(before))


def _fig(prose: str, m: re.Match, num: str, k: str, text: str) -> Figure:
    v, tol, text = *_value(num, k), re.sub(r'\s+', ' ', text)
    return Figure(text, v, tol, approx=bool(_APPROX.search(prose[max(0, m.start() - 12):m.start()])),
                  percent=text.endswith('%'))


def _table_figures(prose: str) -> list:
    "Figures in Markdown table columns whose header names a unit"
    out, lines = [], prose.split('\n')
    for i, line in enumerate(lines[:-1]):
        if not (line.startswith('|') and re.match(r'^\|(\s*:?-+:?\s*\|)+\s*$', lines[i + 1])): continue
        unit_cols = [j for j, h in enumerate(line.strip('|').split('|')) if _HEADER_UNIT.search(h)]
        for row in lines[i + 2:]:
            if not row.startswith('|'): break
            cells = row.strip().strip('|').split('|')
            for j in unit_cols:
                if j < len(cells) and (m := re.fullmatch(r'\s*' + _NUM + r'\s*', cells[j])):
                    out.append((row, Figure(cells[j].strip(), *_value(m.group(1), m.group(2)))))
    return out


def figures_in(md: str) -> list:
    "(line number, Figure) for every figure a Markdown text states as measured (see the module docstring)"
    prose = strip_code(md)
    quoted = set(re.findall(r'"([^"]+)"', ' '.join(_QUOTED.findall(md))))
    line_of = lambda pos: prose.count('\n', 0, pos) + 1
    found = []
    for m in _UNIT_FIG.finditer(prose):
        unit = m.group(5)
        if unit == '%' and re.match(r'\s+confidence', prose[m.end():]): continue  # a confidence level is a setting
        if m.group(1) and not _declared(prose, m.start()):  # the first number of a range
            text = f'{m.group(1)}{m.group(2) or ""} {unit}'
            found.append((line_of(m.start()), _fig(prose, m, m.group(1), m.group(2), text)))
        if not _declared(prose, m.start(3)):
            text = m.group(0)[m.start(3) - m.start():]
            found.append((line_of(m.start(3)), _fig(prose, m, m.group(3), m.group(4), text)))
    for m in _SCORE_FIG.finditer(prose):
        if not _declared(prose, m.start()):
            found.append((line_of(m.start()), _fig(prose, m, m.group(1), m.group(2), m.group(0))))
    for row, f in _table_figures(prose): found.append((line_of(prose.index(row)), f))
    return [(n, f) for n, f in found if f.text.replace('\n', ' ') not in quoted]


def numbers_in(text: str) -> list:
    "Every number in an output text (thousands separators read both ways: '1,285' gives 1285, 1 and 285)"
    out = []
    for m in _OUT_NUM.finditer(text):
        s = m.group(0)
        try: out.append(float(s.replace(',', '')))
        except ValueError: continue
        if ',' in s: out += [float(p) for p in s.split(',') if p.strip('-')]
    return out


def _output_text(o: dict) -> str:
    if o.get('output_type') == 'stream': return ''.join(o.get('text', ''))
    data = o.get('data', {})
    txt = [''.join(data.get(k, '')) for k in ('text/plain', 'text/markdown', 'text/latex')]
    txt.append(re.sub(r'<[^>]+>', ' ', ''.join(data.get('text/html', ''))))
    return '\n'.join(txt)


def notebook_numbers(nb: dict) -> tuple:
    "(numbers in the stored outputs, number literals in the code cells) of a notebook"
    outs, code = [], set()
    for c in nb['cells']:
        if c['cell_type'] != 'code': continue
        for o in c.get('outputs', []): outs += numbers_in(_output_text(o))
        code.update(numbers_in(re.sub(r'(?<=\d)_(?=\d)', '', ''.join(c['source']))))
    return outs, code


def bench_numbers(path: Path) -> list:
    "Every number in images/bench.json (nested anywhere)"
    if not path.exists(): return []
    def walk(x):
        if isinstance(x, bool): return
        if isinstance(x, (int, float)): yield float(x)
        elif isinstance(x, dict):
            for v in x.values(): yield from walk(v)
        elif isinstance(x, list):
            for v in x: yield from walk(v)
        elif isinstance(x, str): yield from numbers_in(x)
    return list(walk(json.loads(path.read_text())))


def backs(f: Figure, v: float) -> bool:
    "Does the value `v` equal the figure after rounding to the precision written (10% for approximate figures)?"
    targets = [v, v * 100] if f.percent else [v]
    tol = max(f.tol, 0.1 * abs(f.value)) if f.approx else f.tol
    return any(math.isfinite(t) and abs(t - f.value) <= tol + 1e-9 * max(1, abs(f.value)) for t in targets)


def _nearest(f: Figure, values: list) -> str:
    vals = [v for v in values if math.isfinite(v)]
    if not vals: return 'nearest: none'
    return f'nearest: {min(vals, key=lambda v: abs(v - f.value)):g}'


def check_text(label: str, parts: list, values: list, settings=frozenset(), where='outputs') -> list:
    "Problems in `parts`, a list of (place, Markdown) pairs, whose figures must be among `values` or `settings`"
    problems = []
    for place, md in parts:
        for line, f in figures_in(md):
            if any(backs(f, v) for v in values) or f.value in settings or f.percent and f.value / 100 in settings: continue
            at = f'line {place + line - 1}' if isinstance(place, int) else place
            problems.append(f'{label}: {at}: "{f.text}" not found in {where} ({_nearest(f, values)})')
    return problems


def check_notebook(path: Path, root: Path = ROOT, bench: list = None) -> list:
    "Problems of one notebook: its Markdown cells against its outputs (and bench.json where it may quote it)"
    nb = json.loads(path.read_text())
    outs, code = notebook_numbers(nb)
    use_bench = path.name in BENCH_FILES
    values = outs + (bench_numbers(root/'images'/'bench.json') if bench is None else bench) * use_bench
    parts = [(f'cell {i}', ''.join(c['source'])) for i, c in enumerate(nb['cells']) if c['cell_type'] == 'markdown']
    return check_text(_rel(path, root), parts, values, code, 'outputs or images/bench.json' if use_bench else 'outputs')


def check_markdown(path: Path, root: Path = ROOT, extra: list = (), settings=frozenset()) -> list:
    "Problems of a Markdown file (README.md, images/bench.md) against bench.json and `extra` values"
    values = bench_numbers(root/'images'/'bench.json') + list(extra)
    return check_text(_rel(path, root), [(1, path.read_text())], values, settings, 'images/bench.json or outputs')


def _rel(p: Path, root: Path) -> str:
    try: return str(p.resolve().relative_to(root.resolve()))
    except ValueError: return str(p)


def check(root: Path = ROOT, only: list = None) -> list:
    "Every problem in the notebooks under nbs/, README.md and images/bench.md of `root` (or only the files named)"
    root = Path(root)
    nbs = sorted(p for p in (root/'nbs').rglob('*.ipynb') if '.ipynb_checkpoints' not in p.parts)
    mds = [p for p in (root/'README.md', root/'images'/'bench.md') if p.exists()]
    if only is not None:
        want = {Path(p).resolve() for p in only}
        nbs, mds = [p for p in nbs if p.resolve() in want], [p for p in mds if p.resolve() in want]
    bench = bench_numbers(root/'images'/'bench.json')
    problems = [x for p in nbs for x in check_notebook(p, root, bench)]
    index = root/'nbs'/'index.ipynb'
    outs, code = notebook_numbers(json.loads(index.read_text())) if index.exists() else ([], set())
    for p in mds:  # README.md renders index.ipynb, so its outputs and settings back the README too
        readme = p.name == 'README.md'
        problems += check_markdown(p, root, outs if readme else (), code if readme else set())
    return problems


def known(problems: list) -> dict:
    "The problems as `{file: [figure, ...]}`, the form of tests/test_figures.py's KNOWN list"
    out = {}
    for p in problems:
        m = re.match(r'(.*?): (?:cell|line) \d+: "(.*?)" not found', p)
        if m.group(2) not in out.setdefault(m.group(1), []): out[m.group(1)].append(m.group(2))
    return out


if __name__ == '__main__':
    if sys.argv[1:] == ['--known']:
        for f, texts in known(check(ROOT)).items(): print(f'    {f!r}: {texts!r},')
        sys.exit(0)
    problems = check(ROOT, sys.argv[1:] or None)
    print('\n'.join(problems) or 'every figure is backed by an output, images/bench.json or a setting')
    sys.exit(1 if problems else 0)
