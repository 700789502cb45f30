"""Tests for hebbnb.data: synthetic layouts, batching, augmentation, DDP shards, the run loaders, lesson images,
batch-norm calibration, and (with HEBBNB_DATA) the real archives."""

import os, tarfile
from pathlib import Path
import numpy as np, pytest, torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from hebbnb.data import (
    CIFAR_MEAN,
    CIFAR_STD,
    data_root,
    cache_dir,
    load_cifar,
    balanced_subset,
    crop_flip,
    epoch_order,
    CifarBatches,
    show_batch,
    imagenet_sample,
    imagenet_loaders,
    cifar_images,
    synthetic_images,
    make_data,
    plain_batches,
    calibrate_bn,
)
from hebbnb.train import Runtime, tiny_config

REAL = data_root(os.environ['HEBBNB_DATA']) if os.environ.get('HEBBNB_DATA') else None
needs_data = pytest.mark.skipif(REAL is None or not REAL.is_dir(), reason='HEBBNB_DATA not set')


@pytest.fixture
def cache(tmp_path, monkeypatch):
    "Send caches of the synthetic trees to a temporary folder"
    monkeypatch.setenv('HEBBNB_CACHE', str(tmp_path / 'cache'))
    return tmp_path / 'cache'


def write_tree(root: Path, n=3, classes=('cat', 'ant')):
    "root/cifar10/{train,test}/<class>/: PNGs whose pixel value is 10*class + i, plus one JPEG per class"
    for s in ('train', 'test'):
        for ci, c in enumerate(classes):
            d = root / 'cifar10' / s / c
            d.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(np.full((32, 32, 3), 10 * ci + i, np.uint8)).save(d / f'{i}.png')
            Image.fromarray(np.full((32, 32, 3), 200, np.uint8)).save(d / 'x.jpg', quality=95)
    (root / 'cifar10' / 'train' / 'notes.txt').write_text('not an image')  # ignored


# --- paths


def test_data_root_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv('HEBBNB_DATA', str(tmp_path / 'env'))
    assert data_root(tmp_path / 'arg') == tmp_path / 'arg'
    assert data_root() == tmp_path / 'env'
    monkeypatch.delenv('HEBBNB_DATA')
    monkeypatch.chdir(tmp_path)
    assert data_root() == Path('data')


def test_cache_dir(tmp_path, monkeypatch):
    monkeypatch.delenv('HEBBNB_CACHE', raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'data').mkdir()
    assert cache_dir() == Path('data') / 'cache' and (tmp_path / 'data' / 'cache').is_dir()
    monkeypatch.setenv('HEBBNB_CACHE', str(tmp_path / 'c'))
    assert cache_dir() == tmp_path / 'c'


# --- layouts


def test_image_folder_tree(tmp_path, cache):
    write_tree(tmp_path)
    d = load_cifar(data=tmp_path, download=False)
    assert d['classes'] == ['ant', 'cat']
    x, y = d['train']
    assert x.shape == (8, 3, 32, 32) and x.dtype == torch.uint8 and y.dtype == torch.int64
    assert y.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert x[:3, :, 5, 7].tolist() == [[10] * 3, [11] * 3, [12] * 3]  # ant = class 1 when written, label 0 here
    assert abs(int(x[3, 0, 0, 0]) - 200) <= 2  # the JPEG, decoded
    assert len(list(cache.glob('cifar10-*.pt'))) == 1
    d2 = load_cifar(data=tmp_path, download=False)  # from the cache
    assert torch.equal(d2['test'][0], d['test'][0]) and d2['classes'] == d['classes']


def test_tar_matches_tree(tmp_path, cache):
    write_tree(tmp_path / 'tree')
    (tmp_path / 'arch').mkdir()
    with tarfile.open(tmp_path / 'arch' / 'cifar10-jpeg.tar.gz', 'w:gz') as tf:
        tf.add(tmp_path / 'tree' / 'cifar10', 'cifar10')
    a, b = load_cifar(data=tmp_path / 'tree', download=False), load_cifar(data=tmp_path / 'arch', download=False)
    for s in ('train', 'test'):
        assert torch.equal(a[s][0], b[s][0]) and torch.equal(a[s][1], b[s][1])
    assert sorted(p.name for p in (tmp_path / 'arch').iterdir()) == ['cifar10-jpeg.tar.gz']  # nothing extracted there
    assert len(list(cache.glob('cifar10-*.pt'))) == 2


