"""A three-channel filter end to end (train, predict, predict_tiled, compare) and `clapp_infer` on a folder, with
`--compare` and with tiles, checked against what the library draws for the same model and pictures."""
import os, subprocess, sys
from pathlib import Path

import numpy as np
import pytest

from clapp.filters import get_filter
from clapp.imaging import psnr, read_image, write_image
from clapp.infer import compare_grid, load, predict, predict_tiled
from clapp.sources import load_sample_images
from clapp.train import train

BIN = Path(sys.executable).parent
ENV = dict(os.environ, MPLBACKEND='Agg', HF_HUB_OFFLINE='1', HF_DATASETS_OFFLINE='1')
FILTER = 'gaussian_5'      # a 5x5 Gaussian blur of each RGB channel: three outputs
TINY = ['train.device=cpu', 'train.threads=1', 'train.batch_size=4', 'train.valid_batch_size=4',
        'train.output_log_interval=100', 'train_data.min_buffer=8', 'train_data.max_buffer=16',
        'valid_data.fixed_size=4', 'valid_data.min_buffer=4', 'valid_data.max_buffer=16',
        'valid_data.resize_base=64', 'valid_data.crop_size=64', 'num_resolutions=1', 'train.validation_interval=4',
        'train.max_iterations=8', 'train.min_iterations=8']


def close(a, b, tol=1) -> bool:
    return a.shape == b.shape and int(np.abs(a.astype(int) - b.astype(int)).max()) <= tol


@pytest.fixture(scope='module')
def three(tmp_path_factory):
    "A run of the gaussian_5 preset (8 steps) and a folder of two small pictures"
    d = tmp_path_factory.mktemp('three')
    res = train(FILTER, out_dir=d/'run', overrides=TINY, progress=False)
    assert (res.status, res.steps) == ('max_iterations', 8)
    pics = d/'pics'; pics.mkdir()
    samples = load_sample_images('validation')
    for name in list(samples)[:2]: write_image(pics/f'{name}.png', samples[name][:72, :104])
    return d, res


def test_three_channel_train_predict_tiled_compare(three):
    "The trained model outputs 3 channels; tiles give the whole-image output; compare's PSNR is that of the output"
    d, res = three
    assert get_filter(FILTER).out_channels == 3 and res.model.config.output_channels == 3
    m = load(d/'run')
    img = read_image(sorted((d/'pics').iterdir())[0])
    out = predict(m, img)
    assert out.shape == (72, 104, 3) and out.dtype == np.uint8
    assert not (np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2]))
    tiled = predict_tiled(m, img, tile=24)
    assert close(tiled, out)
    assert close(predict(m, img, max_pixels=1000, tile=24), out)          # predict tiles a larger picture itself
    cmp = compare_grid(m, img)
    ref = get_filter(FILTER)(img)
    assert ref.shape == (72, 104, 3)
    assert np.array_equal(cmp['output'], out) and np.array_equal(cmp['target'], ref)
    mse = float(((out.astype(np.float64) - ref) ** 2).mean())
    assert cmp['psnr'] == pytest.approx(psnr(mse, peak=255))
    assert cmp['max_err'] == int(np.abs(out.astype(int) - ref).max())
    h, w = cmp['grid'].shape[:2]
    assert w == 4 * 104 + 3 * 4 and h > 72                                 # four panels under their labels


def test_clapp_infer_folder_compare(three):
    "`clapp_infer RUN FOLDER OUT --compare` writes, for each picture, the grid `compare_grid` draws"
    d, _ = three
    r = subprocess.run([str(BIN/'clapp_infer'), 'run', 'pics', 'grids', '--compare'], cwd=d, env=ENV,
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-2000:]
    names = sorted(p.name for p in (d/'pics').iterdir())
    assert sorted(p.name for p in (d/'grids').iterdir()) == names
    m = load(d/'run')
    for n in names: assert close(read_image(d/'grids'/n), compare_grid(m, read_image(d/'pics'/n))['grid']), n
    assert 'wrote 2 file(s) to grids; skipped 0' in r.stdout
    t = subprocess.run([str(BIN/'clapp_infer'), 'run', 'pics', 'tiled', '--max_pixels', '1000', '--tile', '24'],
                       cwd=d, env=ENV, capture_output=True, text=True, timeout=240)
    assert t.returncode == 0, t.stderr[-2000:]
    for n in names: assert close(read_image(d/'tiled'/n), predict(m, read_image(d/'pics'/n))), n
