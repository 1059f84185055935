"""nbdev 2 style setup.py: everything it needs is read from settings.ini."""
from configparser import ConfigParser

import setuptools

config = ConfigParser(delimiters=['='])
config.read('settings.ini', encoding='utf-8')
cfg = config['DEFAULT']

expected = ('version description keywords author author_email license lib_name user '
            'min_python copyright status').split()
missing = [k for k in expected if k not in cfg]
if missing: raise SystemExit(f'settings.ini is missing: {missing}')

licenses = {'apache2': 'Apache-2.0'}  # SPDX expressions; license classifiers are deprecated
statuses = ['1 - Planning', '2 - Pre-Alpha', '3 - Alpha', '4 - Beta', '5 - Production/Stable',
            '6 - Mature', '7 - Inactive']
py_versions = '3.10 3.11 3.12 3.13'.split()

lic = licenses.get(cfg['license'].lower(), cfg['license'])
min_python = cfg['min_python']
requirements = cfg.get('requirements', '').split()
if cfg.get('pip_requirements'): requirements += cfg.get('pip_requirements', '').split()
dev_requirements = cfg.get('dev_requirements', '').split()
# optional extras: `<name>_requirements` in settings.ini gives `pip install "clapp[<name>]"`
extras = {k[:-len('_requirements')]: cfg[k].split() for k in cfg if k.endswith('_requirements')
          and k not in ('requirements', 'pip_requirements', 'conda_requirements', 'dev_requirements')}
console_scripts = cfg.get('console_scripts', '').split()

setuptools.setup(
    name=cfg['lib_name'],
    license=lic,
    classifiers=['Development Status :: ' + statuses[int(cfg['status'])],
                 'Intended Audience :: ' + cfg['audience'].title(),
                 'Natural Language :: ' + cfg['language'].title()]
                + [f'Programming Language :: Python :: {v}' for v in py_versions[py_versions.index(min_python):]],
    url=cfg['git_url'],
    packages=setuptools.find_packages(include=['clapp', 'clapp.*']),
    include_package_data=False,
    package_data={'clapp': ['configs/*.yaml', 'zoo/*']},
    install_requires=requirements,
    extras_require={'dev': dev_requirements, **extras},
    dependency_links=cfg.get('dep_links', '').split(),
    python_requires='>=' + min_python,
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    zip_safe=False,
    entry_points={'console_scripts': console_scripts, 'nbdev': [f'{cfg["lib_path"]}={cfg["lib_path"]}._modidx:d']},
    **{k: cfg[k] for k in ('version', 'description', 'keywords', 'author', 'author_email')},
)