def test_cifar100_archive_not_taken_for_cifar10(tmp_path, cache):
    write_tree(tmp_path / 'tree')
    with tarfile.open(tmp_path / 'cifar100-jpeg.tar.gz', 'w:gz') as tf:
        tf.add(tmp_path / 'tree' / 'cifar10', 'cifar100')
    with pytest.raises(FileNotFoundError):
        load_cifar('cifar10', data=tmp_path, download=False)
    assert load_cifar('cifar100', data=tmp_path, download=False)['train'][0].shape == (8, 3, 32, 32)


def test_missing_data_one_line_error(tmp_path, cache):
    with pytest.raises(FileNotFoundError) as e:
        load_cifar(data=tmp_path / 'nothing', download=False)
    msg = str(e.value)
    assert '\n' not in msg and str(tmp_path / 'nothing') in msg and '--data' in msg and 'HEBBNB_DATA' in msg
    with pytest.raises(FileNotFoundError, match='HEBBNB_DATA'):
        imagenet_sample(tmp_path)


def test_unknown_dataset():
    with pytest.raises(ValueError, match='cifar10'):
        load_cifar('mnist')


# --- subsets


def test_balanced_subset():
    y = torch.arange(1000) % 10
    s = balanced_subset(y, 100, seed=3)
    assert len(s) == 100 and len(s.unique()) == 100
    assert y[s].bincount().tolist() == [10] * 10
    assert torch.equal(s, balanced_subset(y, 100, seed=3)) and not torch.equal(s, balanced_subset(y, 100, seed=4))
    assert y[balanced_subset(y, 13)].bincount().tolist() == [2, 2, 2] + [1] * 7
    with pytest.raises(ValueError):
        balanced_subset(y, 1001)
    with pytest.raises(ValueError):
        balanced_subset(torch.tensor([0, 0, 0, 1]), 4)  # class 1 has one sample


# --- augmentation and batches


def test_crop_flip_matches_loop():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (20, 32, 32, 3), dtype=torch.uint8, generator=g)
    xp = F.pad(x, (0, 0, 4, 4, 4, 4))
    idx = torch.randint(0, 20, (50,), generator=g)
    oy, ox = torch.randint(0, 9, (2, 50), generator=g)
    flip = torch.rand(50, generator=g) < 0.5
    ref = torch.stack(
        [
            xp[i, a : a + 32, b : b + 32].flip(1) if f else xp[i, a : a + 32, b : b + 32]
            for i, a, b, f in zip(idx, oy, ox, flip)
        ]
    )
    assert torch.equal(crop_flip(xp, idx, oy, ox, flip), ref)


def grey(n=100, C=10):
    "Constant images whose grey level encodes the label"
    y = torch.arange(n) % C
    return (y * 20).to(torch.uint8)[:, None, None, None].expand(n, 3, 32, 32).contiguous(), y


def test_batches_shapes_and_len():
    x, y = grey()
    tr, ev = CifarBatches(x, y, 32, train=True), CifarBatches(x, y, 32, train=False)
    assert (len(tr), len(ev)) == (3, 4) and len(list(tr)) == 3 and len(list(ev)) == 4
    assert len(CifarBatches(x, y, 32, train=True, drop_last=False)) == 4
    xb, yb = next(iter(tr))
    assert xb.shape == (32, 3, 32, 32) and xb.dtype == torch.float32 and yb.dtype == torch.int64
    assert xb.is_contiguous(memory_format=torch.channels_last)
    xb, _ = next(iter(CifarBatches(x, y, 32, train=True, channels_last=False)))
    assert xb.is_contiguous()
    assert [len(b) for b, _ in ev] == [32, 32, 32, 4]


def test_eval_is_normalised_in_order():
    x, y = grey()
    xs, ys = zip(*CifarBatches(x, y, 32, train=False, channels_last=False))
    m, s = torch.tensor(CIFAR_MEAN['cifar10'])[:, None, None], torch.tensor(CIFAR_STD['cifar10'])[:, None, None]
    torch.testing.assert_close(torch.cat(xs), (x.float() / 255 - m) / s)
    assert torch.equal(torch.cat(ys), y)


