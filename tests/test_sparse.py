"The sparse executor is exact against the masked model (its timing and benchmark: tests/test_bench.py)."

import os
import pytest, torch
from torch import nn
from hebbnb.gating import gate, gated_layers, set_mask_source
from hebbnb.models import conv_bn
from hebbnb.data import cifar_images
import hebbnb.sparse as S
from hebbnb.sparse import (
    random_gated,
    to_sparse,
    check_exact,
    executed_macs,
    union_share,
    compile_steps,
    run_steps,
    layers_of,
    sparse_conv,
    ConvStep,
    BlockStep,
    LinearStep,
    PadShortcut,
)

torch.set_num_threads(1)


def inputs(n=20, seed=1):
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope='module')
def models():
    return {a: random_gated(a, keep=0.5, n=24, seed=3) for a in ('resnet20', 'vgg16_bn')}


def assert_exact(model, net, x):
    "Same logits (to rounding) and classes; masks identical except at float ties (|logit| at rounding level)."
    r = check_exact(model, net, x)
    assert r['max_abs_diff_given'] < 1e-4 and r['same_class'] == 1 and r['max_flip_logit'] < 1e-4, r
    return r


@pytest.mark.parametrize('arch', ['resnet20', 'vgg16_bn'])
def test_random_model_is_nontrivial(models, arch):
    model = models[arch]
    bn = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all((m.running_var - 1).abs().max() > 1e-3 and m.running_mean.abs().max() > 1e-3 for m in bn)
    with torch.no_grad():
        model(inputs())
    for g in gated_layers(model):  # every layer: some filters on, some off, and masks differ between inputs
        share = g.mask.mean().item()
        assert 0.05 < share < 0.95
        assert (g.mask != g.mask[:1]).any()


@pytest.mark.parametrize('arch', ['resnet20', 'vgg16_bn'])
def test_batch1_logits_masks_and_classes_exact(models, arch):
    model = models[arch]
    assert assert_exact(model, to_sparse(model), inputs())['same_masks'] >= 0.9


@pytest.mark.parametrize('arch', ['resnet20', 'vgg16_bn'])
def test_batch_union_path_exact(models, arch):
    model, x = models[arch], inputs(8)
    net = to_sparse(model)
    with torch.no_grad():
        ref = set_mask_source(model, 'predicted').eval()(x)
    assert (net(x) - ref).abs().max() < 1e-4
    for m, g in zip(net.masks(), gated_layers(model)):  # same (B, C) masks, except at float ties
        flip = m != (g.mask > 0)
        assert not flip.any() or g.logits[flip].abs().max() < 1e-4


def test_block_rounding_and_tuning_stay_exact(models):
    model, x = models['resnet20'], inputs(10)
    assert_exact(model, to_sparse(model, block=8, tune=True, warm=x[:2]), x)


def test_post_labels_max_pool_heads_and_depthwise_exact():
    x = inputs(6)
    assert_exact(m := random_gated('resnet20', n=12, label_at='post', pool='max'), to_sparse(m), x)
    assert_exact(m := random_gated('mobilenetv1', n=12), to_sparse(m), x[:3])


def test_executed_macs_bound_the_exact_count(models):
    from hebbnb.flops import dynamic_macs

    model, net, x = models['resnet20'], to_sparse(models['resnet20']), inputs(4)
    for xi in x:
        with torch.no_grad():
            net(xi[None])
            model(xi[None])
        ideal = dynamic_macs(model).item()
        assert ideal <= executed_macs(net) <= 1.25 * ideal


def test_union_share_grows_with_batch(models):
    u = union_share(to_sparse(models['resnet20']), inputs(8), (1, 8))
    assert 0 < u[1] < u[8] <= 1 + 1e-9


def test_unsupported_module_fails_at_compile():
    model = gate(nn.Sequential(conv_bn(3, 8), nn.Dropout(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2)))
    with pytest.raises(NotImplementedError, match='Dropout'):
        to_sparse(model)
    with pytest.raises(ValueError, match='warm'):
        to_sparse(random_gated('resnet20', n=4), tune=True)


@pytest.mark.skipif(not os.environ.get('HEBBNB_DATA'), reason='needs HEBBNB_DATA (real CIFAR-10)')
@pytest.mark.parametrize('arch', ['resnet20', 'vgg16_bn'])
def test_exact_on_real_cifar(arch):
    model = random_gated(arch, x=cifar_images(128, 'train'))
    assert_exact(model, to_sparse(model), cifar_images(40))


