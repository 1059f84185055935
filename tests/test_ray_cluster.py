"""Experiments and searches on a two-node Ray cluster on loopback (issue 18): they run end to end, nothing listens
beyond 127.0.0.1, and a killed search resumes from its study without repeating finished trials."""
import os
os.environ['RAY_USAGE_STATS_ENABLED'] = '0'  # before Ray is imported: no usage report from any process started here
import signal, sqlite3, subprocess, sys, time
from pathlib import Path

import psutil
import pytest

ray = pytest.importorskip('ray')
pytest.importorskip('optuna')
from ray.cluster_utils import Cluster

from clapp.config import load_config
from clapp.experiment import load_experiment, run_experiment
from clapp.tune import tune_search

BIN = Path(sys.executable).parent
TINY = ['num_resolutions=1', 'train.max_iterations=30', 'train.min_iterations=10', 'train.validation_interval=5',
        'train.batch_size=16', 'train_data.min_buffer=32', 'train_data.max_buffer=128', 'train.threads=1',
        'train.output_log_interval=1000', 'valid_data.fixed_size=2', 'valid_data.resize_base=64',
        'valid_data.crop_size=64']
SPACE = 'model.capacity: {int: [2, 6]}\ntrain.learning_rate: {loguniform: [0.001, 0.02]}\n'
LOOPBACK = {'127.0.0.1', '::1', '::ffff:127.0.0.1'}
REPORT = {'config.yaml', 'experiment.json', 'summary.csv', 'summary.md', 'loss_runs.png', 'loss_train_valid.png',
          'loss_ci.png'}


def ray_processes(since: float) -> list:
    "Processes other than this one whose command line mentions ray, started at or after `since`"
    out = []
    for p in psutil.process_iter(['pid', 'cmdline', 'create_time']):
        try:
            if p.pid != os.getpid() and p.info['create_time'] >= since - 1 and \
               'ray' in ' '.join(p.info['cmdline'] or []) and p.status() != psutil.STATUS_ZOMBIE: out.append(p)
        except psutil.Error: pass
    return out


def kill_all(procs: list):
    for p in procs:
        try: p.kill()
        except psutil.Error: pass
    psutil.wait_procs(procs, timeout=10)


def listening(procs: list) -> list:
    "(pid, ip, port) of every listening TCP socket of `procs`"
    out = []
    for p in procs:
        try: out += [(p.pid, c.laddr.ip, c.laddr.port) for c in p.net_connections('inet') if c.status == 'LISTEN']
        except psutil.Error: pass
    return out


def study_states(db: Path, name: str) -> dict:
    "Trial number -> state of study `name` in the SQLite file `db` (read with sqlite3, not with Optuna)"
    if not db.exists(): return {}
    with sqlite3.connect(f'file:{db}?mode=ro', uri=True, timeout=10) as con:
        try:
            return dict(con.execute('SELECT t.number, t.state FROM trials t JOIN studies s ON t.study_id = s.study_id '
                                    'WHERE s.study_name = ? ORDER BY t.number', (name,)).fetchall())
        except sqlite3.OperationalError: return {}  # the tables do not exist yet


@pytest.fixture(scope='module')
def cluster():
    "Two Ray nodes of one CPU each on 127.0.0.1; torn down with every process it started"
    t0 = time.time()
    c = Cluster(initialize_head=True,
                head_node_args=dict(num_cpus=1, node_ip_address='127.0.0.1', include_dashboard=False))
    try:
        c.add_node(num_cpus=1, node_ip_address='127.0.0.1')
        c.wait_for_nodes()
        c.started = t0
        yield c
    finally:
        ray.shutdown()
        c.shutdown()
        kill_all(ray_processes(t0))


def test_experiment_on_two_nodes(cluster, tmp_path):
    exp = run_experiment('samples', TINY + ['experiment_name=on-cluster'], num_runs=2, parallel=2, out=tmp_path,
                         engine='ray', ray_address=cluster.address)
    assert ray.is_initialized() and len([n for n in ray.nodes() if n['Alive']]) == 2
    assert ray.cluster_resources()['CPU'] == 2
    assert [r.status for r in exp.runs] == ['max_iterations'] * 2
    assert [r.steps for r in exp.runs] == [30, 30]
    assert exp.meta['engine'] == 'ray'
    assert REPORT | {'run_000', 'run_001'} <= {p.name for p in exp.dir.iterdir()}
    for r in exp.runs: assert {'metrics.jsonl', 'config.yaml', 'last.pt'} <= {p.name for p in exp.run_path(r).iterdir()}
    assert [r.status for r in load_experiment(exp.dir).runs] == ['max_iterations'] * 2
    assert '| run_001 |' in (exp.dir/'summary.md').read_text()
    # every socket that Ray's processes (and this driver) listen on is on loopback
    socks = listening(ray_processes(cluster.started) + [psutil.Process()])
    assert socks and [s for s in socks if s[1] not in LOOPBACK] == []


def test_search_on_two_nodes(cluster, tmp_path):
    s = tune_search(SPACE, 'samples', TINY, trials=4, parallel=2, name='four', out=tmp_path,
                    ray_address=cluster.address)
    assert [r['state'] for r in s.trials] == ['COMPLETE'] * 4
    assert {'best.yaml', 'study.db', 'trials.csv', 'trials.md', 'trials.png'} <= {p.name for p in s.dir.iterdir()}
    assert len(list(s.dir.glob('trial_*/metrics.jsonl'))) == 4
    assert study_states(s.dir/'study.db', 'four') == {i: 'COMPLETE' for i in range(4)}
    assert s.best_ema == min(r['ema'] for r in s.trials)
    best = load_config(s.best_config)
    assert (best.model.capacity, best.train.learning_rate) == (s.best['model.capacity'], s.best['train.learning_rate'])
    assert best.train.max_iterations == 30  # the base config's overrides are kept
    assert len([l for l in (s.dir/'trials.md').read_text().splitlines() if l.startswith('|')]) == 6  # head, rule, 4


def test_killed_search_resumes(cluster, tmp_path):
    (tmp_path/'space.yaml').write_text(SPACE)
    db = tmp_path/'space'/'study.db'
    cmd = [str(BIN/'clapp_tune'), str(tmp_path/'space.yaml'), *TINY, 'train.max_iterations=60', '--trials', '4',
           '--parallel', '1', '--out', str(tmp_path), '--ray_address', cluster.address]
    child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        t0 = time.time()
        while time.time() - t0 < 150 and child.poll() is None and \
              not {'COMPLETE', 'RUNNING'} <= set(study_states(db, 'space').values()):
            time.sleep(0.2)  # until a trial has finished and the next one runs
        child.kill()   # SIGKILL: no handler, no cleanup
        child.wait(30)
    finally:
        if child.poll() is None: child.kill()
    before = study_states(db, 'space')
    done = [n for n, s in before.items() if s == 'COMPLETE']
    assert 1 <= len(done) < 4 and 'RUNNING' in before.values(), (before, child.stderr.read()[-3000:])
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    after = study_states(db, 'space')
    new = [n for n in after if n not in before]
    assert [after[n] for n in done + new] == ['COMPLETE'] * 4   # finished trials are not repeated...
    assert len(new) == 4 - len(done)                            # ...and only the missing ones run
    assert {n: after[n] for n in before if n not in done} == {n: 'FAIL' for n in before if n not in done}  # cut off
    assert 'best (EMA' in res.stdout
