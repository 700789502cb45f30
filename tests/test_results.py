"The committed results agree with each other and with the committed checkpoints they came from."
import csv, json, os
from pathlib import Path
import pytest, torch
from hebbnb.cli import evaluate_checkpoint
from hebbnb.train import model_from_checkpoint

ROOT = Path(__file__).resolve().parent.parent
DATA = os.environ.get('HEBBNB_DATA')
needs_data = pytest.mark.skipif(not DATA, reason='set HEBBNB_DATA to the folder holding cifar10-jpeg.tar.gz')

def rows(name='cifar10_resnet20.csv') -> list[dict]:
    return list(csv.DictReader(open(ROOT / 'results' / name)))

def test_results_csv_has_the_issue_columns_and_one_baseline():
    rs = rows()
    need = ['dataset', 'arch', 'method', 'mode', 'r', 'keep', 'epochs', 'top1', 'macs', 'flops_reduction',
            'flops_reduction_paper', 'estimated_reduction', 'seconds', 'command']
    assert set(need) <= set(rs[0])
    assert [r['method'] for r in rs].count('baseline') == 1
    for r in rs:
        assert r['command'].startswith('hebbnb-baseline' if r['method'] == 'baseline' else 'hebbnb-train'), r['command']
        assert 0 <= float(r['flops_reduction']) < float(r['flops_reduction_paper']) or r['method'] == 'baseline'

def test_estimates_in_the_csv_are_those_of_the_estimate_files():
    for how, col in (('forward', 'estimated_reduction'), ('dense', 'estimated_reduction_dense')):
        est = {round(e['r'], 4): e['reduction'] for e in json.load(open(ROOT / f'results/cifar10_resnet20_estimate_{how}.json'))['estimates']}
        for r in rows():
            if r['method'] == 'ftwt': assert float(r[col]) == pytest.approx(est[round(float(r['r']), 4)], abs=0.006)

@pytest.mark.parametrize('name, gated', [('cifar10_resnet20_baseline', False), ('cifar10_resnet20_ftwt_r0.8_e3', True),
                                         ('cifar10_resnet20_ftwt_r0.8_e3_nosoftmax', True)])
def test_committed_checkpoints_load(name, gated):
    model, ck = model_from_checkpoint(ROOT / 'checkpoints' / f'{name}.pt')
    assert ck['gated'] == gated and ck['arch'] == 'resnet20'
    metrics = json.load(open(ROOT / 'checkpoints' / f'{name}.metrics.json'))
    assert metrics['top1'] == pytest.approx(ck['best_top1'])

@needs_data
@pytest.mark.parametrize('name', ['cifar10_resnet20_baseline', 'cifar10_resnet20_ftwt_r0.8_e3', 'cifar10_resnet20_ftwt_r0.8_e3_nosoftmax'])
def test_committed_checkpoints_reproduce_their_metrics(name):
    "hebbnb-eval on the full test set gives the top-1 and FLOPs reduction recorded when the run finished."
    torch.set_num_threads(2)
    res = evaluate_checkpoint(ROOT / 'checkpoints' / f'{name}.pt', DATA, download=False, device='cpu')
    metrics = json.load(open(ROOT / 'checkpoints' / f'{name}.metrics.json'))
    assert res['top1'] == pytest.approx(metrics['top1'], abs=0.02)
    assert res['flops_reduction'] == pytest.approx(metrics['flops_reduction'], abs=0.05)
    if 'dynamic_filters' in metrics: assert res['dynamic_filters'] == pytest.approx(metrics['dynamic_filters'], abs=0.2)

def test_readme_results_table_is_the_csv():
    "The README's results table is rendered from results/cifar10_resnet20.csv, so the two cannot drift apart."
    import importlib.util
    spec = importlib.util.spec_from_file_location('collect', ROOT / 'reproduce' / 'collect.py')
    collect = importlib.util.module_from_spec(spec); spec.loader.exec_module(collect)
    assert collect.markdown(ROOT / 'results' / 'cifar10_resnet20.csv') in (ROOT / 'README.md').read_text()

def test_speedup_csv_rows_are_complete():
    from hebbnb.sparse import BENCH_COLUMNS, read_rows
    rows = read_rows(ROOT / 'results' / 'speedup.csv')
    assert rows and all(list(r) == BENCH_COLUMNS for r in rows)
    for r in rows:
        assert r['threads'] in (1, 2) and r['macs_ratio'] > 1 and 0 <= r['slower_share'] <= 1
        assert r['R'] == pytest.approx(r['dense_ms'] / r['sparse_ms'] / r['macs_ratio'], rel=1e-3)

def test_readme_training_speed_table_is_the_csv():
    "The README's training-speed table is rendered from results/train_step.csv (reproduce/train_step.py --markdown)."
    import importlib.util
    spec = importlib.util.spec_from_file_location('train_step', ROOT / 'reproduce' / 'train_step.py')
    bench = importlib.util.module_from_spec(spec); spec.loader.exec_module(bench)
    rs = rows('train_step.csv')
    assert {(r['arch'], r['step'], r['variant']) for r in rs} >= {(a, s, v) for a in ('resnet20', 'resnet56', 'vgg16_bn')
                                                                  for s in ('train', 'eval') for v in ('dense', 'ftwt')}
    assert all(r['threads'] and r['torch'] and r['machine'] for r in rs)
    assert bench.markdown(ROOT / 'results' / 'train_step.csv') in (ROOT / 'README.md').read_text()

def test_readme_dynamic_tables_are_the_csvs():
    "The README's is-FTWT-dynamic tables are rendered from results/dynamic_summary.csv and the saving-split CSV."
    import importlib.util
    spec = importlib.util.spec_from_file_location('collect_dynamic', ROOT / 'reproduce' / 'collect_dynamic.py')
    cd = importlib.util.module_from_spec(spec); spec.loader.exec_module(cd)
    readme = (ROOT / 'README.md').read_text()
    assert cd.markdown(ROOT / 'results' / 'dynamic_summary.csv') in readme
    assert cd.markdown_split(ROOT / 'results' / 'cifar10_resnet20_saving_split.csv') in readme
    for r in rows('cifar10_resnet20_saving_split.csv'):   # the split adds up to the exact reduction
        assert float(r['static_saving']) + float(r['dynamic_saving']) == pytest.approx(float(r['flops_reduction']), abs=0.02)
