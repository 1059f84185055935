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
