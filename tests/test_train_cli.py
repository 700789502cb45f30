"The training loop and the command line: end to end, resume, DDP, atomic checkpoints, signals, bad input."

import json, os, signal, subprocess, sys, time
from pathlib import Path
import pytest, torch
from hebbnb.train import tiny_config, fit, load_checkpoint, save_atomic, StopFlag, CKPT_FORMAT
from hebbnb.cli import baseline_main, train_main, eval_main, estimate_main

BIN = Path(sys.executable).parent
DATA = os.environ.get('HEBBNB_DATA')
TINY = [
    '--dataset',
    'synthetic',
    '--epochs',
    '1',
    '--batch-size',
    '32',
    '--max-steps',
    '3',
    '--no-progress',
    '--threads',
    '1',
]


def call(main, argv):
    "Run a console script's main in-process: (exit code, stdout, stderr)."
    import contextlib, io

    o, e = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(o), contextlib.redirect_stderr(e):
        try:
            main([str(a) for a in argv])
            code = 0
        except SystemExit as s:
            code = s.code
    return code, o.getvalue(), e.getvalue()


def script(name, *args, **kw):
    return subprocess.run(
        [str(BIN / name), *map(str, args)], capture_output=True, text=True, timeout=kw.pop('timeout', 300), **kw
    )


@pytest.fixture(scope='module')
def base_ckpt(tmp_path_factory):
    d = tmp_path_factory.mktemp('base')
    code, out, err = call(baseline_main, TINY + ['--out', d])
    assert code == 0, err
    return d / 'last.pt'


class StopAfter(StopFlag):
    def __init__(self, n):
        super().__init__()
        self.n = n

    def agreed(self, rt):
        self.n -= 1
        return self.n <= 0


@pytest.mark.parametrize('method', ['baseline', 'ftwt'])
def test_resume_equals_uninterrupted_run(tmp_path, base_ckpt, method):
    kw = dict(method=method, init=str(base_ckpt) if method == 'ftwt' else None, epochs=3, max_steps=3, threads=1)
    fit(tiny_config(out=str(tmp_path / 'straight'), **kw))
    for n in (2, 4):  # stop twice: mid-epoch, then again
        with pytest.raises(Exception, match='stopped at epoch'):
            fit(tiny_config(out=str(tmp_path / 'split'), **kw), resume=True, stop=StopAfter(n))
    fit(tiny_config(out=str(tmp_path / 'split'), **kw), resume=True)
    a, b = load_checkpoint(tmp_path / 'straight' / 'last.pt'), load_checkpoint(tmp_path / 'split' / 'last.pt')
    assert all(torch.equal(a['model'][k], b['model'][k]) for k in a['model'])
    assert [r['top1'] for r in a['log']] == [r['top1'] for r in b['log']]


def test_ftwt_cooldown_freezes_heads(tmp_path, base_ckpt):
    m = fit(tiny_config(method='ftwt', init=str(base_ckpt), epochs=2, cooldown=0.5, out=str(tmp_path / 'f'), threads=1))
    log = load_checkpoint(tmp_path / 'f' / 'last.pt')['log']
    assert [r['w'] for r in log] == [1.0, 0.0]
    assert m['mask_accuracy'] is not None and m['r'] == 0.9


def test_no_softmax_heads_survive_the_checkpoint(tmp_path, base_ckpt):
    "--no-softmax trains heads on the raw pooled input, and a model rebuilt from the checkpoint has the same heads."
    from hebbnb.train import model_from_checkpoint
    from hebbnb.gating import gated_layers

    code, out, err = call(train_main, TINY + ['--init', base_ckpt, '--no-softmax', '--out', tmp_path / 'ns'])
    assert code == 0, err
    model, ck = model_from_checkpoint(tmp_path / 'ns' / 'last.pt')
    assert ck['config']['softmax'] is False and not any(g.predictor.softmax for g in gated_layers(model))
    code, out, err = call(eval_main, ['--ckpt', tmp_path / 'ns' / 'last.pt', '--max-batches', '1'])
    assert code == 0, err


