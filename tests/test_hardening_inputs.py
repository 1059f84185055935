"""Issue 19, items 5-7: every bad input a user can give gets one clear line (or the right result), tested here.

Config overrides are fuzzed with Hypothesis; a folder of bad pictures, broken checkpoints and memory-sized
values are made by the tests. Each case runs in-process through `cli_errors`, the wrapper every console
script uses, so a message is checked exactly as the user reads it (one line on stderr, exit status 2).
"""
import io, os, string, sys
from contextlib import redirect_stderr
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

import clapp.train  # noqa: F401  (registers every filter check and choice, as a command does)
from clapp.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from clapp.cli import cli_errors, run_infer, run_train
from clapp.config import Config, ConfigError, _leaf_fields, load_config
from clapp.data import fixed_set
from clapp.infer import load, predict_folder
from clapp.model import build_model
from clapp.runs import read_metrics
from clapp.train import train

TINY = ['num_resolutions=1', 'train.max_iterations=6', 'train.min_iterations=6', 'train.validation_interval=2',
        'train.threads=1', 'train_data.min_buffer=32', 'train_data.max_buffer=64', 'train.output_log_interval=100']


def one_line(prog, fn, *args, **kwargs) -> str:
    "The one line `prog: error: ...` that `fn` ends with through `cli_errors` (asserting status 2 and nothing else)"
    err = io.StringIO()
    with redirect_stderr(err): code = cli_errors(prog, fn, *args, **kwargs)
    lines = err.getvalue().strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith(f'{prog}: error: '), (code, err.getvalue())
    return lines[0]


# ---- item 7: a property-based fuzz of config overrides --------------------------------------------------------

KEYS = sorted(_leaf_fields())
TEXT = st.text(alphabet=string.printable + 'é\x00', max_size=12)
VALUES = st.one_of(st.integers(-2**70, 2**70).map(str), st.floats(allow_nan=True, allow_infinity=True).map(repr),
                   st.sampled_from(['true', 'null', '[]', '{}', '[1, 2]', '{a: 1, a: 2}', 'sobel3', 'samples', '1e38',
                                    "{kind: python, path: 'os:system'}", '{kind: conv, kernel: [[1]]}', '-0', '']),
                   TEXT)
KEY = st.one_of(st.sampled_from(KEYS), st.sampled_from(KEYS).map(lambda k: k[:-1]), TEXT)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(KEY, VALUES), min_size=1, max_size=3), st.booleans())
def test_every_override_gives_a_valid_config_or_one_config_error(pairs, with_equals):
    items = [f'{k}={v}' if with_equals else f'{k}{v}' for k, v in pairs]
    try: cfg = load_config('samples', items)
    except ConfigError as e:
        assert str(e)
        if not any('\n' in i for i in items): assert '\n' not in str(e), str(e)   # one line (unless the key had one)
        return
    assert isinstance(cfg, Config)
    assert load_config(cfg) == cfg   # a config that loaded validates again unchanged


# ---- item 6: values and files that used to end in a raw traceback ------------------------------------------------

@pytest.mark.parametrize('override, named', [
    ('train.batch_size=1000000000', 'train.batch_size=1000000000'),
    ('model.capacity=100000', 'model.capacity=100000'),
    ('train_data.max_buffer=100000000', 'train_data.max_buffer=100000000'),
    ('valid_data.fixed_size=100000', 'valid_data.fixed_size=100000'),
    ('num_resolutions=12', 'num_resolutions'),
    ('model.arch=unet model.levels=8', 'model.levels=8'),
    ('model.input_channels=1', 'model.input_channels'),
    (f'seed={2**70}', 'seed'),
    ('train_data.target_filter=sobel3', "unknown filter 'sobel3'. Did you mean 'sobel_3'"),
    ('train.learning_rate=1e38', 'train.learning_rate'),
])
def test_impossible_values_are_one_line_before_anything_is_built(tmp_path, override, named):
    line = one_line('clapp_train', run_train, 'samples', TINY + override.split(), str(tmp_path/'run'), progress=False)
    assert named in line, line
    assert not (tmp_path/'run').exists()    # refused before the run folder was made


def test_memory_messages_give_the_figures(tmp_path):
    line = one_line('clapp_train', run_train, 'samples', TINY + ['train.batch_size=1000000000'], str(tmp_path/'r'),
                    progress=False)
    assert 'GiB of memory' in line and 'this machine has' in line and 'lower train.batch_size' in line


