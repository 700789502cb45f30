"""Benchmark: dense vs FTWT training step and evaluation step of the same model, in one process, interleaved rounds.

    python reproduce/train_step.py --archs resnet20 resnet56 vgg16_bn --threads 2 --out results/train_step.csv
    python reproduce/train_step.py --markdown results/train_step.csv     # the README's table

Each round times `--steps` batches of every variant in turn (after a warm-up), so that machine drift hits all variants
alike; the table reports the median over rounds and each FTWT variant's time as a ratio to the dense one of its round.
The steps are hebbnb's own `run_epoch` and `evaluate` (which counts exact MACs per input) on random CIFAR-size batches.
With `--reference DIR` (a checkout of github selkerdawy/FTWT, outside this repository) the reference code's dense and
FTWT training steps (`reproduce/reference_ftwt.py`: their loop's forward, losses, backward and both optimiser steps,
same batch, channels-last) join every round as variants 'reference dense' and 'reference ftwt', and a column
`ratio_to_reference_dense` gives each training step's time over the reference dense step of its round.
"""

import argparse, copy, csv, os, platform, statistics, sys, time
from pathlib import Path
import torch
from hebbnb.models import create, input_size
from hebbnb.gating import gate
from hebbnb.flops import static_macs
from hebbnb.train import Runtime, run_epoch, evaluate, make_optimizers, tiny_config


def cpu_name() -> str:
    "The CPU model from /proc/cpuinfo (the platform's processor string elsewhere)."
    try:
        return next(l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name'))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def variants(arch: str, r: float, batch: int, rt: Runtime, reference: str | None = None) -> dict:
    "'variant step' -> callable running one batch: dense/FTWT train and eval steps of `arch` (and the reference's)."
    dense = create(arch, 10).to(rt.device, memory_format=torch.channels_last)
    ftwt = gate(copy.deepcopy(dense), r=r).to(rt.device, memory_format=torch.channels_last)
    x = torch.randn(batch, *input_size(arch), device=rt.device)
    y = torch.randint(0, 10, (batch,), device=rt.device)
    static = static_macs(dense, input_size(arch))

    def train(model, method):
        cfg = tiny_config(arch=arch, method=method)
        opts = make_optimizers(model, cfg)
        return lambda: run_epoch(model, [(x, y)], rt, opts, 1.0, 0)

    fns = {
        'dense train': train(dense, 'baseline'),
        'ftwt train': train(ftwt, 'ftwt'),
        'dense eval': lambda: evaluate(dense, [(x, y)], rt, static),
        'ftwt eval': lambda: evaluate(ftwt, [(x, y)], rt, static),
    }
    if reference:
        from reference_ftwt import reference_steps

        fns |= reference_steps(reference, arch, batch, r, x=x, y=y, device=rt.device)
    return fns


def bench(
    arch: str, r: float, batch: int, rounds: int, steps: int, rt: Runtime, reference: str | None = None
) -> list[dict]:
    "Median seconds per batch of each variant over interleaved rounds, with the ratio to the dense step of each round."
    fns = variants(arch, r, batch, rt, reference)
    for f in fns.values():
        f()  # warm-up
    times = {k: [] for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            t0 = time.perf_counter()
            for _ in range(steps):
                f()
            times[k].append((time.perf_counter() - t0) / steps)
    ratio = lambda ts, ds: round(
        statistics.median(t / d for t, d in zip(ts, ds)), 3
    )  # median over rounds of t / t_dense
    rows = []
    for k, ts in times.items():
        variant, step = k.rsplit(' ', 1)
        row = dict(
            arch=arch,
            step=step,
            variant=variant,
            batch=batch,
            r=r if 'ftwt' in k else '',
            seconds=round(statistics.median(ts), 4),
            images_per_s=round(batch / statistics.median(ts), 1),
            ratio_to_dense=ratio(ts, times[f'dense {step}']),
        )
        if reference:
            row['ratio_to_reference_dense'] = ratio(ts, times['reference dense train']) if step == 'train' else ''
        rows.append(row)
    return rows


def markdown(path: str | Path) -> str:
    "The README's training-speed table, from a CSV written by this script: images/s and FTWT/dense step-time ratios."
    rows = list(csv.DictReader(open(path)))
    get = lambda arch, step, variant, col: next(
        (row[col] for row in rows if (row['arch'], row['step'], row['variant']) == (arch, step, variant)), ''
    )
    lines = [
        '| model | step | dense (img/s) | FTWT (img/s) | FTWT / dense time | reference dense (img/s) '
        '| reference FTWT (img/s) | reference FTWT / dense time | FTWT throughput / reference FTWT |',
        '|---|---|---|---|---|---|---|---|---|',
    ]
    for arch in dict.fromkeys(row['arch'] for row in rows):
        for step in ('train', 'eval'):
            ref_ftwt = get(arch, step, 'reference ftwt', 'images_per_s')
            ours = get(arch, step, 'ftwt', 'images_per_s')
            vs_ref = f'{float(ours) / float(ref_ftwt):.2f}' if ref_ftwt else ''
            ref_ratio = (
                f"{float(get(arch, step, 'reference ftwt', 'ratio_to_reference_dense')):.2f}" if ref_ftwt else ''
            )
            ratio = float(get(arch, step, 'ftwt', 'ratio_to_dense'))
            lines.append(
                f"| {arch} | {step} | {get(arch, step, 'dense', 'images_per_s')} | {ours} | {ratio:.2f} | "
                f"{get(arch, step, 'reference dense', 'images_per_s')} | {ref_ftwt} | {ref_ratio} | {vs_ref} |"
            )
    return '\n'.join(lines)


def main():
    if sys.argv[1:2] == ['--markdown']:
        return print(markdown(sys.argv[2]))
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--archs', nargs='+', default=['resnet20', 'resnet56', 'vgg16_bn'], help='models to benchmark')
    p.add_argument('--r', type=float, default=0.9, help='heatmap-mass threshold of the FTWT labels')
    p.add_argument('--batch', type=int, default=128, help='images per step')
    p.add_argument('--rounds', type=int, default=5, help='interleaved rounds (the median is reported)')
    p.add_argument('--steps', type=int, default=3, help='batches per variant per round')
    p.add_argument('--threads', type=int, default=2, help='CPU threads')
    p.add_argument('--out', default='results/train_step.csv', help='CSV to write')
    p.add_argument(
        '--reference', default=None, help='checkout of github selkerdawy/FTWT: add its dense and FTWT training steps'
    )
    a = p.parse_args()
    if a.reference:
        sys.path.insert(0, str(Path(__file__).parent))
        from reference_ftwt import import_reference

        try:
            ref = import_reference(a.reference)
        except (FileNotFoundError, ValueError) as e:
            print(f"train_step.py: error: {e}", file=sys.stderr)
            sys.exit(2)
    torch.set_num_threads(a.threads)
    rt = Runtime(torch.device('cpu'))
    meta = dict(
        machine=cpu_name(),
        threads=a.threads,
        torch=torch.__version__,
        omp_wait_policy=os.environ.get('OMP_WAIT_POLICY', ''),
    )
    if a.reference:
        meta['reference_commit'] = ref.commit
    rows = []
    for arch in a.archs:
        for row in bench(arch, a.r, a.batch, a.rounds, a.steps, rt, a.reference):
            rows.append({**row, **meta})
            print(rows[-1], flush=True)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    with open(a.out, 'w', newline='') as f:
        w = csv.DictWriter(f, list(rows[0]))
        w.writeheader()
        w.writerows(rows)


if __name__ == '__main__':
    main()
