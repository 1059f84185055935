"""The recipe study behind the `samples` preset (issue 20, item 2): does a run leave the first plateau and reach the
original stop rule (EMA of the validation L2 below `train.stop_l2_loss` in every resolution stage), seed after seed?

    python tools/recipe_study.py --recipes 'the preset (beta 5)' --seeds 0 1 2 3 4 5 6 7 --out nbs/recipe_study.jsonl

Each run trains `sobel_3` from the `samples` preset with the recipe's overrides, one torch thread, at most
`--max_steps` steps per stage (a stage that has not met the rule by then counts as not reached). Every finished run
is appended to the JSONL file at once and runs already in it are skipped, so an interrupted study resumes.
The table is shown in nbs/09_bench.ipynb ("How the samples preset gets there")."""
import argparse, json, tempfile, time
from pathlib import Path

# every recipe is a list of overrides on top of today's samples preset; the preset until 2026-12-05 (the original
# output, loss l1, batch 24, validation every 2 steps on 8 crops with EMA 0.95) is UNTIL_1205 on top of it, and the
# preset of 12-05 until its evening (softplus beta 20 in the max output) is BETA_20
BETA_20 = ['model.output_beta=20']
UNTIL_1205 = ['model.output_norm=none', 'train.loss_type=l1', 'train.batch_size=24', 'train.validation_interval=2',
              'train.stop_loss_ema=0.95', 'valid_data.fixed_size=8', *BETA_20]
RECIPES = {
    'samples until 12-05': UNTIL_1205,
    'until 12-05 + max': [*UNTIL_1205, 'model.output_norm=max'],
    'the preset until 12-05 evening (beta 20)': BETA_20,
    'beta 20, loss l1': [*BETA_20, 'train.loss_type=l1'],
    'beta 20, batch 24': [*BETA_20, 'train.batch_size=24'],
    'beta 20, learning rate 0.01': [*BETA_20, 'train.learning_rate=0.01'],
    'beta 20, lr_cycle 1000': [*BETA_20, 'train.lr_cycle=1000'],
    'beta 10': ['model.output_beta=10'],
    'beta 2': ['model.output_beta=2'],
    'the preset (beta 5)': [],
}

def run(recipe, seed, max_steps):
    "Train sobel_3 on the samples preset with `recipe` and `seed`; whether and when each stage met the stop rule"
    from clapp.callbacks import Callback
    from clapp.config import load_config
    from clapp.train import train
    class Stages(Callback):    # how and at which step each resolution stage ended
        def __init__(self): self.stages = []
        def after_stage(self, t): self.stages.append(dict(status=t.stage_status, step=t.step, ema=t.ema))
    rec = Stages()
    over = [*RECIPES[recipe], f'seed={seed}', 'train.threads=1', f'train.max_iterations={max_steps}',
            'train.output_log_interval=100000']
    cfg = load_config('samples', over)
    with tempfile.TemporaryDirectory() as d:
        t0 = time.time()
        res = train(cfg, out_dir=Path(d)/'run', progress=False, callbacks=[rec])
        seconds = time.time() - t0
    return dict(recipe=recipe, seed=seed, max_steps=max_steps, status=res.status, steps=res.steps,
                seconds=round(seconds, 1), reached=all(s['status'] == 'converged' for s in rec.stages),
                stages=rec.stages, overrides=over)

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--recipes', nargs='+', default=['the preset (beta 5)'], help=f'any of: {", ".join(RECIPES)}')
    ap.add_argument('--seeds', nargs='+', type=int, default=list(range(8)))
    ap.add_argument('--max_steps', type=int, default=1000, help='most steps per stage')
    ap.add_argument('--out', default='nbs/recipe_study.jsonl')
    a = ap.parse_args()
    out = Path(a.out)
    done = {(r['recipe'], r['seed'], r['max_steps']) for r in map(json.loads, out.read_text().splitlines())} \
        if out.exists() else set()
    for r in a.recipes:
        for s in a.seeds:
            if (r, s, a.max_steps) in done: continue
            rec = run(r, s, a.max_steps)
            with out.open('a') as fh: fh.write(json.dumps(rec) + '\n')
            print(json.dumps(rec), flush=True)

if __name__ == '__main__': main()
