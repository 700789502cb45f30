"Properties and edge cases of the literate core: labels, heatmap mass, predictor, gating."

import subprocess, sys
from pathlib import Path
import pytest, torch
from torch import nn
from hebbnb.labels import filter_saliency, topk_mask
from hebbnb.mass import mass_k, mass_mask, uniform_mask
from hebbnb.predictor import MaskPredictor, binarize, mask_loss, mask_accuracy
from hebbnb.gating import GatedConv, gate, gated_layers

ROOT = Path(__file__).resolve().parents[1]


def random_scores(seed, B=16, C=24):
    g = torch.Generator().manual_seed(seed)
    s = torch.rand(B, C, generator=g) ** 3  # skewed, like real activations
    s[torch.rand(B, C, generator=g) < 0.1] = 0  # some dead filters
    return s


@pytest.mark.parametrize('seed', range(20))
def test_mass_k_monotone_in_r(seed):
    s = random_scores(seed)
    k = torch.stack([mass_k(s, r) for r in torch.linspace(0.05, 1, 20).tolist()])  # (20, B): k per r and sample
    assert (k[1:] >= k[:-1]).all()


@pytest.mark.parametrize('seed', range(20))
def test_mass_k_counts_the_mask_and_is_at_least_one(seed):
    s, r = random_scores(seed), 0.05 + 0.95 * torch.rand(1, generator=torch.Generator().manual_seed(seed)).item()
    k, m = mass_k(s, r), mass_mask(s, r)
    assert torch.equal(m.sum(1).long(), k)
    assert (k >= 1).all() and (k <= s.shape[1]).all()
    assert set(m.unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize('seed', range(10))
@pytest.mark.parametrize('scale', [1e-3, 3.7, 1e4])
def test_mass_rule_invariant_to_scaling(seed, scale):
    s = random_scores(seed)
    assert torch.equal(mass_k(s, 0.85), mass_k(s * scale, 0.85))


@pytest.mark.parametrize('seed', range(10))
def test_kept_mass_within_r_and_next_filter_exceeds(seed):
    s, r = random_scores(seed), 0.8
    p = s / s.sum(1, keepdim=True)
    kept = (p * mass_mask(s, r)).sum(1)
    k = mass_k(s, r)
    sorted_p = p.sort(1, descending=True).values
    for b in range(len(s)):
        if k[b] > 1:
            assert kept[b] <= r + 1e-5
        if k[b] < s.shape[1]:
            assert sorted_p[b, : k[b] + 1].sum() > r + 1e-5 or k[b] == 1


def test_mask_keeps_the_highest_scores():
    s = random_scores(0)
    m = mass_mask(s, 0.7)
    for row, mrow in zip(s, m):
        if mrow.all() or not mrow.any():
            continue
        assert row[mrow.bool()].min() >= row[~mrow.bool()].max()


def test_ties_give_exactly_k():
    s = torch.ones(3, 6)
    assert torch.equal(topk_mask(s, 4).sum(1), torch.full((3,), 4.0))
    assert torch.equal(mass_mask(s, 0.5).sum(1), torch.full((3,), 3.0))  # 3 x 1/6 = 0.5 within tolerance


def test_all_zero_rows_keep_min_keep():
    s = torch.zeros(2, 5)
    assert torch.equal(mass_k(s, 0.9), torch.ones(2, dtype=torch.long))
    assert torch.equal(mass_k(s, 1.0, min_keep=3), torch.full((2,), 3))


def test_single_channel():
    s = torch.tensor([[2.0], [0.0]])
    assert torch.equal(mass_k(s, 0.5), torch.ones(2, dtype=torch.long))
    assert torch.equal(mass_mask(s, 1.0), torch.ones(2, 1))


def test_r_one_drops_only_dead_filters():
    s = torch.tensor([[1.0, 0.0, 3.0, 1e-9, 2.0]])
    assert torch.equal(mass_mask(s, 1.0), torch.tensor([[1.0, 0.0, 1.0, 0.0, 1.0]]))


@pytest.mark.parametrize('r', [0, -0.5, 1.0001, float('nan'), float('inf')])
def test_bad_r_raises(r):
    with pytest.raises(ValueError, match='r must'):
        mass_k(torch.rand(2, 3), r)
    with pytest.raises(ValueError, match='r must'):
        GatedConv(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), r=r)


