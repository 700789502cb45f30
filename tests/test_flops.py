"Gating every architecture, exact dynamic MACs against an independent hook count, the budget tools."

import pytest, torch
from hebbnb.data import calibrate_bn
from torch import nn
from hebbnb.models import create, available, input_size
from hebbnb.gating import gate, gated_layers, set_mask_source
from hebbnb.flops import (
    static_macs,
    dynamic_macs,
    head_macs,
    layer_macs,
    instrument,
    conv_macs_per_sample,
    estimate_reduction,
    reduction_curve,
    r_for_budget,
)

CIFAR = [n for n in available() if input_size(n)[1] == 32]
EXPECTED_GATED = {'vgg16_bn': 13, 'resnet56': 55, 'mobilenetv1': 27, 'resnet20': 19}


def independent_macs(model, x):
    """Per-sample MACs counted from scratch: hooks on every backbone conv/linear read the real input and output
    tensors; an input channel is active when not all zero, an output channel when its gate keeps it (all channels of
    an ungated layer)."""
    heads = {id(g.predictor.fc) for g in gated_layers(model)}
    gate_of = {id(g.conv): g for g in gated_layers(model)}
    # a gate's mask is set after its conv runs: record conv inputs first, count after the forward
    records = []

    def rec(m, inp, out):
        records.append((m, inp[0].detach(), out.shape))

    hooks = [m.register_forward_hook(rec) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    total = torch.zeros(len(x))
    for m, xin, oshape in records:
        if isinstance(m, nn.Linear):
            total += (xin != 0).float().sum(1) * m.out_features
            continue
        if id(m) in heads:
            continue
        B, groups, g = xin.shape[0], m.groups, gate_of.get(id(m))
        a_in = (xin != 0).flatten(2).any(2).float().view(B, groups, -1).sum(2)
        out_on = g.mask.bool() if g is not None else torch.ones(B, m.out_channels, dtype=torch.bool)
        a_out = out_on.float().view(B, groups, -1).sum(2)
        total += (a_in * a_out).sum(1) * m.kernel_size[0] * m.kernel_size[1] * oshape[2] * oshape[3]
    return total


@pytest.fixture(scope='module')
def imagenet_models():
    return {n: create(n) for n in available() if input_size(n)[1] == 224}


@pytest.mark.parametrize('name', CIFAR)
@pytest.mark.parametrize('apply', ['predicted', 'oracle', 'none'])
def test_every_cifar_model_gates_and_counts_exactly(name, apply):
    torch.manual_seed(0)
    m = set_mask_source(gate(create(name), r=0.85), apply).eval()
    if name in EXPECTED_GATED:
        assert len(gated_layers(m)) == EXPECTED_GATED[name]
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        y = m(x)
    assert y.shape == (3, 10) and torch.isfinite(y).all()
    exact = dynamic_macs(m)
    torch.testing.assert_close(exact, independent_macs(m, x))  # reruns the same input
    assert (exact <= static_macs(m, (3, 32, 32))).all()
    assert (dynamic_macs(m, 'paper') > 0).all()


@pytest.mark.parametrize('apply', ['predicted', 'oracle', 'none'])
def test_imagenet_models_gate_and_count(imagenet_models, apply):
    for name, dense in imagenet_models.items():
        import copy

        m = set_mask_source(gate(copy.deepcopy(dense), r=0.9), apply).eval()
        x = torch.randn(1, 3, 224, 224)
        with torch.no_grad():
            y = m(x)
        assert y.shape == (1, 1000)
        torch.testing.assert_close(dynamic_macs(m), independent_macs(m, x))


def test_open_gates_equal_static_when_no_channel_is_zero():
    "With every gate open and no identically-zero input channel, dynamic MACs equal the dense count."
    m = set_mask_source(gate(create('vgg16_bn')), 'none').eval()
    for g in gated_layers(m):
        g.act = nn.Identity()  # no ReLU: no channel is all zero
    with torch.no_grad():
        m(torch.randn(2, 3, 32, 32))
    dense = static_macs(m, (3, 32, 32))
    torch.testing.assert_close(dynamic_macs(m), torch.full((2,), float(dense)))


def test_static_macs_match_torch_flop_counter():
    from torch.utils.flop_counter import FlopCounterMode

    for name in ['resnet20', 'mobilenetv1', 'vgg16_bn']:
        m = create(name).eval()
        with FlopCounterMode(display=False) as fc:
            m(torch.zeros(1, 3, 32, 32))
        assert static_macs(m, (3, 32, 32)) == fc.get_total_flops() // 2


def test_static_macs_match_ptflops_aten_up_to_bias_additions():
    "ptflops' own (aten) count is ours plus one addition per output of every conv or linear layer with a bias."
    import copy
    from ptflops import get_model_complexity_info

    for name in ['resnet20', 'vgg16_bn']:
        m, bias_outputs = create(name).eval(), []
        hooks = [
            layer.register_forward_hook(lambda mod, i, o: bias_outputs.append(o[0].numel()))
            for layer in m.modules()
            if isinstance(layer, (nn.Conv2d, nn.Linear)) and layer.bias is not None
        ]
        with torch.no_grad():
            m(torch.zeros(1, 3, 32, 32))
        for h in hooks:
            h.remove()
        macs, _ = get_model_complexity_info(
            copy.deepcopy(m), (3, 32, 32), as_strings=False, print_per_layer_stat=False, backend='aten'
        )
        assert bias_outputs and macs == static_macs(m, (3, 32, 32)) + sum(bias_outputs)


def test_instrument_records_a_dense_model_once_and_static_macs_keeps_the_records():
    m = instrument(instrument(create('resnet20'))).eval()
    assert all(len(layer._forward_hooks) == 1 for layer in m.modules() if isinstance(layer, (nn.Conv2d, nn.Linear)))
    with torch.no_grad():
        m(torch.randn(2, 3, 32, 32))
    dense = sum(layer_macs(m, dense=True).values())
    torch.testing.assert_close(dense, torch.full((2,), float(static_macs(m, (3, 32, 32)))))
    g = set_mask_source(gate(create('resnet20'), r=0.8), 'oracle').eval()
    with torch.no_grad():
        g(torch.randn(2, 3, 32, 32))
    before = dynamic_macs(g)
    static_macs(g, (3, 32, 32))
    assert torch.equal(dynamic_macs(g), before) and all(len(layer._forward_hooks) == 1 for layer in gated_layers(g))


def test_conv_macs_per_sample_is_a_deprecated_alias():
    conv = nn.Conv2d(8, 16, 3, groups=2)
    with pytest.warns(FutureWarning, match='conv_macs'):
        assert conv_macs_per_sample(conv, 25) == 16 * 4 * 9 * 25


def test_static_macs_excludes_heads_and_head_macs_counts_them():
    dense = create('resnet20')
    assert static_macs(gate(create('resnet20')), (3, 32, 32)) == static_macs(dense, (3, 32, 32))
    g = gate(create('resnet20'))
    assert head_macs(g) == sum(layer.conv.in_channels * layer.conv.out_channels for layer in gated_layers(g))


def test_label_at_post_gates_the_block_output():
    m = gate(create('resnet20'), label_at='post').eval()
    set_mask_source(m, 'oracle')
    with torch.no_grad():
        m(torch.randn(2, 3, 32, 32))
    block = m.layer1[0]
    assert isinstance(block.conv2.act, nn.ReLU) and block.conv2.mask is not None


def test_dynamic_macs_needs_a_forward():
    with pytest.raises(RuntimeError, match='forward'):
        dynamic_macs(gate(create('resnet20')))
    with pytest.raises(ValueError, match='convention'):
        dynamic_macs(gate(create('resnet20')), 'fast')


@pytest.fixture(scope='module')
def resnet20_and_batch():
    torch.manual_seed(0)
    x = torch.randn(64, 3, 32, 32)
    return calibrate_bn(create('resnet20'), x).eval(), [x]


def test_estimate_falls_as_r_rises(resnet20_and_batch):
    m, batches = resnet20_and_batch
    curve = reduction_curve(m, batches, [0.5, 0.7, 0.8, 0.9, 0.95, 1.0])
    reds = [e['reduction'] for e in curve]
    assert all(a >= b for a, b in zip(reds, reds[1:])) and reds[0] > reds[-1]
    assert all(len(e['keep']) == 19 and all(0 < k <= 1 for k in e['keep']) for e in curve)
    one = estimate_reduction(m, batches, 0.8)
    assert one['reduction'] == pytest.approx(curve[2]['reduction'])


def test_estimate_leaves_the_model_untouched(resnet20_and_batch):
    m, batches = resnet20_and_batch
    before = {k: v.clone() for k, v in m.state_dict().items()}
    estimate_reduction(m, batches, 0.9)
    assert not gated_layers(m) and all(torch.equal(before[k], v) for k, v in m.state_dict().items())


@pytest.mark.parametrize('target', [20, 40, 55])
def test_r_for_budget_lands_within_one_point(resnet20_and_batch, target):
    m, batches = resnet20_and_batch
    pick = r_for_budget(m, batches, target)
    assert abs(pick['reduction'] - target) <= 1
    assert abs(estimate_reduction(m, batches, pick['r'])['reduction'] - pick['reduction']) < 1e-6


def test_r_for_budget_rejects_unreachable_targets(resnet20_and_batch):
    m, batches = resnet20_and_batch
    with pytest.raises(ValueError, match='out of reach'):
        r_for_budget(m, batches, 99.99)
    with pytest.raises(ValueError, match='target'):
        r_for_budget(m, batches, 150)


def test_dense_estimator_applies_labels_of_the_dense_forward(resnet20_and_batch):
    m, batches = resnet20_and_batch
    fwd, dns = estimate_reduction(m, batches, 0.8, how='forward'), estimate_reduction(m, batches, 0.8)
    assert fwd['estimator'] == 'forward' and dns['estimator'] == 'dense'
    assert 0 < dns['reduction'] < 100 and 0 < fwd['reduction'] < 100 and dns['reduction'] != fwd['reduction']
    with pytest.raises(ValueError, match='how must be'):
        estimate_reduction(m, batches, 0.8, how='later')


def test_given_mode_needs_a_mask():
    g = set_mask_source(gate(create('resnet20')), 'given')
    with pytest.raises(ValueError, match='layer.given'):
        g(torch.randn(1, 3, 32, 32))
