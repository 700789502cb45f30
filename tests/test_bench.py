"""hebbnb-bench: the speed table (one format, one merge, one reader, its plot), the executor report, argument checks
before any timing, the random-weight stand-ins, and the static baseline of the executor."""

import csv, json
from pathlib import Path
import pytest, torch
from hebbnb.gating import set_mask_source
from hebbnb.sparse import random_gated, to_sparse
from hebbnb.cli import bench_main
from hebbnb.bench import BENCH_COLUMNS, static_steps, run_static, profile_layers, usage_gated
from hebbnb.export import SPEED_COLUMNS, VARIANTS, filter_usage, merge_speed_rows, plot_speed_table
from hebbnb.results import read_rows

torch.set_num_threads(1)
QUICK = ['--quick', '--images', '2', '--threads', '1', '--batch', '4']


def inputs(n=20, seed=1):
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def run(args, capsys=None):
    "Exit code of `hebbnb-bench args` (and its stderr lines when `capsys` is given)."
    with pytest.raises(SystemExit) as e:
        bench_main(args)
    return e.value.code if capsys is None else (e.value.code, capsys.readouterr().err.strip().splitlines())


def fake_row(arch='m', variant='dense', batch=1, threads=1, ms=2.0, **kw):
    "A speed-table row with made-up numbers (no timing)."
    d = dict.fromkeys(SPEED_COLUMNS)
    d.update(arch=arch, r=0.8, variant=variant, batch=batch, threads=threads, ms=ms, ms_p90=ms, images_per_s=1e3 / ms)
    d.update(macs=100, macs_ratio=1.0, speedup=1.0, R=1.0, images=2, torch='t', cpu='c', **kw)
    return d


def test_bench_writes_the_speed_table(tmp_path):
    "Default mode: one row per variant and batch, SPEED_COLUMNS, R = speed-up / MACs ratio, the table and its plot."
    table = tmp_path / 'results' / 'speedup.csv'
    args = ['--arch', 'resnet20', '--never', '0.3', '--always', '0.5', *QUICK, '--out', str(tmp_path / 'a')]
    assert run(args + ['--table', str(table)]) == 0
    rows = read_rows(table)
    assert [list(r) for r in rows[:1]] == [SPEED_COLUMNS] and len(rows) == 2 * len(VARIANTS)
    assert {(r['variant'], r['batch']) for r in rows} == {(v, b) for v in VARIANTS for b in (1, 4)}
    assert (tmp_path / 'a' / 'speedup.csv').read_text() == table.read_text()  # this run alone: the same rows
    for r in rows:
        assert (
            r['arch'] == 'resnet20:random'
            and r['threads'] == 1
            and r['images'] == 2
            and r['torch'] == torch.__version__
        )
        assert r['ms'] > 0 and r['R'] == pytest.approx(r['speedup'] / r['macs_ratio'], rel=1e-9)
        assert 20 < r['removed_filters'] < 40 and r['dynamic_filters'] < 30  # --never 0.3, --always 0.5
    dense = [r for r in rows if r['variant'] == 'dense']
    assert all(r['macs_ratio'] == 1 and r['R'] == 1 for r in dense)
    packed = [r for r in rows if r['variant'] == 'dense_packed']  # same MACs as dense: R is its measured speed-up
    assert packed and all(r['macs_ratio'] == 1 and r['R'] == pytest.approx(r['speedup']) for r in packed)
    assert all(r['macs_ratio'] > 1.5 for r in rows if r['variant'] not in ('dense', 'dense_packed'))
    assert table.with_suffix('.png').stat().st_size > 0 and (tmp_path / 'a' / 'speedup.png').stat().st_size > 0
    info = json.loads((tmp_path / 'a' / 'bench.json').read_text())
    assert info['n_images'] == 2 and info['settings']['never'] == 0.3


