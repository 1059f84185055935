"""The Ray engine on a Ray that `clapp_exp` or `clapp_tune` starts for itself on 127.0.0.1 (issue 18): Ctrl-C and a
failing run leave no Ray or worker process behind, and nothing it starts listens beyond 127.0.0.1."""
import os
os.environ['RAY_USAGE_STATS_ENABLED'] = '0'
import json, signal, subprocess, sys, time
from pathlib import Path

import psutil
import pytest

pytest.importorskip('ray')
pytest.importorskip('optuna')

from test_ray_cluster import LOOPBACK, SPACE, TINY, kill_all, listening, ray_processes, study_states

BIN = Path(sys.executable).parent
LONG = ['train.max_iterations=100000', 'train.min_iterations=100000']  # trials that run until they are stopped
BROKEN = """def broken(img):
    raise ValueError('this filter is broken on purpose')
"""


@pytest.fixture
def since():
    "The time the test began; every Ray process started after it is killed at the end, whatever happened"
    t0 = time.time()
    yield t0
    kill_all(ray_processes(t0))


def env(*paths) -> dict:
    "This environment with `paths` on PYTHONPATH (Ray's workers inherit it)"
    return dict(os.environ, PYTHONPATH=os.pathsep.join([*map(str, paths), os.environ.get('PYTHONPATH', '')]))


def interrupt(cmd: list, ready, timeout: float = 180) -> tuple:
    "Start `cmd`, wait until `ready()`, note the sockets its Ray listens on, send SIGINT; (exit code, stderr, sockets)"
    child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env(),
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        t0 = time.time()
        while time.time() - t0 < timeout and child.poll() is None and not ready(): time.sleep(0.2)
        assert child.poll() is None and ready(), child.stderr.read()[-3000:] if child.poll() is not None else 'slow'
        socks = listening([psutil.Process(child.pid)] + ray_processes(t0))
        child.send_signal(signal.SIGINT)
        rc = child.wait(120)
        return rc, child.stderr.read(), socks
    finally:
        if child.poll() is None: child.kill()


def no_ray_left(since: float) -> list:
    "Ray processes started since `since` still alive 60 s after (ray.shutdown() returns before they exit)"
    _, alive = psutil.wait_procs(ray_processes(since), timeout=60)
    return [(p.pid, ' '.join(p.cmdline())[:80]) for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def test_ctrl_c_stops_a_search(since, tmp_path):
    (tmp_path/'space.yaml').write_text(SPACE)
    cmd = [str(BIN/'clapp_tune'), str(tmp_path/'space.yaml'), *TINY, *LONG, '--trials', '4', '--out', str(tmp_path)]
    running = lambda: len([p for p in (tmp_path/'space').glob('trial_*/metrics.jsonl') if p.stat().st_size]) >= 2
    rc, err, socks = interrupt(cmd, running)
    assert socks and [s for s in socks if s[1] not in LOOPBACK] == []
    assert no_ray_left(since) == []
    assert rc == 130 and 'interrupted: the trials were stopped' in err and 'Traceback' not in err, err[-3000:]
    assert 'COMPLETE' not in study_states(tmp_path/'space'/'study.db', 'space').values()


def test_ctrl_c_stops_an_experiment(since, tmp_path):
    cmd = [str(BIN/'clapp_exp'), *TINY, *LONG, 'engine=ray', 'experiment_name=stopped', '--num_runs', '2',
           '--parallel', '2', '--out', str(tmp_path)]
    running = lambda: len([p for p in tmp_path.glob('stopped/run_*/metrics.jsonl') if p.stat().st_size]) >= 2
    rc, err, socks = interrupt(cmd, running)
    assert socks and [s for s in socks if s[1] not in LOOPBACK] == []
    assert no_ray_left(since) == []
    assert rc == 130 and 'every worker was stopped' in err, err[-3000:]
    runs = json.loads((tmp_path/'stopped'/'experiment.json').read_text())['runs']
    assert [r['status'] for r in runs] == ['interrupted'] * 2


def test_failing_run_leaves_no_ray_process(since, tmp_path):
    (tmp_path/'clapp_broken.py').write_text(BROKEN)
    cmd = [str(BIN/'clapp_exp'), *TINY, 'engine=ray', 'experiment_name=failing', '--num_runs', '1', '--parallel', '2',
           '--out', str(tmp_path), '--sweep', "train_data.target_filter=sobel_3,{kind: python, path: 'clapp_broken:broken'}"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env(tmp_path))
    assert res.returncode == 0, res.stderr[-3000:]
    runs = json.loads((tmp_path/'failing'/'experiment.json').read_text())['runs']
    assert [r['status'] for r in runs] == ['max_iterations', 'failed']
    assert 'broken on purpose' in runs[1]['error'] and (tmp_path/'failing'/'run_001'/'error.txt').exists()
    assert (tmp_path/'failing'/'summary.md').exists() and (tmp_path/'failing'/'loss_ci.png').exists()
    assert no_ray_left(since) == []
