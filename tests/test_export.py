"Exactness of the pruned export against the gated model, its torch-only loading, ONNX, and the hebbnb-export CLI."

import json, os, subprocess, sys
from pathlib import Path
import pytest, torch
from hebbnb.export import VARIANTS, export_pruned, compare_export, write_onnx
from hebbnb.cli import export_main
from hebbnb.deploy import load_exported, save_exported
from hebbnb.gating import gated_layers
from hebbnb.sparse import random_gated

ROOT = Path(__file__).resolve().parents[1]
DATA = os.environ.get('HEBBNB_DATA')


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def forced(arch, x, on=0.6, seed=0, **gate_kw):
    "A random gated `arch` whose heads never keep ~20% of each layer's filters, always keep 1 - `on`, decide the rest."
    model = random_gated(arch, keep=0.5, x=x, **gate_kw)
    g0 = torch.Generator().manual_seed(seed)
    for g in gated_layers(model):
        u = torch.rand(g.conv.out_channels, generator=g0)
        with torch.no_grad():
            g.predictor.fc.bias[u < 0.2] = -1e4
            g.predictor.fc.bias[u > on] = 1e4
    return model


def check_exact(model, x, xt):
    "Export from usage on x and xt (so on xt every removed filter is off, every static one on); compare on xt."
    net, layers, roles = export_pruned(model, [x, xt])
    cmp = compare_export(model, net, roles, [(xt, torch.zeros(len(xt), dtype=torch.long))])
    assert cmp['removed_kept'] == 0 and cmp['static_dropped'] == 0  # the exactness condition holds
    assert cmp['max_abs_logit_diff'] < 1e-4 and cmp['same_class'] == 1
    assert sum(l['kept'] for l in layers) < sum(l['C'] for l in layers)  # something was removed
    return net, layers


@pytest.mark.parametrize('arch', ['resnet20', 'resnet56', 'vgg16_bn', 'mobilenetv1', 'mobilenetv2', 'resnet18'])
@pytest.mark.parametrize('on', [0.6, 0.2])
def test_export_equals_gated_model(arch, on):
    """Zero-pad and 1x1-conv shortcuts, depthwise convs; heads kept where filters are input-dependent (on=0.6), none
    when all are static (on=0.2)."""
    hw = 64 if arch == 'resnet18' else 32
    torch.manual_seed(1)
    x, xt = torch.randn(16, 3, hw, hw), torch.randn(8, 3, hw, hw)
    net, layers = check_exact(forced(arch, torch.cat([x, xt]), on), x, xt)
    assert any(l['gated'] for l in layers) == (on == 0.6)
    if arch.startswith('mobilenet') and on == 0.6:
        assert any(l['zero_filled'] for l in layers)  # live depthwise filters on dead inputs


@pytest.mark.parametrize('gate_kw', [dict(label_at='post'), dict(softmax=False), dict(pool='max')])
def test_export_equals_gated_model_variants(gate_kw):
    "Labels after the residual addition (the residual enters the exported conv), heads without softmax, max-pool heads."
    torch.manual_seed(2)
    x, xt = torch.randn(16, 3, 32, 32), torch.randn(8, 3, 32, 32)
    check_exact(forced('resnet20', torch.cat([x, xt]), **gate_kw), x, xt)


@pytest.mark.parametrize('arch', ['resnet20', 'vgg16_bn', 'mobilenetv2'])
def test_packed_dense_twin_is_the_dense_network(arch):
    "The dense_packed variant of the speed table computes the dense network: every filter, heads never run."
    from hebbnb.export import _dense_twin, _packed_dense_twin

    x = torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    model = forced(arch, x)
    dense, packed = _dense_twin(model, 3).eval(), _packed_dense_twin(model, x[:2])
    with torch.no_grad():
        for xi in x[2:]:
            torch.testing.assert_close(packed(xi[None]), dense(xi[None]), rtol=1e-4, atol=1e-4)
    assert all(layer.fixed is not None and bool((layer.fixed > 0).all()) for layer in packed.layers)


def test_min_share_removes_more_and_is_checked():
    torch.manual_seed(3)
    x = torch.randn(32, 3, 32, 32)
    model = random_gated('resnet20', keep=0.2, x=x)  # each filter kept for ~20% of x
    kept = lambda s: sum(l['kept'] for l in export_pruned(model, [x], s)[1])
    assert kept(0.3) < kept(0.0)
    with pytest.raises(ValueError, match='min_share'):
        export_pruned(model, [x], 0.5)


def test_saved_export_loads_with_torch_only(tmp_path):
    "model.json + model.pt + the runtime file load in a process where hebbnb cannot be imported."
    torch.manual_seed(4)
    x = torch.randn(8, 3, 32, 32)
    net, _, _ = export_pruned(forced('mobilenetv2', x), [x])
    save_exported(net, tmp_path)
    import hebbnb.deploy

    (tmp_path / 'hebbnb_deploy.py').write_text(Path(hebbnb.deploy.__file__).read_text())
    torch.save(x, tmp_path / 'x.pt')
    code = (
        "import sys; sys.modules['hebbnb'] = None; sys.path.insert(0, sys.argv[1]); import torch\n"
        "from hebbnb_deploy import load_exported\n"
        "net = load_exported(sys.argv[1]); torch.save(net(torch.load(sys.argv[1] + '/x.pt')), sys.argv[1] + '/y.pt')"
    )
    subprocess.run([sys.executable, '-c', code, str(tmp_path)], check=True)
    with torch.no_grad():
        torch.testing.assert_close(torch.load(tmp_path / 'y.pt'), net(x))
    with torch.no_grad():
        torch.testing.assert_close(load_exported(tmp_path)(x), net(x))


