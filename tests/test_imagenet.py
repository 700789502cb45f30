"ImageNet end to end on a tiny ImageFolder tree of photos: baseline, FTWT (1 and 2 processes), eval, estimate, --init."

import json, os, subprocess, sys, tarfile
from pathlib import Path
import pytest, torch

BIN = Path(sys.executable).parent
DATA = os.environ.get('HEBBNB_DATA')
pytestmark = pytest.mark.skipif(
    not DATA or not (Path(DATA) / 'imagenet-sample.tar.gz').is_file(),
    reason='needs HEBBNB_DATA with imagenet-sample.tar.gz',
)
CLASSES = 4
RUN = [
    '--arch',
    'resnet18',
    '--dataset',
    'imagenet',
    '--batch-size',
    '2',
    '--max-steps',
    '2',
    '--workers',
    '0',
    '--threads',
    '1',
    '--no-progress',
]


def script(*args, nproc=1, env=None, timeout=600):
    cmd = [str(BIN / args[0]), *map(str, args[1:])]
    if nproc > 1:
        cmd = [
            str(BIN / 'torchrun'),
            '--standalone',
            '--nproc_per_node',
            str(nproc),
            '--no-python',
            '--',
        ] + cmd  # '--': torchrun would take --r for its own --rdzv-*
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, 'OMP_NUM_THREADS': '1', **(env or {})}
    )


@pytest.fixture(scope='module')
def root(tmp_path_factory):
    "imagenet/{train,val}/<wnid>/ holding the sample's photo of each of the first CLASSES classes (same in both)."
    d = tmp_path_factory.mktemp('data')
    with tarfile.open(Path(DATA) / 'imagenet-sample.tar.gz') as tf:
        for m in tf:
            p = Path(m.name)
            if not m.isfile() or p.suffix != '.JPEG':
                continue
            for split in ('train', 'val'):
                (d / 'imagenet' / split / p.parent.name).mkdir(parents=True, exist_ok=True)
                (d / 'imagenet' / split / p.parent.name / p.name).write_bytes(tf.extractfile(m).read())
            if len(list((d / 'imagenet' / 'val').iterdir())) == CLASSES:
                break
    return d


@pytest.fixture(scope='module')
def base(root):
    r = script('hebbnb-baseline', *RUN, '--epochs', '1', '--data', root, '--out', root / 'base')
    assert r.returncode == 0, r.stderr[-3000:]
    return root / 'base'


def metrics(out):
    return json.loads((Path(out) / 'metrics.json').read_text())


def test_baseline_one_process(base):
    m = metrics(base)
    assert (
        m['dataset'] == 'imagenet' and m['arch'] == 'resnet18' and m['flops_reduction'] == 0 and 0 <= m['top1'] <= 100
    )


@pytest.mark.parametrize('nproc', [1, 2])
def test_ftwt(root, base, nproc):
    out = root / f'ftwt{nproc}'
    r = script(
        'hebbnb-train',
        *RUN,
        '--epochs',
        '2',
        '--r',
        '0.9',
        '--init',
        base / 'last.pt',
        '--data',
        root,
        '--out',
        out,
        nproc=nproc,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    m = metrics(out)
    assert (
        m['method'] == 'ftwt'
        and m['world_size'] == nproc
        and 0 < m['flops_reduction'] < 100
        and m['mask_accuracy'] is not None
    )
    r = script('hebbnb-eval', '--ckpt', out / 'last.pt', '--data', root, '--device', 'cpu')
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout)
    assert res['dataset'] == 'imagenet' and res['flops_reduction'] == pytest.approx(
        m['flops_reduction'], abs=0.5
    )  # batch size changes float sums: heads near 0 may flip


def test_baseline_two_processes(root):
    r = script('hebbnb-baseline', *RUN, '--epochs', '1', '--data', root, '--out', root / 'base2', nproc=2)
    assert r.returncode == 0, r.stderr[-3000:]
    assert metrics(root / 'base2')['world_size'] == 2


def test_estimate(root, base):
    r = script(
        'hebbnb-estimate',
        '--ckpt',
        base / 'last.pt',
        '--data',
        root,
        '--r',
        '0.8',
        '0.95',
        '--batches',
        '1',
        '--batch-size',
        str(CLASSES),
        '--out',
        root / 'est',
    )
    assert r.returncode == 0, r.stderr[-3000:]
    est = json.loads((root / 'est' / 'estimate.json').read_text())
    assert (
        est['arch'] == 'resnet18'
        and est['images'] == CLASSES
        and est['estimates'][0]['reduction'] > est['estimates'][1]['reduction'] > 0
    )


def test_init_torchvision_loads_torchvision_format(root, tmp_path):
    "--init torchvision reads ResNet-18 weights in torchvision's format from $TORCH_HOME (written here: no download)."
    import torchvision
    from hebbnb.train import TrainConfig, build_model
    from hebbnb.gating import gated_layers

    url = torchvision.models.get_weight('ResNet18_Weights.IMAGENET1K_V1').url
    torch.manual_seed(1)
    sd = torchvision.models.resnet18().state_dict()  # torchvision's own module names and shapes
    (tmp_path / 'hub' / 'checkpoints').mkdir(parents=True)
    torch.save(sd, tmp_path / 'hub' / 'checkpoints' / url.rsplit('/', 1)[1])
    os.environ['TORCH_HOME'] = str(tmp_path)
    try:
        model = build_model(TrainConfig(arch='resnet18', dataset='imagenet', method='ftwt', init='torchvision'), 1000)
    finally:
        del os.environ['TORCH_HOME']
    assert torch.equal(model.fc.weight, sd['fc.weight']) and len(gated_layers(model)) > 0
    r = script(
        'hebbnb-train',
        *RUN,
        '--epochs',
        '1',
        '--max-steps',
        '1',
        '--init',
        'torchvision',
        '--data',
        root,
        '--out',
        tmp_path / 'tv',
        env={'TORCH_HOME': str(tmp_path)},
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert metrics(tmp_path / 'tv')['config']['init'] == 'torchvision'


def test_init_torchvision_is_refused_for_other_networks(root, tmp_path):
    r = script(
        'hebbnb-train', '--arch', 'resnet20', '--dataset', 'cifar10', '--init', 'torchvision', '--out', tmp_path / 'x'
    )
    assert r.returncode == 2 and 'resnet18 and resnet34' in r.stderr
