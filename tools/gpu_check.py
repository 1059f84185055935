#!/usr/bin/env python
"""Run CLAPP's GPU-only paths and print one PASS/FAIL line for each, then a summary; exit 1 if any failed.

    python tools/gpu_check.py           # on CUDA when this machine has it, else the CPU equivalents
    python tools/gpu_check.py --cpu     # the CPU equivalents, even where CUDA is available
    python tools/gpu_check.py --compile # also compile for real on the CPU (needs a C compiler; slow)

The paths: the CUDA device itself, mixed precision with its GradScaler (`train.amp`), targets computed on the device
by the filter's batched torch version (`train_data.targets_on_device`), and `train.compile` with its fallback. Without
CUDA each gets its CPU equivalent: the same runs on the CPU, bfloat16 autocast with a CPU GradScaler driven through
`MixedPrecision`'s own backward and step, and the compile fallback forced by a `torch.compile` that fails.
Every run is a few training steps on the `samples` preset with tiny buffers: seconds on a laptop CPU.
"""
import argparse, sys, tempfile, time, traceback, warnings
from pathlib import Path

import numpy as np
import torch

from clapp.callbacks import Compile, MixedPrecision
from clapp.filters import get_filter
from clapp.imaging import to_uint8
from clapp.infer import load, predict
from clapp.sources import load_sample_images
from clapp.config import load_config
from clapp.train import TrainError, get_device, train

TINY = ['train.threads=1', 'train.batch_size=4', 'train.valid_batch_size=4', 'train.output_log_interval=100',
        'train_data.min_buffer=8', 'train_data.max_buffer=16', 'valid_data.fixed_size=4', 'valid_data.min_buffer=4',
        'valid_data.max_buffer=16', 'valid_data.resize_base=64', 'valid_data.crop_size=64', 'num_resolutions=1',
        'train.max_iterations=4', 'train.min_iterations=4', 'train.validation_interval=2']


class Probe:
    "Record where each step's tensors live, the forward's dtype, the loss the backward sees, and the first weights"
    order = 85          # after MixedPrecision (80): sees the scaled loss and the optimizer's step
    def __init__(self): self.devices, self.dtypes, self.scaled, self.batches, self.w0 = set(), set(), [], [], None
    def before_fit(self, t):
        self.w0 = {k: v.detach().clone() for k, v in t.model.state_dict().items()}
        self.stored_targets = t.buffer._y is not None      # False when the buffer keeps inputs only
        self.scaler_steps = 0
        mp = next((c for c in t.callbacks if isinstance(c, MixedPrecision) and c.scaler is not None), None)
        if mp is not None:                                  # count the optimizer steps the GradScaler makes
            step = mp.scaler.step
            def counted(*a, **k): self.scaler_steps += 1; return step(*a, **k)
            mp.scaler.step = counted
    def after_forward(self, t):
        if t.model.training: self.dtypes.add(t.pred.dtype)      # the training forwards (not validation's)
    def before_backward(self, t):
        mp = next((c for c in t.callbacks if isinstance(c, MixedPrecision) and c.scaler is not None), None)
        self.scaled.append((float(t.loss_grad.detach()), t.loss, mp.scaler.get_scale() if mp else 1.0))
    def after_step(self, t):
        self.devices |= {str(x.device) for x in (t.xb, t.yb, t.pred)} | {str(next(t.model.parameters()).device)}
        if len(self.batches) < 2: self.batches.append((t.xb.detach().float().cpu(), t.yb.detach().float().cpu()))
    def changed(self, model) -> bool:
        return any(not torch.equal(self.w0[k], v.detach()) for k, v in model.state_dict().items())


def run(device: str, overrides=(), callbacks=(), deterministic=False):
    "A tiny run on `device` in a temporary folder; returns its result and probe"
    probe = Probe()
    with tempfile.TemporaryDirectory() as d:
        res = train('samples', out_dir=Path(d)/'run', overrides=TINY + [f'train.device={device}', *overrides],
                    callbacks=[probe, *callbacks], progress=False, deterministic=deterministic)
        res.weights = {k: v.detach().cpu().clone() for k, v in res.model.state_dict().items()}
        if device != 'cpu':       # inference of the run's checkpoint on the device against the CPU
            res.predicted = [predict(load(Path(d)/'run', device=dev), load_sample_images('validation')['chelsea'])
                             for dev in (device, 'cpu')]
    assert res.status == 'max_iterations' and res.steps == 4, (res.status, res.steps, res.message)
    assert all(np.isfinite(m['valid_l2']) and np.isfinite(m['train_l2'] or 0) for m in res.metrics), res.metrics
    return res, probe


