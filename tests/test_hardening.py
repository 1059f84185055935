"""Loading a checkpoint or config never runs code: a module its config names is imported only with consent."""
import argparse, importlib, os, shutil, subprocess, sys
from pathlib import Path

import numpy as np
import pytest
import torch

from clapp.checkpoint import CheckpointError, load_checkpoint
from clapp.config import load_config
from clapp.imaging import write_image
from clapp.infer import compare_grid, load, predict
from clapp.sources import load_sample_images
from clapp.train import train

BIN = Path(sys.executable).parent
PWN = {'kind': 'python', 'path': 'pwnmod:f'}
PWNMOD = """import pathlib, cv2
pathlib.Path(__file__).with_name('PWNED').touch()   # the proof that this module was imported
def f(rgb): return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
"""
TINY = ['num_resolutions=1', 'train.max_iterations=12', 'train.min_iterations=12', 'train.validation_interval=4',
        'train.output_log_interval=100', 'train.threads=1', f'train_data.target_filter={PWN}',
        f'valid_data.target_filter={PWN}']


class StopAt:
    "Stop the run after step `n`, leaving a resumable last.pt"
    def __init__(self, n): self.n = n
    def after_step(self, trainer):
        if trainer.step == self.n: trainer.stop()


def forget(folder: Path):
    "Remove the import marker and the imported module, so the next import would run the module again"
    (folder/'PWNED').unlink(missing_ok=True)
    sys.modules.pop('pwnmod', None)


@pytest.fixture(scope='module')
def shared(tmp_path_factory):
    "A folder on sys.path (and the cwd) with pwnmod.py, a picture, and a stopped run whose config names pwnmod:f"
    d = tmp_path_factory.mktemp('shared')
    (d/'pwnmod.py').write_text(PWNMOD)
    write_image(d/'pic.png', load_sample_images('validation')['chelsea'][:64, :80])
    sys.path.insert(0, str(d)); importlib.invalidate_caches()
    cwd = os.getcwd(); os.chdir(d)
    try:
        # the user's own config names the filter: training imports it, as it always did
        res = train('samples', out_dir=d/'run', overrides=TINY, progress=False, callbacks=[StopAt(4)])
        assert res.status == 'stopped' and (d/'PWNED').exists()
        yield d
    finally:
        os.chdir(cwd); sys.path.remove(str(d)); forget(d)


@pytest.fixture
def folder(shared):
    forget(shared)
    yield shared
    forget(shared)


def run_cli(folder: Path, *args) -> subprocess.CompletedProcess:
    "A console script run in `folder`, with `folder` on PYTHONPATH (as any installed module would be importable)"
    env = dict(os.environ, PYTHONPATH=str(folder), MPLBACKEND='Agg')
    return subprocess.run([str(BIN/args[0]), *args[1:]], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=300)


def test_config_validation_does_not_import(folder):
    cfg = load_config('samples', TINY)
    assert cfg.train_data.target_filter == PWN
    assert not (folder/'PWNED').exists() and 'pwnmod' not in sys.modules


def test_load_gives_a_working_model_without_importing(folder):
    model = load(folder/'run'/'last.pt')
    out = predict(model, folder/'pic.png')
    assert out.shape == (64, 80) and out.dtype == np.uint8
    assert load(folder/'run').run_config.train_data.target_filter == PWN
    assert not (folder/'PWNED').exists() and 'pwnmod' not in sys.modules


def test_clapp_infer_does_not_import(folder):
    r = run_cli(folder, 'clapp_infer', 'run/last.pt', 'pic.png', 'out.png')
    assert r.returncode == 0, r.stderr
    assert (folder/'out.png').exists() and not (folder/'PWNED').exists()
    r = run_cli(folder, 'clapp_infer', 'run/last.pt', 'pic.png', 'cmp.png', '--compare')
    assert r.returncode == 2 and "would import module 'pwnmod'" in r.stderr and '--trust_code' in r.stderr
    assert not (folder/'cmp.png').exists() and not (folder/'PWNED').exists()


def test_compare_builds_the_checkpoints_filter_only_with_consent(folder):
    pic = folder/'pic.png'
    with pytest.raises(CheckpointError, match="would import module 'pwnmod'"): compare_grid(load(folder/'run'), pic)
    assert compare_grid(load(folder/'run'), pic, target_filter='sobel_3')['grid'].ndim == 3
    assert not (folder/'PWNED').exists()
    assert compare_grid(load(folder/'run', trust_code=True), pic)['target'].shape == (64, 80)
    assert (folder/'PWNED').exists()


def test_resume_asks_for_consent(folder, tmp_path):
    run = tmp_path/'run'
    shutil.copytree(folder/'run', run)
    with pytest.raises(CheckpointError) as e: train(resume=run, progress=False)
    msg = str(e.value)
    assert "'pwnmod:f'" in msg and "import module 'pwnmod'" in msg and 'trust_code=True' in msg and '\n' not in msg
    assert not (folder/'PWNED').exists() and 'pwnmod' not in sys.modules
    r = run_cli(folder, 'clapp_train', '--resume', str(run), '--quiet')
    assert r.returncode == 2 and "import module 'pwnmod'" in r.stderr and '--trust_code' in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (folder/'PWNED').exists()
    assert load_checkpoint(run/'last.pt')['step'] == 4   # the refused resume left the run as it was
    res = train(resume=run, progress=False, trust_code=True)
    assert (folder/'PWNED').exists() and res.status == 'max_iterations' and res.steps == 12


def test_pickled_objects_are_refused_in_one_clear_line(tmp_path):
    p = tmp_path/'pickled.pt'
    torch.save({'weights': {'w': torch.zeros(2)}, 'args': argparse.Namespace(lr=0.1)}, p)
    with pytest.raises(CheckpointError) as e: load(p)
    msg = str(e.value)
    assert 'weights_only' not in msg and 'False' not in msg and '\n' not in msg
    assert str(p) in msg and 'argparse.Namespace' in msg and 'save_checkpoint' in msg and 'trust' in msg


def test_demo_grid_builds_the_checkpoints_filter_only_with_consent(folder):
    from clapp.plots import demo_grid
    ckpt = folder/'run'/'last.pt'
    with pytest.raises(CheckpointError, match="would import module 'pwnmod'"): demo_grid(ckpt, size=64)
    assert not (folder/'PWNED').exists()
    demo_grid(ckpt, size=64, trust_code=True)
    assert (folder/'PWNED').exists()
