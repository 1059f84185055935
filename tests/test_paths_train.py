"""Trainer paths no notebook runs: stage transitions, a resume across a stage boundary, `checkpoint_interval`,
validation from a live buffer, the progress output of a real run, and `count_flops` against a hand count."""
import io, math, threading

import pytest
import torch

from clapp.callbacks import ProgressBar
from clapp.config import ModelConfig
from clapp.model import build_model, count_flops
from clapp.train import Trainer, train

# a run of well under a second: small buffers, tiny batches, a fixed validation set of four 64-pixel crops
TINY = ['train.device=cpu', 'train.threads=1', 'train.batch_size=4', 'train.valid_batch_size=4',
        'train.output_log_interval=100', 'train_data.min_buffer=8', 'train_data.max_buffer=16',
        'valid_data.fixed_size=4', 'valid_data.min_buffer=4', 'valid_data.max_buffer=16',
        'valid_data.resize_base=64', 'valid_data.crop_size=64']
TWO_STAGES = TINY + ['num_resolutions=2', 'train.max_iterations=4', 'train.min_iterations=4',
                     'train.validation_interval=2']
TIMING = ('elapsed_s', 'samples_per_s')


def same(rows):
    "Metrics rows without their timing columns"
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def weights(path):
    return torch.load(path, weights_only=True)['weights']


