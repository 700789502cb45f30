"The committed results agree with each other and with the committed checkpoints they came from."

import csv, json, os
from pathlib import Path
import pytest, torch
from hebbnb.cli import evaluate_checkpoint
from hebbnb.train import model_from_checkpoint

ROOT = Path(__file__).resolve().parent.parent
DATA = os.environ.get('HEBBNB_DATA')
needs_data = pytest.mark.skipif(not DATA, reason='set HEBBNB_DATA to the folder holding cifar10-jpeg.tar.gz')


def reproduce_module(name: str):
    "A script of reproduce/ (e.g. 'collect'), imported as a module."
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / 'reproduce' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rows(name='cifar10_resnet20.csv') -> list[dict]:
    return list(csv.DictReader(open(ROOT / 'results' / name)))


def test_results_csv_has_the_issue_columns_and_one_baseline():
    rs = rows()
    need = [
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
        'seconds',
        'command',
    ]
    assert set(need) <= set(rs[0])
    assert [r['method'] for r in rs].count('baseline') == 1
    for r in rs:
        assert r['command'].startswith('hebbnb-baseline' if r['method'] == 'baseline' else 'hebbnb-train'), r['command']
        assert 0 <= float(r['flops_reduction']) < float(r['flops_reduction_paper']) or r['method'] == 'baseline'


def test_estimates_in_the_csv_are_those_of_the_estimate_files():
    for how, col in (('forward', 'estimated_reduction'), ('dense', 'estimated_reduction_dense')):
        est = {
            round(e['r'], 4): e['reduction']
            for e in json.load(open(ROOT / f'results/cifar10_resnet20_estimate_{how}.json'))['estimates']
        }
        for r in rows():
            if r['method'] == 'ftwt':
                assert float(r[col]) == pytest.approx(est[round(float(r['r']), 4)], abs=0.006)


@pytest.mark.parametrize(
    'name, gated',
    [
        ('cifar10_resnet20_baseline', False),
        ('cifar10_resnet20_ftwt_r0.8_e3', True),
        ('cifar10_resnet20_ftwt_r0.8_e3_nosoftmax', True),
    ],
)
def test_committed_checkpoints_load(name, gated):
    model, ck = model_from_checkpoint(ROOT / 'checkpoints' / f'{name}.pt')
    assert ck['gated'] == gated and ck['arch'] == 'resnet20'
    metrics = json.load(open(ROOT / 'checkpoints' / f'{name}.metrics.json'))
    assert metrics['top1'] == pytest.approx(ck['best_top1'])


@needs_data
@pytest.mark.parametrize(
    'name', ['cifar10_resnet20_baseline', 'cifar10_resnet20_ftwt_r0.8_e3', 'cifar10_resnet20_ftwt_r0.8_e3_nosoftmax']
)
def test_committed_checkpoints_reproduce_their_metrics(name):
    "hebbnb-eval on the full test set gives the top-1 and FLOPs reduction recorded when the run finished."
    torch.set_num_threads(2)
    res = evaluate_checkpoint(ROOT / 'checkpoints' / f'{name}.pt', DATA, download=False, device='cpu')
    metrics = json.load(open(ROOT / 'checkpoints' / f'{name}.metrics.json'))
    assert res['top1'] == pytest.approx(metrics['top1'], abs=0.02)
    assert res['flops_reduction'] == pytest.approx(metrics['flops_reduction'], abs=0.05)
    if 'dynamic_filters' in metrics:
        assert res['dynamic_filters'] == pytest.approx(metrics['dynamic_filters'], abs=0.2)


def test_readme_results_table_is_the_csv():
    "The README's results table is rendered from results/cifar10_resnet20.csv, so the two cannot drift apart."
    collect = reproduce_module('collect')
    assert collect.markdown(ROOT / 'results' / 'cifar10_resnet20.csv') in (ROOT / 'README.md').read_text()


