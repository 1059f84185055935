"""How the `samples` preset reached the original stop rule quickly: the seconds and steps to the rule of the earlier
presets, re-measured on today's code (nbs/09_bench.ipynb, "How the samples preset gets there", reads the file).

    python tools/stop_study.py --seeds 0 --out nbs/stop_study.jsonl

Each row is a list of overrides on top of today's `samples` preset that gives back an earlier preset; every run is
`clapp.bench.time_to_stop` for `sobel_3` in a fresh process, counted from that process's start, as `clapp_bench`
times it. The load average at the start of each run is recorded beside it (timings on a busy machine are upper
bounds). Finished runs are appended at once and skipped when the study is run again, so it resumes."""
import argparse, json, os, time
from pathlib import Path

from recipe_study import BETA_20, UNTIL_1205   # earlier presets, as overrides on today's (tools/ is on the path)

# every step of the preset's history, oldest first, as overrides on top of today's samples preset
STEPS = {
    'first preset: 32 from 48, batch 64, lr 0.003, loss `all`, validation every 10 steps on 16 crops':
        [*UNTIL_1205, 'train_data.resize_base=48', 'train_data.crop_size=32', 'train.batch_size=64',
         'train.learning_rate=0.003', 'train.loss_type=all', 'train.validation_interval=10',
         'valid_data.fixed_size=16'],
    '48 from 64, batch 32, lr 0.005, validation every 3 steps':
        [*UNTIL_1205, 'train.batch_size=32', 'train.loss_type=all', 'train.validation_interval=3',
         'valid_data.fixed_size=16'],
    'batch 24, loss `l1`': [*UNTIL_1205, 'train.validation_interval=3', 'valid_data.fixed_size=16'],
    'validation on 8 crops (two of each held-out picture) every 2 steps: the preset until 12-05': UNTIL_1205,
    'that preset with `model.output_norm: max` (the `sobel_3` recipe)': [*UNTIL_1205, 'model.output_norm=max'],
    '`output_norm: auto`, loss `all`, batch 12, validation every 5 steps on 4 crops with EMA 0.88': BETA_20,
    '`model.output_beta: 5` (a softer softplus in the max output): the preset': [],
}

def run(step, seed, max_seconds):
    "Time `sobel_3` on the samples preset with `step`'s overrides and `seed` to the stop rule, in a fresh process"
    from clapp.bench import time_to_stop
    over = [*STEPS[step], f'seed={seed}', 'train.device=cpu']
    load = [round(x, 2) for x in os.getloadavg()]
    r = time_to_stop('samples', over, max_seconds=max_seconds, fresh_process=True)
    return dict(step=step, seed=seed, max_seconds=max_seconds, overrides=over, load_avg=load,
                date=time.strftime('%Y-%m-%d %H:%M'), **{k: r[k] for k in ('reached', 'seconds', 'elapsed_s', 'steps',
                                                                          'before_call_s', 'first_step_s', 'ema')})

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--steps', nargs='+', default=list(STEPS), help='names of STEPS (default: all)')
    ap.add_argument('--seeds', nargs='+', type=int, default=[0])
    ap.add_argument('--max_seconds', type=float, default=90)
    ap.add_argument('--out', default='nbs/stop_study.jsonl')
    a = ap.parse_args()
    out = Path(a.out)
    done = {(r['step'], r['seed']) for r in map(json.loads, out.read_text().splitlines())} if out.exists() else set()
    for st in a.steps:
        for s in a.seeds:
            if (st, s) in done: continue
            rec = run(st, s, a.max_seconds)
            with out.open('a') as fh: fh.write(json.dumps(rec) + '\n')
            print(json.dumps(rec), flush=True)

if __name__ == '__main__': main()