def same_weights(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class Recorder:
    "Record each stage's start and each step's position and batch shape; stop the run after step `stop_at`"
    order = 50
    def __init__(self, stop_at=None): self.stages, self.steps, self.stop_at = [], [], stop_at
    def before_stage(self, t): self.stages.append((t.stage_index, t.stage.crop_size, t.stage.batch_size, t.step))
    def after_step(self, t):
        self.steps.append((t.step, t.stage_index, t.stage_step, tuple(t.xb.shape)))
        if t.step == self.stop_at: t.stop()


@pytest.fixture(scope='module')
def two_stage(tmp_path_factory):
    "A deterministic run of two stages of four steps each, and what its recorder saw"
    d = tmp_path_factory.mktemp('stages')
    rec = Recorder()
    res = train('samples', out_dir=d/'full', overrides=TWO_STAGES, progress=False, deterministic=True,
                callbacks=[rec])
    return res, rec


def test_stage_transition(two_stage):
    "Stage 2 doubles the crop (48 -> 96) and halves the batch (4 -> 2); steps and stage steps go on as they should"
    res, rec = two_stage
    assert (res.status, res.stages, res.steps) == ('max_iterations', ['max_iterations', 'max_iterations'], 8)
    assert rec.stages == [(0, 48, 4, 0), (1, 96, 2, 4)]
    assert rec.steps == [(s, 0, s, (4, 3, 48, 48)) for s in range(1, 5)] + \
                        [(s, 1, s - 4, (2, 3, 96, 96)) for s in range(5, 9)]
    assert [(m['step'], m['stage'], m['stage_step']) for m in res.metrics] == [(0, 0, 0), (2, 0, 2), (4, 1, 0),
                                                                                (6, 1, 2)]


@pytest.mark.parametrize('stop_at', [4, 6], ids=['at_the_boundary', 'inside_stage_2'])
def test_resume_across_stage_boundary(two_stage, tmp_path, stop_at):
    "A run stopped at the end of stage 1 (or inside stage 2) and resumed ends exactly as the uninterrupted run"
    full, _ = two_stage
    part = train('samples', out_dir=tmp_path/'part', overrides=TWO_STAGES, progress=False, deterministic=True,
                 callbacks=[Recorder(stop_at)])
    ck = torch.load(tmp_path/'part'/'last.pt', weights_only=True)
    assert (part.status, ck['step']) == ('stopped', stop_at)
    rec = Recorder()
    res = train(resume=tmp_path/'part', progress=False, deterministic=True, callbacks=[rec])
    assert (res.status, res.stages, res.steps) == ('max_iterations', ['max_iterations', 'max_iterations'], 8)
    assert rec.steps[0][:3] == (stop_at + 1, 1, stop_at + 1 - 4)          # it goes on where it stopped, in stage 2
    assert all(shape == (2, 3, 96, 96) for *_, shape in rec.steps)        # at stage 2's crop and batch
    assert same(res.metrics) == same(full.metrics)
    assert same_weights(weights(tmp_path/'part'/'last.pt'), weights(full.run_dir/'last.pt'))


class LastStep:
    "After every step, the step stored in last.pt (None while there is none)"
    order = 50
    def __init__(self): self.seen = []
    def after_step(self, t):
        p = t.run_dir/'last.pt'
        self.seen.append(torch.load(p, weights_only=True)['step'] if p.exists() else None)


@pytest.mark.parametrize('every,expected', [(2, [None, 2, 2, 4, 4, 6]), (0, [None] * 6)])
def test_checkpoint_interval(tmp_path, every, expected):
    "`train.checkpoint_interval=2` writes last.pt after steps 2, 4 and 6; with 0, none until the stage has ended"
    seen = LastStep()
    res = train('samples', out_dir=tmp_path/'run', progress=False, callbacks=[seen],
                overrides=TINY + ['num_resolutions=1', 'train.max_iterations=6', 'train.min_iterations=6',
                                  'train.validation_interval=3', f'train.checkpoint_interval={every}'])
    assert res.steps == 6
    assert seen.seen == expected
    assert torch.load(tmp_path/'run'/'last.pt', weights_only=True)['step'] == 6


class ValidSeen:
    "The validation data of each validation: where it came from and the crops' shape"
    order = 50
    def __init__(self): self.rows = []
    def after_validate(self, t):
        self.rows.append((t.valid_fixed is None, t.valid_buffer is not None and t.valid_buffer.fill,
                          tuple(t.valid_sample[0].shape)))


def test_validation_from_live_buffer(tmp_path):
    "`valid_data.fixed_size=0` validates on draws from a filling buffer of valid_batch_size crops; its thread ends"
    before = set(threading.enumerate())
    seen = ValidSeen()
    res = train('samples', out_dir=tmp_path/'run', progress=False, callbacks=[seen],
                overrides=TINY + ['num_resolutions=1', 'train.max_iterations=6', 'train.min_iterations=6',
                                  'train.validation_interval=2', 'valid_data.fixed_size=0', 'train.valid_batch_size=3'])
    assert res.steps == 6 and len(seen.rows) == 3
    for from_buffer, fill, shape in seen.rows:
        assert from_buffer and fill >= 4                 # valid_data.min_buffer pairs before the first draw
        assert shape == (3, 3, 64, 64)                   # valid_sample keeps the first 3 of a 3-crop batch
    vals = [m['valid_l2'] for m in res.metrics]
    assert all(math.isfinite(v) for v in vals) and len(set(vals)) == 3
    left = [t for t in set(threading.enumerate()) - before if t.is_alive()]
    for t in left: t.join(10)
    assert [t.name for t in left if t.is_alive()] == []


class ForwardSizes:
    "The crops in every forward pass"
    def __init__(self): self.sizes = []
    def before_forward(self, t): self.sizes.append(len(t.xb))


def test_slices_with_targets_on_device(tmp_path, monkeypatch):
    "Steps and validations in one-crop slices, on buffers that keep inputs only (targets made per slice): same run"
    ov = TWO_STAGES + ['train_data.targets_on_device=true', 'valid_data.targets_on_device=true',
                       'valid_data.fixed_size=0', 'train.valid_batch_size=3']
    runs = {}
    for name, pixels in (('whole', 10**9), ('sliced', 1)):
        monkeypatch.setattr(Trainer, 'train_pixels', pixels)
        monkeypatch.setattr(Trainer, 'score_pixels', pixels)
        seen = ForwardSizes()
        res = train('samples', out_dir=tmp_path/name, overrides=ov, progress=False, deterministic=True, callbacks=[seen])
        runs[name] = (res, seen.sizes)
    (whole, whole_sizes), (sliced, sliced_sizes) = runs['whole'], runs['sliced']
    assert set(whole_sizes) == {4, 2, 3} and set(sliced_sizes) == {1}   # batches of 4 then 2, draws of 3: one crop a pass
    assert len(sliced_sizes) == sum(whole_sizes)
    assert whole.steps == sliced.steps == 8 and len(whole.metrics) == len(sliced.metrics)
    for a, b in zip(same(whole.metrics), same(sliced.metrics)):
        assert a.keys() == b.keys()
        for k, v in a.items():
            assert b[k] == (pytest.approx(v, rel=1e-3, abs=1e-6) if isinstance(v, float) else v), k


def test_progress_output_of_a_real_run(tmp_path):
    "The progress bar of a real two-stage run: a line at the start and at the end, then the status line"
    out = io.StringIO()
    res = train('samples', out_dir=tmp_path/'run', overrides=TWO_STAGES, progress=False,
                callbacks=[ProgressBar(file=out)])
    lines = out.getvalue().splitlines()
    assert lines[0].startswith('stage 1/2 0/4   0%|') and ' 0/8 ' in lines[0], lines
    assert any(l.startswith('2/2 stages done 100%|') and ' 8/8 ' in l for l in lines), lines
    assert any(' valid ' in l and ' ema ' in l and ' lr ' in l for l in lines[1:]), lines
    assert lines[-1] == f'max_iterations: {res.message}'


class Poison:
    "Make every weight NaN after step `n` (the next training loss is not finite)"
    order = 50
    def __init__(self, n): self.n = n
    def after_step(self, t):
        if t.step == self.n:
            with torch.no_grad():
                for p in t.model.parameters(): p.fill_(float('nan'))


@pytest.fixture(scope='module')
def poisoned(tmp_path_factory):
    "A run whose weights turn NaN after step 3, validated every 2 steps"
    d = tmp_path_factory.mktemp('poisoned')
    res = train('samples', out_dir=d/'run', progress=False, callbacks=[Poison(3)],
                overrides=TINY + ['num_resolutions=1', 'train.max_iterations=6', 'train.min_iterations=6',
                                  'train.validation_interval=2'])
    return res, torch.load(d/'run'/'last.pt', weights_only=True)


def test_diverged_run_keeps_the_last_finite_state(poisoned):
    "A NaN loss ends the run (diverged, at step 4's loss); last.pt holds the finite weights of step 2's validation"
    res, last = poisoned
    assert (res.status, res.steps) == ('diverged', 3)
    assert 'train.learning_rate' in res.message
    assert last['step'] == 2 and all(torch.isfinite(w).all() for w in last['weights'].values())


def test_diverged_last_pt_says_diverged(poisoned):
    _, last = poisoned
    assert last['extra']['status'] == 'diverged'


def hand_flops(h, w, cin=3, c=2, cout=1, k=3, layers=1):
    "FLOPs of a plain FilterNet by hand: 2 per multiply-add of each conv, 5 per GroupNorm element, 1 per GELU element,"
    # and 3 per element of a block's residual mix (alfa * y, beta * x, their sum)
    n = h * w
    prep = 2 * (n * c) * cin
    block = 5 * (n * c) + 2 * (n * c) * c * k * k + (n * c) + 3 * (n * c)
    post = 2 * (n * cout) * c
    return prep + layers * block + post


def test_count_flops_against_a_hand_count():
    "count_flops of a 1-block, 2-channel FilterNet on 8x12 and 224x224 pictures equals the hand count"
    cfg = ModelConfig(capacity=2, num_layers=1)
    # per pixel: prep 2*2*3, norm 5*2, conv 2*2*2*9, GELU 2, mix 3*2, post 2*1*2
    assert hand_flops(8, 12) == 8 * 12 * (12 + 10 + 72 + 2 + 6 + 4) == 10176
    assert count_flops(cfg, 8, 12) == hand_flops(8, 12)
    assert count_flops(build_model(ModelConfig(capacity=8, num_layers=4)), 224, 224) == \
        hand_flops(224, 224, c=8, layers=4)


def test_count_flops_without_the_residual_mix():
    cfg = ModelConfig(capacity=2, num_layers=1, rezero=False, reskip=False)
    assert count_flops(cfg, 8, 12) == hand_flops(8, 12) - 3 * 8 * 12 * 2
