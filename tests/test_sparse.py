"The sparse executor is exact against the masked model; its benchmark CLI writes the promised columns."
import csv, json, os
from pathlib import Path
import pytest, torch
from torch import nn
from hebbnb.gating import gate, gated_layers, set_mask_source
from hebbnb.models import conv_bn
from hebbnb.sparse import (random_gated, to_sparse, check_exact, executed_macs, union_share, bench_main, cifar_images,
                           BENCH_COLUMNS, static_steps, run_static)

torch.set_num_threads(1)

def inputs(n=20, seed=1):
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))

@pytest.fixture(scope='module')
def models():
    return {a: random_gated(a, keep=0.5, n=24, seed=3) for a in ('resnet20', 'vgg16_bn')}

def assert_exact(model, net, x):
    "Same logits (to rounding) and classes; masks identical except at float ties (|logit| at rounding level)."
    r = check_exact(model, net, x)
    assert r['max_abs_diff_given'] < 1e-4 and r['same_class'] == 1 and r['max_flip_logit'] < 1e-4, r
    return r

@pytest.mark.parametrize('arch', ['resnet20', 'vgg16_bn'])
def test_random_model_is_nontrivial(models, arch):
    model = models[arch]
    bn = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all((m.running_var - 1).abs().max() > 1e-3 and m.running_mean.abs().max() > 1e-3 for m in bn)
    with torch.no_grad(): model(inputs())
    for g in gated_layers(model):  # every layer: some filters on, some off, and masks differ between inputs
        share = g.mask.mean().item()
        assert 0.05 < share < 0.95
        assert (g.mask != g.mask[:1]).any()

@pytest.mark.parametrize('arch', ['resnet20', 'vgg16_bn'])
def test_batch1_logits_masks_and_classes_exact(models, arch):
    model = models[arch]
    assert assert_exact(model, to_sparse(model), inputs())['same_masks'] >= 0.9

@pytest.mark.parametrize('arch', ['resnet20', 'vgg16_bn'])
def test_batch_union_path_exact(models, arch):
    model, x = models[arch], inputs(8)
    net = to_sparse(model)
    with torch.no_grad(): ref = set_mask_source(model, 'predicted').eval()(x)
    assert (net(x) - ref).abs().max() < 1e-4
    for m, g in zip(net.masks(), gated_layers(model)):  # same (B, C) masks, except at float ties
        flip = m != (g.mask > 0)
        assert not flip.any() or g.logits[flip].abs().max() < 1e-4

def test_block_rounding_and_tuning_stay_exact(models):
    model, x = models['resnet20'], inputs(10)
    assert_exact(model, to_sparse(model, block=8, tune=True, warm=x[:2]), x)

def test_post_labels_max_pool_heads_and_depthwise_exact():
    x = inputs(6)
    assert_exact(m := random_gated('resnet20', n=12, label_at='post', pool='max'), to_sparse(m), x)
    assert_exact(m := random_gated('mobilenetv1', n=12), to_sparse(m), x[:3])

def test_executed_macs_bound_the_exact_count(models):
    from hebbnb.flops import dynamic_macs
    model, net, x = models['resnet20'], to_sparse(models['resnet20']), inputs(4)
    for xi in x:
        with torch.no_grad(): net(xi[None]); model(xi[None])
        ideal = dynamic_macs(model).item()
        assert ideal <= executed_macs(net) <= 1.25 * ideal

def test_union_share_grows_with_batch(models):
    u = union_share(to_sparse(models['resnet20']), inputs(8), (1, 8))
    assert 0 < u[1] < u[8] <= 1 + 1e-9

def test_unsupported_module_fails_at_compile():
    model = gate(nn.Sequential(conv_bn(3, 8), nn.Dropout(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2)))
    with pytest.raises(NotImplementedError, match='Dropout'): to_sparse(model)
    with pytest.raises(ValueError, match='warm'): to_sparse(random_gated('resnet20', n=4), tune=True)

@pytest.mark.skipif(not os.environ.get('HEBBNB_DATA'), reason='needs HEBBNB_DATA (real CIFAR-10)')
@pytest.mark.parametrize('arch', ['resnet20', 'vgg16_bn'])
def test_exact_on_real_cifar(arch):
    model = random_gated(arch, x=cifar_images(128, 'train'))
    assert_exact(model, to_sparse(model), cifar_images(40))

