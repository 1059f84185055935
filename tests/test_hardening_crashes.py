"""Issue 19, items 3, 4 and 7: divergence is caught, and every crash (kill -9, SIGTERM, a full disk) resumes or fails
in one clear line. The console scripts run as real processes here, since signals and exit codes are what is tested."""
import math, os, random, shutil, signal, subprocess, sys, time
from pathlib import Path

import pytest
import torch

from clapp.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from clapp.cli import run_train
from clapp.config import Config
from clapp.model import build_model
from clapp.runs import read_metrics

BIN = Path(sys.executable).parent
TINY = ['num_resolutions=1', 'train.validation_interval=2', 'train.threads=1', 'train_data.min_buffer=32',
        'train_data.max_buffer=64', 'train.output_log_interval=1000']


def steps(n: int) -> list: return [f'train.max_iterations={n}', f'train.min_iterations={n}']


def cli(*args, timeout=300) -> subprocess.CompletedProcess:
    env = dict(os.environ, MPLBACKEND='Agg', HF_HUB_OFFLINE='1', HF_DATASETS_OFFLINE='1')
    return subprocess.run([str(BIN/args[0]), *args[1:]], env=env, capture_output=True, text=True, timeout=timeout)


def start(*args) -> subprocess.Popen:
    env = dict(os.environ, MPLBACKEND='Agg', HF_HUB_OFFLINE='1', HF_DATASETS_OFFLINE='1')
    return subprocess.Popen([str(BIN/args[0]), *args[1:]], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def wait_for_step(run: Path, proc: subprocess.Popen, step: int, limit: float = 120):
    "Wait until the run logged a validation at or after `step` (the process must still be running)"
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if any(r.get('step', 0) >= step for r in read_metrics(run)): return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError(f'no validation at step {step} after {limit} s')


def finite(path: Path) -> bool:
    return all(torch.isfinite(v).all() for v in load_checkpoint(path)['weights'].values())


# ---- item 4: divergence --------------------------------------------------------------------------------------------

# a learning rate far too high, on the original output (a max-scaled output stays in [0, 1] and cannot blow up)
DIVERGE = ['train.learning_rate=10', 'model.output_norm=none']

def test_divergence_is_caught_and_the_last_good_model_kept(tmp_path):
    res = run_train('samples', TINY + steps(40) + DIVERGE, str(tmp_path/'run'), progress=False)
    assert res.status == 'diverged' and 'the run diverged' in res.message and res.steps < 40, res.message
    rows = {r['step']: r for r in read_metrics(tmp_path/'run')}
    assert max(r['valid_l2'] for r in rows.values()) <= 1.0   # the diverged validation never reached the log
    good = max(rows)                                          # the last good validation
    assert all(torch.isfinite(v).all() for v in res.model.state_dict().values())   # compare.png's model is that one
    if good > 0:   # last.pt holds it too (a good state at step 0 is an untrained network: never a checkpoint)
        ck = load_checkpoint(tmp_path/'run'/'last.pt')
        assert ck['step'] == good and finite(tmp_path/'run'/'last.pt')
        for k, v in res.model.state_dict().items(): assert torch.equal(v.cpu(), ck['weights'][k]), k
    else: assert not (tmp_path/'run'/'last.pt').exists()
    assert (tmp_path/'run'/'compare.png').exists() and math.isfinite(res.compare['psnr'])


def test_quiet_still_says_it_diverged_and_exits_1(tmp_path):
    r = cli('clapp_train', '--config', 'samples', *TINY, *steps(40), *DIVERGE, '--out',
            str(tmp_path/'run'), '--quiet')
    assert r.returncode == 1 and 'Traceback' not in r.stderr
    assert r.stderr.strip().startswith('diverged: the run diverged'), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and 'compare.png' in r.stdout


# ---- item 3 and 7: kill -9 at random moments, then --resume --------------------------------------------------------

@pytest.mark.parametrize('seed', [1, 2, 3])
def test_kill_9_at_a_random_moment_then_resume(tmp_path, seed):
    run, n = tmp_path/'run', 120
    args = ['--config', 'samples', *TINY, *steps(n), 'train.checkpoint_interval=3', '--out', str(run), '--quiet']
    proc = start('clapp_train', *args)
    wait_for_step(run, proc, 2)
    time.sleep(random.Random(seed).uniform(0, 1.5))
    proc.kill(); proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    if (run/'last.pt').exists() or (run/'best.pt').exists():
        r = cli('clapp_train', '--resume', str(run), '--quiet')
    else:  # killed before the first checkpoint: nothing to resume, and the folder is free to start again
        r = cli('clapp_train', *args)
    assert r.returncode == 0, r.stderr
    ck = load_checkpoint(run/'last.pt')
    assert ck['step'] == n and finite(run/'last.pt')
    assert not list(run.glob('tmp*.tmp'))       # what a write cut short left was cleaned
    logged = [r['step'] for r in read_metrics(run)]
    assert logged == sorted(set(logged)) and logged[-1] == n - 2   # one row per validation, in order, to the last


# ---- item 3 and 7: SIGTERM ------------------------------------------------------------------------------------------

def test_sigterm_saves_and_resumes(tmp_path):
    run, n = tmp_path/'run', 400
    proc = start('clapp_train', '--config', 'samples', *TINY, *steps(n), '--out', str(run))
    wait_for_step(run, proc, 4)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and 'Traceback' not in err, err
    assert err.strip().splitlines()[-1] == 'clapp_train: error: interrupted (Ctrl-C)'
    stopped = load_checkpoint(run/'last.pt')['step']
    assert 4 <= stopped < n
    r = cli('clapp_train', '--resume', str(run), '--quiet')
    assert r.returncode == 0, r.stderr
    assert load_checkpoint(run/'last.pt')['step'] == n


# ---- item 6 and 7: a full disk --------------------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    "A 2 MiB tmpfs (needs root and mount); skipped with the reason where it cannot be mounted"
    d = tmp_path/'disk'; d.mkdir()
    if os.geteuid() != 0 or shutil.which('mount') is None: pytest.skip('mounting a small tmpfs needs root')
    r = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', str(d)], capture_output=True, text=True)
    if r.returncode != 0: pytest.skip(f'cannot mount a tmpfs here: {r.stderr.strip()}')
    try: yield d
    finally: subprocess.run(['umount', '-l', str(d)])


def fill(d: Path):
    "Write to `d` until the disk is full"
    with open(d/'filler', 'wb', buffering=0) as f:
        try:
            while True: f.write(b'\0' * 4096)
        except OSError: pass


def test_a_full_disk_is_one_clear_line(small_disk):
    fill(small_disk)
    r = cli('clapp_train', '--config', 'samples', *TINY, *steps(6), '--out', str(small_disk/'run'), '--quiet')
    assert r.returncode == 2 and 'Traceback' not in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and 'No space left on device' in r.stderr, r.stderr


def test_a_checkpoint_that_does_not_fit_leaves_nothing_behind(small_disk):
    (small_disk/'keep.pt').write_bytes(b'the previous checkpoint')
    fill(small_disk)
    with pytest.raises(CheckpointError, match='could not write the checkpoint .* MiB free there'):
        save_checkpoint(small_disk/'keep.pt', build_model(Config().model))
    assert (small_disk/'keep.pt').read_bytes() == b'the previous checkpoint'   # the old file is intact
    assert not list(small_disk.glob('tmp*.tmp'))
