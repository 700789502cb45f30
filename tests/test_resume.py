"--resume never ignores a flag; checkpoints load without running code; RNG states restore whatever the map_location."

import csv, json, math, re, shutil, warnings
from dataclasses import fields
from pathlib import Path
import pytest, torch
import hebbnb.train as T
from hebbnb.train import TrainConfig, load_checkpoint, _set_rng_state, CKPT_FORMAT
from hebbnb.cli import baseline_main, train_main, eval_main, estimate_main
from test_train_cli import call, TINY

# a value different from the tiny runs' for every field that defines what a run computes
ALT = dict(
    arch=['--arch', 'resnet56'],
    dataset=['--dataset', 'cifar10'],
    subset=['--subset', '100'],
    test_subset=['--test-subset', '50'],
    epochs=['--epochs', '1'],
    batch_size=['--batch-size', '16'],
    lr=['--lr', '0.2'],
    momentum=['--momentum', '0.8'],
    weight_decay=['--weight-decay', '0.0001'],
    schedule=['--schedule', 'cosine'],
    milestones=['--milestones', '1'],
    gamma=['--gamma', '0.5'],
    seed=['--seed', '1'],
    max_steps=['--max-steps', '2'],
    init=None,
    r=['--r', '0.7'],
    mode=['--mode', 'joint'],
    labels=['--labels', 'uniform', '--keep', '0.5'],
    keep=['--keep', '0.5'],
    pool=['--pool', 'max'],
    softmax=['--no-softmax'],
    label_at=['--label-at', 'post'],
    mlr=['--mlr', '0.2'],
    mask_weight=['--mask-weight', '0.5'],
    cooldown=['--cooldown', '0.25'],
    train=['--train', 'heads', '--cooldown', '1'],
)
FTWT_FIELDS = (
    'init',
    'r',
    'mode',
    'labels',
    'keep',
    'pool',
    'softmax',
    'label_at',
    'train',
    'mlr',
    'mask_weight',
    'cooldown',
)
RUN = TINY[:-2] + ['--epochs', '2']  # TINY without its --threads, so a resume may change it


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp('runs')
    assert call(baseline_main, RUN + ['--threads', '1', '--out', d / 'base'])[0] == 0
    assert call(train_main, RUN + ['--threads', '1', '--init', d / 'base' / 'last.pt', '--out', d / 'ftwt'])[0] == 0
    uniform = ['--labels', 'uniform', '--keep', '0.4']  # keep exists for uniform labels only
    init = ['--init', d / 'base' / 'last.pt']
    assert call(train_main, RUN + ['--threads', '1', *init, *uniform, '--out', d / 'uniform'])[0] == 0
    return d


def test_every_field_is_covered():
    "A new TrainConfig field must be added to ALT (checked on resume) or to RUNTIME_FIELDS (free to change)."
    assert {f.name for f in fields(TrainConfig)} == set(ALT) | set(T.RUNTIME_FIELDS) | {'method'}


@pytest.mark.parametrize('name', [n for n in ALT if n not in FTWT_FIELDS])
def test_resume_refuses_a_changed_baseline_flag(runs, tmp_path, name):
    out = tmp_path / 'run'
    shutil.copytree(runs / 'base', out)
    saved = load_checkpoint(out / 'last.pt')['config'][name]
    code, _, err = call(baseline_main, RUN + ALT[name] + ['--out', out, '--resume'])
    flag = ALT[name][0]
    assert (
        code == 2 and f'{flag} is ' in err and f'trained with {saved!r}' in err and len(err.strip().splitlines()) == 1
    ), err
    assert len(load_checkpoint(out / 'last.pt')['log']) == 2  # nothing ran


@pytest.mark.parametrize('name', FTWT_FIELDS)
def test_resume_refuses_a_changed_ftwt_flag(runs, tmp_path, name):
    out = tmp_path / 'run'
    shutil.copytree(runs / ('uniform' if name == 'keep' else 'ftwt'), out)
    saved = load_checkpoint(out / 'last.pt')['config'][name]
    alt = ALT[name] or ['--init', runs / 'ftwt' / 'last.pt']
    if name == 'keep':
        alt = alt + ['--labels', 'uniform']
    init = [] if name == 'init' else ['--init', runs / 'base' / 'last.pt']
    code, _, err = call(train_main, RUN + init + alt + ['--out', out, '--resume'])
    flag = {'softmax': '--no-softmax'}.get(name, alt[0])
    assert code == 2 and f'{flag} is ' in err and f'trained with {saved!r}' in err, err


def test_resume_refuses_the_other_command(runs, tmp_path):
    out = tmp_path / 'run'
    shutil.copytree(runs / 'base', out)
    code, _, err = call(train_main, RUN + ['--init', runs / 'base' / 'last.pt', '--out', out, '--resume'])
    assert code == 2 and "method (hebbnb-baseline or hebbnb-train) is 'ftwt'" in err and "'baseline'" in err, err


def test_resume_accepts_runtime_flags_and_the_saved_values(runs, tmp_path):
    out = tmp_path / 'run'
    shutil.copytree(runs / 'base', out)
    code, _, err = call(
        baseline_main,
        RUN
        + [
            '--lr',
            '0.1',
            '--threads',
            '1',
            '--workers',
            '0',
            '--device',
            'cpu',
            '--no-download',
            '--out',
            out,
            '--resume',
        ],
    )
    assert code == 0, err
    code, _, err = call(baseline_main, ['--out', out, '--resume'])  # no flag at all: the saved run, not the defaults
    assert code == 0, err
    m = json.loads((out / 'metrics.json').read_text())
    assert (
        m['top1'] == load_checkpoint(runs / 'base' / 'last.pt')['metrics']['top1'] and m['epochs'] == 2
    )  # metrics kept, not blanked


