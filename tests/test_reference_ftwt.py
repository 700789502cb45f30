"""The reference-code adapter (reproduce/reference_ftwt.py): name mapping, one reference FTWT step, heads-only training.

Runs only when HEBBNB_REFERENCE points at a checkout of github selkerdawy/FTWT (outside this repository), e.g.
    git clone https://github.com/selkerdawy/FTWT /tmp/ref/FTWT
    HEBBNB_REFERENCE=/tmp/ref/FTWT pytest tests/test_reference_ftwt.py
"""

import importlib.util, json, os, subprocess, sys
from pathlib import Path
from types import SimpleNamespace
import pytest, torch
from hebbnb.models import create
from hebbnb.train import TrainConfig, Runtime, make_data

ROOT = Path(__file__).resolve().parents[1]
REF = os.environ.get('HEBBNB_REFERENCE')
BASE = ROOT / 'checkpoints' / 'cifar10_resnet20_baseline.pt'
pytestmark = pytest.mark.skipif(
    not (REF and (Path(REF) / 'utils' / 'layers.py').is_file()),
    reason='set HEBBNB_REFERENCE to a checkout of github selkerdawy/FTWT',
)


@pytest.fixture(scope='module')
def rf():
    "The adapter module, imported from reproduce/."
    spec = importlib.util.spec_from_file_location('reference_ftwt', ROOT / 'reproduce' / 'reference_ftwt.py')
    m = sys.modules['reference_ftwt'] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    torch.set_num_threads(1)
    return m


def _randomise_bn(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model


def test_baseline_mapping_gives_equal_dense_logits(rf):
    model, _ = rf.build_reference(REF, 'resnet20')
    rep = rf.load_hebbnb_baseline(model, BASE, 'resnet20')
    assert rep['mapped'] == 116 and rep['max_abs_logit_diff'] < 1e-4 and rep['argmax_agree'] == 1.0
    with pytest.raises(ValueError, match='not a resnet56'):
        rf.load_hebbnb_baseline(rf.build_reference(REF, 'resnet56')[0], BASE, 'resnet56')


@pytest.mark.parametrize('arch', ['resnet56', 'vgg16_bn'])
def test_mapping_of_other_archs(rf, arch):
    ours = _randomise_bn(create(arch)).eval()
    theirs, _ = rf.build_reference(REF, arch)
    theirs.load_state_dict(rf.hebbnb_to_reference(arch, ours.state_dict()), strict=True)
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(theirs.eval()(x), ours(x), atol=1e-4, rtol=1e-4)


def _heads(model, rf):
    return {n: p.detach().clone() for n, p in model.named_parameters() if rf.is_head(n)}


def _body(model, rf):
    return {n: t.clone() for n, t in model.state_dict().items() if not rf.is_head(n)}


def test_one_reference_ftwt_step_changes_heads_and_backbone(rf):
    steps = rf.reference_steps(REF, 'resnet20', batch=16, r=0.8)
    assert set(steps) == {'reference dense train', 'reference ftwt train'}
    s = steps['reference ftwt train']
    h0, b0 = _heads(s.model, rf), _body(s.model, rf)
    assert len(h0) == 2 * 19  # a weight and a bias for each of the 19 gated convs of ResNet-20
    loss = s()
    assert torch.isfinite(torch.tensor(loss))
    assert all(not torch.equal(h0[n], p) for n, p in _heads(s.model, rf).items())
    assert any(not torch.equal(b0[n], t) for n, t in _body(s.model, rf).items() if n.endswith('conv1.weight'))
    d = steps['reference dense train']
    w0 = d.model.fc.weight.detach().clone()
    d()
    assert not torch.equal(w0, d.model.fc.weight)


def _synthetic_batches():
    return make_data(TrainConfig(dataset='synthetic', batch_size=32, seed=0), Runtime(torch.device('cpu')))[0]


def test_heads_epoch_leaves_backbone_unchanged(rf):
    R = rf.import_reference(REF)
    model, layers = rf.build_reference(REF, 'resnet20', ftwt=True, r=0.8, init=BASE)
    heads = rf.freeze_reference_backbone(model)
    h0, b0 = _heads(model, rf), _body(model, rf)
    opt = torch.optim.SGD(heads, lr=0.1, momentum=0.9)
    res = rf.heads_epoch(R, model, _synthetic_batches(), opt, max_steps=3)
    assert res['mask_loss'] > 0
    after = _body(model, rf)
    assert all(torch.equal(b0[n], after[n]) for n in b0)  # weights and batch-norm statistics alike
    assert sum(not torch.equal(h0[n], p) for n, p in _heads(model, rf).items()) == len(h0)


def test_heads_run_writes_log_and_keeps_baseline(rf, tmp_path):
    c = rf.HeadsConfig(
        reference=REF, dataset='synthetic', subset=None, epochs=2, max_steps=2, batch_size=32, out=str(tmp_path / 'h')
    )
    final = rf.train_heads(c, command='test')
    rows = (tmp_path / 'h' / 'log.csv').read_text().splitlines()
    assert len(rows) == 3 and rows[0].split(',') == rf.LOG_FIELDS
    m = json.loads((tmp_path / 'h' / 'metrics.json').read_text())
    assert (
        m['command'] == 'test'
        and 0 <= m['dynamic_filters'] <= 100
        and m['always_on'] + m['always_off'] + m['dynamic_filters'] == pytest.approx(100)
    )
    assert final['baseline_check']['max_abs_logit_diff'] < 1e-4
    ck = torch.load(tmp_path / 'h' / 'last.pt', weights_only=False)
    base = rf.hebbnb_to_reference('resnet20', torch.load(BASE, weights_only=False)['model'])
    assert all(torch.equal(ck['model'][k], v) for k, v in base.items())


def test_eval_reads_the_test_set_the_run_evaluated(rf, tmp_path):
    "`eval` rebuilds the run's data from its saved config as `heads` did: on the same test set it measures the same."
    c = rf.HeadsConfig(reference=REF, dataset='synthetic', subset=64, epochs=1, batch_size=32, out=str(tmp_path / 'h'))
    assert rf.data_config(c).subset == 64 and rf.data_config(c).download is False
    final = rf.train_heads(c, command='test')  # no max_steps: evaluated on the whole synthetic test set
    rf.eval_main(SimpleNamespace(run=c.out, reference=REF, test_subset=None, threads=1))
    ev = json.loads((tmp_path / 'h' / 'eval.json').read_text())
    assert ev['epoch'] == 1 and (ev['top1'], ev['dynamic_filters']) == (final['top1'], final['dynamic_filters'])


def test_cli_bad_input_is_one_line_exit_2(tmp_path):
    p = subprocess.run(
        [
            sys.executable,
            str(ROOT / 'reproduce' / 'reference_ftwt.py'),
            'heads',
            '--reference',
            REF,
            '--r',
            '0',
            '--out',
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and 'r must lie in (0, 1]' in p.stderr
    p = subprocess.run(
        [sys.executable, str(ROOT / 'reproduce' / 'reference_ftwt.py'), 'check', '--reference', str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 2 and 'not a selkerdawy/FTWT checkout' in p.stderr
