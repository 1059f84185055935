"""Every public function and class of `clapp` has a one-line docstring, and every parameter a docment (issue 9).

Public means: named in its module's `__all__` and defined in that module. A docment is the comment beside a
parameter (`fastcore.docments`), which `show_doc` turns into the parameter table of the docs; dataclass fields may
instead carry a one-line `help` in their field metadata (as clapp.config's do). `self`, `cls`, `*args` and
`**kwargs` need none. One test per module, each listing all of that module's offenders with the fix.
"""
import dataclasses, importlib, inspect, json, pkgutil, re
from pathlib import Path

import pytest
from fastcore.docments import docments

import clapp

MAX_DOC = 120  # characters in a one-line docstring
MODULES = sorted(m.name for m in pkgutil.iter_modules(clapp.__path__, 'clapp.') if not m.name.rsplit('.', 1)[-1].startswith('_'))


def public_objects(mod) -> dict:
    "The functions and classes a module exports (`__all__`) and defines itself"
    out = {}
    for name in getattr(mod, '__all__', []):
        obj = getattr(mod, name, None)
        if (inspect.isfunction(obj) or inspect.isclass(obj)) and getattr(obj, '__module__', None) == mod.__name__:
            out[name] = obj
    return out


def docstring_problem(obj):
    "Why `obj`'s own docstring is not one short line, or None"
    doc = obj.__doc__
    if dataclasses.is_dataclass(obj) and doc and doc.startswith(obj.__name__ + '('): doc = None  # the generated one
    if not doc or not doc.strip(): return 'has no docstring: add one line saying what it is or does'
    lines = doc.strip().splitlines()
    if len(lines) > 1: return f'docstring has {len(lines)} lines: keep one short line, move the rest to markdown'
    if len(lines[0]) > MAX_DOC: return f'docstring is {len(lines[0])} characters (at most {MAX_DOC})'
    return None


def _params(f) -> list:
    try: sig = inspect.signature(f)
    except (TypeError, ValueError): return []
    return [n for n, p in sig.parameters.items()
            if n not in ('self', 'cls') and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def undocumented_params(obj) -> list:
    "Parameters of `obj` (a function, a class's own `__init__`, or a dataclass's fields) without a docment"
    if inspect.isclass(obj) and dataclasses.is_dataclass(obj):
        docs = docments(obj)
        return [f.name for f in dataclasses.fields(obj)
                if f.init and not docs.get(f.name) and not (f.metadata or {}).get('help')]
    if inspect.isclass(obj):
        if '__init__' not in vars(obj): return []  # inherited constructor: documented where it is defined
        target = obj.__init__
    else: target = obj
    docs = docments(target)
    return [n for n in _params(target) if not docs.get(n)]


def notebook_of(modname: str) -> str:
    "The notebook whose `#| default_exp` writes `modname`"
    short = modname.split('.', 1)[1]
    for nb in sorted((Path(__file__).resolve().parent.parent/'nbs').rglob('*.ipynb')):
        cells = json.loads(nb.read_text(encoding='utf-8')).get('cells', [])
        src = '\n'.join(''.join(c.get('source', '')) for c in cells if c.get('cell_type') == 'code')
        if re.search(rf'^#\|\s*default_exp\s+{re.escape(short)}\s*$', src, re.M): return f'nbs/{nb.name}'
    return f'the notebook that exports {modname}'


def module_problems(modname: str) -> list:
    mod = importlib.import_module(modname)
    problems = []
    for name, obj in public_objects(mod).items():
        kind = 'class' if inspect.isclass(obj) else 'function'
        p = docstring_problem(obj)
        if p: problems.append(f'{kind} {name}: {p}')
        missing = undocumented_params(obj)
        if missing:
            problems.append(f'{kind} {name}: no docment for {", ".join(missing)}')
    return problems


def test_modules_found():
    assert {'clapp.config', 'clapp.filters', 'clapp.data', 'clapp.model'} <= set(MODULES), MODULES


@pytest.mark.parametrize('modname', MODULES)
def test_public_api_documented(modname):
    problems = module_problems(modname)
    if problems:
        pytest.fail(f'{modname}: {len(problems)} documentation problem(s); fix them in {notebook_of(modname)}, then '
                    f'nbdev_export (a docment is a `# comment` beside the parameter in the signature):\n  '
                    + '\n  '.join(problems), pytrace=False)


def test_checker_itself():
    "The checks above flag what they should and accept what they should"
    def good(a:int, # the a
             b=2, # the b
             *args, **kwargs):
        "One line"
    def bad(a, b=1):
        """Two
        lines"""
    @dataclasses.dataclass
    class DC:
        "A dataclass"
        x: int = dataclasses.field(default=1, metadata={'help': 'documented by metadata'})
        y: int = 2  # documented by a comment
        z: int = 3
    class K:
        "A class"
        def __init__(self, p): pass
    class NoInit(K): "Inherits its constructor"
    assert docstring_problem(good) is None and undocumented_params(good) == []
    assert 'lines' in docstring_problem(bad) and undocumented_params(bad) == ['a', 'b']
    assert docstring_problem(DC) is None and undocumented_params(DC) == ['z']
    assert undocumented_params(K) == ['p'] and undocumented_params(NoInit) == []
    @dataclasses.dataclass
    class NoDoc: x: int = 1  # noqa
    assert 'no docstring' in docstring_problem(NoDoc)
