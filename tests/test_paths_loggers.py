"""The `train.loggers` really log: a tiny run with TensorBoard and W&B (offline) is read back from the files they wrote,
and every metrics row of metrics.jsonl is found there, at its step."""
import importlib, json, math, os, struct

import pytest

from clapp.callbacks import _scalars
from clapp.train import train

TINY = ['train.device=cpu', 'train.threads=1', 'train.batch_size=4', 'train.valid_batch_size=4',
        'train_data.min_buffer=8', 'train_data.max_buffer=16', 'valid_data.fixed_size=4', 'valid_data.min_buffer=4',
        'valid_data.max_buffer=16', 'valid_data.resize_base=64', 'valid_data.crop_size=64', 'num_resolutions=1',
        'train.max_iterations=6', 'train.min_iterations=6', 'train.validation_interval=2',
        'train.output_log_interval=4']
STEPS = [0, 2, 4]          # validations of the run above
GRID_STEPS = [0, 4]        # image grids (every output_log_interval steps)


def need(module: str):
    "Import `module`; where it is missing, skip, but fail under CI=true (both loggers are in the dev extra)"
    try: return importlib.import_module(module)
    except ImportError:
        msg = f'{module} is not installed; it is in the dev extra: pip install -e ".[dev]"'
        if os.environ.get('CI', '').lower() in ('1', 'true', 'yes'): pytest.fail(msg, pytrace=False)
        pytest.skip(msg)


@pytest.fixture(scope='module')
def logged(tmp_path_factory):
    "One tiny run with both loggers, W&B offline and every W&B folder in a temporary one"
    for module in ('tensorboard', 'wandb'): need(module)
    d = tmp_path_factory.mktemp('loggers')
    with pytest.MonkeyPatch.context() as mp:
        for k in ('WANDB_DIR', 'WANDB_CACHE_DIR', 'WANDB_CONFIG_DIR', 'WANDB_DATA_DIR', 'WANDB_ARTIFACT_DIR'):
            (d/k).mkdir(); mp.setenv(k, str(d/k))
        mp.setenv('WANDB_MODE', 'offline'); mp.setenv('WANDB_SILENT', 'true')
        res = train('samples', out_dir=d/'run', overrides=TINY + ['train.loggers=[tensorboard,wandb]'],
                    progress=False)
    assert [m['step'] for m in res.metrics] == STEPS
    return res


def test_tensorboard_events_hold_the_metrics(logged):
    "The event file holds one scalar series per metric, at the validation steps, with metrics.jsonl's values"
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    files = list((logged.run_dir/'tensorboard').glob('events.out.tfevents.*'))
    assert len(files) == 1
    ea = EventAccumulator(str(files[0]), size_guidance={'scalars': 0, 'images': 0}).Reload()
    tags = ea.Tags()
    expected = {k for m in logged.metrics for k in _scalars(m)}
    assert {'valid_l2', 'train_loss', 'lr', 'ema_l2', 'stage_step'} <= expected
    assert set(tags['scalars']) == expected
    for key in expected:
        rows = [(m['step'], m[key]) for m in logged.metrics if key in _scalars(m)]
        events = [(e.step, e.value) for e in ea.Scalars(key)]
        assert [s for s, _ in events] == [s for s, _ in rows], key
        for (_, v), (_, w) in zip(events, rows): assert math.isclose(v, w, rel_tol=1e-6, abs_tol=1e-9), key
    assert tags['images'] == ['grid']
    assert [e.step for e in ea.Images('grid')] == GRID_STEPS


def wandb_records(path) -> list:
    "The records of a W&B offline run file (`run-*.wandb`: a LevelDB-style log of 32 KiB blocks of protobufs)"
    from wandb.proto import wandb_internal_pb2 as pb
    data = path.read_bytes()
    assert data[:4] == b':W&B', data[:7]
    pos, part, out = 7, b'', []
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        if left < 7: pos += left; continue          # a block's tail too short for a record header is padding
        _crc, n, kind = struct.unpack('<IHB', data[pos:pos + 7])
        chunk, pos = data[pos + 7:pos + 7 + n], pos + 7 + n
        if kind == 1: out.append(chunk)               # full record
        elif kind == 2: part = chunk                  # first, middle and last pieces of a long one
        elif kind == 3: part += chunk
        elif kind == 4: out.append(part + chunk); part = b''
    recs = []
    for b in out:
        r = pb.Record(); r.ParseFromString(b); recs.append(r)
    return recs


def test_wandb_offline_run_holds_the_metrics(logged):
    "The offline run file has one history row per validation, at its step, with metrics.jsonl's values and the grids"
    runs = list((logged.run_dir/'wandb').glob('offline-run-*'))
    assert len(runs) == 1
    files = list(runs[0].glob('run-*.wandb'))
    assert len(files) == 1
    recs = wandb_records(files[0])
    kinds = [r.WhichOneof('record_type') for r in recs]
    assert kinds[-1] == 'exit' and 'run' in kinds         # the run was finished, not cut short
    history = [{(i.key or '/'.join(i.nested_key)): json.loads(i.value_json) for i in r.history.item}
               for r in recs if r.WhichOneof('record_type') == 'history']
    assert [h['_step'] for h in history] == STEPS
    for h, m in zip(history, logged.metrics):
        for k, v in _scalars(m).items(): assert math.isclose(h[k], v, rel_tol=1e-9, abs_tol=1e-12), (m['step'], k)
    with_image = [h['_step'] for h in history if 'images/path' in h]
    assert with_image == GRID_STEPS
    for h in history:
        if 'images/path' in h: assert (runs[0]/'files'/h['images/path']).stat().st_size == h['images/size']
    config = {u.key: json.loads(u.value_json) for r in recs if r.WhichOneof('record_type') == 'run'
              for u in r.run.config.update}
    assert (config['train.max_iterations'], config['train_data.target_filter']) == (6, 'sobel_3'), config