def test_speedup_csv_rows_are_complete():
    "results/speedup.csv is the one speed table: its columns, variants, settings, and R as defined."
    from hebbnb.export import SPEED_COLUMNS, VARIANTS

    rows = read_rows(ROOT / 'results' / 'speedup.csv')
    assert rows and all(list(r) == SPEED_COLUMNS for r in rows)
    for r in rows:
        assert r['variant'] in VARIANTS and r['threads'] in (1, 2) and r['batch'] in (1, 128) and r['macs_ratio'] >= 1
        assert r['R'] == pytest.approx(r['speedup'] / r['macs_ratio'], rel=1e-6)


def speed_facts(rows):
    "The figures the README's speed section states, from results/speedup.csv rows."
    g = lambda a, v, B, t: next(d for d in rows if (d['arch'], d['variant'], d['batch'], d['threads']) == (a, v, B, t))
    models = sorted({d['arch'] for d in rows})
    ex = {a: g(a, 'executor', 1, 1) for a in models}
    pk = {a: g(a, 'dense_packed', 1, 1)['speedup'] for a in models}
    xp = {a: g(a, 'export', 128, 1)['R'] for a in models}
    x1 = {a: g(a, 'export', 1, 1)['speedup'] for a in models}
    over = {a: ex[a]['speedup'] / pk[a] for a in models}
    return [
        f"the executor ran faster than dense on {sum(ex[a]['speedup'] > 1 for a in models)} "
        f"of the {len(models)} models",
        f"R = {ex['resnet18:random']['R']:.2f} on ResNet-18 and {ex['vgg16_bn:random']['R']:.2f} on VGG16-BN",
        f"ran {min(pk.values()):.2f}-{max(pk.values()):.2f}x faster than dense at batch 1",
        f"from {min(over.values()):.2f} to {max(over.values()):.2f} times the speed of dense_packed",
        f"the export's R at batch 128 (1 thread) is {min(xp.values()):.2f}-{max(xp.values()):.2f}",
        f"faster than dense at batch 1 on {sum(v > 1 for v in x1.values())} of the {len(models)} models",
    ]


def test_readme_speed_section_is_the_csv():
    "The README's speed table is rendered from results/speedup.csv (`speed_markdown`) and its prose states its figures."
    from hebbnb.export import speed_markdown

    rows = read_rows(ROOT / 'results' / 'speedup.csv')
    readme = (ROOT / 'README.md').read_text()
    assert speed_markdown(rows) in readme
    missing = [f for f in speed_facts(rows) if f not in flat(readme)]
    assert not missing, f'README no longer says (from results/speedup.csv): {missing}'


def test_readme_training_speed_table_is_the_csv():
    "The README's training-speed table is rendered from results/train_step.csv (reproduce/train_step.py --markdown)."
    bench = reproduce_module('train_step')
    rs = rows('train_step.csv')
    assert {(r['arch'], r['step'], r['variant']) for r in rs} >= {
        (a, s, v) for a in ('resnet20', 'resnet56', 'vgg16_bn') for s in ('train', 'eval') for v in ('dense', 'ftwt')
    }
    assert all(r['threads'] and r['torch'] and r['machine'] for r in rs)
    assert bench.markdown(ROOT / 'results' / 'train_step.csv') in (ROOT / 'README.md').read_text()


def test_readme_dynamic_tables_are_the_csvs():
    "The README's is-FTWT-dynamic tables are rendered from results/dynamic_summary.csv and the saving-split CSV."
    cd = reproduce_module('collect_dynamic')
    readme = (ROOT / 'README.md').read_text()
    assert cd.markdown(ROOT / 'results' / 'dynamic_summary.csv') in readme
    assert cd.markdown_split(ROOT / 'results' / 'cifar10_resnet20_saving_split.csv') in readme
    for r in rows('cifar10_resnet20_saving_split.csv'):  # the split adds up to the exact reduction
        assert float(r['static_saving']) + float(r['dynamic_saving']) == pytest.approx(
            float(r['flops_reduction']), abs=0.02
        )


# ---- prose numbers: every figure the README and notebook 90 state about the runs, recomputed from the CSV
from hebbnb.results import estimate_gap, read_rows, realised_note


