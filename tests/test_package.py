"""Packaging checks that cannot live in a notebook: shipped presets, console scripts, module imports."""
import configparser, importlib, importlib.resources, pkgutil
from pathlib import Path

import clapp
from clapp.config import Config, load_config, list_presets, to_yaml, validate

ROOT = Path(__file__).resolve().parent.parent


def test_presets_ship_as_package_data():
    folder = importlib.resources.files('clapp') / 'configs'
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith('.yaml'))
    assert {'default.yaml', 'samples.yaml'} <= set(names)
    assert load_config('default') == validate(Config())
    assert load_config('samples').train_data.name == 'samples'


def test_presets_are_written_by_to_yaml():
    for name in list_presets():
        text = (importlib.resources.files('clapp') / 'configs' / f'{name}.yaml').read_text()
        lines = text.splitlines(keepends=True)
        header = ''.join(lines[:next((i for i, l in enumerate(lines) if not l.startswith('#')), len(lines))])
        assert text == header + to_yaml(load_config(name)), \
            f'{name}.yaml differs from its header comment + to_yaml(load_config({name!r}))'


def test_every_module_imports():
    mods = [m.name for m in pkgutil.iter_modules(clapp.__path__) if not m.name.startswith('_')]
    assert 'config' in mods
    for m in mods: importlib.import_module(f'clapp.{m}')


def test_console_scripts_point_at_callables():
    cfg = configparser.ConfigParser(delimiters=['='])
    cfg.read(ROOT / 'settings.ini')
    for entry in cfg['DEFAULT']['console_scripts'].split():
        name, target = entry.split('=')
        mod, fn = target.split(':')
        m = importlib.import_module(mod)
        assert callable(getattr(m, fn)), f'{name} -> {target} is not callable'


def test_wheel_ships_presets_and_zoo(tmp_path):
    "A non-editable install gets every preset and zoo file (package data), and setuptools has nothing to warn about"
    import shutil, subprocess, sys, zipfile
    src = tmp_path/'src'
    shutil.copytree(ROOT/'clapp', src/'clapp', ignore=shutil.ignore_patterns('__pycache__'))
    for f in ('setup.py', 'settings.ini', 'README.md', 'LICENSE', 'MANIFEST.in'): shutil.copy(ROOT/f, src/f)
    r = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation',
                        '-w', str(tmp_path/'dist'), str(src)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert 'absent from the `packages` configuration' not in r.stdout + r.stderr
    names = set(zipfile.ZipFile(next((tmp_path/'dist').glob('clapp-*.whl'))).namelist())
    assert {f'clapp/configs/{n}.yaml' for n in list_presets()} <= names
    assert {f'clapp/zoo/{p.name}' for p in (ROOT/'clapp'/'zoo').iterdir()} <= names
    assert 'clapp/zoo.py' in names and 'clapp/zoo/index.json' in names