def test_train_augments_and_keeps_labels_aligned():
    x, y = grey()
    m, s = torch.tensor(CIFAR_MEAN['cifar10']), torch.tensor(CIFAR_STD['cifar10'])
    pad_value = -m / s  # a zero (padding) pixel after normalisation
    for xb, yb in CifarBatches(x, y, 96, train=True):
        torch.testing.assert_close(xb[:, :, 16, 16], (yb[:, None] * 20 / 255 - m) / s)  # centre pixel = own label
        padded = torch.isclose(xb[yb > 0], pad_value[:, None, None]).all(1)  # (B, 32, 32) padding pixels
        assert 0 < padded.float().mean() < 0.5  # crops shift padding in
    # with a non-symmetric image a horizontal flip is visible: about half the samples are mirrored
    x2 = torch.zeros(100, 3, 32, 32, dtype=torch.uint8)
    x2[:, :, :, :16] = 255
    xb, _ = next(iter(CifarBatches(x2, y, 100, train=True)))
    left_bright = xb[:, 0, 16, 8] > xb[:, 0, 16, 24]
    assert 20 < left_bright.sum() < 80


def test_augmentation_repeatable_per_epoch():
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    y = torch.arange(64) % 10
    a, b = CifarBatches(x, y, 16, train=True, seed=7), CifarBatches(x, y, 16, train=True, seed=7)
    a.set_epoch(3)
    b.set_epoch(3)
    ea, eb = torch.cat([t for t, _ in a]), torch.cat([t for t, _ in b])
    assert torch.equal(ea, eb)  # same (seed, epoch)
    assert not torch.equal(ea, torch.cat([t for t, _ in a]))  # next iteration = epoch 4
    c = CifarBatches(x, y, 16, train=True, seed=8)
    c.set_epoch(3)
    assert not torch.equal(ea, torch.cat([t for t, _ in c]))  # another seed


