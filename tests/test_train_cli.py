"The training loop and the command line: end to end, resume, DDP, atomic checkpoints, signals, bad input."

import json, os, signal, subprocess, sys, time
from pathlib import Path
import pytest, torch
from hebbnb.train import tiny_config, fit, load_checkpoint, save_atomic, StopFlag, CKPT_FORMAT, model_from_checkpoint
from hebbnb.cli import baseline_main, train_main, eval_main, estimate_main, quickstart_main, bench_main, export_main

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
    "Zero-weight heads decide each filter the same way for every input: 0% dynamic; random raw-input heads are dynamic."
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


def one_line(code, err):
    "A bad-input failure as the house style wants it: exit 2, one line on stderr, no usage block, no traceback."
    return code == 2 and len(err.strip().splitlines()) == 1 and 'usage:' not in err and 'Traceback' not in err


@pytest.mark.parametrize(
    'main, argv, msg',
    [
        (baseline_main, ['--epochs', 'x', '--out', 'o'], "argument --epochs: invalid int value: 'x'"),
        (train_main, ['--init', 'b.pt', '--r', 'x', '--out', 'o'], "argument --r: invalid float value: 'x'"),
        (train_main, ['--init', 'b.pt'], 'the following arguments are required: --out'),
        (eval_main, ['--ckpt', 'c.pt', '--mask-source', 'all'], 'argument --mask-source: invalid choice'),
        (estimate_main, ['--ckpt', 'c.pt', '--r', '0.9', '--batches', 'x', '--out', 'o'], 'argument --batches'),
        (quickstart_main, ['--epochs', 'x'], "argument --epochs: invalid int value: 'x'"),
        (bench_main, ['--batch', 'x'], "argument --batch: invalid int value: 'x'"),
        (export_main, ['--ckpt', 'c.pt', '--out', 'o', '--batch-size', 'x'], 'argument --batch-size'),
    ],
)
def test_usage_errors_are_one_line(tmp_path, monkeypatch, main, argv, msg):
    "argparse's own errors (a wrong type, a missing flag) print one line, not the usage block, for every command."
    monkeypatch.chdir(tmp_path)
    code, out, err = call(main, argv)
    assert one_line(code, err) and msg in err and err.startswith('hebbnb-') and '(see --help)' in err, err
    assert not (tmp_path / 'o').exists()


@pytest.mark.parametrize(
    'main, argv',
    [
        (baseline_main, TINY),
        (train_main, TINY + ['--init', 'BASE', '--r', '0.9']),
        (estimate_main, ['--ckpt', 'BASE', '--r', '0.9']),
        (quickstart_main, ['--fast', '--no-download']),
        (bench_main, ['--quick']),
        (export_main, ['--ckpt', 'BASE']),
    ],
)
def test_out_that_is_a_file_is_one_line(tmp_path, base_ckpt, main, argv):
    "--out naming a file (or a path inside one) is refused before any work, naming the file: one line, exit 2."
    (tmp_path / 'afile').write_text('x')
    argv = [base_ckpt if a == 'BASE' else a for a in argv]
    code, out, err = call(main, argv + ['--out', tmp_path / 'afile'])
    assert one_line(code, err) and f'{tmp_path / "afile"} is a file, not a folder' in err and 'Errno' not in err, err
    code, out, err = call(main, argv + ['--out', tmp_path / 'afile' / 'sub'])
    assert one_line(code, err) and f'{tmp_path / "afile"} is a file, not a folder' in err, err
    assert (tmp_path / 'afile').read_text() == 'x'


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
        (['--keep', '0.5'], "labels='mass' chooses k from r"),  # keep would be ignored by mass labels
        (['--mask-weight', '-1'], 'mask_weight must be a non-negative number'),
        (['--mlr', '0.1', '--resum'], 'unrecognized arguments: --resum'),  # no abbreviations: --resum is not --resume
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


@pytest.mark.parametrize(
    'main, argv',
    [
        (eval_main, ['--ckpt']),
        (estimate_main, ['--r', '0.9', '--out', 'OUT', '--ckpt']),
        (train_main, TINY + ['--r', '0.9', '--out', 'OUT', '--init']),
        (export_main, ['--out', 'OUT', '--ckpt']),
        (bench_main, ['--quick', '--out', 'OUT', '--ckpt']),
    ],
)
def test_ckpt_that_is_a_folder_names_the_checkpoints_inside(tmp_path, base_ckpt, main, argv):
    "A run folder given as the checkpoint: one line saying it is a folder and which checkpoint files it holds."
    run = base_ckpt.parent
    code, out, err = call(main, [tmp_path / 'o' if a == 'OUT' else a for a in argv] + [run])
    assert one_line(code, err) and f'{run} is a folder, not a checkpoint file' in err, err
    assert str(run / 'last.pt') in err and str(run / 'best.pt') in err and 'not found' not in err, err
    (tmp_path / 'empty').mkdir()
    code, out, err = call(main, [tmp_path / 'o' if a == 'OUT' else a for a in argv] + [tmp_path / 'empty'])
    assert one_line(code, err) and 'is a folder' in err and 'no .pt file' in err, err
    assert not (tmp_path / 'o').exists()