def test_onnx_matches_the_export(tmp_path):
    pytest.importorskip('onnx')
    pytest.importorskip('onnxruntime')
    torch.manual_seed(5)
    x = torch.randn(8, 3, 32, 32)
    net, _, _ = export_pruned(forced('resnet20', x), [x])
    res = write_onnx(net, x, tmp_path / 'm.onnx')
    assert res['checked'] and res['max_abs_diff'] < 1e-4


@pytest.fixture(scope='module')
def tiny_ckpt(tmp_path_factory):
    "A tiny FTWT run on generated images: a real hebbnb checkpoint in seconds."
    from hebbnb.train import fit, tiny_config

    out = tmp_path_factory.mktemp('tiny')
    torch.set_num_threads(1)
    fit(tiny_config(method='ftwt', r=0.8, out=str(out), threads=1))
    return out / 'last.pt'


def run(argv, capsys):
    with pytest.raises(SystemExit) as e:
        export_main(argv)
    return e.value.code, capsys.readouterr()


def test_cli_writes_the_export(tiny_ckpt, tmp_path, capsys):
    code, _ = run(['--ckpt', str(tiny_ckpt), '--out', str(tmp_path), '--test-subset', '40', '--threads', '1'], capsys)
    assert code == 0
    r = json.loads((tmp_path / 'export.json').read_text())
    assert r['input']['shape'][1:] == [3, 32, 32] and len(r['input']['mean']) == 3 == len(
        r['input']['std']
    )  # how to feed it
    assert r['test']['images'] == 40 and r['calib_images'] == 512 and r['command'].startswith('hebbnb-export --ckpt')
    assert r['macs']['export'] <= r['macs']['dense'] and r['params']['export'] <= r['params']['gated']
    if r['exact']:
        assert r['test']['max_abs_logit_diff'] < 1e-4 and r['test']['top1_export'] == r['test']['top1_gated']
    assert {'model.json', 'model.pt', 'hebbnb_deploy.py', 'export.json'} <= {p.name for p in tmp_path.iterdir()}
    assert len(r['layers']) == 19 and all(0 < l['kept'] <= l['C'] for l in r['layers'])


@pytest.mark.parametrize(
    'extra, msg', [([], 'not found'), (['--min-share', '0.7'], 'min_share'), (['--calib-images', '0'], 'calib-images')]
)
def test_cli_bad_input_is_one_line(tiny_ckpt, tmp_path, capsys, extra, msg):
    ckpt = str(tmp_path / 'missing.pt') if not extra else str(tiny_ckpt)
    code, cap = run(['--ckpt', ckpt, '--out', str(tmp_path / 'o'), '--max-batches', '1'] + extra, capsys)
    err = cap.err.strip().splitlines()
    assert code == 2 and len(err) == 1 and msg in err[0]


def test_cli_refuses_a_dense_checkpoint(tmp_path, capsys):
    from hebbnb.train import fit, tiny_config

    fit(tiny_config(out=str(tmp_path / 'b'), epochs=1, max_steps=1, threads=1))
    code, cap = run(['--ckpt', str(tmp_path / 'b' / 'last.pt'), '--out', str(tmp_path / 'o')], capsys)
    assert code == 2 and 'dense baseline' in cap.err


@pytest.mark.skipif(not DATA, reason='needs HEBBNB_DATA (real CIFAR-10)')
@pytest.mark.parametrize('name', ['cifar10_resnet20_ftwt_r0.8_e3', 'cifar10_resnet20_ftwt_r0.8_e3_nosoftmax'])
def test_committed_checkpoints_export(name, tmp_path, capsys):
    "Usage on 5,000 training images, compared on 500 test images: the softmax model's static heads export exactly."
    code, _ = run(
        [
            '--ckpt',
            str(ROOT / 'checkpoints' / f'{name}.pt'),
            '--out',
            str(tmp_path),
            '--data',
            DATA,
            '--no-download',
            '--calib-images',
            '5000',
            '--test-subset',
            '500',
            '--threads',
            '1',
            '--no-onnx',
        ],
        capsys,
    )
    assert code == 0
    r = json.loads((tmp_path / 'export.json').read_text())
    t = r['test']
    assert t['images'] == 500 and abs(t['top1_export'] - t['top1_gated']) <= 1 and t['same_class'] >= 0.98
    assert 0.7 < r['saving_kept'] <= 1 and r['macs']['export'] < 0.6 * r['macs']['dense']
    if 'nosoftmax' not in name:
        assert r['exact'] and t['max_abs_logit_diff'] < 1e-4 and t['top1_export'] == t['top1_gated']


def test_bench_variants_flag_is_a_deprecated_alias_of_the_default(tmp_path, capsys):
    "hebbnb-bench --variants still runs (the speed table is the default now) and says it is deprecated."
    import csv
    from hebbnb.cli import bench_main
    from hebbnb.export import SPEED_COLUMNS

    args = ['--variants', '--arch', 'resnet20', '--quick', '--images', '2', '--threads', '1', '--batch', '4']
    with pytest.raises(SystemExit) as e:
        bench_main(args + ['--out', str(tmp_path), '--table', str(tmp_path / 't.csv')])
    assert e.value.code == 0 and '--variants is deprecated' in capsys.readouterr().err
    rows = list(csv.DictReader(open(tmp_path / 'speedup.csv')))
    assert list(rows[0]) == SPEED_COLUMNS and len(rows) == 2 * len(VARIANTS)
    for r in rows:
        assert float(r['R']) == pytest.approx(float(r['speedup']) / float(r['macs_ratio']), rel=1e-6)
    assert (tmp_path / 't.csv').read_text() == (tmp_path / 'speedup.csv').read_text()