def test_bench_cli_smoke(tmp_path):
    with pytest.raises(SystemExit) as e:
        bench_main(['--arch', 'resnet20', '--quick', '--images', '4', '--threads', '1', '--out', str(tmp_path)])
    assert e.value.code == 0
    rows = list(csv.DictReader(open(tmp_path / 'speedup.csv')))
    assert len(rows) == 1 and list(rows[0]) == BENCH_COLUMNS
    row = rows[0]
    assert row['arch'] == 'resnet20:random' and row['threads'] == '1' and row['torch'] == torch.__version__
    for k in ('dense_ms', 'sparse_ms', 'sparse_p90_ms', 'static_ms', 'macs_ratio', 'R', 'efficiency'): assert float(row[k]) > 0
    assert 0 <= float(row['slower_share']) <= 1 and float(row['macs_ratio']) > 1
    exact = json.load(open(tmp_path / 'bench.json'))['exact']
    assert exact['same_class'] == 1 and exact['max_flip_logit'] < 1e-4
    assert (tmp_path / 'speedup.png').stat().st_size > 0 and len((tmp_path / 'latency.csv').read_text().splitlines()) == 5

def test_bench_table_merges_runs(tmp_path):
    "--table collects rows of several runs in one CSV; a rerun of the same arch, r and threads replaces its row."
    table = tmp_path / 'speedup.csv'
    for arch, name in (('resnet20', []), ('resnet20', []), ('resnet56', []), ('resnet20', ['--name', 'mine'])):
        with pytest.raises(SystemExit) as e:
            bench_main(['--arch', arch, '--quick', '--images', '2', '--out', str(tmp_path / arch), '--table', str(table)] + name)
        assert e.value.code == 0
    rows = list(csv.DictReader(open(table)))
    assert [r['arch'] for r in rows] == ['mine', 'resnet20:random', 'resnet56:random'] and list(rows[0]) == BENCH_COLUMNS
    assert table.with_suffix('.png').stat().st_size > 0

def test_bench_cli_bad_input_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as e: bench_main(['--ckpt', str(tmp_path / 'missing.pt'), '--out', str(tmp_path)])
    assert e.value.code != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'not found' in err[0]

@pytest.mark.parametrize('arch, hw', [('resnet20', 32), ('resnet18', 64)])
def test_static_network_with_full_widths_is_the_dense_model(arch, hw):
    "The static ceiling keeps every filter when no widths are given: it must equal the unmasked model (zero-pad and 1x1 conv shortcuts)."
    x = inputs(4).repeat(1, 1, hw // 32, hw // 32)                      # (4, 3, hw, hw)
    model = random_gated(arch, n=4, x=x)
    with torch.no_grad(): ref = set_mask_source(model, 'none')(x[:2])
    assert torch.allclose(run_static(static_steps(to_sparse(model)), x[:2]), ref, atol=1e-3)

def test_bench_warns_on_other_processes_not_on_its_own_start_up(tmp_path, monkeypatch, capsys):
    "A high load average caused by the bench's own start-up is no warning; CPUs kept busy by others are."
    import hebbnb.sparse as S
    monkeypatch.setattr(S.os, 'getloadavg', lambda: (3.0, 3.0, 3.0))
    ticks = iter([(1000, 10000, 5.0), (1000, 10100, 5.5)])   # machine: no busy ticks by others over the interval; our process: 0.5 s
    monkeypatch.setattr(S, '_cpu_times', lambda: next(ticks))
    with pytest.raises(SystemExit): bench_main(['--arch', 'resnet20', '--quick', '--images', '2', '--threads', '1', '--out', str(tmp_path / 'a')])
    assert 'contended' not in capsys.readouterr().err
    ticks = iter([(1000, 10000, 5.0), (1200, 10200, 5.0)])   # every tick busy, none ours: other processes use all CPUs
    with pytest.raises(SystemExit): bench_main(['--arch', 'resnet20', '--quick', '--images', '2', '--threads', '1', '--out', str(tmp_path / 'b')])
    assert 'other processes kept' in capsys.readouterr().err
