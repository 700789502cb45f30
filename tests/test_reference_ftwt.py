"""The reference-code adapter (reproduce/reference_ftwt.py): name mapping, one reference FTWT step, heads-only and full
FTWT training (cooldown, exact resume, refused option changes), and collect_dynamic.py reading a full reference run.

Runs only when HEBBNB_REFERENCE points at a checkout of github selkerdawy/FTWT (outside this repository), e.g.
    git clone https://github.com/selkerdawy/FTWT /tmp/ref/FTWT
    HEBBNB_REFERENCE=/tmp/ref/FTWT pytest tests/test_reference_ftwt.py
"""

import csv, dataclasses, importlib.util, json, os, subprocess, sys
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


def _import(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / 'reproduce' / f'{name}.py')
    m = sys.modules[name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    return m


@pytest.fixture(scope='module')
def rf():
    "The adapter module, imported from reproduce/."
    m = _import('reference_ftwt')
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


def _ftwt_config(rf, out, **kw):
    "A two-epoch full FTWT run on 64 synthetic training images (2 batches), evaluated on 64 test images."
    base = dict(reference=REF, dataset='synthetic', subset=64, test_subset=64, epochs=2, batch_size=32, out=str(out))
    return rf.FtwtConfig(**{**base, **kw})


@pytest.fixture(scope='module')
def ftwt_run(rf, tmp_path_factory):
    "An uninterrupted two-epoch full FTWT run (cooldown 0.5: mask loss in epoch 1 only): its config and final metrics."
    c = _ftwt_config(rf, tmp_path_factory.mktemp('ftwt') / 'run')
    return c, rf.train_ftwt(c, command='test')


def _log(run):
    with open(Path(run) / 'log.csv') as f:
        return list(csv.DictReader(f))


def test_ftwt_run_logs_every_epoch_and_stops_the_mask_loss_at_the_cooldown(rf, ftwt_run):
    c, final = ftwt_run
    assert (Path(c.out) / 'log.csv').read_text().splitlines()[0].split(',') == rf.FTWT_LOG_FIELDS
    rows = _log(c.out)
    assert [int(r['epoch']) for r in rows] == [1, 2]
    assert [float(r['w']) for r in rows] == [1.0, 0.0]  # their mask_weight: 0 from epoch int(0.5 * 2) = 1 on
    assert [float(r['lr']) for r in rows] == pytest.approx([0.01, 0.005])  # cosine over 2 epochs
    assert [float(r['mlr']) for r in rows] == [0.1, 0.1]  # their head lr never decays
    one, two = ({k: float(v) for k, v in r.items()} for r in rows)
    assert one['loss'] == pytest.approx(one['ce'] + one['mask_loss']) and one['mask_loss'] > 0
    assert two['loss'] == two['ce'] and two['mask_loss'] > 0  # w = 0: the mask loss is measured, not trained on
    assert final['train'] == 'all' and final['command'] == 'test' and final['config']['train'] == 'all'
    for k in ('top1', 'mask_accuracy', 'balanced_accuracy', 'f1', 'dynamic_filters', 'ce', 'loss', 'head_update'):
        assert final[k] == pytest.approx(two[k]), k
    assert final['always_on'] + final['always_off'] + final['dynamic_filters'] == pytest.approx(100)
    assert final['flops_reduction_ref'] == pytest.approx(final['static_saving_ref'] + final['dynamic_saving_ref'])
    ck = torch.load(Path(c.out) / 'last.pt', weights_only=False)
    assert ck['format'] == rf.FTWT_FORMAT and ck['epoch'] == 2 and len(ck['opt']) == 2 and len(ck['sched']) == 2
    base = rf.hebbnb_to_reference('resnet20', torch.load(BASE, weights_only=False)['model'])
    assert not torch.equal(ck['model']['conv1.weight'], base['conv1.weight'])  # the backbone learns (unlike heads)


def test_mask_weight_is_zero_from_the_cooldown_epoch_on(rf):
    c = rf.FtwtConfig(epochs=30, cooldown=0.5)
    assert [rf.reference_mask_weight(c, e) for e in range(30)] == [1.0] * 15 + [0.0] * 15
    assert rf.reference_mask_weight(dataclasses.replace(c, cooldown=1.0), 29) == 1.0


def test_after_the_cooldown_heads_get_no_gradient_and_move_only_by_momentum(rf):
    "Their loop steps the head SGD on a zero gradient after the cooldown: heads drift by the decaying momentum only."
    R = rf.import_reference(REF)
    model, _ = rf.build_reference(REF, 'resnet20', ftwt=True, r=0.8, init=BASE)
    opts = rf.reference_optimizers(R, model, lr=0.01, mlr=0.1)
    loader = _synthetic_batches()
    rf.ftwt_epoch(R, model, loader, opts, w=1.0, max_steps=2)  # fills the head SGD's momentum buffers
    heads = [p for n, p in model.named_parameters() if rf.is_head(n)]
    p0, b0 = [p.detach().clone() for p in heads], [opts[1].state[p]['momentum_buffer'].clone() for p in heads]
    conv0 = model.conv1.weight.detach().clone()
    res = rf.ftwt_epoch(R, model, loader, opts, w=0.0, max_steps=3)
    assert res['loss'] == res['ce'] and res['mask_loss'] > 0 and res['head_update'] > 0
    assert all(p.grad is not None and not p.grad.any() for p in heads)  # zero gradient from 0 * L_mask
    assert model.conv1.weight.grad.abs().sum() > 0 and not torch.equal(conv0, model.conv1.weight)
    tail = 0.9 + 0.9**2 + 0.9**3  # buffer_t = 0.9^t buffer_0, p_t = p_0 - mlr * sum_t buffer_t
    for p, a, b in zip(heads, p0, b0):
        torch.testing.assert_close(p.detach(), a - 0.1 * tail * b, rtol=1e-5, atol=1e-6)


def test_ftwt_resume_after_an_interrupted_epoch_is_exact(rf, ftwt_run, tmp_path, monkeypatch):
    "Stopped during epoch 2, the run keeps epoch 1's last.pt; resumed, it ends where the uninterrupted run ended."
    c = _ftwt_config(rf, tmp_path / 'run')
    epoch, calls = rf.ftwt_epoch, []

    def stop_in_epoch_two(R, model, loader, opts, w, max_steps=None):
        calls.append(w)
        if len(calls) == 2:
            epoch(R, model, loader, opts, w, max_steps=1)  # a batch of epoch 2 trains, then the run is interrupted
            raise KeyboardInterrupt
        return epoch(R, model, loader, opts, w, max_steps)

    monkeypatch.setattr(rf, 'ftwt_epoch', stop_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        rf.train_ftwt(c)
    assert torch.load(Path(c.out) / 'last.pt', weights_only=False)['epoch'] == 1 and len(_log(c.out)) == 1
    monkeypatch.setattr(rf, 'ftwt_epoch', epoch)
    final = rf.train_ftwt(c)
    whole = torch.load(Path(ftwt_run[0].out) / 'last.pt', weights_only=False)
    resumed = torch.load(Path(c.out) / 'last.pt', weights_only=False)
    assert resumed['model'].keys() == whole['model'].keys()
    assert all(torch.equal(resumed['model'][k], whole['model'][k]) for k in whole['model'])
    timing = ('seconds', 'train_seconds')
    assert [{k: v for k, v in r.items() if k not in timing} for r in _log(c.out)] == [
        {k: v for k, v in r.items() if k not in timing} for r in _log(ftwt_run[0].out)
    ]
    assert final['top1'] == ftwt_run[1]['top1'] and final['dynamic_filters'] == ftwt_run[1]['dynamic_filters']


def test_ftwt_resume_refuses_changed_options_and_other_runs(rf, ftwt_run, tmp_path):
    c = ftwt_run[0]
    for change in (dict(mlr=0.2), dict(lr=0.02), dict(cooldown=1.0), dict(softmax=False)):
        with pytest.raises(ValueError, match=f"other options \\({next(iter(change))}\\)"):
            rf.train_ftwt(dataclasses.replace(c, **change))
    heads = rf.HeadsConfig(reference=REF, dataset='synthetic', subset=None, epochs=1, max_steps=1, batch_size=32)
    rf.train_heads(dataclasses.replace(heads, out=str(tmp_path / 'h')))
    with pytest.raises(ValueError, match='not a reference FTWT checkpoint'):
        rf.train_ftwt(dataclasses.replace(c, out=str(tmp_path / 'h')))


def test_eval_and_collect_read_a_full_ftwt_run(rf, ftwt_run, tmp_path):
    "`eval` rebuilds a full FTWT run as it was evaluated; collect_dynamic.py files it as a reference 'all' run."
    c, final = ftwt_run
    run = tmp_path / 'run'
    run.mkdir()
    for f in ('last.pt', 'log.csv', 'metrics.json'):
        (run / f).write_bytes((Path(c.out) / f).read_bytes())
    cd = _import('collect_dynamic')
    row = cd.summary_row('reference', run)
    assert (row['code'], row['train'], row['epochs_done'], row['epochs']) == ('reference', 'all', 2, 2)
    assert row['top1'] == round(final['top1'], 2) and row['static_saving'] == round(final['static_saving_ref'], 2)
    assert row['dynamic_saving'] == round(final['dynamic_saving_ref'], 2)
    assert [r['train'] for r in cd.epoch_rows('reference', run)] == ['all', 'all']
    rf.eval_main(SimpleNamespace(run=str(run), reference=REF, test_subset=c.test_subset, threads=1))
    ev = json.loads((run / 'eval.json').read_text())
    assert ev['epoch'] == 2 and (ev['top1'], ev['dynamic_filters']) == (final['top1'], final['dynamic_filters'])
    assert ev['static_saving_ref'] == final['static_saving_ref']


def test_ftwt_cli_bad_option_is_one_line_exit_2(tmp_path):
    p = subprocess.run(
        [sys.executable, 'reproduce/reference_ftwt.py', 'ftwt', '--reference', REF, '--cooldown', '2'],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1
    assert 'cooldown must be a fraction in [0, 1], got 2.0' in p.stderr
