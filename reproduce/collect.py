"""Collect hebbnb run folders into one results CSV (one row per run).

Usage: python reproduce/collect.py RUNS_DIR OUT.csv
       python reproduce/collect.py --markdown OUT.csv            # the README's results table, from the CSV
       python reproduce/collect.py --plot OUT.csv FIGURE.png     # top-1 against exact FLOPs reduction, from the CSV
       python reproduce/collect.py --paper OUT.csv               # the README's table of the CSV beside the paper's rows
       python reproduce/collect.py --estimates ARCH              # before-training estimates of the paper's r values
Reads RUNS_DIR/*/metrics.json, and RUNS_DIR/estimate_forward|estimate_dense/estimate.json for the before-training
estimates. Runs made before hebbnb reported `dynamic_filters` take it from RUNS_DIR/*/eval.json, written by
`hebbnb-eval --ckpt RUN/last.pt > RUN/eval.json`. Reductions and top-1 are in %; macs are mean exact MACs per image.
"""

import csv, json, sys
from pathlib import Path
from hebbnb.results import (
    ESTIMATE_COLUMNS,
    paper_estimates,
    PAPER_COLUMNS,
    beside_paper,
    markdown_table,
    plot_accuracy_vs_flops,
    read_rows,
    run_label,
)

COLUMNS = [
    'dataset',
    'arch',
    'method',
    'mode',
    'r',
    'keep',
    'epochs',
    'top1',
    'macs',
    'flops_reduction',
    'flops_reduction_paper',
    'estimated_reduction',
    'estimated_reduction_dense',
    'keep_ratio',
    'mask_accuracy',
    'dynamic_filters',
    'softmax',
    'seconds',
    'command',
]


def estimates(runs: Path, how: str) -> dict:
    f = runs / f'estimate_{how}' / 'estimate.json'
    return {round(e['r'], 4): e['reduction'] for e in json.loads(f.read_text())['estimates']} if f.exists() else {}


def dynamic_filters(m: dict, run: Path):
    if m.get('dynamic_filters') is not None:
        return round(m['dynamic_filters'], 2)
    f = run / 'eval.json'
    return round(json.loads(f.read_text())['dynamic_filters'], 2) if f.exists() and m['method'] != 'baseline' else None


def row(m: dict, est: dict, est_dense: dict, run: Path) -> dict:
    method = 'baseline' if m['method'] == 'baseline' else 'uniform' if m.get('labels') == 'uniform' else 'ftwt'
    r = m.get('r') if method == 'ftwt' else None
    key = round(r, 4) if r is not None else None
    return dict(
        dataset=m['dataset'],
        arch=m['arch'],
        method=method,
        mode=m.get('mode') if method != 'baseline' else None,
        r=r,
        keep=m.get('keep'),
        epochs=m['epochs'],
        top1=round(m['top1'], 2),
        macs=round(m['macs']),
        flops_reduction=round(m['flops_reduction'], 2),
        flops_reduction_paper=round(m['flops_reduction_paper'], 2),
        estimated_reduction=None if key is None else round(est.get(key), 2) if key in est else None,
        estimated_reduction_dense=None if key is None else round(est_dense.get(key), 2) if key in est_dense else None,
        keep_ratio=None if m.get('keep_ratio') is None else round(m['keep_ratio'], 4),
        mask_accuracy=None if m.get('mask_accuracy') is None else round(m['mask_accuracy'], 2),
        dynamic_filters=dynamic_filters(m, run),
        softmax=m['config'].get('softmax', True) if method != 'baseline' else None,
        seconds=round(m['seconds']),
        command=m.get('command', ''),
    )


def collect(runs: Path, out: Path) -> list[dict]:
    est, est_dense = estimates(runs, 'forward'), estimates(runs, 'dense')
    rows = [row(json.loads(f.read_text()), est, est_dense, f.parent) for f in sorted(runs.glob('*/metrics.json'))]
    order = {'baseline': 0, 'ftwt': 1, 'uniform': 2}
    rows.sort(
        key=lambda row: (
            order[row['method']],
            row['mode'] or '',
            not row['softmax'],
            row['r'] or 0,
            row['keep'] or 0,
            row['epochs'],
        )
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, 'w', newline='') as f:
        w = csv.DictWriter(f, COLUMNS)
        w.writeheader()
        w.writerows(rows)
    return rows


README_COLUMNS = [
    ('run', run_label, ''),
    ('epochs', 'epochs', ''),
    ('top-1 (%)', 'top1', '.2f'),
    ('exact FLOPs reduction (%)', 'flops_reduction', '.1f'),
    ('paper convention (%)', 'flops_reduction_paper', '.1f'),
    ('estimated, dense (%)', 'estimated_reduction_dense', '.1f'),
    ('input-dependent filters (%)', 'dynamic_filters', '.1f'),
]


def markdown(path: Path) -> str:
    "The results table of the README, from a CSV written by `collect`."
    return markdown_table(read_rows(path), README_COLUMNS)


def paper_markdown(path: Path) -> str:
    "The README's table of a CSV's FTWT runs beside the paper's rows of the same architecture."
    rows = read_rows(path)
    return markdown_table(beside_paper(rows, archs={row['arch'] for row in rows}), PAPER_COLUMNS)


def estimate_markdown(arch: str, results: Path = Path('results')) -> str:
    "The README's table of the before-training estimates (both estimators) of the paper's rows of `arch`."
    return markdown_table(paper_estimates(arch, results), ESTIMATE_COLUMNS)


def plot(path: Path, png: Path):
    "results/cifar10_resnet20_accuracy_vs_flops.png (README, notebook 90), from a CSV written by `collect`."
    plot_accuracy_vs_flops(read_rows(path), 'ResNet-20, CIFAR-10 (CPU-scale schedules)').savefig(png, dpi=120)


if __name__ == '__main__':
    if len(sys.argv) == 3 and sys.argv[1] == '--markdown':
        print(markdown(Path(sys.argv[2])))
    elif len(sys.argv) == 3 and sys.argv[1] == '--estimates':
        print(estimate_markdown(sys.argv[2]))
    elif len(sys.argv) == 3 and sys.argv[1] == '--paper':
        print(paper_markdown(Path(sys.argv[2])))
    elif len(sys.argv) == 4 and sys.argv[1] == '--plot':
        plot(Path(sys.argv[2]), Path(sys.argv[3]))
    elif len(sys.argv) == 3:
        for row in collect(Path(sys.argv[1]), Path(sys.argv[2])):
            print(row)
    else:
        sys.exit(__doc__)