def test_steps_are_typed_and_the_layer_hook_sees_every_layer(models):
    "Steps are dataclasses; `run_steps` hands every compiled layer, in `layers_of` order, to its `run_layer` hook."
    # two executors with the same history: a layer's first call runs the plain conv, later ones may run prepacked
    steps, twin, x, calls = compile_steps(models['resnet20']), compile_steps(models['resnet20']), inputs(1), []
    assert isinstance(steps[0], ConvStep) and isinstance(steps[-1], LinearStep)
    assert any(isinstance(s, BlockStep) and isinstance(s.shortcut, PadShortcut) for s in steps)

    def hook(layer, v, idx, res=None):
        calls.append(layer)
        return sparse_conv(layer, v, idx, res)

    with torch.no_grad():
        for _ in range(2):
            assert torch.equal(run_steps(steps, x, hook), run_steps(twin, x))
    assert calls == 2 * layers_of(steps) and len(calls) == 2 * len(gated_layers(models['resnet20']))


def static_heads(model, never_every=4):
    "Bias every head so that its decisions are provably input-independent: every `never_every`-th filter off."
    with torch.no_grad():
        for g in gated_layers(model):
            W, b = g.predictor.fc.weight.flatten(1), g.predictor.fc.bias
            off = torch.arange(len(b)) % never_every == 0
            b.copy_(torch.where(off, -W.amax(1) - 0.1, -W.amin(1) + 0.1))
    return model


def test_decided_heads_are_skipped_and_exact(monkeypatch):
    "Softmax heads whose logit interval excludes 0 are decided at compile time: the head never runs, outputs exact."
    model = static_heads(random_gated('resnet20', n=12, seed=5))
    net, x, calls = to_sparse(model), inputs(6), []
    assert all(layer.fixed is not None for layer in net.layers)
    head = S._head
    monkeypatch.setattr(S, '_head', lambda *a: calls.append(1) or head(*a))
    r = assert_exact(model, net, x)
    assert r['same_masks'] == 1 and r['mask_flips'] == 0 and calls == []
    assert net.kept() == [layer.co - (layer.co + 3) // 4 for layer in net.layers]


def test_decided_logits_need_softmax_and_every_filter_decided():
    model = static_heads(random_gated('resnet20', n=8, seed=5))
    pred = gated_layers(model)[1].predictor
    assert torch.equal(S.decided_logits(pred)[0] > 0, torch.arange(16) % 4 != 0)
    with torch.no_grad():
        pred.fc.bias[3] = -pred.fc.weight[3].flatten().mean()  # inside the interval: depends on the input
    assert S.decided_logits(pred) is None
    assert all(S.decided_logits(g.predictor) is None for g in gated_layers(random_gated('resnet20', n=8)))
    nosoftmax = random_gated('resnet20', n=8, softmax=False)
    assert all(S.decided_logits(g.predictor) is None for g in gated_layers(nosoftmax))


@pytest.mark.skipif(not S.PACK, reason='this torch build has no oneDNN prepacked convolution')
@pytest.mark.parametrize('static', [True, False])
def test_prepacked_compact_and_dense_paths_exact(models, monkeypatch, static):
    "Repeated blocks run prepacked (every size, here) and the dense fallback prepacked: the outputs stay exact."
    monkeypatch.setattr(S, 'PACK_MIN_MACS', 0)
    model = static_heads(random_gated('resnet20', n=12, seed=5)) if static else models['resnet20']
    x = inputs(4)
    net = to_sparse(model, warm=x)  # the warm-up call makes every block seen once: the second call packs it
    with torch.no_grad():
        ref = set_mask_source(model, 'predicted')(x)
        for i in range(len(x)):
            for _ in range(2):
                assert (net(x[i : i + 1]) - ref[i]).abs().max() < 1e-4
    assert any(layer.gather is not None and layer.gather[4] is not None for layer in net.layers)
    for layer in net.layers:
        layer.dense_above = 0.0  # every layer through the prepacked dense fallback
    assert_exact(model, net, x)
    assert {layer.last[3] for layer in net.layers} == {'dense'}
    assert all(layer.dense_pack is not None for layer in net.layers)