def test_checkpoint_file_helper(tmp_path, base_ckpt):
    "The Python API refuses a run folder the same way (model_from_checkpoint), and passes a file through."
    from hebbnb.train import checkpoint_file, model_from_checkpoint

    assert checkpoint_file(str(base_ckpt)) == base_ckpt
    with pytest.raises(IsADirectoryError, match='is a folder, not a checkpoint file: give .*best.pt or .*last.pt'):
        model_from_checkpoint(base_ckpt.parent)


@pytest.fixture(scope='module')
def ftwt_ckpt(tmp_path_factory, base_ckpt):
    d = tmp_path_factory.mktemp('ftwt')
    code, out, err = call(train_main, TINY + ['--init', base_ckpt, '--r', '0.9', '--out', d])
    assert code == 0, err
    return d / 'last.pt'


def test_estimate_rejects_an_ftwt_checkpoint(tmp_path, base_ckpt, ftwt_ckpt):
    "hebbnb-estimate is a before-training tool: an FTWT checkpoint (mask heads) is refused, naming what to run instead."
    code, out, err = call(estimate_main, ['--ckpt', ftwt_ckpt, '--r', '0.9', '--out', tmp_path / 'e'])
    assert one_line(code, err) and 'FTWT checkpoint' in err and f'hebbnb-eval --ckpt {ftwt_ckpt}' in err, err
    assert str(base_ckpt) in err and not (tmp_path / 'e').exists()  # the baseline it was trained from


def test_counts_are_positive_at_parse_time(tmp_path, base_ckpt):
    "positive_int, the argparse type of batch and block sizes: 0, negatives and non-ints are one-line usage errors."
    import argparse
    from hebbnb.cli import positive_int

    assert positive_int('3') == 3
    for bad, msg in [('0', 'got 0'), ('-2', 'got -2'), ('x', "invalid int value: 'x'"), ('1.5', 'invalid int')]:
        with pytest.raises(argparse.ArgumentTypeError, match=msg):
            positive_int(bad)
    code, out, err = call(eval_main, ['--ckpt', base_ckpt, '--batch-size', '-4'])
    assert one_line(code, err) and 'argument --batch-size: must be a positive integer, got -4' in err, err


def test_eval_mask_source_and_its_deprecated_alias(base_ckpt, ftwt_ckpt):
    "--mask-source picks the masks of a gated model; --apply still works, with a one-line deprecation warning."
    from hebbnb.cli import evaluate_checkpoint
    from hebbnb.gating import gated_layers
    from hebbnb.train import model_from_checkpoint

    code, new, err = call(eval_main, ['--ckpt', ftwt_ckpt, '--max-batches', '1', '--mask-source', 'none'])
    assert code == 0 and err == '', err
    code, old, err = call(eval_main, ['--ckpt', ftwt_ckpt, '--max-batches', '1', '--apply', 'none'])
    assert code == 0 and err == 'hebbnb-eval: warning: --apply is deprecated; use --mask-source\n', err
    assert json.loads(old) == json.loads(new)
    with pytest.warns(FutureWarning, match=r'apply=\) is deprecated; use mask_source='):
        model, _ = model_from_checkpoint(ftwt_ckpt, apply='oracle')
    assert {g.mask_source for g in gated_layers(model)} == {'oracle'}
    model, _ = model_from_checkpoint(ftwt_ckpt, mask_source='none')
    assert {g.mask_source for g in gated_layers(model)} == {'none'}
    with pytest.warns(FutureWarning, match='evaluate_checkpoint'):
        res = evaluate_checkpoint(ftwt_ckpt, max_batches=1, apply='none')
    assert res['top1'] == json.loads(new)['top1']


