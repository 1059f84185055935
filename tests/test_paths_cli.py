"""The console scripts run for real, in fresh processes: `clapp_train --deterministic / --compare_image / --resume`,
its exit codes (1 on divergence, 130 on Ctrl-C), its progress output, a tiny `clapp_exp` (with the confidence band
and best run of its experiment; status 2 and one error line when no run finishes or `num_runs` is 0), and
`clapp_bench` with one section."""
import json, math, os, signal, subprocess, sys, time
from pathlib import Path

import numpy as np
import pytest
import torch

from clapp.imaging import read_image, write_image
from clapp.sources import load_sample_images

BIN = Path(sys.executable).parent
ENV = dict(os.environ, MPLBACKEND='Agg', HF_HUB_OFFLINE='1', HF_DATASETS_OFFLINE='1', WANDB_MODE='offline')
TINY = ['train.device=cpu', 'train.threads=1', 'train.batch_size=4', 'train.valid_batch_size=4',
        'train.output_log_interval=100', 'train_data.min_buffer=8', 'train_data.max_buffer=16',
        'valid_data.fixed_size=4', 'valid_data.min_buffer=4', 'valid_data.max_buffer=16',
        'valid_data.resize_base=64', 'valid_data.crop_size=64', 'num_resolutions=1', 'train.validation_interval=2']
SIX = TINY + ['train.max_iterations=6', 'train.min_iterations=6']
TIMING = ('elapsed_s', 'samples_per_s')


def cli(cwd, *args, timeout=240) -> subprocess.CompletedProcess:
    "Run console script `args[0]` of this environment in folder `cwd`"
    return subprocess.run([str(BIN/args[0]), *map(str, args[1:])], cwd=cwd, env=ENV, capture_output=True, text=True,
                          timeout=timeout)


def rows(run: Path) -> list:
    return [json.loads(l) for l in (run/'metrics.jsonl').read_text().splitlines()]


def same(rs):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rs]


def ck(path) -> dict:
    return torch.load(path, weights_only=True)


def same_weights(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope='module')
def det(tmp_path_factory):
    "Two `--deterministic` runs of one config: one with `--compare_image` and the progress line, one `--quiet`"
    d = tmp_path_factory.mktemp('det')
    write_image(d/'pic.png', load_sample_images('validation')['chelsea'][:60, :90])
    # a buffer of several producer chunks (64 pairs each), so that without --deterministic the batches depend on
    # how far the producer got when each was drawn
    ov = SIX + ['train_data.max_buffer=512', 'train_data.buffer_delay=0']
    a = cli(d, 'clapp_train', '--config', 'samples', *ov, '--out', 'a', '--deterministic', '--compare_image', 'pic.png')
    b = cli(d, 'clapp_train', '--config', 'samples', *ov, '--out', 'b', '--deterministic', '--quiet')
    assert (a.returncode, b.returncode) == (0, 0), a.stderr[-2000:] + b.stderr[-2000:]
    return d, a, b


def test_deterministic_runs_are_identical(det):
    "Two `clapp_train --deterministic` runs of one config write the same weights and the same metrics"
    d, *_ = det
    for name in ('last.pt', 'best.pt'):
        assert same_weights(ck(d/'a'/name)['weights'], ck(d/'b'/name)['weights']), name
    assert same(rows(d/'a')) == same(rows(d/'b')) and len(rows(d/'a')) == 3
    assert ck(d/'a'/'last.pt')['step'] == 6


def test_compare_image(det):
    "`--compare_image` makes compare.png from that picture: the grid `compare_grid` draws for the final model on it"
    from clapp.infer import compare_grid, load
    d, a, _ = det
    want = compare_grid(load(d/'a'/'last.pt'), read_image(d/'pic.png'))
    got = read_image(d/'a'/'compare.png')
    assert got.shape == want['grid'].shape
    h, diff = read_image(d/'pic.png').shape[0], np.abs(got.astype(int) - want['grid'].astype(int))
    assert diff[:h].max() <= 1                    # the pictures; below them the captions, whose figures are rounded:
    assert (diff[h:] > 1).mean() < 0.001, (diff[h:] > 1).sum()   # a last digit may differ (float sums), no more
    assert read_image(d/'b'/'compare.png').shape != got.shape       # the default picture is another one
    assert f"(PSNR {want['psnr']:.1f} dB vs cv2)" in a.stdout


def test_progress_output(det):
    "Not quiet, the progress bar goes to stderr (a line at the start and one at the end) and the status to stdout"
    _, a, b = det
    lines = a.stderr.splitlines()
    assert lines[0].startswith('stage 1/1 0/6   0%|') and ' 0/6 ' in lines[0], a.stderr
    assert any(l.startswith('1/1 stages done 100%|') and ' 6/6 ' in l for l in lines), a.stderr
    out = a.stdout.splitlines()
    assert out[0].startswith('max_iterations: ran max_iterations=6 in the last stage'), a.stdout
    assert out[1] == 'run folder: a' and out[2].startswith('model: a/best.pt')
    quiet = b.stdout.splitlines()
    assert b.stderr.strip() == ''                            # --quiet: no bar
    assert quiet[:2] == [out[0], 'run folder: b']            # the same status line (the same deterministic run)


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> bool:
    "Wait until `path` exists, `proc` ended or `timeout` seconds passed; whether `path` exists"
    end = time.monotonic() + timeout
    while not path.exists() and proc.poll() is None and time.monotonic() < end: time.sleep(0.05)
    return path.exists()


