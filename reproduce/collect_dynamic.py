"""Collect the 'is FTWT dynamic' runs (issue 11) of hebbnb and of the reference code into the committed CSVs.

Usage: python reproduce/collect_dynamic.py --hebbnb RUN_DIR ... --reference RUN_DIR ... [--out results]
       python reproduce/collect_dynamic.py --markdown results/dynamic_summary.csv    # the README's table
Writes OUT/dynamic_epochs.csv (one row per run and epoch: how well and how dynamically the heads predict, on the test
images each run evaluates every epoch; its balanced accuracy is as the run logged it, pooled over all decisions for
the runs made before hebbnb computed it per filter, which includes every run committed so far) and
OUT/dynamic_summary.csv (one row per run: its last epoch, plus the split of the saved MACs into the static part, which
a statically pruned network also saves, and the input-dependent part).
hebbnb runs read RUN/log.csv and RUN/metrics.json (written by hebbnb-train); reference runs read the same files written
by reproduce/reference_ftwt.py (whose FLOPs follow the reference code's formula, gated convs only): its `heads` runs
(train 'heads', no `train` in their config) and its `ftwt` runs (full FTWT, config train='all', evaluated on the full
test set every epoch, so their metrics.json is their summary, as for hebbnb's full runs).
"""

import argparse, csv, json
from pathlib import Path
from hebbnb.results import markdown_table, read_rows

EPOCH_COLUMNS = [
    'code',
    'run',
    'train',
    'softmax',
    'mlr',
    'epoch',
    'top1',
    'mask_accuracy',
    'balanced_accuracy',
    'f1',
    'dynamic_filters',
]
SUMMARY_COLUMNS = EPOCH_COLUMNS[:5] + [
    'epochs_done',
    'epochs',
    'subset',
    'test_images',
    'top1',
    'mask_accuracy',
    'balanced_accuracy',
    'f1',
    'dynamic_filters',
    'flops_reduction',
    'static_saving',
    'dynamic_saving',
    'dynamic_share_of_saving',
    'flops_convention',
    'command',
]


def _num(v, nd=2):
    return None if v in (None, '') else round(float(v), nd)


def run_config(run: Path) -> dict:
    "The run's config: from metrics.json once it finished, else from its resumable checkpoint (our own file)."
    if (run / 'metrics.json').exists():
        return json.loads((run / 'metrics.json').read_text())['config']
    import torch

    return torch.load(run / 'last.pt', map_location='cpu', weights_only=False)['config']


def info_train(cfg: dict, code: str) -> str:
    "What the run trained: 'heads' (frozen backbone) or 'all'; a reference run without `train` is a heads run."
    return cfg.get('train', 'heads' if code == 'reference' else 'all')


def run_info(code: str, run: Path) -> dict:
    "Who made the run and with which heads: code, name, train ('heads' or 'all'), softmax, mlr."
    cfg = run_config(run)
    return dict(code=code, run=run.name, train=info_train(cfg, code), softmax=cfg.get('softmax'), mlr=cfg.get('mlr'))


def epoch_rows(code: str, run: Path) -> list[dict]:
    info = run_info(code, run)
    return [
        dict(info, epoch=int(row['epoch']), **{k: _num(row.get(k)) for k in EPOCH_COLUMNS[6:]})
        for row in csv.DictReader(open(run / 'log.csv'))
    ]