def flat(text: str) -> str:
    "Text with its line breaks and runs of spaces collapsed, so that a sentence wrapped anywhere still matches."
    return ' '.join(text.split())


def markdown_of(nb: str) -> str:
    return flat(
        '\n'.join(
            ''.join(c['source']) for c in json.load(open(ROOT / 'nbs' / nb))['cells'] if c['cell_type'] == 'markdown'
        )
    )


def within(x: float) -> str:
    "A bound 'within X points', rounded up to one decimal so that it holds."
    import math

    return f'{math.ceil(round(10 * x, 6)) / 10:.1f}'


def prose_facts() -> dict:
    "Sentences of the README and of notebook 90, each rebuilt from results/cifar10_resnet20.csv."
    rs = read_rows(ROOT / 'results' / 'cifar10_resnet20.csv')
    base = next(r for r in rs if r['method'] == 'baseline')
    ftwt = [r for r in rs if r['method'] == 'ftwt']
    run = lambda **kw: next(r for r in ftwt if all(r[k] == v for k, v in kw.items()))
    drop = lambda r: base['top1'] - r['top1']
    e3, e10 = (
        run(mode='decoupled', r=0.8, epochs=3, softmax=True),
        run(mode='decoupled', r=0.8, epochs=10, softmax=True),
    )
    n3, n10 = (
        run(mode='decoupled', r=0.85, epochs=3, softmax=False),
        run(mode='decoupled', r=0.85, epochs=10, softmax=False),
    )
    s3 = run(mode='decoupled', r=0.85, epochs=3, softmax=True)
    uni = next(r for r in rs if r['method'] == 'uniform')
    soft = [r for r in ftwt if r['mode'] == 'decoupled' and r['softmax']]
    raw = [r for r in ftwt if not r['softmax']]
    gaps = [estimate_gap(r) for r in soft]
    short = [r for r in ftwt if r['epochs'] == 3]
    softmax_runs = [r for r in ftwt if r['softmax']]
    joint = [(r, run(mode='decoupled', r=r['r'], epochs=3, softmax=True)) for r in ftwt if r['mode'] == 'joint']
    ratios = [j['seconds'] / d['seconds'] for j, d in joint]
    close = [r for r in soft if abs(estimate_gap(r)) < 5]
    raw_gaps = [f'{abs(estimate_gap(r)):.1f}' for r in raw]
    common = [
        f"{89 - base['top1']:.2f} points under the 89%",
        f"{base['macs'] / 1e6:.2f} MMACs",
        f"{min(gaps):.1f}-{max(gaps):.1f} points less than the dense",
        f"within {within(max(abs(estimate_gap(r)) for r in raw))} points of",
    ]
    readme = common + [
        f"{base['top1']:.2f}% top-1, {base['epochs']} epochs",
        f"{e10['flops_reduction']:.1f}% for {drop(e10):.2f} points ($r = 0.8$)",
        f"{n10['flops_reduction']:.1f}% for {drop(n10):.2f} points ($r = 0.85$)",
        f"({estimate_gap(e10):.1f} after 10 epochs)",
        f"({uni['top1']:.2f}% against {e3['top1']:.2f}%)",
        f"In the paper's convention the first is {e10['flops_reduction_paper']:.1f}%",
        f"{min(r['dynamic_filters'] for r in raw):.0f}-{max(r['dynamic_filters'] for r in raw):.0f}% "
        "of the filters became input-dependent",
    ]
    nb90 = common + [
        f"The baseline reached {base['top1']:.2f}%",
        f"removed {min(r['flops_reduction'] for r in short):.0f}-{max(r['flops_reduction'] for r in short):.0f}% "
        "of the exact FLOPs for "
        f"{min(map(drop, short)):.1f}-{max(map(drop, short)):.1f} points of top-1 after 3 epochs",
        f"and {e10['flops_reduction']:.1f}% for {drop(e10):.1f} points after 10 "
        f"({n10['flops_reduction']:.1f}% for {drop(n10):.1f} points",
        f"they removed {n3['flops_reduction']:.1f}% of the FLOPs at {n3['top1']:.2f}%, where the softmax heads removed "
        f"{s3['flops_reduction']:.1f}% at {s3['top1']:.2f}%",
        f"({e10['flops_reduction']:.1f}% for {drop(e10):.2f} points)",
        f"({n10['flops_reduction']:.1f}% for {drop(n10):.2f} points)",
        f"gained {e10['top1'] - e3['top1']:.1f} points over the 3-epoch one while removing "
        f"{e10['flops_reduction'] - e3['flops_reduction']:.1f} points more",
        f"for {len(close)} of the {len(soft)} softmax decoupled runs "
        f"(the 10-epoch run: {estimate_gap(e10):.1f} points)",
        f"for all three no-softmax runs ({', '.join(raw_gaps[:-1])} and {raw_gaps[-1]} points)",
        f"mask accuracy {min(r['mask_accuracy'] for r in softmax_runs):.0f}-"
        f"{max(r['mask_accuracy'] for r in softmax_runs):.0f}%, "
        f"{min(r['dynamic_filters'] for r in softmax_runs):g}-"
        f"{max(r['dynamic_filters'] for r in softmax_runs):g}% of the filters",
        f"reached {uni['top1']:.2f}% at {uni['flops_reduction']:.1f}%, the same as FTWT at $r = 0.8$ "
        f"({e3['top1']:.2f}% at {e3['flops_reduction']:.1f}%)",
        f"(within {within(max(abs(j['top1'] - d['top1']) for j, d in joint))} points of top-1 and "
        f"{max(abs(j['flops_reduction'] - d['flops_reduction']) for j, d in joint):.1f} of reduction), at about "
        f"{min(ratios):.1f}-{max(ratios):.1f} times the time per epoch",
        f"our 10-epoch ResNet-20 run at $r = 0.8$ removes {e10['flops_reduction_paper']:.1f}% "
        f"for {drop(e10):.2f} points",
    ]
    return {'README.md': readme, '90_reproduction_cifar10.ipynb': nb90}