def test_wrong_rank_raises():
    with pytest.raises(ValueError):
        filter_saliency(torch.rand(2, 3))
    with pytest.raises(ValueError):
        mass_k(torch.rand(2, 3, 4), 0.5)
    with pytest.raises(ValueError):
        topk_mask(torch.rand(3), 1)


def test_k_larger_than_c_raises():
    with pytest.raises(ValueError, match='k must'):
        topk_mask(torch.rand(2, 3), 4)
    with pytest.raises(ValueError, match='k must'):
        topk_mask(torch.rand(2, 3), torch.tensor([1, 4]))


def test_uniform_mask_keeps_a_fixed_share():
    s = random_scores(1, C=20)
    assert torch.equal(uniform_mask(s, 0.25).sum(1), torch.full((16,), 5.0))
    with pytest.raises(ValueError):
        uniform_mask(s, 1.5)


def test_predictor_learns_labels():
    "A few SGD steps on the BCE make the head predict a fixed labelling of its inputs."
    torch.manual_seed(0)
    head, x = MaskPredictor(8, 4), torch.randn(64, 8, 4, 4)
    y = (x.mean((2, 3))[:, :4] > 0).float()
    opt = torch.optim.SGD(head.parameters(), lr=5.0)
    before = mask_accuracy(head(x), y)
    for _ in range(200):
        opt.zero_grad()
        loss = mask_loss([head(x)], [y])
        loss.backward()
        opt.step()
    assert mask_accuracy(head(x), y) > max(before, 0.8)


def test_binarize_threshold_is_sigmoid_half():
    z = torch.linspace(-3, 3, 61)
    assert torch.equal(binarize(z).detach(), (torch.sigmoid(z) > 0.5).float())


def test_gated_conv_uniform_labels_and_joint_mode():
    g = GatedConv(nn.Conv2d(3, 10, 3), nn.BatchNorm2d(10), nn.ReLU(), labels='uniform', keep=0.3, mode='joint')
    g(torch.randn(4, 3, 8, 8))
    assert torch.equal(g.labels.sum(1), torch.full((4,), 3.0))
    with pytest.raises(ValueError, match='mode'):
        GatedConv(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), mode='both')


def test_readme_is_current():
    proc = subprocess.run(
        [sys.executable, str(ROOT / 'tools' / 'readme.py'), '--check'], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize('mode', ['decoupled', 'joint'])
def test_mask_loss_reaches_backbone_only_in_joint_mode(mode):
    from hebbnb.models import create

    torch.manual_seed(0)
    m = gate(create('resnet20'), r=0.8, mode=mode)
    m(torch.randn(4, 3, 32, 32))
    layers = gated_layers(m)
    mask_loss([g.logits for g in layers], [g.labels for g in layers]).backward()
    heads = {id(p) for g in layers for p in g.predictor.parameters()}
    backbone = sum(p.grad.abs().sum().item() for p in m.parameters() if id(p) not in heads and p.grad is not None)
    assert all(g.predictor.fc.weight.grad.abs().sum() > 0 for g in layers)
    assert (backbone == 0) == (mode == 'decoupled')


def test_gated_model_moves_and_changes_memory_format():
    from hebbnb.models import create

    m = gate(create('resnet20')).to('cpu', memory_format=torch.channels_last)
    assert m.layer1[0].conv1.conv.weight.is_contiguous(memory_format=torch.channels_last)
    m.apply(lambda mod: None)  # nn.Module.apply still works on gated models