def summary_row(code: str, run: Path) -> dict:
    "The run's measures on the full test set (eval.json or a full run's metrics.json), else its last epoch's; split."
    last = epoch_rows(code, run)[-1]
    cfg = run_config(run)
    ev = json.loads((run / 'eval.json').read_text()) if (run / 'eval.json').exists() else None
    if (
        ev is None and info_train(cfg, code) == 'all' and (run / 'metrics.json').exists()
    ):  # evaluated on the full test set
        ev = json.loads((run / 'metrics.json').read_text())
    src = ev if ev is not None else {}
    suffix = '_ref' if code == 'reference' else ''
    static, dynamic = _num(src.get('static_saving' + suffix)), _num(src.get('dynamic_saving' + suffix))
    share = (
        None
        if static is None or dynamic is None or static + dynamic == 0
        else round(100 * dynamic / (static + dynamic), 2)
    )
    measures = (
        {k: _num(ev.get(k)) for k in EPOCH_COLUMNS[6:]} if ev is not None else {k: last[k] for k in EPOCH_COLUMNS[6:]}
    )
    return dict(
        {k: last[k] for k in EPOCH_COLUMNS[:5]},
        epochs_done=last['epoch'],
        epochs=cfg['epochs'],
        subset=cfg.get('subset'),
        test_images='all 10,000' if ev is not None and not ev.get('test_subset') else cfg.get('test_subset'),
        **measures,
        flops_reduction=_num(src.get('flops_reduction' + suffix)),
        static_saving=static,
        dynamic_saving=dynamic,
        dynamic_share_of_saving=share,
        flops_convention='reference (gated convs)' if code == 'reference' else 'exact (all convs and linear)',
        command=json.loads((run / 'metrics.json').read_text()).get('command', '')
        if (run / 'metrics.json').exists()
        else '',
    )


def write(rows: list[dict], columns: list, path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, 'w', newline='') as f:
        w = csv.DictWriter(f, columns)
        w.writeheader()
        w.writerows(rows)


SUMMARY_TABLE = [
    ('code', 'code', ''),
    ('heads', lambda row: f"{'softmax' if row['softmax'] else 'no softmax'}, mlr {row['mlr']:g}", ''),
    ('trained', lambda row: 'heads only, frozen backbone' if row['train'] == 'heads' else 'backbone and heads', ''),
    ('epochs', lambda row: f"{row['epochs_done']} of {row['epochs']}", ''),
    ('test images', 'test_images', ''),
    (
        'top-1 (%)',
        lambda row: row['top1'] if row['train'] == 'all' else None,
        '.2f',
    ),  # heads only: the frozen backbone's
    ('FLOPs reduction (%)', 'flops_reduction', '.1f'),
    ('balanced accuracy per filter (%)', 'balanced_accuracy', '.1f'),
    ('input-dependent filters (%)', 'dynamic_filters', '.2f'),
    ('input-dependent share of the saving (%)', 'dynamic_share_of_saving', '.1f'),
]
SPLIT_TABLE = [
    ('checkpoint', lambda row: f"`{row['checkpoint']}`", ''),
    ('top-1 (%)', 'top1', '.2f'),
    ('exact FLOPs reduction (%)', 'flops_reduction', '.1f'),
    ('static part (%)', 'static_saving', '.1f'),
    ('input-dependent part (%)', 'dynamic_saving', '.1f'),
    ('input-dependent share of the saving (%)', 'dynamic_share_of_saving', '.1f'),
    ('input-dependent filters (%)', 'dynamic_filters', '.2f'),
]


def markdown(path: Path) -> str:
    "The README's table of the runs, from dynamic_summary.csv."
    return markdown_table(read_rows(path), SUMMARY_TABLE)


def markdown_split(path: Path) -> str:
    "The README's static/dynamic split of committed checkpoints, from results/cifar10_resnet20_saving_split.csv."
    return markdown_table(read_rows(path), SPLIT_TABLE)


def main():
    import sys

    if sys.argv[1:2] == ['--markdown']:
        return print(markdown(Path(sys.argv[2])))
    if sys.argv[1:2] == ['--markdown-split']:
        return print(markdown_split(Path(sys.argv[2])))
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--hebbnb', nargs='*', default=[], help='hebbnb run folders (log.csv, metrics.json)')
    p.add_argument('--reference', nargs='*', default=[], help='reference-code run folders (log.csv, metrics.json)')
    p.add_argument('--out', default='results', help='folder for dynamic_epochs.csv and dynamic_summary.csv')
    a = p.parse_args()
    runs = [('hebbnb', Path(d)) for d in a.hebbnb] + [('reference', Path(d)) for d in a.reference]
    runs = [(c, d) for c, d in runs if (d / 'log.csv').exists()]
    if not runs:
        p.error('no run folder with a log.csv given')
    write([row for c, d in runs for row in epoch_rows(c, d)], EPOCH_COLUMNS, Path(a.out) / 'dynamic_epochs.csv')
    write([summary_row(c, d) for c, d in runs], SUMMARY_COLUMNS, Path(a.out) / 'dynamic_summary.csv')


if __name__ == '__main__':
    main()
