"The benchmark of the sparse executor: its CLI writes the promised columns, the static baseline is the dense model."

import csv, json
import pytest, torch
from hebbnb.gating import set_mask_source
from hebbnb.sparse import random_gated, to_sparse
from hebbnb.cli import bench_main
from hebbnb.bench import BENCH_COLUMNS, static_steps, run_static, profile_layers

torch.set_num_threads(1)


def inputs(n=20, seed=1):
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def test_bench_cli_smoke(tmp_path):
    with pytest.raises(SystemExit) as e:
        bench_main(['--arch', 'resnet20', '--quick', '--images', '4', '--threads', '1', '--out', str(tmp_path)])
    assert e.value.code == 0
    rows = list(csv.DictReader(open(tmp_path / 'speedup.csv')))
    assert len(rows) == 1 and list(rows[0]) == BENCH_COLUMNS
    row = rows[0]
    assert row['arch'] == 'resnet20:random' and row['threads'] == '1' and row['torch'] == torch.__version__
    for k in ('dense_ms', 'sparse_ms', 'sparse_p90_ms', 'static_ms', 'macs_ratio', 'R', 'efficiency'):
        assert float(row[k]) > 0
    assert 0 <= float(row['slower_share']) <= 1 and float(row['macs_ratio']) > 1
    exact = json.load(open(tmp_path / 'bench.json'))['exact']
    assert exact['same_class'] == 1 and exact['max_flip_logit'] < 1e-4
    assert (tmp_path / 'speedup.png').stat().st_size > 0 and len(
        (tmp_path / 'latency.csv').read_text().splitlines()
    ) == 5


def test_bench_table_merges_runs(tmp_path):
    "--table collects rows of several runs in one CSV; a rerun of the same arch, r and threads replaces its row."
    table = tmp_path / 'speedup.csv'
    for arch, name in (('resnet20', []), ('resnet20', []), ('resnet56', []), ('resnet20', ['--name', 'mine'])):
        with pytest.raises(SystemExit) as e:
            bench_main(
                ['--arch', arch, '--quick', '--images', '2', '--out', str(tmp_path / arch), '--table', str(table)]
                + name
            )
        assert e.value.code == 0
    rows = list(csv.DictReader(open(table)))
    assert [r['arch'] for r in rows] == ['mine', 'resnet20:random', 'resnet56:random'] and list(
        rows[0]
    ) == BENCH_COLUMNS
    assert table.with_suffix('.png').stat().st_size > 0


def test_bench_cli_bad_input_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        bench_main(['--ckpt', str(tmp_path / 'missing.pt'), '--out', str(tmp_path)])
    assert e.value.code != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'not found' in err[0]


@pytest.mark.parametrize('arch, hw', [('resnet20', 32), ('resnet18', 64)])
def test_static_network_with_full_widths_is_the_dense_model(arch, hw):
    "The static ceiling keeps every filter when no widths are given: it must equal the unmasked model (zero-pad and 1x1 conv shortcuts)."
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
    with pytest.raises(SystemExit):
        bench_main(['--arch', 'resnet20', '--quick', '--images', '2', '--threads', '1', '--out', str(tmp_path / 'a')])
    assert 'contended' not in capsys.readouterr().err
    ticks = iter([(1000, 10000, 5.0), (1200, 10200, 5.0)])  # every tick busy, none ours: other processes use all CPUs
    with pytest.raises(SystemExit):
        bench_main(['--arch', 'resnet20', '--quick', '--images', '2', '--threads', '1', '--out', str(tmp_path / 'b')])
    assert 'other processes kept' in capsys.readouterr().err


def test_profile_layers_leaves_the_executor_alone():
    "Profiling collects layer inputs through the run hook: one row per layer, and `sparse_conv` is not replaced."
    import hebbnb.sparse as S

    model, x = random_gated('resnet20', n=4), inputs(1)
    net, conv = to_sparse(model), S.sparse_conv
    rows = profile_layers(net, x, reps=1)
    assert len(rows) == len(net.layers) and S.sparse_conv is conv
    assert all(r['total'] > 0 and 0 <= r['kept'] <= r['k_out'] for r in rows)
