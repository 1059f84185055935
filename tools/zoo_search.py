"""The recorded search behind the per-filter presets: model variants x seeds, each trained for a fixed step budget
from its preset (one torch thread unless --threads) and scored on the held-out whole photos
(`clapp.scores.photo_scores`).

    python tools/zoo_search.py --filters random_41 sobel_3_local --steps 600 --seeds 0 1 --out nbs/zoo_search.jsonl

Each run is one cosine cycle of --steps (the learning rate ends at its floor) unless --no_anneal keeps the preset's
`train.lr_cycle`; the first recorded rows (600 steps) used `--no_anneal` with the presets' 500-step cycle.

Every finished run is appended to the JSONL file at once, and runs already in it are skipped, so an interrupted
search resumes where it stopped. nbs/10_zoo.ipynb shows the recorded table."""
import argparse, json, tempfile, time
from pathlib import Path

# every variant is a list of overrides on top of the filter's preset; 'preset' is the preset itself
VARIANTS = {  # recorded rows name their variant; sobel_canny_5's older rows name the preset they started from
    'original': ['model.norm=group', 'model.linear_path=0', 'model.output_norm=none'],
    'preset': [],
    'linear': ['model.norm=group', 'model.linear_path=5', 'model.output_norm=none'],
    'linear+clamp': ['model.norm=group', 'model.linear_path=5', 'model.output_norm=clamp'],
    'no norm': ['model.norm=none', 'model.linear_path=0', 'model.output_norm=none'],
    'no norm+clamp': ['model.norm=none', 'model.linear_path=0', 'model.output_norm=clamp'],
    'no norm+linear+clamp': ['model.norm=none', 'model.linear_path=5', 'model.output_norm=clamp'],
    'max': ['model.norm=group', 'model.linear_path=0', 'model.output_norm=max'],
    'max+capacity 16': ['model.norm=group', 'model.linear_path=0', 'model.output_norm=max', 'model.capacity=16'],
    'no norm+max': ['model.norm=none', 'model.linear_path=0', 'model.output_norm=max'],
    'clamp': ['model.output_norm=clamp'],
    'capacity 16': ['model.capacity=16'],
    'capacity 16+clamp': ['model.capacity=16', 'model.output_norm=clamp'],
    # edge maps (0/1 targets): a sigmoid output and a loss made for sparse binary maps (clapp.losses)
    'sigmoid': ['model.output_norm=sigmoid'],
    'sigmoid+bce': ['model.output_norm=sigmoid', 'train.loss_type=bce'],
    'sigmoid+dice': ['model.output_norm=sigmoid', 'train.loss_type=dice'],
    'sigmoid+bce+levels 3': ['model.output_norm=sigmoid', 'train.loss_type=bce', 'model.levels=3'],
    'sigmoid+bce+capacity 16': ['model.output_norm=sigmoid', 'train.loss_type=bce', 'model.capacity=16'],
    # sobel_canny_5, on top of the preset before 2026-12-05 (unet 8x4 trained on crops of 48 from pictures resized
    # to 64): crops nearer the held-out photos' own scale, and a plain full-resolution network (the preset since)
    'sigmoid+resize 256': ['model.output_norm=sigmoid', 'train_data.resize_base=256', 'train_data.crop_size=64'],
    'sigmoid+resize 256+plain 16x6': ['model.output_norm=sigmoid', 'train_data.resize_base=256',
                                      'train_data.crop_size=64', 'model.arch=plain', 'model.capacity=16',
                                      'model.num_layers=6'],
    # sobel_canny_5 on top of the plain 16x6 preset (2026-12-06): more reach for hysteresis
    'plain 16x8': ['model.num_layers=8'],
    # sobel_canny_5 (2026-12-06): every block also scales its channels by the picture's channel peaks (the global
    # scale that Canny's thresholds on a max-scaled gradient depend on)
    'peak': ['model.norm=peak'],
    'peak 16x8': ['model.norm=peak', 'model.num_layers=8'],
    'capacity 24': ['model.capacity=24'],  # a wider network: 24 channels in each of the preset's 6 blocks
    'capacity 24x8': ['model.capacity=24', 'model.num_layers=8'],  # wider and deeper, for the zoo's longer budget
    'plain 12x10': ['model.capacity=12', 'model.num_layers=10'],  # narrower, deeper (reach 21) at the preset's cost
    'plain 12x8': ['model.capacity=12', 'model.num_layers=8'],  # reach 17 as 16x8; slower than 16x6 here
}

def run(filt, variant, seed, steps, anneal=True, keep=None, threads=1):
    """Train `filt`'s preset with `variant` for `steps` steps (two stages; one cosine cycle if `anneal`); its record

    With `keep` (a folder) the trained weights are saved there too, named after the run, so the best can join the zoo
    (`clapp.zoo.adopt`)."""
    from clapp.config import load_config
    from clapp.train import train
    from clapp.scores import mean_scores, photo_scores
    from clapp.zoo import ENTRIES
    entry = {e.name: e for e in ENTRIES}[filt]
    st = steps // 2
    over = [*VARIANTS[variant], f'seed={seed}', f'train.threads={threads}', f'train.max_iterations={st}',
            f'train.min_iterations={st}', 'train.stop_l2_loss=1e-9', 'train.output_log_interval=100000',
            *([f'train.lr_cycle={steps}'] if anneal else [])]
    cfg = load_config(entry.preset, over)
    with tempfile.TemporaryDirectory() as d:
        t0 = time.time()
        res = train(cfg, out_dir=Path(d)/'run', progress=False)
        seconds = time.time() - t0
    model = res.model.cpu().eval()
    scores = mean_scores(photo_scores(model, entry.filter, edges=entry.edges))
    rec = dict(filter=filt, variant=variant, seed=seed, steps=res.steps, seconds=round(seconds, 1),
               overrides=over, **{k: round(v, 4) for k, v in scores.items()})
    if keep:
        from clapp.checkpoint import save_checkpoint
        name = f"{filt}-{variant.replace(' ', '_').replace('+', '-')}-s{seed}-{steps}.pt"
        save_checkpoint(Path(keep)/name, model, config=cfg, step=res.steps)
    return rec

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--filters', nargs='+', required=True, help='zoo names')
    ap.add_argument('--variants', nargs='+', default=list(VARIANTS), help=f'any of: {", ".join(VARIANTS)}')
    ap.add_argument('--seeds', nargs='+', type=int, default=[0, 1])
    ap.add_argument('--steps', type=int, default=600)
    ap.add_argument('--out', default='nbs/zoo_search.jsonl')
    ap.add_argument('--keep', help='folder that receives the weights of every run (for the zoo)')
    ap.add_argument('--threads', type=int, default=1, help='torch threads of each run (1: two searches side by side)')
    ap.add_argument('--no_anneal', action='store_true', help="keep the preset's lr_cycle instead of one cycle of --steps")
    a = ap.parse_args()
    out = Path(a.out)
    key = lambda r: (r['filter'], r['variant'], r['seed'], r['steps'],  # annealed runs set train.lr_cycle
                     any(o.startswith('train.lr_cycle=') for o in r['overrides']))
    done = {key(r) for r in map(json.loads, out.read_text().splitlines())} if out.exists() else set()
    for f in a.filters:
        for v in a.variants:
            for s in a.seeds:
                if (f, v, s, a.steps, not a.no_anneal) in done: continue
                rec = run(f, v, s, a.steps, not a.no_anneal, a.keep, a.threads)
                with out.open('a') as fh: fh.write(json.dumps(rec) + '\n')
                print(json.dumps(rec), flush=True)

if __name__ == '__main__': main()
