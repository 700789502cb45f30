"Record a few seeded FTWT training steps (logits, labels, masks, losses, weights, exact MACs) for the equality test."

import torch
import torch.nn.functional as F
from hebbnb.models import create
from hebbnb.gating import gate, gated_layers
from hebbnb.predictor import mask_loss
from hebbnb.flops import dynamic_macs

CASES = [
    ('resnet20', 'decoupled', 'pre', True),
    ('resnet20', 'joint', 'post', False),
    ('vgg16_bn', 'decoupled', 'pre', True),
    ('mobilenetv2', 'decoupled', 'pre', True),
]


def _projection(t: torch.Tensor, seed: int) -> torch.Tensor:  # (4,) four seeded random projections of a tensor
    g = torch.Generator().manual_seed(seed)
    return torch.randn(4, t.numel(), generator=g, dtype=torch.float64) @ t.detach().double().flatten()


def _packed(masks: list) -> torch.Tensor:  # per layer (B, C_l) {0, 1} -> uint8 bit-packed, all layers
    import numpy as np

    return torch.from_numpy(np.packbits(torch.cat([m.flatten() for m in masks]).bool().numpy()))


def trace(arch: str, mode: str, label_at: str, softmax: bool, steps: int = 3, B: int = 8) -> dict:
    "Train `steps` FTWT steps of a gated `arch` on seeded random images; return what each step computed."
    torch.manual_seed(0)
    model = gate(create(arch, 10), r=0.8, mode=mode, label_at=label_at, softmax=softmax).to(
        memory_format=torch.channels_last
    )
    layers = gated_layers(model)
    heads = {id(p) for g in layers for p in g.predictor.parameters()}
    opt_b = torch.optim.SGD(
        [p for p in model.parameters() if id(p) not in heads], lr=0.05, momentum=0.9, weight_decay=5e-4
    )
    opt_m = torch.optim.SGD([p for p in model.parameters() if id(p) in heads], lr=0.1, momentum=0.9)
    g = torch.Generator().manual_seed(1)
    rec = dict(loss=[], ce=[], mask_loss=[], logits=[], labels=[], masks=[], out=[])
    model.train()
    for _ in range(steps):
        x = torch.randn(B, 3, 32, 32, generator=g).contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, 10, (B,), generator=g)
        out = model(x)
        ce = F.cross_entropy(out, y)
        ml = mask_loss([l.logits for l in layers], [l.labels for l in layers])
        loss = ce + ml
        opt_b.zero_grad()
        opt_m.zero_grad()
        loss.backward()
        opt_b.step()
        opt_m.step()
        rec['loss'].append(loss.item())
        rec['ce'].append(ce.item())
        rec['mask_loss'].append(ml.item())
        rec['out'].append(out.detach().clone())
        rec['logits'].append(_projection(torch.cat([l.logits.flatten() for l in layers]), 99))
        rec['labels'].append(_packed([l.labels for l in layers]))
        rec['masks'].append(_packed([l.mask for l in layers]))
    rec['weights'] = {
        k: _projection(v, i) for i, (k, v) in enumerate(model.state_dict().items()) if v.is_floating_point()
    }
    model.eval()
    with torch.no_grad():
        x = torch.randn(B, 3, 32, 32, generator=g).contiguous(memory_format=torch.channels_last)
        rec['eval_out'] = model(x)
        rec['eval_masks'] = _packed([l.mask for l in layers])
        rec['macs'], rec['macs_paper'] = dynamic_macs(model), dynamic_macs(model, 'paper')
    return rec


if (
    __name__ == '__main__'
):  # python tests/ftwt_trace.py: store the reference (only from a commit whose results are trusted)
    from pathlib import Path

    torch.set_num_threads(1)
    torch.save({'/'.join(map(str, c)): trace(*c) for c in CASES}, Path(__file__).parent / 'data' / 'ftwt_trace.pt')