class Keep:
    "Keep the trainer's callbacks (to look at the ones the config added)"
    def before_fit(self, t): self.callbacks = t.callbacks


def check_device(dev: str) -> str:
    res, probe = run(dev)
    assert probe.devices == {str(torch.device(dev if dev != 'cuda' else 'cuda:0'))}, probe.devices
    assert probe.dtypes == {torch.float32}, probe.dtypes
    if dev == 'cpu':
        assert get_device('cpu').type == 'cpu'
        if not torch.cuda.is_available():
            try: get_device('cuda'); raise AssertionError('get_device("cuda") did not refuse a machine without CUDA')
            except TrainError as e: assert 'no usable CUDA GPU' in str(e), e
        return f'4 steps, every tensor on {sorted(probe.devices)}; get_device("cuda") refused without CUDA'
    assert get_device('auto').type == 'cuda'
    gpu, cpu = res.predicted
    err = int(np.abs(gpu.astype(int) - cpu.astype(int)).max())
    assert gpu.shape == cpu.shape and err <= 2, err
    return f'4 steps on {torch.cuda.get_device_name(0)}; predict on cuda vs cpu: max difference {err} grey level(s)'


class CpuMixedPrecision(MixedPrecision):
    "MixedPrecision with CPU bfloat16 autocast and a CPU GradScaler: its own backward, step and CancelStep run"
    def before_fit(self, trainer):
        self.on, self.autocast = True, None
        self.scaler = torch.amp.GradScaler('cpu', init_scale=1024.0)
    def before_forward(self, trainer):
        # training forwards only: on the CPU, validation runs the fused float32 engine (clapp.fused), which autocast
        # does not reach; on CUDA the validation model is the plain one, under autocast like training
        if not trainer.model.training: return
        self.autocast = torch.autocast('cpu', dtype=torch.bfloat16); self.autocast.__enter__()


def check_amp(dev: str) -> str:
    if dev == 'cuda':
        keep = Keep()
        res, probe = run('cuda', ['train.amp=true'], [keep])
        mp = next(c for c in keep.callbacks if isinstance(c, MixedPrecision))
        assert mp.on and mp.scaler is not None and mp.scaler.get_scale() > 0, (mp.on, mp.scaler)
        assert probe.dtypes == {torch.float16}, probe.dtypes
    else:
        # on the CPU, train.amp is a no-op: the same deterministic run with and without it
        keep = Keep()
        a, _ = run('cpu', ['train.amp=true'], [keep], deterministic=True)
        mp = next(c for c in keep.callbacks if isinstance(c, MixedPrecision))
        assert not mp.on and mp.scaler is None
        b, _ = run('cpu', ['train.amp=false'], deterministic=True)
        assert all(torch.equal(a.weights[k], b.weights[k]) for k in a.weights), 'train.amp changed a CPU run'
        # and the callback's own scaled backward and step, under bfloat16 autocast with a CPU GradScaler
        mp = CpuMixedPrecision()
        res, probe = run('cpu', callbacks=[mp])
        assert probe.dtypes == {torch.bfloat16}, probe.dtypes
    assert probe.changed(res.model) and probe.scaler_steps == 4, f'{probe.scaler_steps} steps through the scaler'
    assert len(probe.scaled) == 4 and all(scale > 1 for *_, scale in probe.scaled), probe.scaled
    for grad, loss, scale in probe.scaled: assert abs(grad - loss * scale) <= 1e-2 * abs(loss * scale), (grad, loss)
    scale = probe.scaled[-1][2]
    what = 'float16 autocast' if dev == 'cuda' else 'train.amp a no-op on the CPU (same weights); bfloat16 autocast'
    return f'{what}, loss scaled x{scale:g} by the GradScaler, the optimizer stepped by the scaler'


