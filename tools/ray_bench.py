"""Benchmark of the Ray engine (issue 18, item 6), on this machine.

1. Overhead: the same 4 short runs (same config, same seeds, 2 at a time) as local processes and as Ray tasks on a
   Ray started for them on 127.0.0.1; wall seconds of each engine and the Ray overhead in %.
2. Search: a 12-trial Optuna + ASHA search (`clapp.tune.tune_search`) over the `sobel_3_local` preset with a small
   per-trial step budget, then the preset default and the search's best config each trained once more with that
   budget and the same seed, and scored with `clapp.scores.photo_scores` on the held-out whole photos.

    flock /tmp/clapp.lock nice -n 5 python tools/ray_bench.py --out /tmp/ray_bench.json > /tmp/ray_bench.log 2>&1

Prints both results as markdown tables and writes them, with the settings, to the JSON file given by --out."""
import argparse, json, os, platform, tempfile, time
from pathlib import Path

os.environ.setdefault('RAY_USAGE_STATS_ENABLED', '0')

SPACE = {'train.learning_rate': {'loguniform': [0.001, 0.03]},
         'model.capacity': {'int': [4, 16]},
         'model.num_layers': {'int': [2, 6]},
         'model.activation': {'choice': ['gelu', 'relu', 'swish']},
         'model.output_norm': {'choice': ['none', 'max', 'clamp']}}


def budget(steps: int) -> list:
    "Overrides that train a preset for `steps` steps in its two stages, one cosine cycle, one thread"
    st = steps // 2
    return ['train.threads=1', f'train.max_iterations={st}', f'train.min_iterations={st}', 'train.stop_l2_loss=1e-9',
            f'train.lr_cycle={steps}', 'train.output_log_interval=100000']


def markdown(rows: list) -> str:
    "A list of dicts as a markdown table"
    keys = list(rows[0])
    lines = ['| ' + ' | '.join(keys) + ' |', '|' + '---|' * len(keys)]
    return '\n'.join(lines + ['| ' + ' | '.join(str(r[k]) for k in keys) + ' |' for r in rows])


def overhead(out: Path, steps: int) -> dict:
    "Wall seconds of the same 4 runs, 2 at a time, on each engine"
    from clapp.experiment import run_experiment
    over = ['num_resolutions=1', f'train.max_iterations={steps}', f'train.min_iterations={steps}',
            'train.stop_l2_loss=1e-9', 'train.output_log_interval=100000']
    rows = []
    for engine in ('local', 'ray'):
        t0 = time.perf_counter()
        exp = run_experiment('samples', over + [f'experiment_name=overhead-{engine}'], num_runs=4, parallel=2,
                             out=out, engine=engine)
        wall = time.perf_counter() - t0
        assert [r.status for r in exp.runs] == ['max_iterations'] * 4, [(r.status, r.error) for r in exp.runs]
        rows.append(dict(engine=engine, runs=4, steps_each=steps, seeds=' '.join(str(r.seed) for r in exp.runs),
                         wall_s=round(wall, 1), run_s_sum=round(sum(r.seconds for r in exp.runs), 1)))
    local, ray = rows[0]['wall_s'], rows[1]['wall_s']
    rows[1]['overhead_pct'], rows[0]['overhead_pct'] = round(100 * (ray - local) / local, 1), 0.0
    return dict(rows=rows, overhead_pct=rows[1]['overhead_pct'])


def score(config, overrides: list, out: Path, filt: str) -> dict:
    "Train `config` with `overrides` into `out` and score it against filter `filt` on the held-out photos"
    from clapp.train import train
    try: from clapp.scores import mean_scores, photo_scores  # the scores' own module
    except ImportError: from clapp.zoo import mean_scores, photo_scores  # before clapp.scores existed
    res = train(config, out_dir=out, overrides=overrides, progress=False)
    m = mean_scores(photo_scores(res.model, filt))
    return dict(psnr_db=round(m['psnr'], 2), ssim=round(m['ssim'], 4), final_ema=res.ema, steps=res.steps,
                seconds=round(res.seconds, 1))


def search(out: Path, trials: int, steps: int, preset: str) -> dict:
    "A `trials`-trial search over `preset` at `steps` steps a trial; the default and the best config scored"
    from clapp.config import load_config
    from clapp.tune import tune_search
    t0 = time.perf_counter()
    s = tune_search(SPACE, preset, budget(steps), trials=trials, parallel=2, name=f'{preset}-search', out=out)
    wall = time.perf_counter() - t0
    filt = load_config(preset).train_data.target_filter
    default = score(load_config(preset), budget(steps), out/'default', filt)
    best = score(load_config(s.best_config), budget(steps), out/'best', filt)
    done = [r for r in s.trials if r['state'] == 'COMPLETE']
    rows = [dict(config=f'{preset} preset default', **default),
            dict(config='search best: ' + ' '.join(f"{k.rsplit('.', 1)[-1]}={v:.3g}" if isinstance(v, float) else
                                                   f"{k.rsplit('.', 1)[-1]}={v}" for k, v in s.best.items()),
                 **best)]
    return dict(rows=rows, trials=[dict(r) for r in s.trials], completed=len(done), wall_s=round(wall, 1),
                best_trial_ema=s.best_ema, gain_db=round(best['psnr_db'] - default['psnr_db'], 2))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--out', default='ray_bench.json', help='JSON file that receives the results')
    ap.add_argument('--run_steps', type=int, default=200, help='steps of each of the 4 overhead runs')
    ap.add_argument('--trials', type=int, default=12, help='trials of the search')
    ap.add_argument('--trial_steps', type=int, default=300, help='step budget of each trial (two stages)')
    ap.add_argument('--preset', default='sobel_3_local', help='the preset searched')
    ap.add_argument('--skip', nargs='*', default=[], choices=['overhead', 'search'], help='parts to leave out')
    a = ap.parse_args()
    res = dict(machine=dict(cpus=os.cpu_count(), platform=platform.platform(), load_before=os.getloadavg()),
               settings=vars(a))
    with tempfile.TemporaryDirectory(prefix='ray-bench-') as d:
        if 'overhead' not in a.skip:
            res['overhead'] = overhead(Path(d)/'overhead', a.run_steps)
            print(f"## Ray engine overhead: 4 runs of {a.run_steps} steps, 2 at a time\n")
            print(markdown(res['overhead']['rows']) + '\n', flush=True)
        if 'search' not in a.skip:
            res['search'] = search(Path(d)/'search', a.trials, a.trial_steps, a.preset)
            print(f"## {a.trials}-trial search on {a.preset} ({a.trial_steps} steps a trial, "
                  f"{res['search']['completed']} completed, {res['search']['wall_s']} s), held-out photos\n")
            print(markdown(res['search']['rows']) + '\n', flush=True)
    res['machine']['load_after'] = os.getloadavg()
    Path(a.out).write_text(json.dumps(res, indent=1, default=str))
    print(f'wrote {a.out}')


if __name__ == '__main__':
    main()