def test_dynamic_filters_separates_static_from_dynamic_heads():
    "Heads with zero weights decide each filter the same way for every input: 0% dynamic; random raw-input heads are dynamic."
    from hebbnb.train import evaluate, setup_runtime
    from hebbnb.gating import gate, gated_layers
    from hebbnb.models import create

    torch.manual_seed(0)
    data = [(torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))) for _ in range(2)]
    rt, model = setup_runtime(tiny_config(threads=1)), gate(create('resnet20'), softmax=False)
    assert evaluate(model, data, rt, 40551040)['dynamic_filters'] > 0
    for g in gated_layers(model):
        g.predictor.fc.weight.data.zero_()
        g.predictor.fc.bias.data = torch.tensor([1.0, -1.0]).repeat(g.conv.out_channels // 2)
    res = evaluate(model, data, rt, 40551040)
    assert res['dynamic_filters'] == 0 and res['keep_ratio'] == pytest.approx(0.5)


def test_nonfinite_loss_stops_with_a_message(tmp_path, base_ckpt):
    code, out, err = call(
        baseline_main, TINY + ['--lr', '1e30', '--epochs', '2', '--max-steps', '6', '--out', tmp_path / 'nan']
    )
    assert code == 3 and 'loss is' in err and 'Traceback' not in err


@pytest.mark.parametrize(
    'argv, msg',
    [
        (['--arch', 'resnet19'], 'unknown arch'),
        (['--dataset', 'mnist'], 'unknown dataset'),
        (['--epochs', '0'], 'epochs must be at least 1'),
        (['--config', 'no_such_recipe'], 'no config'),
        (['--device', 'tpu'], "device must be 'auto'"),
        (['--momentum', '2'], 'momentum must lie in [0, 1)'),
        (['--gamma', 'inf'], 'gamma must be a positive number'),
        (['--milestones', '-5'], 'milestones must be epochs'),
        (['--weight-decay', '-1'], 'weight_decay must be a non-negative number'),
    ],
)
def test_baseline_bad_input_is_one_line(tmp_path, argv, msg):
    code, out, err = call(baseline_main, TINY + argv + ['--out', tmp_path / 'x'])
    assert code == 2 and msg in err and 'Traceback' not in err and len(err.strip().splitlines()) == 1, err


def test_out_that_is_a_file_is_one_line(tmp_path):
    (tmp_path / 'afile').write_text('x')
    code, out, err = call(baseline_main, TINY + ['--out', tmp_path / 'afile'])
    assert code == 2 and 'File exists' in err and len(err.strip().splitlines()) == 1, err


def test_missing_data_is_one_line(tmp_path):
    code, out, err = call(
        baseline_main, ['--dataset', 'cifar10', '--data', tmp_path / 'empty', '--no-download', '--out', tmp_path / 'x']
    )
    assert code == 2 and 'HEBBNB_DATA' in err and 'Traceback' not in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize(
    'argv, msg',
    [
        (['--r', '0'], 'r must lie in (0, 1]'),
        (['--r', '1.5'], 'r must lie in (0, 1]'),
        (['--r', 'nan'], 'r must lie in (0, 1]'),
        (['--r', '0.9', '--arch', 'vgg16_bn'], 'holds a resnet20'),
    ],
)
def test_train_bad_input_is_one_line(tmp_path, base_ckpt, argv, msg):
    code, out, err = call(train_main, TINY + ['--init', base_ckpt] + argv + ['--out', tmp_path / 'x'])
    assert code == 2 and msg in err and 'Traceback' not in err, err


def test_missing_and_corrupt_checkpoints(tmp_path):
    bad = tmp_path / 'bad.pt'
    bad.write_bytes(b'\x00garbage')
    for main, argv in [
        (train_main, TINY + ['--r', '0.9', '--out', tmp_path / 'x', '--init']),
        (eval_main, ['--ckpt']),
        (estimate_main, ['--r', '0.9', '--out', tmp_path / 'e', '--ckpt']),
    ]:
        code, _, err = call(main, argv + [tmp_path / 'none.pt'])
        assert code == 2 and 'checkpoint not found' in err, err
        code, _, err = call(main, argv + [bad])
        assert code == 2 and 'corrupt' in err and 'Traceback' not in err, err


def test_estimate_rejects_bad_r(tmp_path, base_ckpt):
    code, _, err = call(estimate_main, ['--ckpt', base_ckpt, '--r', '0.9', '1.2', '--out', tmp_path])
    assert code == 2 and 'r must lie in (0, 1]' in err


def test_estimate_target_and_eval(tmp_path, base_ckpt):
    code, out, err = call(
        estimate_main,
        ['--ckpt', base_ckpt, '--target-reduction', '30', '--batches', '2', '--batch-size', '32', '--out', tmp_path],
    )
    assert code == 0, err
    res = json.loads((tmp_path / 'estimate.json').read_text())
    assert abs(res['pick']['reduction'] - 30) <= 1 and (tmp_path / 'estimate.png').stat().st_size > 1000
    code, out, err = call(eval_main, ['--ckpt', base_ckpt, '--max-batches', '1'])
    assert code == 0 and json.loads(out)['flops_reduction'] == 0


def test_sigterm_saves_and_resumes(tmp_path):
    out = tmp_path / 'run'
    p = subprocess.Popen(
        [
            str(BIN / 'hebbnb-baseline'),
            *TINY[:2],
            '--epochs',
            '50',
            '--batch-size',
            '32',
            '--no-progress',
            '--threads',
            '1',
            '--out',
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    for _ in range(600):
        if (out / 'log.csv').exists():
            break
        time.sleep(0.1)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130 and 'continue with --resume' in err and 'Traceback' not in err, err
    ck = load_checkpoint(out / 'last.pt')
    assert ck['epoch'] < 50


def test_atomic_checkpoint_survives_kill_mid_write(tmp_path):
    path = tmp_path / 'last.pt'
    save_atomic({'format': CKPT_FORMAT, 'gen': -1}, path)
    writer = (
        "import sys, torch\nfrom hebbnb.train import save_atomic, CKPT_FORMAT\n"
        "big = torch.randn(8_000_000)\n"
        "for i in range(10**6): save_atomic({'format': CKPT_FORMAT, 'gen': i, 'w': big}, sys.argv[1])\n"
    )
    for delay in (0.8, 1.3, 2.1):
        p = subprocess.Popen([sys.executable, '-c', writer, str(path)])
        time.sleep(delay)
        p.kill()
        p.wait()
        assert isinstance(load_checkpoint(path)['gen'], int)  # never a torn file
    assert not [f for f in os.listdir(tmp_path) if f.startswith('.') and not f.endswith('.tmp')]


def test_torchrun_two_cpu_processes(tmp_path):
    torchrun = BIN / 'torchrun'
    r = subprocess.run(
        [
            str(torchrun),
            '--standalone',
            '--nproc_per_node',
            '2',
            '--no-python',
            str(BIN / 'hebbnb-baseline'),
            *TINY,
            '--epochs',
            '2',
            '--out',
            str(tmp_path / 'ddp'),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((tmp_path / 'ddp' / 'metrics.json').read_text())
    assert m['world_size'] == 2 and len(load_checkpoint(tmp_path / 'ddp' / 'last.pt')['log']) == 2


@pytest.mark.skipif(not DATA, reason='HEBBNB_DATA not set')
def test_pipeline_on_real_cifar_subset(tmp_path):
    real = [
        '--dataset',
        'cifar10',
        '--data',
        DATA,
        '--no-download',
        '--subset',
        '500',
        '--test-subset',
        '200',
        '--epochs',
        '1',
        '--batch-size',
        '50',
        '--no-progress',
        '--threads',
        '2',
    ]
    r = script('hebbnb-baseline', *real, '--out', tmp_path / 'base')
    assert r.returncode == 0, r.stderr
    r = script(
        'hebbnb-estimate',
        '--ckpt',
        tmp_path / 'base' / 'last.pt',
        '--data',
        DATA,
        '--r',
        '0.8',
        '0.9',
        '--batches',
        '2',
        '--out',
        tmp_path / 'est',
    )
    assert r.returncode == 0, r.stderr
    est = json.loads((tmp_path / 'est' / 'estimate.json').read_text())['estimates']
    assert est[0]['reduction'] >= est[1]['reduction'] > 0
    r = script('hebbnb-train', *real, '--init', tmp_path / 'base' / 'last.pt', '--r', '0.9', '--out', tmp_path / 'ftwt')
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / 'ftwt' / 'metrics.json').read_text())
    assert m['method'] == 'ftwt' and 0 <= m['flops_reduction'] < 100 and m['dataset'] == 'cifar10'
    r = script('hebbnb-eval', '--ckpt', tmp_path / 'ftwt' / 'best.pt', '--data', DATA, '--max-batches', '2')
    assert r.returncode == 0 and 'top1' in json.loads(r.stdout)


@pytest.mark.parametrize(
    'main, argv, msg',
    [
        (
            baseline_main,
            ['--subset', '50', '--batch-size', '128'],
            '50 training images per process make no full batch of 128',
        ),
        (baseline_main, ['--max-steps', '0'], 'max_steps must be at least 1'),
        (eval_main, ['--max-batches', '0'], '--max-batches must be at least 1'),
        (estimate_main, ['--batches', '0', '--r', '0.9'], '--batches and --batch-size must be at least 1'),
    ],
)
def test_nothing_divides_by_zero_steps_or_images(tmp_path, base_ckpt, main, argv, msg):
    "A training set smaller than one batch (training drops incomplete batches), or zero batches asked for: one line, exit 2."
    if main is baseline_main:
        argv = TINY + argv + ['--out', tmp_path / 'x']
    else:
        argv = (
            ['--ckpt', base_ckpt, '--out', tmp_path / 'x'] + argv
            if main is estimate_main
            else ['--ckpt', base_ckpt] + argv
        )
    code, out, err = call(main, argv)
    assert code == 2 and msg in err and 'Traceback' not in err and len(err.strip().splitlines()) == 1, err


def test_evaluate_refuses_an_empty_test_set():
    from hebbnb.train import evaluate, setup_runtime
    from hebbnb.models import create

    with pytest.raises(ValueError, match='no images to evaluate'):
        evaluate(create('resnet20'), [], setup_runtime(tiny_config(threads=1)), 1)


@pytest.mark.skipif(not DATA, reason='HEBBNB_DATA not set')
def test_real_cifar_subset_smaller_than_a_batch(tmp_path):
    "The issue's command on real CIFAR-10."
    code, out, err = call(
        baseline_main,
        [
            '--arch',
            'resnet20',
            '--dataset',
            'cifar10',
            '--data',
            DATA,
            '--no-download',
            '--subset',
            '50',
            '--batch-size',
            '128',
            '--epochs',
            '1',
            '--threads',
            '1',
            '--out',
            tmp_path / 'x',
        ],
    )
    assert code == 2 and 'no full batch of 128' in err and 'ZeroDivision' not in err, err


def test_mask_loss_cooldown_follows_the_reference(tmp_path, base_ckpt):
    "Reference code: the mask loss is off once epoch >= int(cooldown * epochs): 3 epochs at 0.5 train the heads in epoch 1 only."
    fit(
        tiny_config(
            method='ftwt', init=str(base_ckpt), epochs=3, cooldown=0.5, max_steps=2, out=str(tmp_path / 'f'), threads=1
        )
    )
    assert [r['w'] for r in load_checkpoint(tmp_path / 'f' / 'last.pt')['log']] == [1.0, 0.0, 0.0]


def test_no_progress_bars_in_a_pipe(tmp_path):
    "Progress bars are asked for (no --no-progress) but stdout/stderr are pipes: one line per epoch, no carriage returns."
    r = subprocess.run(
        [
            str(BIN / 'hebbnb-baseline'),
            '--dataset',
            'synthetic',
            '--epochs',
            '2',
            '--batch-size',
            '32',
            '--max-steps',
            '3',
            '--threads',
            '1',
            '--out',
            str(tmp_path / 'x'),
        ],
        capture_output=True,
        timeout=300,
    )  # bytes: text mode would turn \r into \n
    assert r.returncode == 0, r.stderr
    assert b'\r' not in r.stdout + r.stderr and b'it/s' not in r.stdout + r.stderr
    assert [l.split()[1] for l in r.stdout.decode().splitlines() if l.startswith('epoch ')] == ['1/2', '2/2']


@pytest.mark.skipif(not DATA, reason='HEBBNB_DATA not set')
def test_quickstart_fast_starts_from_the_shipped_baseline(tmp_path):
    r = script(
        'hebbnb-quickstart',
        '--fast',
        '--data',
        DATA,
        '--no-download',
        '--threads',
        '1',
        '--no-progress',
        '--out',
        tmp_path / 'q',
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert 'estimated' in r.stdout and 'realised' in r.stdout and 'dynamic' in r.stdout
    table = (tmp_path / 'q' / 'results.md').read_text()
    assert (
        'cifar10_resnet20_baseline.pt' in table
        and '| baseline |  | 40 |' in table
        and '| FTWT r=0.8 | 0.8 | 2 |' in table
    )
    assert not (tmp_path / 'q' / 'baseline').exists()  # no baseline was trained


@pytest.mark.parametrize('prog, stage', [('hebbnb-train', 'ftwt'), ('hebbnb-baseline', 'baseline')])
def test_every_config_field_is_a_flag_with_its_help(monkeypatch, prog, stage):
    "--help of each training command shows a flag for every TrainConfig field of its stage, with the field's help text."
    import re
    from dataclasses import fields
    from hebbnb.train import TrainConfig

    monkeypatch.setenv('COLUMNS', '1000')  # no line wrapping: each help text appears whole
    r = script(prog, '--help')
    assert r.returncode == 0, r.stderr
    text = ' '.join(r.stdout.split())
    for f in fields(TrainConfig):
        flag = re.search(rf"--(no-)?{f.name.replace('_', '-')}\b", r.stdout)
        if f.name == 'method' or (stage == 'baseline' and f.metadata['ftwt']):
            assert flag is None, f.name
            continue
        assert flag and ' '.join(f.metadata['help'].split()) in text, f.name
    assert ('--init' in r.stdout, '--no-softmax' in r.stdout) == ((stage == 'ftwt',) * 2)


def test_cli_run_records_its_command_once(tmp_path):
    "fit writes metrics.json once, with the command line the CLI gave it; a Python call records none."
    code, out, err = call(baseline_main, TINY + ['--out', tmp_path / 'b'])
    assert code == 0, err
    m = json.loads((tmp_path / 'b' / 'metrics.json').read_text())
    assert (
        m['command'] == 'hebbnb-baseline ' + ' '.join(TINY + ['--out', str(tmp_path / 'b')])
        and json.loads(out.splitlines()[-1])['top1'] == m['top1']
    )
    assert fit(tiny_config(out=str(tmp_path / 'p'), epochs=1, max_steps=2, threads=1))['command'] is None


def test_quickstart_reads_its_recipe(tmp_path, monkeypatch):
    "The quickstart's runs come from the recipe `cifar10_resnet20` (a ./configs/ one overrides the shipped one), cut to --epochs."
    from hebbnb.cli import quickstart_parser, quickstart_configs, load_recipe

    a = quickstart_parser().parse_args(
        ['--fast', '--train-baseline', '3', '--epochs', '1', '--out', str(tmp_path / 'q')]
    )
    base, ftwt = quickstart_configs(a)
    shipped = load_recipe('cifar10_resnet20', 'ftwt')
    assert {k: getattr(ftwt, k) for k in shipped if k != 'epochs'} == {
        k: v for k, v in shipped.items() if k != 'epochs'
    }
    assert (ftwt.epochs, ftwt.subset, base.epochs, base.lr, base.schedule) == (1, 512, 3, 0.1, 'cosine')
    (tmp_path / 'configs').mkdir()
    (tmp_path / 'configs' / 'cifar10_resnet20.json').write_text(
        json.dumps(
            dict(
                arch='resnet20',
                dataset='cifar10',
                baseline=dict(lr=0.2),
                ftwt=dict(lr=0.03, mlr=0.2, r=0.7, batch_size=64),
            )
        )
    )
    monkeypatch.chdir(tmp_path)
    base, ftwt = quickstart_configs(a)
    assert (ftwt.lr, ftwt.mlr, ftwt.r, ftwt.batch_size, ftwt.schedule, base.lr) == (0.03, 0.2, 0.7, 64, 'step', 0.2)