def test_config_files_that_cannot_be_used(tmp_path):
    (tmp_path/'folder').mkdir()
    (tmp_path/'binary.yaml').write_bytes(bytes(range(256)) * 4)
    (tmp_path/'twice.yaml').write_text('train:\n  batch_size: 4\n  batch_size: 8\n')
    assert 'neither a preset' in one_line('clapp_train', load_config, str(tmp_path/'folder'))
    assert 'is not valid YAML' in one_line('clapp_train', load_config, str(tmp_path/'binary.yaml'))
    assert "key 'batch_size' is given twice" in one_line('clapp_train', load_config, str(tmp_path/'twice.yaml'))


def test_run_folders_the_system_refuses(tmp_path):
    (tmp_path/'afile').write_text('x')
    line = one_line('clapp_train', run_train, 'samples', TINY, str(tmp_path/'afile'/'run'), progress=False)
    assert line.endswith('afile/run: Not a directory'), line
    if os.path.isdir('/sys') and not os.access('/sys', os.W_OK):
        assert '/sys/clapp_run' in one_line('clapp_train', run_train, 'samples', TINY, '/sys/clapp_run', progress=False)


def test_device_cuda_without_a_gpu(tmp_path):
    if torch.cuda.is_available(): pytest.skip('this machine has a CUDA GPU')
    assert 'no usable CUDA GPU' in one_line('clapp_train', run_train, 'samples', TINY + ['train.device=cuda'],
                                            str(tmp_path/'r'), progress=False)


@pytest.fixture(scope='module')
def run0(tmp_path_factory):
    "A finished tiny run and a small picture"
    d = tmp_path_factory.mktemp('run0')
    res = train('samples', out_dir=d/'run', overrides=TINY, progress=False)
    assert res.status == 'max_iterations'
    img = (np.random.default_rng(0).random((40, 50, 3)) * 255).astype(np.uint8)
    cv2.imwrite(str(d/'a.png'), img)
    return d


def test_infer_outputs_that_cannot_be_written(run0, tmp_path):
    (tmp_path/'afile').write_text('x')
    pic = str(run0/'a.png')
    assert 'a folder on its path is a file' in one_line('clapp_infer', run_infer, str(run0/'run'), pic,
                                                        str(tmp_path/'afile'/'o.png'), log=None)
    assert 'cannot write' in one_line('clapp_infer', run_infer, str(run0/'run'), pic, str(tmp_path/'o.xyz'), log=None)
    assert '--tile must be a positive' in one_line('clapp_infer', run_infer, str(run0/'run'), pic,
                                                   str(tmp_path/'o.png'), tile=0, log=None)
    if not torch.cuda.is_available():
        assert 'no usable CUDA GPU' in one_line('clapp_infer', run_infer, str(run0/'run'), pic, str(tmp_path/'o.png'),
                                                device='cuda', log=None)


def test_checkpoints_are_written_with_the_users_file_mode(tmp_path):
    old = os.umask(0o027)
    try: p = save_checkpoint(tmp_path/'m.pt', build_model(Config().model))
    finally: os.umask(old)
    assert oct(p.stat().st_mode & 0o777) == oct(0o640)
    old = os.umask(0o002)
    try: q = save_checkpoint(tmp_path/'n.pt', build_model(Config().model))
    finally: os.umask(old)
    assert oct(q.stat().st_mode & 0o777) == oct(0o664)


# ---- item 7: the checkpoint cases ---------------------------------------------------------------------------------

class Evil:
    def __reduce__(self): return (os.system, ('touch /tmp/clapp_hardening_pwned',))


def broken_checkpoints(good: Path, d: Path) -> dict:
    "name -> (file, what the message says): malicious, truncated, foreign, NaN, and missing keys"
    ck = torch.load(good, weights_only=True)
    torch.save({'x': Evil()}, d/'evil.pt')
    (d/'cut.pt').write_bytes(good.read_bytes()[:400])
    torch.save(build_model(Config().model).state_dict(), d/'foreign.pt')
    nan = torch.load(good, weights_only=True); nan['weights']['post.weight'].fill_(float('nan'))
    torch.save(nan, d/'nan.pt')
    for key in ('weights', 'config'):
        part = dict(ck); del part[key]; torch.save(part, d/f'no_{key}.pt')
    return {'malicious': (d/'evil.pt', 'holds pickled Python objects (posix.system)'),
            'truncated': (d/'cut.pt', 'not a readable CLAPP checkpoint'),
            'foreign': (d/'foreign.pt', 'not a CLAPP checkpoint'),
            'nan': (d/'nan.pt', 'its weights are not finite'),
            'no weights': (d/'no_weights.pt', 'without its weights'),
            'no config': (d/'no_config.pt', 'without its config')}