def test_quickstart_help_reads_the_measured_baseline(tmp_path, monkeypatch):
    "The shipped baseline's top-1 and epochs in --help come from the measured results table, not from the source."
    import hebbnb.cli as cli
    from hebbnb.results import read_rows

    (row,) = [r for r in read_rows(cli.MEASURED) if r['method'] == 'baseline']
    ck = load_checkpoint(cli.shipped_checkpoint())
    assert (row['top1'], row['epochs']) == (ck['best_top1'], ck['epoch'])  # the table's row is the shipped checkpoint
    monkeypatch.setenv('COLUMNS', '1000')
    assert f"{row['top1']:.2f}% top-1, {row['epochs']} epochs" in cli.quickstart_parser().format_help()
    import csv

    with open(cli.MEASURED, newline='') as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        if r['method'] == 'baseline':
            r.update(top1=str(row['top1'] / 7), epochs=str(row['epochs'] + 3))
    with open(tmp_path / 'm.csv', 'w', newline='') as f:
        w = csv.DictWriter(f, list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    monkeypatch.setattr(cli, 'MEASURED', tmp_path / 'm.csv')
    assert f"{row['top1'] / 7:.2f}% top-1, {row['epochs'] + 3} epochs" in cli.quickstart_parser().format_help()


def test_module_docstring_names_every_console_script():
    "The cli module's summary (made from the notebook's) names every [project.scripts] entry, and only those."
    import re
    import tomllib
    import hebbnb.cli as cli

    scripts = tomllib.loads((Path(__file__).parent.parent / 'pyproject.toml').read_text())['project']['scripts']
    (names,) = re.findall(r'`hebbnb-\{([a-z,]+)\}`', cli.__doc__.splitlines()[0])
    assert {f'hebbnb-{n}' for n in names.split(',')} == set(scripts) and len(scripts) == 7, cli.__doc__
    assert all(v.startswith('hebbnb.cli:') and hasattr(cli, v.split(':')[1]) for v in scripts.values())


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
        (eval_main, ['--max-batches', '0'], 'argument --max-batches: must be a positive integer, got 0'),
        (estimate_main, ['--batches', '0', '--r', '0.9'], 'argument --batches: must be a positive integer, got 0'),
    ],
)
def test_nothing_divides_by_zero_steps_or_images(tmp_path, base_ckpt, main, argv, msg):
    "A training set under one batch (incomplete batches are dropped), or zero batches asked for: one line, exit 2."
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
    "Reference code: no mask loss once epoch >= int(cooldown * epochs): 3 epochs at 0.5 train heads in epoch 1 only."
    fit(
        tiny_config(
            method='ftwt', init=str(base_ckpt), epochs=3, cooldown=0.5, max_steps=2, out=str(tmp_path / 'f'), threads=1
        )
    )
    assert [r['w'] for r in load_checkpoint(tmp_path / 'f' / 'last.pt')['log']] == [1.0, 0.0, 0.0]


def test_no_progress_bars_in_a_pipe(tmp_path):
    "Progress bars asked for (no --no-progress) but stdout/stderr are pipes: one line per epoch, no carriage returns."
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
    command = json.loads((tmp_path / 'q' / 'ftwt_r0.8' / 'metrics.json').read_text())['command']
    assert (
        command
        == 'hebbnb-quickstart --fast --data '
        + f'{DATA} --no-download --threads 1 --no-progress --out '
        + str(tmp_path / 'q')
    )  # the run records the command that produced it


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
    "The quickstart's runs: the recipe `cifar10_resnet20` (./configs/ overrides the shipped one), cut to --epochs."
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


def test_a_run_folder_is_never_overwritten_without_resume(tmp_path, base_ckpt):
    "Training into a folder that holds a run needs --resume; the run stays as it was."
    out = tmp_path / 'run'
    assert call(train_main, TINY + ['--init', base_ckpt, '--out', out])[0] == 0
    before = (out / 'last.pt').read_bytes()
    code, _, err = call(train_main, TINY + ['--init', base_ckpt, '--r', '0.5', '--out', out])
    assert one_line(code, err) and 'add --resume' in err, err
    assert (out / 'last.pt').read_bytes() == before


def test_old_and_new_flag_names_together_are_refused(base_ckpt, ftwt_ckpt):
    "--apply (deprecated) and --mask-source name one setting: giving both is an error, whichever comes last."
    for argv in (['--apply', 'oracle', '--mask-source', 'none'], ['--mask-source=none', '--apply', 'oracle']):
        code, _, err = call(eval_main, ['--ckpt', ftwt_ckpt, *argv])
        assert one_line(code, err) and 'not both' in err, err
    with pytest.raises(TypeError, match='not both'):
        model_from_checkpoint(ftwt_ckpt, mask_source='oracle', apply='none')
    code, _, err = call(eval_main, ['--ckpt', base_ckpt, '--mask-source', 'oracle'])  # a baseline has no masks
    assert one_line(code, err) and 'has no masks' in err, err


def test_a_recipe_must_be_an_object(tmp_path):
    "A recipe file that is not a JSON object of fields is bad input, not a crash."
    (tmp_path / 'list.json').write_text('[1, 2]')
    code, _, err = call(baseline_main, TINY + ['--config', tmp_path / 'list.json', '--out', tmp_path / 'x'])
    assert one_line(code, err) and 'a recipe is a JSON object' in err, err