@pytest.mark.parametrize('schedule, lr3', [('cosine', 0.1 * (1 + math.cos(math.pi * 2 / 3)) / 2), ('step', 0.1)])
def test_larger_epochs_extends_the_run(tmp_path, schedule, lr3):
    "The issue's case: --epochs 2 then --epochs 3 --resume trains epoch 3; a cosine schedule is re-planned over 3."
    out = tmp_path / 'run'
    assert call(baseline_main, RUN + ['--schedule', schedule, '--out', out])[0] == 0
    code, stdout, err = call(baseline_main, RUN[:-1] + ['3', '--schedule', schedule, '--out', out, '--resume'])
    assert code == 0, err
    assert 'extending the run from 2 to 3 epochs' in stdout
    rows = list(csv.DictReader(open(out / 'log.csv')))
    assert [(row['epoch'], row['epochs']) for row in rows] == [('1', '2'), ('2', '2'), ('3', '3')]
    assert float(rows[2]['lr']) == pytest.approx(lr3)
    m = json.loads((out / 'metrics.json').read_text())
    assert m['epochs'] == 3 and m['extensions'] == [dict(at_epoch=2, epochs_from=2, epochs_to=3)]


def test_heads_that_never_step_follow_their_schedule_without_a_warning(tmp_path):
    "cooldown 0 (w = 0 in every epoch): the heads never step, their lr still follows the plan, PyTorch does not warn."
    cfg = T.tiny_config(method='ftwt', epochs=2, cooldown=0.0, max_steps=1, threads=1, out=str(tmp_path / 'run'))
    assert [T.mask_weight(cfg, e) for e in range(2)] == [0.0, 0.0]
    with warnings.catch_warnings():
        warnings.filterwarnings('error', re.escape('Detected call of `lr_scheduler.step()` before `optimizer.step()`'))
        T.fit(cfg)
    rows = list(csv.DictReader(open(tmp_path / 'run' / 'log.csv')))
    cosine = [(1 + math.cos(math.pi * e / 2)) / 2 for e in range(2)]  # CosineAnnealingLR over 2 epochs, eta_min 0
    assert [float(row['mlr']) for row in rows] == pytest.approx([0.1 * c for c in cosine])
    assert [float(row['lr']) for row in rows] == pytest.approx([0.05 * c for c in cosine])


def test_heads_only_run_extends_its_cosine_schedule(tmp_path, capsys):
    "train='heads' has no backbone optimiser: extending it re-plans (and reports) the heads' cosine schedule alone."
    kw = dict(method='ftwt', train='heads', cooldown=1.0, max_steps=1, threads=1, out=str(tmp_path / 'run'))
    T.fit(T.tiny_config(epochs=1, **kw))
    T.fit(T.tiny_config(epochs=2, **kw), resume=True)
    assert 'cosine schedule re-planned over 2 epochs, mlr now 0.05' in capsys.readouterr().out
    rows = list(csv.DictReader(open(tmp_path / 'run' / 'log.csv')))
    assert [(row['lr'], float(row['mlr'])) for row in rows] == [('', 0.1), ('', pytest.approx(0.05))]


def test_fewer_epochs_is_refused(runs, tmp_path):
    out = tmp_path / 'run'
    shutil.copytree(runs / 'base', out)
    code, _, err = call(baseline_main, RUN[:-1] + ['1', '--out', out, '--resume'])
    assert code == 2 and 'never shortened' in err


class Touch:
    "Unpickling this creates a file: what a malicious checkpoint could do."

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def test_crafted_pickle_is_refused_everywhere_and_runs_nothing(tmp_path):
    touched = tmp_path / 'touched'
    evil = tmp_path / 'evil.pt'
    torch.save({'format': CKPT_FORMAT, 'config': {}, 'x': Touch(touched)}, evil)
    (tmp_path / 'r1').mkdir()
    shutil.copy(evil, tmp_path / 'r1' / 'last.pt')
    (tmp_path / 'r2').mkdir()
    shutil.copy(evil, tmp_path / 'r2' / 'last.pt')
    for main, argv in [
        (eval_main, ['--ckpt', evil]),
        (estimate_main, ['--ckpt', evil, '--r', '0.9', '--out', tmp_path / 'e']),
        (train_main, TINY + ['--init', evil, '--out', tmp_path / 't']),
        (baseline_main, TINY + ['--out', tmp_path / 'r1', '--resume']),
        (train_main, TINY + ['--init', evil, '--out', tmp_path / 'r2', '--resume']),
    ]:
        code, _, err = call(main, argv)
        assert code == 2 and 'refusing to load' in err and 'Traceback' not in err, (main.__name__, err)
        assert not touched.exists(), main.__name__


def test_checkpoints_hold_only_plain_values(runs):
    "A fresh checkpoint loads with plain weights_only=True (no allow-list): no TorchVersion or other objects inside."
    ck = torch.load(runs / 'ftwt' / 'last.pt', weights_only=True)
    assert isinstance(ck['torch_version'], str) and type(ck['torch_version']) is str


def test_rng_states_stay_on_the_cpu_whatever_the_map_location(runs):
    "On a GPU `fit` maps the checkpoint to the device; torch.set_rng_state takes CPU tensors only ('meta': the GPU)."
    ck = load_checkpoint(runs / 'base' / 'last.pt', map_location='meta')
    assert next(iter(ck['model'].values())).device.type == 'meta'
    assert ck['rng']['torch'].device.type == 'cpu'
    before = torch.get_rng_state()
    _set_rng_state(ck['rng'])
    assert torch.equal(torch.get_rng_state(), load_checkpoint(runs / 'base' / 'last.pt')['rng']['torch'])
    torch.set_rng_state(before)
