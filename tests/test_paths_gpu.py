"""`tools/gpu_check.py` on its CPU branches: every path it checks (device, mixed precision with its scaler, targets
made on the device, the compile fallback) passes, and a failing check makes it exit 1."""
import os, subprocess, sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT/'tools'/'gpu_check.py'
ENV = dict(os.environ, MPLBACKEND='Agg', HF_HUB_OFFLINE='1', HF_DATASETS_OFFLINE='1')
CPU_CHECKS = ['device', 'amp', 'targets_on_device', 'compile_fallback', 'compile_fallback_first_call']


def gpu_check(*args, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=timeout)


def results(out: str) -> dict:
    "check name -> (PASS or FAIL, its line)"
    res = {}
    for line in out.splitlines():
        word, _, rest = line.partition(' ')
        if word in ('PASS', 'FAIL'): res[rest.split('[')[0]] = (word, line)
    return res


@pytest.fixture(scope='module')
def cpu_run():
    return gpu_check('--cpu')


def test_gpu_check_cpu_branches_pass(cpu_run):
    "Every CPU branch passes, each on its own line, with a summary line; the exit status follows the lines"
    r = cpu_run
    lines = r.stdout.splitlines()
    assert lines[0].startswith('no CUDA device'), r.stdout
    res = results(r.stdout)
    assert list(res) == CPU_CHECKS, r.stdout + r.stderr[-3000:]
    for name, (word, line) in res.items():
        assert word == 'PASS', line + '\n' + r.stderr[-3000:]
    failed = [n for n, (w, _) in res.items() if w == 'FAIL']
    assert lines[-1].startswith(f'gpu_check: {len(res) - len(failed)} passed, {len(failed)} failed on cpu'), lines[-1]
    assert r.returncode == (1 if failed else 0)


def test_compile_fallback_at_first_call(cpu_run):
    word, line = results(cpu_run.stdout)['compile_fallback_first_call']
    assert word == 'PASS', line


def test_gpu_check_reports_a_failure(tmp_path):
    "A check that fails prints FAIL and makes the script exit 1 (here: a MixedPrecision whose scaler never steps)"
    (tmp_path/'sitecustomize.py').write_text(
        'import clapp.callbacks as c\n'
        'def after_backward(self, trainer): pass\n'            # the scaled loss's optimizer step is lost
        'c.MixedPrecision.after_backward = after_backward\n'
        'import torch\n'
        'torch.optim.Adam.step = lambda self, *a, **k: None\n')   # and so is the trainer's own
    env = dict(ENV, PYTHONPATH=os.pathsep.join([str(tmp_path), *filter(None, [os.environ.get('PYTHONPATH')])]))
    r = subprocess.run([sys.executable, str(SCRIPT), '--cpu', '--only', 'amp'], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    assert results(r.stdout)['amp'][0] == 'FAIL', r.stdout
    assert r.returncode == 1 and 'gpu_check: 0 passed, 1 failed on cpu: amp[cpu]' in r.stdout