def check_targets_on_device(dev: str) -> str:
    keep = Keep()
    res, probe = run(dev, ['train_data.targets_on_device=true'], [keep])
    f = get_filter(load_config('samples').train_data.target_filter)
    assert f.has_batched, f
    assert not probe.stored_targets, 'the training buffer still stores cv2 targets'
    assert probe.devices == {str(torch.device(dev if dev != 'cuda' else 'cuda:0'))}, probe.devices
    worst = 0.0
    for x, y in probe.batches:     # the device's targets against the cv2 reference of the same crops
        crops = to_uint8(x.permute(0, 2, 3, 1))
        ref = np.stack([f(c) for c in crops]).astype(np.float64)
        got = to_uint8(y.permute(0, 2, 3, 1)).reshape(ref.shape).astype(np.float64)
        d = np.abs(got - ref)
        assert (d > 1).mean() <= 1e-3, f'{(d > 1).mean():.4%} of target pixels differ by more than 1 grey level'
        worst = max(worst, float(d.max()))
    return f'targets of {f.name} made on {dev} by its batched version; vs cv2: at most {worst:g} grey level(s)'


def check_compile(dev: str) -> str:
    keep = Keep()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        res, probe = run(dev, ['train.compile=true'], [keep])
    assert not [w for w in caught if 'train.compile' in str(w.message)], [str(w.message) for w in caught]
    assert any(isinstance(c, Compile) for c in keep.callbacks)
    return f'4 steps through torch.compile on {dev}'


def check_compile_fallback(dev: str) -> str:
    "torch.compile raising: a warning, and the run trains the plain model"
    def broken(*a, **k): raise RuntimeError('no compiler here (forced by gpu_check)')
    real, torch.compile = torch.compile, broken
    seen = []
    class Model:
        order = 50
        def before_fit(self, t): seen.append(t.fmodel is t.model)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            run(dev, ['train.compile=true'], [Model()])
    finally: torch.compile = real
    msgs = [str(w.message) for w in caught if 'train.compile' in str(w.message)]
    assert len(msgs) == 1 and 'training uncompiled' in msgs[0], msgs
    assert seen == [True], seen
    return 'torch.compile failed (forced): one warning, the plain model trained'


def check_compile_fallback_first_call(dev: str) -> str:
    "A compiler that fails only when the model first runs (as inductor does without a C compiler): the run goes on"
    def failing_backend(gm, example_inputs): raise RuntimeError('backend failed (forced by gpu_check)')
    real = torch.compile
    torch.compile = lambda model, *a, **k: real(model, backend=failing_backend)
    try:
        with warnings.catch_warnings(record=True):
            warnings.simplefilter('always')
            run(dev, ['train.compile=true'])
    finally:
        torch.compile = real
        torch._dynamo.reset()
    return 'a compiler failing at the first forward: the run trained on'


CHECKS = [('device', check_device), ('amp', check_amp), ('targets_on_device', check_targets_on_device),
          ('compile_fallback', check_compile_fallback),
          ('compile_fallback_first_call', check_compile_fallback_first_call)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--cpu', action='store_true', help='run the CPU equivalents even where CUDA is available')
    p.add_argument('--compile', action='store_true', help='also torch.compile for real on the CPU (slow)')
    p.add_argument('--only', nargs='*', default=None, help='names of the checks to run (default: all)')
    args = p.parse_args(argv)
    cuda = torch.cuda.is_available() and not args.cpu
    dev = 'cuda' if cuda else 'cpu'
    if cuda: print(f'CUDA: {torch.cuda.get_device_name(0)}, torch {torch.__version__}', flush=True)
    else: print(f"no CUDA device{' used (--cpu)' if torch.cuda.is_available() else ''}: "
                f'running the CPU equivalents (torch {torch.__version__})', flush=True)
    checks = list(CHECKS)
    if cuda or args.compile: checks.insert(3, ('compile', check_compile))
    if args.only is not None: checks = [c for c in checks if c[0] in args.only]
    failed = []
    for name, fn in checks:
        t = time.perf_counter()
        try: detail, ok = fn(dev), True
        except Exception as e:
            detail, ok = f'{type(e).__name__}: {e}'.splitlines()[0][:300], False
            traceback.print_exc(file=sys.stderr)
        label = f'{name}[{dev}]'
        print(f"{'PASS' if ok else 'FAIL'} {label}: {detail} ({time.perf_counter() - t:.1f} s)", flush=True)
        if not ok: failed.append(label)
    print(f'gpu_check: {len(checks) - len(failed)} passed, {len(failed)} failed on {dev}'
          + (f": {', '.join(failed)}" if failed else ''), flush=True)
    return 1 if failed else 0


if __name__ == '__main__': sys.exit(main())