def test_broken_checkpoints_are_refused_everywhere_in_one_line(run0, tmp_path):
    cases = broken_checkpoints(run0/'run'/'last.pt', tmp_path)
    for name, (path, says) in cases.items():
        with pytest.raises(CheckpointError, match=None) as e: load(path)
        assert says in str(e.value) and '\n' not in str(e.value), (name, str(e.value))
        assert says in one_line('clapp_infer', run_infer, str(path), str(run0/'a.png'), str(tmp_path/f'{name}.png'),
                                log=None), name
        assert says in one_line('clapp_train', run_train, None, [], None, str(path), progress=False), name
        assert not (tmp_path/f'{name}.png').exists()
    assert not os.path.exists('/tmp/clapp_hardening_pwned')


# ---- item 5: bad pictures, reported the same way everywhere --------------------------------------------------------

def bad_picture_folder(d: Path, good: int = 9) -> list:
    "A folder of `good` readable pictures and six that cannot be read; returns the bad names"
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(good): cv2.imwrite(str(d/f'ok{i}.png'), (rng.random((80, 90, 3)) * 255).astype(np.uint8))
    jpeg = cv2.imencode('.jpg', (rng.random((80, 90, 3)) * 255).astype(np.uint8))[1].tobytes()
    png = cv2.imencode('.png', (rng.random((80, 90, 3)) * 255).astype(np.uint8))[1].tobytes()
    bad = {'empty.png': b'', 'notes.jpg': b'shopping list', 'cut.jpg': jpeg[:len(jpeg) // 2],
           'noise.png': rng.bytes(500), 'half.png': png[:100], 'zero.bmp': b'BM' + b'\0' * 60}
    for name, data in bad.items(): (d/name).write_bytes(data)
    return sorted(bad)


def test_training_reports_the_pictures_it_skipped(tmp_path):
    bad = bad_picture_folder(tmp_path/'pics')
    res = train('samples', out_dir=tmp_path/'run', progress=False,
                overrides=TINY + [f'train_data.name={tmp_path/"pics"}', 'train_data.split=all'])
    assert res.status == 'max_iterations'
    assert f'skipped {len(bad)} unreadable picture(s): ' in res.message and 'and 3 more' in res.message
    last = read_metrics(tmp_path/'run')[-1]
    assert last['skipped_pictures'] == len(bad)
    assert len(last['skipped_first']) == 3 and all(s.split(':')[0] in bad for s in last['skipped_first'])


def test_validation_pictures_skipped_are_reported_too(tmp_path):
    bad = bad_picture_folder(tmp_path/'pics', good=3)
    skipped = {}
    x, _ = fixed_set(load_config('samples', [f'valid_data.name={tmp_path/"pics"}', 'valid_data.split=all',
                                             'valid_data.resize_base=64', 'valid_data.crop_size=48']).valid_data,
                     20, unreadable=skipped)
    assert x.shape == (20, 3, 48, 48) and sorted(skipped) == bad


def test_infer_refuses_what_training_skips(run0, tmp_path):
    bad = bad_picture_folder(tmp_path/'pics', good=2)
    assert 'cut.jpg cannot be read' in one_line('clapp_infer', run_infer, str(run0/'run'), str(tmp_path/'pics'/'cut.jpg'),
                                                str(tmp_path/'o.png'), log=None)
    res = predict_folder(load(run0/'run'), tmp_path/'pics', tmp_path/'out', log=None)
    assert sorted(Path(p).name for p, _ in res['skipped']) == bad and len(res['written']) == 2


def test_a_run_that_fails_before_its_first_step_leaves_no_checkpoint(tmp_path):
    (tmp_path/'bad').mkdir()
    for n in ('a.png', 'b.jpg'): (tmp_path/'bad'/n).write_bytes(b'not a picture')
    line = one_line('clapp_train', run_train, 'samples', TINY + [f'train_data.name={tmp_path/"bad"}'],
                    str(tmp_path/'run'), progress=False)
    assert 'every image failed' in line
    assert not (tmp_path/'run'/'last.pt').exists() and not (tmp_path/'run'/'best.pt').exists()
    res = train('samples', out_dir=tmp_path/'run', overrides=TINY, progress=False)   # the folder is not blocked
    assert res.status == 'max_iterations' and load_checkpoint(tmp_path/'run'/'last.pt')['step'] == 6