@pytest.mark.parametrize('where', ['README.md', '90_reproduction_cifar10.ipynb'])
def test_prose_numbers_are_the_csv(where):
    "Every run figure the prose states is what the CSV gives: a rerun that changes a number fails until the prose does."
    text = flat((ROOT / 'README.md').read_text()) if where == 'README.md' else markdown_of(where)
    missing = [f for f in prose_facts()[where] if f not in text]
    assert not missing, f'{where} no longer says (from the CSV): {missing}'


def dynamic_facts() -> list[str]:
    "The README's is-FTWT-dynamic answer, rebuilt from results/dynamic_summary.csv and the baseline row."
    summary = read_rows(ROOT / 'results' / 'dynamic_summary.csv')
    runs = {(r['code'], r['train'], r['softmax']): r for r in summary if r['mlr'] == 0.1}  # the reference code's mlr
    base = next(r for r in read_rows(ROOT / 'results' / 'cifar10_resnet20.csv') if r['method'] == 'baseline')['top1']
    heads, full = runs['hebbnb', 'heads', False], runs['hebbnb', 'all', False]
    soft, ref = runs['hebbnb', 'all', True], runs['reference', 'heads', False]
    fast = {r['softmax']: r for r in summary if r['code'] == 'hebbnb' and r['train'] == 'heads' and r['mlr'] == 1}
    return [
        f"without the softmax {fast[False]['dynamic_filters']:.2f}% of the filters depend on the input after "
        "heads-only "
        f"training, carrying {fast[False]['dynamic_share_of_saving']:.1f}% of the saving; behind the softmax "
        f"{fast[True]['dynamic_filters']:.2f}%",
        f"in the reference code too ({ref['dynamic_filters']:.2f}% of its filters after heads-only training)",
        f"for {heads['dynamic_filters']:.2f}% of the filters after heads-only training and "
        f"{full['dynamic_filters']:.2f}% after full FTWT, which carry {heads['dynamic_share_of_saving']:.1f}% and "
        f"{full['dynamic_share_of_saving']:.1f}% of the saving",
        f"Full FTWT for {soft['epochs_done']} epochs reached {soft['top1']:.2f}% top-1 at a "
        f"{soft['flops_reduction']:.1f}% exact FLOPs reduction with the softmax and {full['top1']:.2f}% at "
        f"{full['flops_reduction']:.1f}% without it, {base - soft['top1']:.2f} and {base - full['top1']:.2f} "
        "points under "
        f"the baseline's {base:.2f}%",
    ]


