"Sizes, shapes, registry behaviour and structural conventions of `hebbnb.models`."

import urllib.error
import pytest
import torch
import torchvision
from torch import nn
from hebbnb import models
from hebbnb.models import create, available, input_size

# name: (parameters, conv + linear MACs for one image at the model's input size)
EXPECTED = {
    'resnet56': (853_018, 125.49e6),
    'vgg16_bn': (14_728_266, 313.48e6),
    'mobilenetv1': (3_217_226, 46.36e6),
    'mobilenetv2': (2_296_922, 91.15e6),
    'resnet18': (11_689_512, 1814.07e6),
    'resnet34': (21_797_672, 3663.76e6),
    'mobilenetv1_imagenet': (4_231_976, 569e6),
}
# parameter-free (option A) shortcuts; 272,474 would be resnet20 with 1x1 projection shortcuts
CIFAR_RESNET_PARAMS = {
    'resnet20': 269_722,
    'resnet32': 464_154,
    'resnet44': 658_586,
    'resnet56': 853_018,
    'resnet110': 1_727_962,
}
CIFAR = ['resnet20', 'resnet32', 'resnet44', 'resnet56', 'resnet110', 'vgg16_bn', 'mobilenetv1', 'mobilenetv2']
IMAGENET = ['resnet18', 'resnet34', 'mobilenetv1_imagenet']


def macs(model, size):
    "Independent hook-based count: conv = Cout*Cin/groups*kh*kw*Hout*Wout, linear = in*out, one image."
    total = []

    def hook(m, i, o):
        if isinstance(m, nn.Conv2d):
            kh, kw = m.kernel_size
            total.append(m.out_channels * (m.in_channels // m.groups) * kh * kw * o.shape[2] * o.shape[3])
        elif isinstance(m, nn.Linear):
            total.append(m.in_features * m.out_features)

    hs = [m.register_forward_hook(hook) for m in model.modules()]
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, *size))
    for h in hs:
        h.remove()
    return sum(total)


def nparams(model):
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope='module')
def built():
    "Every registered model, built once."
    return {n: create(n) for n in available()}


def test_available_lists_every_name():
    assert available() == sorted(CIFAR + IMAGENET)


@pytest.mark.parametrize('name', list(EXPECTED))
def test_params_exact(built, name):
    assert nparams(built[name]) == EXPECTED[name][0]


@pytest.mark.parametrize('name', list(CIFAR_RESNET_PARAMS))
def test_cifar_resnet_params(built, name):
    assert nparams(built[name]) == CIFAR_RESNET_PARAMS[name]


@pytest.mark.parametrize('name', list(EXPECTED))
def test_macs_within_half_percent(built, name):
    m, ref = macs(built[name], input_size(name)), EXPECTED[name][1]
    assert abs(m - ref) / ref < 0.005, (name, m, ref)
    assert models.dense_macs(built[name], input_size(name)) == m


def test_input_size():
    for n in CIFAR:
        assert input_size(n) == (3, 32, 32)
    for n in IMAGENET:
        assert input_size(n) == (3, 224, 224)


def test_unknown_name_lists_valid_names():
    for f in (create, input_size):
        with pytest.raises(ValueError) as e:
            f('resnet57')
        for n in available():
            assert n in str(e.value)


@pytest.mark.parametrize('name', CIFAR)
def test_cifar_forward_shape(built, name):
    m = built[name].train()
    y = m(torch.randn(2, 3, 32, 32))
    assert y.shape == (2, 10)
    y.sum().backward()  # no in-place op breaks autograd
    assert create(name, num_classes=100)(torch.randn(2, 3, 32, 32)).shape == (2, 100)


def test_imagenet_forward_shape(built):
    for n in IMAGENET:
        assert built[n].eval()(torch.randn(1, 3, 64, 64)).shape == (1, 1000)
        assert isinstance(built[n].fc, nn.Linear)


@pytest.mark.parametrize('name', CIFAR)
def test_bn_follows_conv_in_sequential(built, name):
    "Every BatchNorm sits in Sequential(conv, bn[, act]) or in a BasicBlock as bn1/bn2."
    m = built[name]
    assert isinstance(m.fc, nn.Linear)
    for parent in m.modules():
        kids = list(parent.named_children())
        for i, (key, c) in enumerate(kids):
            if not isinstance(c, nn.BatchNorm2d):
                continue
            if isinstance(parent, models.BasicBlock):
                assert key in ('bn1', 'bn2')
                continue
            assert isinstance(parent, nn.Sequential) and i == 1 and isinstance(kids[0][1], nn.Conv2d)
            assert [type(x) for x in parent][2:] in ([], [nn.ReLU], [nn.ReLU6])


def test_basic_block_matches_torchvision_names(built):
    names = lambda blk: [n for n, _ in blk.named_children()]
    r56, r18 = built['resnet56'], built['resnet18']
    assert names(r56.layer1[0]) == names(r18.layer1[0]) == ['conv1', 'bn1', 'relu', 'conv2', 'bn2']  # downsample None
    assert names(r56.layer2[0]) == names(r18.layer2[0]) == ['conv1', 'bn1', 'relu', 'conv2', 'bn2', 'downsample']
    blk = built['resnet56'].layer2[0]
    assert isinstance(blk.downsample, models.ZeroPadShortcut) and built['resnet56'].layer1[0].downsample is None
    assert [type(x) for x in built['resnet56'].stem] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU]


def test_mobilenetv2_block_structure(built):
    blocks = [b for b in built['mobilenetv2'].modules() if isinstance(b, models.InvertedResidual)]
    assert len(blocks) == 17
    for b in blocks:
        assert [len(u) for u in b.conv] == [3, 3, 2]
        if b.shortcut is not None:
            assert [type(x) for x in b.shortcut] == [nn.Conv2d, nn.BatchNorm2d]
    assert sum(b.shortcut is not None for b in blocks) == 4  # 32->16, 16->24, 64->96, 160->320


def test_zero_pad_shortcut():
    x = torch.randn(2, 16, 8, 8)
    y = models.ZeroPadShortcut(32)(x)
    assert y.shape == (2, 32, 4, 4)
    assert torch.allclose(y[:, :16], nn.functional.avg_pool2d(x, 2)) and not y[:, 16:].any()


def test_state_dict_roundtrip(tmp_path):
    a = create('mobilenetv1')
    torch.save(a.state_dict(), tmp_path / 'a.pt')
    b = create('mobilenetv1', state_dict=str(tmp_path / 'a.pt'))
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_pretrained_loads_torchvision_weights(monkeypatch):
    sd = torchvision.models.resnet18().state_dict()
    monkeypatch.setattr(torchvision.models._api, 'load_state_dict_from_url', lambda url, *a, **kw: sd)
    m = create('resnet18', pretrained=True)
    assert torch.equal(m.fc.weight, sd['fc.weight'])


def test_pretrained_download_failure_is_clear(monkeypatch):
    def fail(url, *a, **kw):
        raise urllib.error.URLError('no network')

    monkeypatch.setattr(torchvision.models._api, 'load_state_dict_from_url', fail)
    with pytest.raises(RuntimeError, match="state_dict='path.pt'"):
        create('resnet34', pretrained=True)


def test_pretrained_refused_where_unavailable():
    with pytest.raises(ValueError, match='no pretrained weights'):
        create('resnet56', pretrained=True)
    with pytest.raises(ValueError, match='1000 classes'):
        create('resnet18', num_classes=10, pretrained=True)