def test_bench_table_merges_runs(tmp_path):
    "--table collects the rows of several runs; a rerun of the same model replaces its rows, others stay."
    table = tmp_path / 'speedup.csv'
    for arch, extra in (('resnet20', []), ('resnet20', []), ('resnet20', ['--name', 'mine'])):
        assert run(['--arch', arch, *QUICK, '--out', str(tmp_path / 'o'), '--table', str(table)] + extra) == 0
    rows = read_rows(table)
    n = 4 * len(VARIANTS)  # two models, each at batch 1 and 4, 1 thread
    assert len(rows) == n and [r['arch'] for r in rows[:: n // 2]] == ['mine', 'resnet20:random']


def test_merge_speed_rows_replaces_rows_of_the_same_key(tmp_path):
    "The one merge: same (arch, r, variant, batch, threads) replaced, new keys added, sorted, typed on reading."
    f = tmp_path / 't.csv'
    merge_speed_rows(f, [fake_row(), fake_row(variant='export', ms=1.0), fake_row(threads=2)])
    table = merge_speed_rows(f, [fake_row(ms=3.0), fake_row(arch='a', batch=128)])
    assert [(r['arch'], r['variant'], r['batch'], r['threads'], r['ms']) for r in table] == [
        ('a', 'dense', 128, 1, 2.0),
        ('m', 'dense', 1, 1, 3.0),
        ('m', 'export', 1, 1, 1.0),
        ('m', 'dense', 1, 2, 2.0),
    ]  # per model: batch, threads, then the variants in their order
    assert table == read_rows(f) and table[0]['other_load'] is None and list(table[0]) == SPEED_COLUMNS
    (tmp_path / 'old.csv').write_text(','.join(BENCH_COLUMNS) + '\n')
    with pytest.raises(ValueError, match='other columns'):
        merge_speed_rows(tmp_path / 'old.csv', [fake_row()])


def test_plot_speed_table_has_a_panel_per_batch_and_thread_count():
    rows = [
        fake_row(arch=a, variant=v, batch=b, threads=t)
        for a in 'xy'
        for v in VARIANTS
        for b in (1, 128)
        for t in (1, 2)
    ]
    fig = plot_speed_table(rows)
    axes = fig.get_axes()
    assert len(axes) == 4 and [ax.get_title() for ax in axes] == [
        'batch 1, 1 thread',
        'batch 1, 2 threads',
        'batch 128, 1 thread',
        'batch 128, 2 threads',
    ]
    assert len(axes[0].patches) == (len(VARIANTS) - 1) * 2  # every variant but dense (R = 1 by definition), two models


def test_bench_detail_is_the_executor_report_in_out_only(tmp_path):
    "--detail writes the executor-only report (BENCH_COLUMNS, per-image latencies, exactness) into --out."
    assert run(['--arch', 'resnet20', '--detail', *QUICK, '--out', str(tmp_path)]) == 0
    rows = list(csv.DictReader(open(tmp_path / 'executor.csv')))
    assert len(rows) == 1 and list(rows[0]) == BENCH_COLUMNS and not (tmp_path / 'speedup.csv').exists()
    assert float(rows[0]['macs_ratio']) > 1 and 0 <= float(rows[0]['slower_share']) <= 1
    exact = json.load(open(tmp_path / 'bench.json'))['exact']
    assert exact['same_class'] == 1 and exact['max_flip_logit'] < 1e-4
    assert (tmp_path / 'executor.png').stat().st_size > 0 and len(
        (tmp_path / 'latency.csv').read_text().splitlines()
    ) == 3


@pytest.mark.parametrize(
    'bad, message',
    [
        (['--batch', '0'], '--batch must be at least 1'),
        (['--batch', '-3'], '--batch must be at least 1'),
        (['--block', '0'], '--block must be at least 1'),
        (['--calib-images', '0'], '--calib-images must be at least 1'),
        (['--threads', '1', '0'], '--threads must be at least 1'),
        (['--never', '0.6', '--always', '0.5'], 'never + always'),
        (['--detail', '--table', 'x.csv'], 'drop --table'),
        (['--threads', '1', '1'], 'names a count twice'),  # two rows of one key
    ],
)
def test_bench_bad_arguments_exit_2_with_one_line(tmp_path, capsys, bad, message):
    code, err = run(['--arch', 'resnet20', *QUICK, '--out', str(tmp_path)] + bad, capsys)
    assert code == 2 and len(err) == 1 and message in err[0]


def test_bench_bad_table_fails_before_timing(tmp_path, capsys, monkeypatch):
    "A --table that is a folder, whose folder cannot be created, or of an older format fails before any timing."
    import hebbnb.export as E

    monkeypatch.setattr(E, 'time_variants', lambda *a, **k: pytest.fail('timed before checking --table'))
    (tmp_path / 'file').write_text('')
    (tmp_path / 'old.csv').write_text(','.join(BENCH_COLUMNS) + '\n')
    for table, message in (
        (tmp_path, 'is a folder'),
        (tmp_path / 'file' / 'speedup.csv', 'cannot create its folder'),
        (tmp_path / 'old.csv', 'other columns'),
    ):
        code, err = run(['--arch', 'resnet20', *QUICK, '--out', str(tmp_path / 'o'), '--table', str(table)], capsys)
        assert code == 2 and len(err) == 1 and message in err[0], err


def test_bench_refuses_a_checkpoint_without_its_data(tmp_path, capsys, monkeypatch):
    "A trained checkpoint is never timed or exported on random images: without its data, exit 2 and one line."
    monkeypatch.delenv('HEBBNB_DATA', raising=False)
    ckpt = Path(__file__).resolve().parents[1] / 'checkpoints' / 'cifar10_resnet20_ftwt_r0.8_e3.pt'
    args = ['--images', '2', '--calib-images', '8', '--threads', '1', '--data', str(tmp_path / 'none')]
    code, err = run(['--ckpt', str(ckpt), *args, '--out', str(tmp_path)], capsys)
    assert code == 2 and len(err) == 1 and 'no cifar10 images found' in err[0], err


def test_bench_cli_bad_input_is_one_line(tmp_path, capsys):
    code, err = run(['--ckpt', str(tmp_path / 'missing.pt'), '--out', str(tmp_path)], capsys)
    assert code != 0 and len(err) == 1 and 'not found' in err[0]


def test_usage_gated_filters_never_always_and_sometimes_kept():
    "The stand-in's heads: exact shares of never- and always-kept filters per layer, the rest input-dependent."
    x = inputs(64)
    model = usage_gated('resnet20', never=0.25, always=0.5, keep=0.5, x=x, seed=3)
    for xs in (x, inputs(64, seed=2)):  # the calibration images, and others
        counts, n = filter_usage(model, [xs])
        for c in counts:
            C = len(c)
            assert (c == 0).sum() >= round(0.25 * C) and (c == n).sum() >= round(0.5 * C)
    counts, n = filter_usage(model, [x])
    share = torch.cat(counts).double() / n
    assert ((share > 0) & (share < 1)).double().mean() > 0.2  # on the calibration images, the other quarter varies
    with pytest.raises(ValueError, match='never'):
        usage_gated('resnet20', never=-0.1)


@pytest.mark.parametrize('arch, hw', [('resnet20', 32), ('resnet18', 64)])
def test_static_network_with_full_widths_is_the_dense_model(arch, hw):
    "The static ceiling keeps every filter when no widths are given: it equals the unmasked model (both shortcuts)."
    x = inputs(4).repeat(1, 1, hw // 32, hw // 32)  # (4, 3, hw, hw)
    model = random_gated(arch, n=4, x=x)
    with torch.no_grad():
        ref = set_mask_source(model, 'none')(x[:2])
    assert torch.allclose(run_static(static_steps(to_sparse(model)), x[:2]), ref, atol=1e-3)


def test_bench_warns_on_other_processes_not_on_its_own_start_up(tmp_path, monkeypatch, capsys):
    "A high load average caused by the bench's own start-up is no warning; CPUs kept busy by others are."
    import hebbnb.bench as S

    monkeypatch.setattr(S.os, 'getloadavg', lambda: (3.0, 3.0, 3.0))
    ticks = iter(
        [(1000, 10000, 5.0), (1000, 10100, 5.5)]
    )  # machine: no busy ticks by others over the interval; our process: 0.5 s
    monkeypatch.setattr(S, '_cpu_times', lambda: next(ticks))
    assert run(['--arch', 'resnet20', '--detail', *QUICK, '--out', str(tmp_path / 'a')]) == 0
    assert 'contended' not in capsys.readouterr().err
    ticks = iter([(1000, 10000, 5.0), (1200, 10200, 5.0)])  # every tick busy, none ours: other processes use all CPUs
    assert run(['--arch', 'resnet20', '--detail', *QUICK, '--out', str(tmp_path / 'b')]) == 0
    assert 'other processes kept' in capsys.readouterr().err


def test_profile_layers_leaves_the_executor_alone():
    "Profiling collects layer inputs through the run hook: one row per layer, and `sparse_conv` is not replaced."
    import hebbnb.sparse as S

    model, x = random_gated('resnet20', n=4), inputs(1)
    net, conv = to_sparse(model), S.sparse_conv
    rows = profile_layers(net, x, reps=1)
    assert len(rows) == len(net.layers) and S.sparse_conv is conv
    assert all(r['total'] > 0 and 0 <= r['kept'] <= r['k_out'] for r in rows)