def test_dynamic_answer_is_the_csv():
    "The README's answer to 'is FTWT dynamic?' states the numbers of the committed CSVs."
    readme = flat((ROOT / 'README.md').read_text())
    missing = [f for f in dynamic_facts() if flat(f) not in readme]
    assert not missing, f'README.md no longer says (from the CSV): {missing}'


def test_realised_note_is_the_csv():
    "The note hebbnb-estimate prints (and writes into the estimate JSONs) is the one computed from the results CSV."
    from hebbnb.cli import estimate_note, MEASURED

    note = realised_note(read_rows(ROOT / 'results' / 'cifar10_resnet20.csv'))
    assert note == estimate_note() and MEASURED.resolve() == (ROOT / 'results' / 'cifar10_resnet20.csv').resolve()
    for how in ('forward', 'dense', 'target50'):
        assert json.load(open(ROOT / f'results/cifar10_resnet20_estimate_{how}.json'))['note'] == note


def test_every_result_file_has_its_producer():
    "Every committed file under results/ is named by a command in reproduce/ that writes it."
    scripts = ''.join(p.read_text() for p in (ROOT / 'reproduce').iterdir() if p.suffix in ('.sh', '.py'))
    scripts += scripts.replace('$est', 'forward') + scripts.replace('$est', 'dense')  # the estimate stages' loops
    scripts = scripts.replace(
        '_saving_split.csv (one row per checkpoint) and ..._layers.csv', '_saving_split_layers.csv'
    )
    missing = [f.name for f in sorted((ROOT / 'results').iterdir()) if f.name not in scripts]
    assert not missing, f'no command in reproduce/ writes {missing}'


def resnet56_facts() -> list[str]:
    "The README's ResNet-56 sentences, rebuilt from results/cifar10_resnet56.csv, its estimates and the paper's rows."
    from hebbnb.results import PAPER_CIFAR10

    base = next(r for r in read_rows(ROOT / 'results' / 'cifar10_resnet56.csv') if r['method'] == 'baseline')
    paper = [p for p in PAPER_CIFAR10 if p['arch'] == 'resnet56']
    dense = {
        round(e['r'], 4): e['reduction_paper']
        for e in json.load(open(ROOT / 'results' / 'cifar10_resnet56_estimate_dense.json'))['estimates']
    }
    gap = max(abs(dense[round(p['r'], 4)] - p['flops_reduction_paper']) for p in paper)
    return [
        f"{base['epochs']} epochs with a cosine learning rate",
        f"reached {base['top1']:.2f}% top-1 on the JPEG copy",
        f"{base['macs'] / 1e6:.2f} MMACs",
        f"{90 - base['top1']:.2f} points under the 90% aimed for and "
        f"{paper[0]['baseline'] - base['top1']:.2f} under the paper's {paper[0]['baseline']:.2f}%",
        f"within {within(gap)} points of both of the paper's realised reductions",
        f"{paper[0]['baseline'] - base['top1']:.2f} points stronger",
    ]


def test_readme_resnet56_section_is_the_csv():
    "The README's ResNet-56 baseline sentence and estimate table are what the committed CSV and estimate files give."
    collect = reproduce_module('collect')
    readme = (ROOT / 'README.md').read_text()
    assert collect.estimate_markdown('resnet56', ROOT / 'results') in readme
    missing = [f for f in resnet56_facts() if f not in flat(readme)]
    assert not missing, f'README.md no longer says (from the CSV): {missing}'
