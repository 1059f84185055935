"""`predict_tiled` streams the models the fused engine runs (`clapp.fused.FusedFilterNet.stream`): its output equals
the whole-picture output, its memory does not grow with the picture beyond input and output, its bar counts the
tiles of every pass; other models keep the eager tiles."""
import json, subprocess, sys, textwrap, threading

import numpy as np
import pytest
import torch

import clapp.infer
from clapp.config import ModelConfig
from clapp.fused import fusable
from clapp.infer import predict, predict_tiled
from clapp.model import build_model
from clapp.sources import load_sample_images

PIC = load_sample_images('validation')['chelsea'][:150, :201]


def nudged(**kw):
    "A model of `ModelConfig(**kw)` whose weights are moved off their initial values (so every part does work)"
    torch.manual_seed(0)
    m = build_model(ModelConfig(**kw)).eval()
    with torch.no_grad():
        for p in m.parameters(): p.add_(0.1 * torch.randn_like(p))
    return m


FUSED = {'default': {}, 'max': dict(output_norm='max'), 'max, beta 5': dict(output_norm='max', output_beta=5.),
         'linear path 7': dict(linear_path=7),
         'zeros, 3 outputs, max': dict(padding_mode='zeros', output_channels=3, output_norm='max'),
         'circular 5x5': dict(padding_mode='circular', kernel_size=5), 'sigmoid': dict(output_norm='sigmoid')}


@pytest.fixture
def no_eager(monkeypatch):
    "The eager tiles' passes fail: what runs is the streamed path"
    def boom(*a, **k): raise AssertionError('eager tiles ran')
    monkeypatch.setattr(clapp.infer, '_norm_passes', boom)


@pytest.mark.parametrize('name', list(FUSED))
@pytest.mark.parametrize('tile', [7, 64, 1024])
def test_streamed_equals_whole(name, tile, no_eager):
    "Raw output within 1e-4 of the whole-picture output (uint8 within one step), tiles smaller than the margin too"
    m = nudged(**FUSED[name])
    assert fusable(m)
    whole, tiled = predict(m, PIC, raw=True), predict_tiled(m, PIC, tile=tile, raw=True)
    assert tiled.shape == whole.shape and tiled.dtype == np.float32
    assert np.abs(tiled - whole).max() <= 1e-4
    u8 = predict_tiled(m, PIC, tile=tile)
    assert u8.dtype == np.uint8 and np.abs(u8.astype(int) - predict(m, PIC).astype(int)).max() <= 1
    assert not [t for t in threading.enumerate() if t.name.startswith('clapp-stream')]


def test_other_models_keep_eager_tiles():
    "The unet arch and conv-then-norm blocks are not fused: eager tiles, still equal to the whole picture"
    for kw in (dict(arch='unet'), dict(flip_conv_norm=False, output_norm='max')):
        m = nudged(**kw)
        assert not fusable(m)
        assert np.abs(predict_tiled(m, PIC, tile=64, raw=True) - predict(m, PIC, raw=True)).max() <= 1e-4


def test_progress_counts_tiles_of_every_pass(capsys, no_eager):
    "3x4 tiles of 64, three norms after the first and the output pass: 48 steps, all done"
    predict_tiled(nudged(), PIC, tile=64, progress=True)
    err = capsys.readouterr().err
    assert '201x150 in 12 tiles' in err and '48/48' in err


CHILD = """
import json, numpy as np, torch
from clapp.config import ModelConfig
from clapp.model import build_model
from clapp.infer import predict_tiled
def status(key):
    return int(next(l for l in open('/proc/self/status') if l.startswith(key)).split()[1]) * 1024
m = build_model(ModelConfig()).eval()
img = np.random.default_rng(0).integers(0, 256, ({size}, {size}, 3), dtype=np.uint8)
predict_tiled(m, img[:64, :64])                  # imports and first-call allocations out of the way
before = status('VmRSS:')
out = predict_tiled(m, img)
print(json.dumps(dict(before=before, peak=status('VmHWM:'), out=out.nbytes)))
"""


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='reads /proc/self/status')
def test_stream_memory_beyond_picture_and_output_is_small():
    "A 2048x2048 picture: the peak above the resident set before the call is the output and a few tiles (< 64 MB)"
    r = subprocess.run([sys.executable, '-c', textwrap.dedent(CHILD.format(size=2048))], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    d = json.loads(r.stdout.strip().splitlines()[-1])
    extra = (d['peak'] - d['before'] - d['out']) / 2 ** 20
    assert extra < 64, f'{extra:.0f} MB beyond the picture and the output'