def default_sigint():
    signal.signal(signal.SIGINT, signal.SIG_DFL)   # a shell's background job may start with SIGINT ignored


def test_ctrl_c_exits_130_and_resume_goes_on(tmp_path):
    "SIGINT once it steps: exit 130, last.pt `interrupted`; `clapp_train --resume` continues from that step"
    endless = TINY + ['train.max_iterations=100000', 'train.min_iterations=100000', 'train.checkpoint_interval=1']
    proc = subprocess.Popen([str(BIN/'clapp_train'), '--config', 'samples', *endless, '--out', 'run', '--quiet'],
                            cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=default_sigint)
    try:
        assert wait_for(tmp_path/'run'/'last.pt', proc), proc.communicate(timeout=60)[1][-2000:]
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None: proc.kill(); proc.wait(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert err.strip().splitlines()[-1] == 'clapp_train: error: interrupted (Ctrl-C)'
    last = ck(tmp_path/'run'/'last.pt')
    k = last['step']
    assert last['extra']['status'] == 'interrupted' and k >= 1
    before = rows(tmp_path/'run')
    r = cli(tmp_path, 'clapp_train', '--resume', 'run', f'train.max_iterations={k + 3}',
            f'train.min_iterations={k + 3}', '--quiet')
    assert r.returncode == 0, r.stderr[-2000:]
    assert 'run folder: run' in r.stdout.splitlines()
    after = ck(tmp_path/'run'/'last.pt')
    assert (after['step'], after['extra']['status']) == (k + 3, 'max_iterations')
    now = rows(tmp_path/'run')
    kept = [m for m in before if m['step'] < k]
    assert now[:len(kept)] == kept                            # the rows before the interrupt are kept as they were
    steps = [m['step'] for m in now]
    assert steps == sorted(set(steps)) and steps[-1] >= k     # and the log goes on from there, no step twice
    assert (tmp_path/'run'/'compare.png').exists()


def diverge(cwd, *extra) -> subprocess.CompletedProcess:
    "A run whose learning rate of 1000 (the largest allowed) diverges in a few steps (a max output stays in [0, 1])"
    return cli(cwd, 'clapp_train', '--config', 'samples', *SIX, 'train.learning_rate=1000', 'model.output_norm=none',
               '--out', 'run', *extra)


def finite_or_absent(path) -> bool:
    "Whether checkpoint `path` holds finite weights (a run that diverged before a trained validation writes none)"
    return not path.exists() or all(torch.isfinite(w).all() for w in ck(path)['weights'].values())


def test_divergence_exits_1(tmp_path):
    "A diverged run exits 1 without a traceback, says why on its status line and keeps no non-finite checkpoint"
    r = diverge(tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr[-2000:]
    assert 'Traceback' not in r.stderr
    status = r.stdout.splitlines()[0]
    assert status.startswith('diverged: ') and 'train.learning_rate' in status, r.stdout
    assert finite_or_absent(tmp_path/'run'/'last.pt') and finite_or_absent(tmp_path/'run'/'best.pt')


def test_diverged_quiet_run_says_why(tmp_path):
    "With --quiet too, a diverged run says why, on stderr"
    r = diverge(tmp_path, '--quiet')
    assert r.returncode == 1
    assert 'diverged: ' in r.stderr and 'train.learning_rate' in r.stderr, r.stdout + r.stderr


# ---- clapp_exp ---------------------------------------------------------------------------------------------------
T_975_1 = 12.706204736174707   # Student t, 97.5% quantile, 1 degree of freedom: the 95% band of two runs


@pytest.fixture(scope='module')
def experiment(tmp_path_factory):
    d = tmp_path_factory.mktemp('exp')
    r = cli(d, 'clapp_exp', '--config', 'samples', *SIX, 'experiment_name=tiny', '--num_runs', '2', '--parallel', '1',
            '--out', 'exps')
    assert r.returncode == 0, r.stderr[-3000:]
    return d/'exps'/'tiny', r


def test_clapp_exp_runs(experiment):
    "`clapp_exp` with 2 runs of 6 steps: both finish, with their seeds, the summary files, plots and table"
    folder, r = experiment
    meta = json.loads((folder/'experiment.json').read_text())
    assert [(x['status'], x['seed'], x['steps']) for x in meta['runs']] == [('max_iterations', 0, 6),
                                                                          ('max_iterations', 1, 6)]
    for run in ('run_000', 'run_001'): assert [m['step'] for m in rows(folder/run)] == [0, 2, 4]
    assert rows(folder/'run_000') != rows(folder/'run_001')
    for f in ('summary.csv', 'summary.md', 'loss_runs.png', 'loss_train_valid.png', 'loss_ci.png'):
        assert (folder/f).stat().st_size > 0, f
    assert '| run_000 |' in r.stdout and '| run_001 |' in r.stdout and 'experiment folder: exps/tiny' in r.stdout


def test_experiment_best_run_and_band(experiment):
    "best_run is the run with the lowest final EMA; the 95% band of two runs is t(1) x |log10 a - log10 b| / 2 wide"
    from clapp.experiment import best_run, load_experiment
    from clapp.plots import mean_band, plot_ci
    folder, _ = experiment
    exp = load_experiment(folder)
    final = {r.name: rows(folder/r.name)[-1]['ema_l2'] for r in exp.runs}
    assert final['run_000'] != final['run_001']
    assert best_run(exp).name == min(final, key=final.get)
    curves = [([m['step'] for m in rows(folder/r.name)], [m['valid_l2'] for m in rows(folder/r.name)])
              for r in exp.runs]
    steps, mean, lo, hi = mean_band(curves, level=0.95, log=True)
    assert steps == [0, 2, 4]
    for i, (a, b) in enumerate(zip(curves[0][1], curves[1][1])):
        la, lb = math.log10(a), math.log10(b)
        h = T_975_1 * abs(la - lb) / 2
        assert math.isclose(mean[i], 10 ** ((la + lb) / 2), rel_tol=1e-9)
        assert math.isclose(math.log10(hi[i]) - math.log10(lo[i]), 2 * h, rel_tol=1e-9, abs_tol=1e-12)
    # the band plot_ci draws for the validation curves (smoothing off) is that band
    fig = plot_ci(exp, smooth=0)
    bands = [c.get_paths()[0].vertices for c in fig.axes[0].collections]
    valid = bands[1]
    for s, l, h_ in zip(steps, lo, hi):
        ys = valid[np.isclose(valid[:, 0], s), 1]
        assert np.isclose(ys.min(), l) and np.isclose(ys.max(), h_), (s, ys, l, h_)



def test_clapp_exp_fails_when_every_run_fails(tmp_path):
    "No run finishes (each reads a folder that does not exist): the summary, then one error line and exit status 2"
    r = cli(tmp_path, 'clapp_exp', '--config', 'samples', *SIX, f"train_data.name={tmp_path/'missing'}",
            'experiment_name=doomed', '--num_runs', '2', '--parallel', '1', '--out', 'exps')
    assert r.returncode == 2 and 'Traceback' not in r.stderr, r.stderr[-3000:]
    last = r.stderr.rstrip().splitlines()[-1]
    assert last.startswith("clapp_exp: error: no run finished (2 failed); run_000: SourceError: no such folder: "
                           f"'{tmp_path/'missing'}'"), last
    assert '| run_000 |' in r.stdout and '| run_001 |' in r.stdout and 'experiment folder: exps/doomed' in r.stdout
    meta = json.loads((tmp_path/'exps'/'doomed'/'experiment.json').read_text())
    assert [x['status'] for x in meta['runs']] == ['failed', 'failed']


@pytest.mark.parametrize('how', [['--num_runs', '0'], ['num_runs=0']])
def test_clapp_exp_refuses_zero_runs(tmp_path, how):
    "`--num_runs 0` (or the config key) is refused with one line and status 2, before any folder is made"
    r = cli(tmp_path, 'clapp_exp', '--config', 'samples', *how, '--out', 'exps')
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1, r.stderr[-3000:]
    assert r.stderr.startswith('clapp_exp: error: ') and 'num_runs' in r.stderr and r.stdout == ''
    assert not (tmp_path/'exps').exists()

# ---- clapp_bench ---------------------------------------------------------------------------------------------------
def test_clapp_bench_one_section(tmp_path):
    "`clapp_bench buffer --quick` runs that section only and writes its report"
    h = cli(tmp_path, 'clapp_bench', '--help')
    assert h.returncode == 0 and 'buffer' in h.stdout and '--quick' in h.stdout and '--out' in h.stdout
    r = cli(tmp_path, 'clapp_bench', 'buffer', '--quick', '--out', 'b')
    assert r.returncode == 0, r.stderr[-2000:]
    rep = json.loads((tmp_path/'b'/'bench_quick.json').read_text())
    assert (rep['mode'], rep['sections'], rep['errors'], rep['quality'], rep['memory']) == \
           ('quick', ['buffer'], {}, {}, {})
    assert list(rep['speed']) == ['buffer']
    assert set(rep['speed']['buffer']) == {'32_from_48', '224_from_256'}
    assert all(v['pairs_per_s'] > 0 for v in rep['speed']['buffer'].values())
    md = (tmp_path/'b'/'bench_quick.md').read_text()
    assert 'buffer production, 32 from 48' in md and 'buffer production, 32 from 48' in r.stdout
    assert sorted(p.name for p in (tmp_path/'b').iterdir()) == ['bench_quick.json', 'bench_quick.md',
                                                                 'bench_quick_speed.png']


def test_clapp_bench_unknown_section(tmp_path):
    r = cli(tmp_path, 'clapp_bench', 'bufer', '--quick', '--out', 'b')
    assert r.returncode == 2 and 'Traceback' not in r.stderr, r.stderr[-1000:]