def test_ddp_shards_disjoint_and_covering():
    n, w = 103, 4
    for e in range(3):
        shards = [epoch_order(n, e, seed=5, rank=rank, world_size=w) for rank in range(w)]
        assert {len(s) for s in shards} == {n // w}
        allidx = torch.cat(shards)
        assert len(allidx.unique()) == n - n % w  # disjoint
    ev = [epoch_order(n, 0, train=False, rank=rank, world_size=w) for rank in range(w)]
    assert torch.equal(torch.cat(ev).sort().values, torch.arange(n))  # eval: all samples, once
    # the batches of each rank carry exactly that rank's labels
    x, _ = grey(n)
    y = torch.arange(n)  # label = sample index
    dls = [CifarBatches(x, y, 8, train=True, seed=5, rank=rank, world_size=w, drop_last=False) for rank in range(w)]
    got = [torch.cat([l for _, l in dl]) for dl in dls]
    assert [len(g) for g in got] == [n // w] * w
    assert len(torch.cat(got).unique()) == n - n % w
    evb = [torch.cat([l for _, l in CifarBatches(x, y, 8, train=False, rank=rank, world_size=w)]) for rank in range(w)]
    assert torch.equal(torch.cat(evb).sort().values, torch.arange(n))


def test_show_batch_returns_figure():
    x, y = grey(8)
    xb, yb = next(iter(CifarBatches(x, y, 8, train=False)))
    fig = show_batch(xb, yb, [f'c{i}' for i in range(10)], ncols=4)
    assert len(fig.axes) == 8 and fig.axes[3].get_title() == 'c3'


# --- lesson images


def normalised(x, dataset='cifar10'):
    "uint8 (N, 3, H, W) -> float, normalised with `dataset`'s constants"
    m, s = torch.tensor(CIFAR_MEAN[dataset])[:, None, None], torch.tensor(CIFAR_STD[dataset])[:, None, None]
    return (x.float() / 255 - m) / s


def test_cifar_images(tmp_path, cache):
    write_tree(tmp_path)  # train and test: ant/0-2, ant/x, cat/0-2, cat/x
    d = load_cifar(data=tmp_path, download=False)
    x = cifar_images(3, 'train', tmp_path, offset=4)  # cat/0, cat/1, cat/2
    assert x.shape == (3, 3, 32, 32) and x.dtype == torch.float32
    torch.testing.assert_close(x, normalised(d['train'][0][4:7]))
    assert torch.equal(
        x[:, 0, 5, 7],
        normalised(torch.tensor([0, 1, 2], dtype=torch.uint8)[:, None, None, None].expand(3, 3, 32, 32))[:, 0, 5, 7],
    )
    assert torch.equal(cifar_images(8, data=tmp_path), normalised(d['test'][0]))  # default split: test
    assert len(cifar_images(100, data=tmp_path)) == 8  # at most the split
    with pytest.raises(FileNotFoundError, match='download=False'):
        cifar_images(1, data=tmp_path / 'nothing')


def test_cifar_images_cifar100(tmp_path, cache):
    write_tree(tmp_path / 'tree')
    with tarfile.open(tmp_path / 'cifar100-jpeg.tar.gz', 'w:gz') as tf:
        tf.add(tmp_path / 'tree' / 'cifar10', 'cifar100')
    x = cifar_images(2, 'train', tmp_path, dataset='cifar100')
    torch.testing.assert_close(x, normalised(load_cifar('cifar100', tmp_path, False)['train'][0][:2], 'cifar100'))


# --- synthetic data and the loaders of a run

CPU = Runtime(torch.device('cpu'))


def test_synthetic_images():
    x, y = synthetic_images(30, classes=3, seed=2)
    assert x.shape == (30, 3, 32, 32) and x.dtype == torch.uint8 and y.tolist() == [0, 1, 2] * 10
    assert torch.equal(x, synthetic_images(30, classes=3, seed=2)[0])
    assert not torch.equal(x, synthetic_images(30, classes=3, seed=3)[0])
    per_class = torch.stack([x[y == c].float().mean(0) for c in range(3)])  # (3, 3, 32, 32) the classes' patterns
    assert per_class.mean(2).std(-1).max() < 3  # columns alike but for noise
    assert (per_class[:, :, -1] - per_class[:, :, 0]).mean() > 20  # brighter at the bottom


def test_make_data_synthetic():
    train, test, nc = make_data(tiny_config(), CPU)
    assert (len(train), len(test), nc) == (512 // 32, 256 // 64, 10)
    assert torch.equal(torch.cat([y for _, y in test]), synthetic_images(256, seed=1)[1])  # test images: seed + 1
    xb, _ = next(iter(train))
    assert xb.shape == (32, 3, 32, 32) and xb.is_contiguous(memory_format=torch.channels_last)
    a, b = make_data(tiny_config(seed=3), CPU)[0], make_data(tiny_config(seed=3), CPU)[0]
    assert torch.equal(next(iter(a))[0], next(iter(b))[0])  # repeatable per seed
    assert not torch.equal(next(iter(make_data(tiny_config(seed=4), CPU)[0]))[0], next(iter(b))[0])


def test_make_data_subsets_and_shards():
    train, test, _ = make_data(tiny_config(subset=100, test_subset=50, batch_size=10), CPU)
    assert torch.cat([y for _, y in train]).bincount().tolist() == [10] * 10
    assert torch.cat([y for _, y in test]).bincount().tolist() == [5] * 10
    shards = [make_data(tiny_config(batch_size=8), Runtime(torch.device('cpu'), rank, 3))[0] for rank in range(3)]
    assert [len(s) for s in shards] == [512 // 3 // 8] * 3


def test_make_data_no_full_batch():
    with pytest.raises(ValueError, match='20 training images per process make no full batch of 32'):
        make_data(tiny_config(subset=20), CPU)


def test_plain_batches_in_order_unaugmented():
    cfg = tiny_config(batch_size=100)
    for split, seed in (('train', 0), ('test', 1)):
        x, y = synthetic_images(512 if split == 'train' else 256, seed=seed)
        xs, ys = zip(*plain_batches(cfg, CPU, split))
        assert [len(b) for b in ys][-1] == len(y) % 100  # keeps the last, partial batch
        torch.testing.assert_close(torch.cat(xs), normalised(x).contiguous(memory_format=torch.channels_last))
        assert torch.equal(torch.cat(ys), y)


def test_loaders_moved_from_train():
    import hebbnb.train

    for name in ('synthetic_images', 'make_data', 'plain_batches'):
        assert getattr(hebbnb.train, name) is globals()[name] and name in hebbnb.train.__all__


# --- batch-norm calibration


def recipe(model, x):
    "Batch-norm calibration as it was written in sparse.random_gated and notebook 06 before calibrate_bn"
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    with torch.no_grad():
        model.train()(x)
    return model


def test_calibrate_bn_matches_the_recipes():
    from hebbnb.models import create

    x = torch.randn(32, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    a = recipe(create('resnet20'), x)
    torch.manual_seed(0)
    b = create('resnet20')
    b.layer1.eval()
    b.layer1[0].bn1.running_mean += 5  # stale statistics are reset
    calibrate_bn(b, x)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)  # bit for bit
    assert b.training and not b.layer1.training and b.layer1[0].training is False  # each module's mode kept
    assert all(m.momentum == 0.1 for m in b.modules() if isinstance(m, nn.BatchNorm2d))
    assert all(p.grad is None for p in b.parameters())


def test_calibrate_bn_matches_random_gated():
    from hebbnb.models import create
    from hebbnb.gating import gate, set_mask_source
    from hebbnb.sparse import random_gated

    x = torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    ref = random_gated('resnet20', keep=0.5, x=x, seed=0)
    torch.manual_seed(0)
    m = calibrate_bn(set_mask_source(gate(create('resnet20')), 'none'), x)
    bufs = lambda net: {k: v for k, v in net.state_dict().items() if 'running' in k or 'num_batches' in k}
    assert all(torch.equal(v, bufs(m)[k]) for k, v in bufs(ref).items()) and len(bufs(ref)) > 0


def test_calibrate_bn_batches():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    x = torch.randn(12, 3, 8, 8) * 2 + 1
    with torch.no_grad():
        z = net[0](x)  # (12, 4, 6, 6)
    calibrate_bn(net, iter([(x[:6], torch.zeros(6)), (x[6:], torch.zeros(6))]))  # (images, labels) pairs, a generator
    torch.testing.assert_close(net[1].running_mean, z.mean((0, 2, 3)))
    torch.testing.assert_close(net[1].running_var, (z[:6].var((0, 2, 3)) + z[6:].var((0, 2, 3))) / 2)
    assert int(net[1].num_batches_tracked) == 2
    with pytest.raises(ValueError, match='no batches'):
        calibrate_bn(net, [])
    assert net[1].momentum == 0.1 and net.training


# --- real data (HEBBNB_DATA)


@needs_data
def test_real_cifar10():
    d = load_cifar(data=REAL, download=False)  # first run decodes 60k JPEGs (~10-30 s), then cached
    (xtr, ytr), (xte, yte) = d['train'], d['test']
    assert xtr.shape == (50000, 3, 32, 32) and xte.shape == (10000, 3, 32, 32) and xtr.dtype == torch.uint8
    assert d['classes'] == ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck']
    assert ytr.bincount().tolist() == [5000] * 10 and yte.bincount().tolist() == [1000] * 10
    xb = torch.cat([b for b, _ in CifarBatches(xte, yte, 1000, train=False)])
    assert xb.mean((0, 2, 3)).abs().max() < 0.1  # FTWT's mean fits this copy
    assert 1.1 < xb.std() < 1.35  # FTWT's "std" is the small, widely copied one


@needs_data
def test_real_imagenet_sample():
    root = imagenet_sample(REAL)
    wnids = sorted(p.name for p in (root / 'val').iterdir())
    assert len(wnids) == 1000 and imagenet_sample(REAL) == root
    train, val = imagenet_loaders(REAL, batch_size=4, workers=0)
    assert train is None and val.dataset.classes == wnids
    xb, yb = next(iter(val))
    assert xb.shape == (4, 3, 224, 224) and yb.tolist() == [0, 1, 2, 3]
    assert val.dataset.samples[2][0].startswith(str(root / 'val' / wnids[2]))


@needs_data
def test_real_cifar_images():
    d = load_cifar(data=REAL, download=False)
    x = cifar_images(5, 'train', REAL, offset=10)
    xb = next(iter(CifarBatches(d['train'][0][10:15], d['train'][1][10:15], 5, train=False, channels_last=False)))[0]
    torch.testing.assert_close(x, xb)  # as the evaluation batches normalise
    assert cifar_images(2, data=REAL).shape == (2, 3, 32, 32)
