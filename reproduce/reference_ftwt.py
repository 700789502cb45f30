"""The FTWT authors' reference code (github selkerdawy/FTWT) run beside hebbnb, from a checkout the user passes.

    git clone https://github.com/selkerdawy/FTWT /tmp/ref/FTWT     # a scratch folder outside this repository
    python reproduce/reference_ftwt.py check --reference /tmp/ref/FTWT
    python reproduce/reference_ftwt.py heads --reference /tmp/ref/FTWT --out runs/reference/heads_softmax_mlr0.1
    python reproduce/reference_ftwt.py ftwt --reference /tmp/ref/FTWT --softmax --out runs/reference/long_softmax

Nothing of the reference code is copied here: its modules are imported at run time from `--reference DIR`. Four uses:
- `reference_steps`: one training step of their loop (dense and FTWT), for `reproduce/train_step.py --reference DIR`;
- `load_hebbnb_baseline`: our baseline checkpoint in their ResNet (names mapped, logits checked);
- `heads`: their mask predictors trained alone on a frozen backbone (issue 11, experiment 3), measured with hebbnb's
  definitions (`dynamic_filters`, balanced accuracy, F1) on hebbnb's data pipeline;
- `ftwt`: their full FTWT training loop (cifar.py `train`, backbone and heads) from our baseline (issue 11,
  experiment 3, second half), beside hebbnb's `reproduce/dynamic_study.sh long` runs, measured as `heads` measures.

How `ftwt` maps their cifar.py (and job_dynamic.sh) onto hebbnb's `long` runs (`hebbnb-train ... --schedule cosine
--r 0.8 --mode decoupled --epochs 30 --lr 0.01 --mlr 0.1 --cooldown 0.5 [--no-softmax]`):
- their loop, batch by batch (`ftwt_batch`): the whole model in train mode (batch statistics, their binary masks
  applied), input with requires_grad as theirs, L = CE + w L_mask with their `compute_mask_loss_per_input`, one
  backward, then their `MultipleOptimizer` steps the backbone SGD *and* the head SGD on every batch;
- w = 1 before epoch int(cooldown * epochs) and 0 from it on (their `mask_weight`; cooldown 0.5, their default). After
  it their head SGD keeps stepping on a zero gradient, so the heads move only by the momentum left in its buffer, which
  shrinks by 0.9 a batch (about 9 more steps' worth in all, then nothing); hebbnb skips the head step (frozen exactly).
  The log's `head_update` (relative change of the head weights over the epoch) shows it;
- their optimisers and groups (`reference_optimizers`): backbone SGD lr 0.01, momentum 0.9, weight decay 5e-4 (their
  job_dynamic.sh `--lr 1e-2 --wd 5e-4`); heads SGD mlr 0.1, momentum 0.9, no weight decay (`--mlr 1e-1`);
- backbone lr: cosine to 0 over the run's epochs, stepped per epoch (their `--lr_scheduler_b cosine`, which is also
  hebbnb's `--schedule cosine`); job_dynamic.sh's step schedule (81/122/151 of 200 epochs) has no 30-epoch counterpart;
- head lr: constant (their cifar.py gives the head SGD no scheduler); hebbnb's `--schedule cosine` decays the heads' lr
  as well: `--schedule cosine` here does the same, for a check of that one difference;
- heads start random (their `--headinit random` default); r = 0.8 mass labels (`--mthresh 0.8 --gt-type mass`), labels
  before the residual addition (`--gtafterblock False`, hebbnb's label_at 'pre'), decoupled (`--mode decoupled`),
  softmax 1/0 (`--softmax`);
- not theirs but hebbnb's, so that the two runs differ only in the code: the backbone starts from our baseline
  (`load_hebbnb_baseline`, in place of their `--init`), the data are hebbnb's (the baseline's normalisation and
  augmentation, seeded order), 30 epochs on the full training set at batch 128, and every epoch is evaluated on the full
  test set (`evaluate_reference`, their eval mode) as hebbnb's long runs are. Their DataParallel/CUDA, TensorBoard and
  best-model copy are left out: last.pt (written after every epoch) is the run's result, as for hebbnb's metrics.json.

Import shims (no file of the checkout is changed): `utils`, `models` and `models.cifar` are entered in `sys.modules` as
bare packages, so that their `__init__.py` files (which need tensorboardX, cv2, the MobileNets) do not run; `thop`,
which `models/cifar/resnet.py` imports but the model never calls, is stubbed when it is not installed. The entries are
removed again after the import, so their generic top-level names `utils` and `models` do not leak into the process.
"""

from __future__ import annotations
import argparse, contextlib, csv, importlib, importlib.util, json, math, os, random, shlex, subprocess, sys, time, types
from dataclasses import dataclass, asdict, fields
from pathlib import Path
import torch
from torch import nn, Tensor
import torch.nn.functional as F
from hebbnb.models import create, input_size, VGG16_CFG
from hebbnb.mass import check_r
from hebbnb.train import TrainConfig, Runtime, make_data, save_atomic, load_checkpoint, _head_metrics

ARCHS = ('resnet20', 'resnet56', 'vgg16_bn')  # the CIFAR networks of the paper that both codes build
REPO = Path(__file__).resolve().parents[1]
NEEDED = ('utils/layers.py', 'utils/utils.py', 'utils/eval.py', 'models/cifar/resnet.py', 'models/cifar/vgg.py')
_CACHE: dict[str, types.SimpleNamespace] = {}


# -------------------------------------------------------------------------------------------------------------- import
def check_reference(
    ref_dir: str | Path,  # a checkout of selkerdawy/FTWT
) -> Path:  # the resolved folder
    "The checkout folder, or a one-line `FileNotFoundError` naming what is missing."
    d = Path(ref_dir).expanduser().resolve()
    if not d.is_dir():
        raise FileNotFoundError(f"--reference {ref_dir}: no such folder (clone github selkerdawy/FTWT there)")
    missing = [f for f in NEEDED if not (d / f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"--reference {ref_dir} is not a selkerdawy/FTWT checkout: missing {', '.join(missing)}"
        )
    if REPO in d.parents or d == REPO:
        raise ValueError(f"--reference {ref_dir} lies inside this repository; clone it to a scratch folder outside")
    return d


def _stub(name: str, **attrs) -> types.ModuleType:
    m = types.ModuleType(name)
    m.__dict__.update(attrs)
    return m


def import_reference(
    ref_dir: str | Path,  # a checkout of selkerdawy/FTWT
) -> types.SimpleNamespace:  # layers, utils, eval, resnet, vgg modules; dir; commit
    "Import the reference code's model, layer and training-utility modules from `ref_dir` (once per folder)."
    d = check_reference(ref_dir)
    if str(d) in _CACHE:
        return _CACHE[str(d)]
    generic = ('utils', 'models', 'thop')
    saved = {k: v for k, v in sys.modules.items() if k.split('.')[0] in generic}
    for k in saved:
        del sys.modules[k]
    try:
        for pkg, path in (('utils', d / 'utils'), ('models', d / 'models'), ('models.cifar', d / 'models' / 'cifar')):
            sys.modules[pkg] = _stub(pkg, __path__=[str(path)])  # a package without running its __init__.py
        if importlib.util.find_spec('thop') is None:  # resnet.py imports thop's profiler, never calls it
            sys.modules['thop'] = _stub('thop', profile=None, __path__=[])
            sys.modules['thop.vision'] = _stub('thop.vision', __path__=[])
            sys.modules['thop.vision.basic_hooks'] = _stub('thop.vision.basic_hooks', zero_ops=None)
        mods = {
            n: importlib.import_module(m)
            for n, m in (
                ('layers', 'utils.layers'),
                ('utils', 'utils.utils'),
                ('eval', 'utils.eval'),
                ('resnet', 'models.cifar.resnet'),
                ('vgg', 'models.cifar.vgg'),
            )
        }
    finally:
        for k in [k for k in sys.modules if k.split('.')[0] in generic]:
            del sys.modules[k]
        sys.modules.update(saved)
    try:
        commit = (
            subprocess.run(['git', '-C', str(d), 'rev-parse', 'HEAD'], capture_output=True, text=True).stdout.strip()
            or None
        )
    except OSError:
        commit = None
    _CACHE[str(d)] = types.SimpleNamespace(**mods, dir=str(d), commit=commit)
    return _CACHE[str(d)]


# --------------------------------------------------------------------------------------------------------------- build
def _check_arch(arch):
    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {', '.join(ARCHS)}, got {arch!r}")
    return arch


def ftwt_args(
    arch: str,  # one of ARCHS
    r: float = 0.8,  # heatmap-mass threshold of the labels (their --mthresh)
    softmax: bool = True,  # softmax over the pooled head input (their --softmax 1/0)
    mode: str = 'decoupled',  # their --mode
    num_classes: int = 10,  # their args.nclass
) -> types.SimpleNamespace:  # the fields of cifar.py's `args` that `fuse_masking` reads
    "The command-line options of their cifar.py that install the mask predictors, as in job_dynamic.sh (gt-type mass)."
    return types.SimpleNamespace(
        arch=_check_arch(arch),
        use_cuda=False,
        embedding=-1,
        gt_type='mass',
        nclass=num_classes,
        mthresh=check_r(r),
        softmax=int(softmax),
        mode=mode,
        gtafterblock='False',
    )


def build_reference(
    ref_dir: str | Path,  # a checkout of selkerdawy/FTWT
    arch: str,  # one of ARCHS
    ftwt: bool = False,  # install their mask predictors (`fuse_masking`) on the dense model
    r: float = 0.8,  # heatmap-mass threshold of the labels
    softmax: bool = True,  # softmax in front of each head
    num_classes: int = 10,  # classes
    init: str | Path | None = None,  # hebbnb baseline checkpoint to load before the heads go in
) -> tuple[nn.Module, list]:  # their model, their ConvWithMask layers in forward order ([] when dense)
    "Their CIFAR ResNet or VGG16-BN, dense or with predictors as their cifar.py installs them (decoupled, mass labels)."
    R = import_reference(ref_dir)
    if _check_arch(arch).startswith('resnet'):
        model = R.resnet.resnet(depth=int(arch[6:]), num_classes=num_classes, block_name='BasicBlock')
    else:
        model = R.vgg.vgg16_bn(num_classes=num_classes)
    if init is not None:
        load_hebbnb_baseline(model, init, arch)
    if not ftwt:
        return model, []
    layers = R.utils.fuse_masking(
        types.SimpleNamespace(module=model), None, ftwt_args(arch, r, softmax, num_classes=num_classes)
    )
    return model, layers


def is_head(name: str) -> bool:
    "Their rule (cifar.py) for a mask-predictor parameter: 'Mask' in its name."
    return 'Mask' in name


def reference_optimizers(
    R: types.SimpleNamespace,  # `import_reference`
    model: nn.Module,  # their model (dense or with heads)
    lr: float = 0.01,  # backbone learning rate (job_dynamic.sh: 0.01)
    mlr: float | None = 0.1,  # head learning rate (None: no head optimiser, their --baseline)
    wd: float = 5e-4,  # backbone weight decay
    momentum: float = 0.9,  # SGD momentum of both
    backbone: bool = True,  # include the backbone optimiser
):
    "Their `MultipleOptimizer` of a backbone SGD and a head SGD, with their parameter groups."
    heads = [p for n, p in model.named_parameters() if is_head(n)]
    body = [p for n, p in model.named_parameters() if not is_head(n)]
    opts = R.utils.MultipleOptimizer([])  # an explicit list: their default `op=[]` is one list shared by every instance
    if backbone:
        opts.add(torch.optim.SGD([{'params': body, 'weight_decay': wd, 'lr': lr}], momentum=momentum))
    if mlr is not None and heads:
        opts.add(torch.optim.SGD([{'params': heads, 'weight_decay': 0.0, 'lr': mlr}], momentum=momentum))
    return opts


# ---------------------------------------------------------------------------------------------------------------- step
def ftwt_batch(
    R: types.SimpleNamespace,  # `import_reference`
    model: nn.Module,  # their model with heads, in train mode
    opts,  # their `MultipleOptimizer` (backbone and heads)
    x: Tensor,
    y: Tensor,  # (B, 3, 32, 32) images, (B,) labels
    w: float = 1.0,  # mask-loss weight: 1 before their cooldown, 0 after
) -> dict:  # loss, ce, mask_loss (unweighted; detached), mask_acc (their %), outputs (B, classes), flops (B,)
    "One batch of their cifar.py `train`: L = CE + w L_mask, one backward, a step of every optimiser (heads included)."
    inputs = torch.autograd.Variable(x, requires_grad=True)  # as their loop: input grad, for joint mode
    outputs, mask_logits, gt_mask, flops = model(inputs)  # flops: (B,) their FLOPs count of each image
    ce = F.cross_entropy(outputs, y)  # their nn.CrossEntropyLoss()
    # L_mask = (1/L) sum_l sum_c mean_b BCE(logit_blc, label_blc); theirs with lweight=w is w * this same mean
    mask_loss, mask_acc, _ = R.utils.compute_mask_loss_per_input(gt_mask, mask_logits, y, lweight=1.0)
    loss = ce + w * mask_loss
    opts.zero_grad()
    loss.backward()
    opts.step()
    return dict(
        loss=loss.detach(),
        ce=ce.detach(),
        mask_loss=mask_loss.detach(),
        mask_acc=mask_acc,
        outputs=outputs.detach(),
        flops=flops,
    )


class ReferenceStep:
    "One batch of their training loop: cifar.py `train` (FTWT) or `train_baseline` (dense), on a fixed batch."

    def __init__(
        self,
        R: types.SimpleNamespace,  # `import_reference`
        model: nn.Module,
        opts,  # their model and `MultipleOptimizer`
        x: Tensor,
        y: Tensor,  # (B, 3, 32, 32) images, (B,) labels
        ftwt: bool,  # FTWT step (mask loss, two optimisers) or dense step
        w: float = 1.0,  # mask-loss weight (1 before their cooldown)
    ):
        self.R, self.model, self.opts, self.x, self.y, self.ftwt, self.w = R, model, opts, x, y, ftwt, w
        self.criterion, self.flops = nn.CrossEntropyLoss(), 0.0

    def __call__(self) -> float:  # the step's loss
        R, y = self.R, self.y
        self.model.train()
        if self.ftwt:
            b = ftwt_batch(R, self.model, self.opts, self.x, y, self.w)
            loss, outputs = b['loss'], b['outputs']
            self.flops += b['flops'].sum()  # as their loop's FLOPs meter
            b['mask_acc'].item()  # their meters read this every batch
        else:
            outputs = self.model(torch.autograd.Variable(self.x))
            loss = self.criterion(outputs, y)
            self.opts.zero_grad()
            loss.backward()
            self.opts.step()
        prec1, prec5 = R.eval.accuracy(outputs.data, y.data, topk=(1, 5))  # their meters read these every batch
        prec1.item()
        prec5.item()
        return loss.item()


def reference_steps(
    ref_dir: str | Path,  # a checkout of selkerdawy/FTWT
    arch: str,  # one of ARCHS
    batch: int = 128,  # images per step
    r: float = 0.8,  # heatmap-mass threshold of the labels
    softmax: bool = True,  # softmax in front of each head
    channels_last: bool = True,  # model and inputs in channels-last memory format
    x: Tensor | None = None,
    y: Tensor | None = None,  # the batch (default: seeded random CIFAR-size)
    device: str = 'cpu',  # where to run
) -> dict:  # {'reference dense train': ReferenceStep, 'reference ftwt train': ReferenceStep}
    "Callables that each run one training step of the reference code, dense and FTWT, for timing beside hebbnb's."
    R = import_reference(ref_dir)
    if x is None:
        g = torch.Generator().manual_seed(0)
        x, y = torch.randn(batch, *input_size(arch), generator=g), torch.randint(0, 10, (batch,), generator=g)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x, y = x.to(device).contiguous(memory_format=fmt), y.to(device)
    dense, _ = build_reference(ref_dir, arch)
    ftwt, _ = build_reference(ref_dir, arch, ftwt=True, r=r, softmax=softmax)
    dense, ftwt = dense.to(device, memory_format=fmt), ftwt.to(device, memory_format=fmt)
    return {
        'reference dense train': ReferenceStep(
            R, dense, reference_optimizers(R, dense, lr=0.1, mlr=None), x, y, ftwt=False
        ),
        'reference ftwt train': ReferenceStep(R, ftwt, reference_optimizers(R, ftwt), x, y, ftwt=True),
    }


# -------------------------------------------------------------------------------------------------------- name mapping
def hebbnb_to_reference(
    arch: str,  # one of ARCHS
    state: dict,  # a state dict of `hebbnb.models.create(arch)`
) -> dict:  # the same tensors under their model's names
    "A hebbnb dense state dict under the reference model's names (ResNet: stem -> conv1/bn1; VGG: flat features)."
    if _check_arch(arch).startswith('resnet'):
        ren = lambda k: (
            k.replace('stem.0.', 'conv1.', 1)
            if k.startswith('stem.0.')
            else k.replace('stem.1.', 'bn1.', 1)
            if k.startswith('stem.1.')
            else k
        )
        return {ren(k): v for k, v in state.items()}
    pos, j = {}, 0  # hebbnb features.i.{0,1} (one unit per cfg entry) -> their features.j (conv, bn, relu; or pool)
    for i, v in enumerate(VGG16_CFG):
        if v != 'M':
            pos[f'features.{i}.0.'], pos[f'features.{i}.1.'] = f'features.{j}.', f'features.{j + 1}.'
        j += 1 if v == 'M' else 3

    def ren(k):
        if k.startswith('fc.'):
            return 'classifier.' + k[3:]
        head = '.'.join(k.split('.')[:3]) + '.'
        return pos[head] + k[len(head) :]

    return {ren(k): v for k, v in state.items()}


def _dense_logits(model, x):
    was = model.training
    try:
        with torch.no_grad():
            return model.eval()(x)
    finally:
        model.train(was)


def load_hebbnb_baseline(
    ref_model: nn.Module,  # their dense model (before `fuse_masking`)
    ckpt: str | Path,  # hebbnb baseline checkpoint, e.g. checkpoints/cifar10_resnet20_baseline.pt
    arch: str = 'resnet20',  # its architecture
    x: Tensor | None = None,  # (B, 3, 32, 32) batch to compare logits on (default: 64 seeded random images)
    tol: float = 1e-4,  # largest accepted |logit difference|
) -> dict:  # mapped tensors, max |logit difference|, argmax agreement
    "Load our baseline weights into their model by name mapping and check that both give the same dense logits."
    if not getattr(ref_model, 'baseline', True):
        raise ValueError("load the baseline before the mask predictors are installed")
    ck = load_checkpoint(ckpt)
    if ck['arch'] != arch:
        raise ValueError(f"{ckpt} holds a {ck['arch']}, not a {arch}")
    if ck['gated']:
        raise ValueError(f"{ckpt} is an FTWT checkpoint; pass a baseline checkpoint")
    ours = create(arch, ck['num_classes'])
    ours.load_state_dict(ck['model'])
    mapped, theirs = hebbnb_to_reference(arch, ck['model']), ref_model.state_dict()
    extra, missing = sorted(set(mapped) - set(theirs)), sorted(set(theirs) - set(mapped))
    if extra or missing:
        raise ValueError(f"name mapping incomplete: ours without a place {extra[:3]}, theirs not filled {missing[:3]}")
    bad = [k for k in mapped if mapped[k].shape != theirs[k].shape]
    if bad:
        raise ValueError(f"shape mismatch after mapping: {bad[:3]}")
    ref_model.load_state_dict(mapped, strict=True)
    if x is None:
        x = torch.randn(64, *input_size(arch), generator=torch.Generator().manual_seed(0))
    a, b = _dense_logits(ours, x), _dense_logits(ref_model, x)
    diff = (a - b).abs().max().item()
    if not diff <= tol:
        raise ValueError(f"their logits differ from ours by {diff:.3g} (> {tol}) after mapping {len(mapped)} tensors")
    return dict(
        mapped=len(mapped), max_abs_logit_diff=diff, argmax_agree=(a.argmax(1) == b.argmax(1)).double().mean().item()
    )


# ---------------------------------------------------------------------------------------------------------- heads only
@dataclass
class RunConfig:
    "What every training run of the reference code fixes (`heads` and `ftwt`); the defaults are the heads run's."

    reference: str = ''  # checkout of selkerdawy/FTWT
    arch: str = 'resnet20'  # one of ARCHS (needs a hebbnb baseline checkpoint of it)
    init: str = 'checkpoints/cifar10_resnet20_baseline.pt'  # hebbnb baseline checkpoint loaded into their backbone
    dataset: str = 'cifar10'  # 'cifar10', or 'synthetic' (tiny generated data, tests only)
    data: str | None = None  # data folder (default: $HEBBNB_DATA)
    epochs: int = 60  # epochs
    subset: int | None = 10000  # class-balanced training subset (hebbnb's balanced_subset, seeded)
    test_subset: int | None = None  # class-balanced test subset: smoke runs only (default: the full test set)
    batch_size: int = 128  # training batch (evaluation uses twice this)
    mlr: float = 0.1  # head learning rate (their --mlr; their default 0.1)
    momentum: float = 0.9  # SGD momentum (theirs, backbone and heads)
    schedule: str = (
        'cosine'  # head lr: 'cosine' (as hebbnb's heads run) or 'constant' (their cifar.py never decays the head lr)
    )
    softmax: bool = True  # softmax over the pooled head input (their --softmax 1)
    r: float = 0.8  # heatmap-mass threshold of the labels (their --mthresh)
    seed: int = 0  # data order, augmentation, head initialisation
    threads: int = 1  # CPU threads
    max_steps: int | None = None  # cut every epoch (train and eval) after this many batches: smoke runs only
    out: str = 'runs/reference/heads'  # output folder: last.pt, log.csv, metrics.json


@dataclass
class HeadsConfig(RunConfig):
    "Heads-only training of the reference predictors on a frozen hebbnb baseline (as `hebbnb-train --train heads`)."


@dataclass
class FtwtConfig(RunConfig):
    "Their full FTWT (backbone and heads, cifar.py `train`) from a hebbnb baseline, as `dynamic_study.sh long` runs it."

    epochs: int = 30  # epochs (hebbnb's long runs: 30)
    subset: int | None = None  # class-balanced training subset (default: the full training set, as the long runs)
    schedule: str = 'constant'  # head lr: 'constant' (their cifar.py: no head scheduler) or 'cosine' (hebbnb's)
    out: str = 'runs/reference/long_softmax'  # output folder: last.pt, log.csv, metrics.json
    lr: float = 0.01  # backbone learning rate, cosine to 0 over `epochs` (their --lr, --lr_scheduler_b cosine)
    weight_decay: float = 5e-4  # backbone weight decay (their --wd; the heads have none)
    cooldown: float = 0.5  # mask loss (w = 1) before epoch int(cooldown * epochs), w = 0 from it on (their --cooldown)
    mode: str = 'decoupled'  # their --mode: 'decoupled' (heads read a detached input) or 'joint'
    train: str = 'all'  # backbone and heads learn (how collect_dynamic.py tells full runs from heads-only runs)


def check_heads_config(
    c: RunConfig,  # a heads or ftwt run
) -> RunConfig:  # `c`
    "Validate the fields every run has; raise a one-line `ValueError`/`FileNotFoundError`."
    check_reference(c.reference)
    _check_arch(c.arch)
    check_r(c.r)
    if not Path(c.init).is_file():
        raise FileNotFoundError(f"--init {c.init}: no such checkpoint")
    if c.dataset not in ('cifar10', 'synthetic'):
        raise ValueError(f"dataset must be 'cifar10' or 'synthetic', got {c.dataset!r}")
    for k in ('epochs', 'batch_size', 'threads'):
        if getattr(c, k) < 1:
            raise ValueError(f"{k} must be at least 1, got {getattr(c, k)}")
    for k in ('subset', 'test_subset', 'max_steps'):
        if getattr(c, k) is not None and getattr(c, k) < 1:
            raise ValueError(f"{k} must be at least 1, got {getattr(c, k)}")
    if not (c.mlr > 0 and math.isfinite(c.mlr)):
        raise ValueError(f"mlr must be a positive number, got {c.mlr}")
    if c.schedule not in ('cosine', 'constant'):
        raise ValueError(f"schedule must be 'cosine' or 'constant', got {c.schedule!r}")
    return c


def check_ftwt_config(
    c: FtwtConfig,  # a full FTWT run
) -> FtwtConfig:  # `c`
    "Validate a full FTWT run: the common fields, then lr, weight decay, cooldown, mode."
    check_heads_config(c)
    if not (c.lr > 0 and math.isfinite(c.lr)):
        raise ValueError(f"lr must be a positive number, got {c.lr}")
    if not (c.weight_decay >= 0 and math.isfinite(c.weight_decay)):
        raise ValueError(f"weight_decay must be a non-negative number, got {c.weight_decay}")
    if not 0 <= c.cooldown <= 1:
        raise ValueError(f"cooldown must be a fraction in [0, 1], got {c.cooldown}")
    if c.mode not in ('decoupled', 'joint'):
        raise ValueError(f"mode must be 'decoupled' or 'joint', got {c.mode!r}")
    if c.train != 'all':
        raise ValueError(f"a full FTWT run trains backbone and heads: train must be 'all', got {c.train!r}")
    return c


def freeze_reference_backbone(model: nn.Module) -> list[nn.Parameter]:
    "Only their head parameters keep `requires_grad`; return them."
    for n, p in model.named_parameters():
        p.requires_grad_(is_head(n))
    return [p for n, p in model.named_parameters() if is_head(n)]


def heads_train_mode(model: nn.Module) -> nn.Module:
    "Train mode for the heads, eval mode (running statistics) for every batch norm, as hebbnb's train='heads'."
    model.train()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
    return model


def _batches(loader, max_steps):
    for i, (x, y) in enumerate(loader):
        if max_steps is not None and i >= max_steps:
            return
        yield x.contiguous(memory_format=torch.channels_last), y


class _KeepAll:
    "Stands in for their `BinarizerSTEStatic` while the heads learn: every filter kept, the frozen backbone runs dense."

    @staticmethod
    def apply(threshold, probs):
        return torch.ones_like(probs)


@contextlib.contextmanager
def _dense_teacher(R):
    "As hebbnb's train='heads': no mask applied while the heads learn, so their labels are the dense network's."
    binarizer = R.layers.BinarizerSTEStatic
    R.layers.BinarizerSTEStatic = _KeepAll
    try:
        yield
    finally:
        R.layers.BinarizerSTEStatic = binarizer


def heads_epoch(R, model, loader, opt, max_steps=None) -> dict:
    "One epoch of their mask loss (weight 1, as before their cooldown) on the heads alone; the backbone stays dense."
    heads_train_mode(model)
    sums = torch.zeros(4, dtype=torch.float64)  # mask loss, their mask accuracy (%), task loss, images
    with _dense_teacher(R):
        return _heads_steps(R, model, loader, opt, max_steps, sums)


def _heads_steps(R, model, loader, opt, max_steps, sums) -> dict:
    for x, y in _batches(loader, max_steps):
        outputs, mask_logits, gt_mask, _ = model(x)
        mask_loss, mask_acc, _ = R.utils.compute_mask_loss_per_input(gt_mask, mask_logits, y, lweight=1.0)
        if not torch.isfinite(mask_loss):
            raise ValueError(f"mask loss is {mask_loss.item()}")
        opt.zero_grad(set_to_none=True)
        mask_loss.backward()
        opt.step()
        sums += torch.tensor(
            [mask_loss.item(), mask_acc.item(), F.cross_entropy(outputs.detach(), y).item(), 1.0]
        ) * len(y)
    loss, acc, ce, n = sums.tolist()
    return dict(mask_loss=loss / n, train_mask_accuracy_ref=acc / n, ce=ce / n)


class _OutSize:
    "Forward hook: the spatial size H*W of each of their gated layers' output (for their FLOPs formula)."

    def __init__(self, layers):
        self.hw = [0] * len(layers)
        self.hooks = [l.register_forward_hook(self.hook(i)) for i, l in enumerate(layers)]

    def hook(self, i):
        def f(m, args, out):
            self.hw[i] = out[0].shape[2] * out[0].shape[3]

        return f

    def remove(self):
        [h.remove() for h in self.hooks]


def their_flops(layers: list, hw: list, active: list) -> float:
    "Their FLOPs formula (utils/layers.py), summed over the gated layers from the image input on."
    # FLOPs = sum_l active_l * H_l W_l * (active_{l-1} / g) * ks^2  (ks: kernel side; their `l.k` is the area ks^2)
    prev, total = 3.0, 0.0
    for l, s, a in zip(layers, hw, active):
        total += a * s * (prev // l.g) * l.k
        prev = a
    return total


@torch.no_grad()
def evaluate_reference(R, model, layers, loader, max_steps=None) -> dict:
    "Top-1, their mask accuracy and hebbnb's head measures (`dynamic_filters`, balanced accuracy, F1) of their model."
    model.eval()
    size = _OutSize(layers)
    counts = torch.zeros(
        sum(l.out_features for l in layers), 3, dtype=torch.float64
    )  # per filter: predicted on & labelled on, predicted on, labelled on
    used = torch.zeros(sum(l.out_features for l in layers), dtype=torch.float64)  # test images keeping each filter
    sums = torch.zeros(4, dtype=torch.float64)  # correct, their mask accuracy x images, their FLOPs, images
    try:
        for x, y in _batches(loader, max_steps):
            outputs, mask_logits, gt_mask, flops = model(x)
            _, mask_acc, _ = R.utils.compute_mask_loss_per_input(gt_mask, mask_logits, y, lweight=1.0)
            kept = [
                R.layers.BinarizerSTEStatic.apply(0.5, torch.sigmoid(z)).flatten(1) > 0.5 for z in mask_logits
            ]  # (B, C_l): the mask they apply
            lab = [g.flatten(1) > 0.5 for g in gt_mask]  # (B, C_l) labels
            counts += torch.cat(
                [torch.stack([(k & g).sum(0), k.sum(0), g.sum(0)], 1) for k, g in zip(kept, lab)]
            ).double()
            used += torch.cat([k.sum(0) for k in kept]).double()
            sums += torch.tensor(
                [(outputs.argmax(1) == y).sum().item(), mask_acc.item() * len(y), flops.sum().item(), len(y)],
                dtype=torch.float64,
            )
    finally:
        size.remove()
    correct, acc, flops, n = sums.tolist()
    res = dict(top1=100 * correct / n, mask_accuracy_ref=acc / n) | _head_metrics(
        [l.out_features for l in layers], counts, used, n
    )
    sizes = [l.out_features for l in layers]
    union = [float((u > 0).sum()) for u in used.split(sizes)]
    dense, static = their_flops(layers, size.hw, sizes), their_flops(layers, size.hw, union)
    res |= dict(
        always_on=100 * (used == n).double().mean().item(),
        always_off=100 * (used == 0).double().mean().item(),
        flops_reduction_ref=100 * (1 - flops / n / dense),
        static_saving_ref=100 * (dense - static) / dense,
        dynamic_saving_ref=100 * (static - flops / n) / dense,
    )
    return res


LOG_FIELDS = [
    'epoch',
    'mlr',
    'mask_loss',
    'ce',
    'train_mask_accuracy_ref',
    'top1',
    'mask_accuracy_ref',
    'mask_accuracy',
    'balanced_accuracy',
    'f1',
    'dynamic_filters',
    'always_on',
    'always_off',
    'flops_reduction_ref',
    'static_saving_ref',
    'dynamic_saving_ref',
    'seconds',
]
# a full FTWT run's log.csv: the heads run's measures, and the training losses under hebbnb's log names (loss = ce +
# w * mask_loss; mask_loss unweighted), the head weights' relative change over the epoch, and its training time
FTWT_LOG_FIELDS = (
    ['epoch', 'lr', 'mlr', 'w', 'loss', 'ce', 'mask_loss', 'train_top1', 'train_mask_accuracy_ref', 'head_update']
    + LOG_FIELDS[LOG_FIELDS.index('top1') : -1]
    + ['train_seconds', 'seconds']
)
HEADS_FORMAT, FTWT_FORMAT = 'reference-heads-v1', 'reference-ftwt-v1'  # last.pt's `format`
HEADS_SAME = (  # options a heads run's last.pt must share with the run that resumes it
    'arch',
    'init',
    'dataset',
    'epochs',
    'subset',
    'test_subset',
    'batch_size',
    'mlr',
    'momentum',
    'schedule',
    'softmax',
    'r',
    'seed',
    'max_steps',
)
FTWT_SAME = HEADS_SAME + ('lr', 'weight_decay', 'cooldown', 'mode', 'train')  # and a full FTWT run's


def _write_log(rows, out: Path, names: list = LOG_FIELDS):
    tmp = out / '.log.csv.tmp'
    with open(tmp, 'w', newline='') as f:
        w = csv.DictWriter(f, names, extrasaction='ignore')
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, out / 'log.csv')


def _load_last(c: RunConfig, fmt: str, same: tuple) -> dict | None:
    "`c.out`/last.pt (None when there is none); a one-line `ValueError` if it is another kind or has other options."
    p = Path(c.out) / 'last.pt'
    if not p.is_file():
        return None
    ck = torch.load(p, map_location='cpu', weights_only=False)  # our own file, written by `_end_epoch`
    if not isinstance(ck, dict) or ck.get('format') != fmt:
        raise ValueError(f"{p} is not a reference {'heads' if fmt == HEADS_FORMAT else 'FTWT'} checkpoint")
    changed = [k for k in same if ck['config'].get(k) != getattr(c, k)]
    if changed:
        raise ValueError(f"{p} was written with other options ({', '.join(changed)}); use another --out")
    return ck


def _resume(c: HeadsConfig, model, opt, sched) -> tuple[int, list, dict]:
    "Continue from `c.out`/last.pt if it exists: (next epoch, log rows, last metrics); the options must be unchanged."
    ck = _load_last(c, HEADS_FORMAT, HEADS_SAME)
    if ck is None:
        return 0, [], {}
    model.load_state_dict(ck['model'])
    opt.load_state_dict(ck['opt'])
    sched.load_state_dict(ck['sched'])
    torch.set_rng_state(ck['rng'])
    return ck['epoch'], ck['log'], ck['metrics']


def _resume_ftwt(c: FtwtConfig, model, opts, scheds: list) -> tuple[int, list, dict]:
    "As `_resume`, for a full FTWT run: both optimisers (their `MultipleOptimizer`) and both schedules."
    ck = _load_last(c, FTWT_FORMAT, FTWT_SAME)
    if ck is None:
        return 0, [], {}
    model.load_state_dict(ck['model'])
    opts.load_state_dict(ck['opt'])  # theirs: a list, one state per optimiser
    for s, state in zip(scheds, ck['sched'], strict=True):
        s.load_state_dict(state)
    torch.set_rng_state(ck['rng'])
    return ck['epoch'], ck['log'], ck['metrics']


def _end_epoch(c: RunConfig, fmt: str, names: list, model, opt_state, sched_state, rows: list, res: dict):
    "After an epoch (its row appended to `rows`): write last.pt atomically, then log.csv."
    out = Path(c.out)
    save_atomic(
        dict(
            format=fmt,
            config=asdict(c),
            epoch=rows[-1]['epoch'],
            model=model.state_dict(),
            opt=opt_state,
            sched=sched_state,
            rng=torch.get_rng_state(),
            log=rows,
            metrics=res,
        ),
        out / 'last.pt',
    )
    _write_log(rows, out, names)


def data_config(
    c: RunConfig,  # the run: arch, dataset, data, subset, test_subset, batch_size, seed
) -> TrainConfig:  # never downloads: the baseline was trained on the same local data
    "The hebbnb config whose `make_data` gives a run (trained or evaluated) its batches, built in one place."
    return TrainConfig(
        arch=c.arch,
        dataset=c.dataset,
        data=c.data,
        download=False,
        subset=c.subset,
        test_subset=c.test_subset,
        batch_size=c.batch_size,
        seed=c.seed,
    )


def install_heads(
    R: types.SimpleNamespace,  # `import_reference`
    model: nn.Module,  # their dense model (holding the baseline)
    c: RunConfig,  # the run: arch, r, softmax and, for a full FTWT run, mode
    num_classes: int,  # classes
) -> list:  # their ConvWithMask layers in forward order
    "Their mask predictors, installed by their `fuse_masking` as their cifar.py does (heads runs: decoupled)."
    mode = c.mode if isinstance(c, FtwtConfig) else 'decoupled'
    return R.utils.fuse_masking(
        types.SimpleNamespace(module=model), None, ftwt_args(c.arch, c.r, c.softmax, mode, num_classes)
    )


def _setup(c: RunConfig):
    "Threads and seeds, hebbnb's batches, their model holding our baseline (logits checked), their heads installed."
    torch.set_num_threads(c.threads)
    torch.manual_seed(c.seed)
    random.seed(c.seed)
    R = import_reference(c.reference)
    train_loader, test_loader, nc = make_data(data_config(c), Runtime(torch.device('cpu')))
    model, _ = build_reference(c.reference, c.arch, num_classes=nc)
    check = load_hebbnb_baseline(model, c.init, c.arch, x=next(iter(test_loader))[0][:64])  # on real test images
    layers = install_heads(R, model, c, nc)  # draws the heads' random initialisation
    return R, train_loader, test_loader, model, layers, check


def head_schedule(c: RunConfig, opt) -> torch.optim.lr_scheduler.LRScheduler:
    "The heads' lr schedule, stepped per epoch: cosine to 0 over `c.epochs`, or constant."
    if c.schedule == 'cosine':
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=c.epochs)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 1.0)


def _final_metrics(c: RunConfig, R, rows: list, res: dict, check: dict, command: str, train: str, **extra) -> dict:
    "metrics.json: who ran what, the last epoch's log row and measures, the run's time; written to `c.out`."
    if not rows:
        raise ValueError(f"{Path(c.out) / 'last.pt'} holds no finished epoch")
    skip = ('epoch', 'lr', 'mlr', 'w', 'seconds', 'train_seconds')  # per epoch, not the run's (lr, mlr: the config's)
    final = dict(
        code='reference (github selkerdawy/FTWT)',
        reference_commit=R.commit,
        arch=c.arch,
        train=train,
        r=c.r,
        softmax=c.softmax,
        mlr=c.mlr,
        schedule=c.schedule,
        **extra,
        epochs=c.epochs,
        subset=c.subset,
        test_subset=c.test_subset,
        **{k: v for k, v in rows[-1].items() if k not in skip},
        per_layer=res.get('per_layer'),
        baseline_check=check,
        seconds=sum(row['seconds'] for row in rows),
        torch=torch.__version__,
        threads=c.threads,
        config=asdict(c),
        command=command,
    )
    (Path(c.out) / 'metrics.json').write_text(json.dumps(final, indent=2))
    return final


def train_heads(
    c: HeadsConfig,  # the run
    command: str = '',  # the command line, recorded in metrics.json
) -> dict:  # final metrics, as written to metrics.json
    "Train their predictors on their ResNet/VGG holding our frozen baseline; evaluate and log after every epoch."
    check_heads_config(c)
    R, train_loader, test_loader, model, layers, check = _setup(c)
    out = Path(c.out)
    heads = freeze_reference_backbone(model)
    opt = torch.optim.SGD(
        [{'params': heads, 'weight_decay': 0.0, 'lr': c.mlr}], momentum=c.momentum
    )  # their head optimiser
    sched = head_schedule(c, opt)
    start, rows, res = _resume(c, model, opt, sched)
    out.mkdir(parents=True, exist_ok=True)
    print(f"reference heads: {json.dumps(asdict(c))}  baseline check {check}  reference {R.commit}", flush=True)
    if start:
        print(f"resuming {out / 'last.pt'} at epoch {start + 1}", flush=True)
    for epoch in range(start, c.epochs):
        t0, mlr = time.time(), opt.param_groups[0]['lr']
        train_loader.set_epoch(epoch)
        tr = heads_epoch(R, model, train_loader, opt, c.max_steps)
        res = evaluate_reference(R, model, layers, test_loader, c.max_steps)
        sched.step()
        rows.append(
            dict(
                epoch=epoch + 1,
                mlr=mlr,
                **tr,
                **{k: v for k, v in res.items() if k in LOG_FIELDS},
                seconds=time.time() - t0,
            )
        )
        _end_epoch(c, HEADS_FORMAT, LOG_FIELDS, model, opt.state_dict(), sched.state_dict(), rows, res)
        print(
            f"epoch {epoch + 1}/{c.epochs}  mlr {mlr:.4g}  mask loss {tr['mask_loss']:.3f}  top1 {res['top1']:.2f}%  "
            f"mask acc {res['mask_accuracy']:.1f}% (theirs {res['mask_accuracy_ref']:.1f}%)  "
            f"balanced {res['balanced_accuracy']:.1f}%  "
            f"F1 {res['f1']:.1f}%  dynamic filters {res['dynamic_filters']:.2f}%  {rows[-1]['seconds']:.0f}s",
            flush=True,
        )
    return _final_metrics(c, R, rows, res, check, command, 'heads')


# ------------------------------------------------------------------------------------------------------------ full FTWT
def reference_mask_weight(
    c: FtwtConfig,  # the run: cooldown, epochs
    epoch: int,  # 0-based epoch
) -> float:
    "Their cifar.py `mask_weight`: 1 before epoch int(cooldown * epochs), 0 from it on."
    return 0.0 if epoch >= int(c.cooldown * c.epochs) else 1.0


def _head_vector(model) -> Tensor:
    return torch.cat([p.detach().flatten() for n, p in model.named_parameters() if is_head(n)])


def ftwt_epoch(
    R: types.SimpleNamespace,  # `import_reference`
    model: nn.Module,  # their model with heads
    loader,  # training batches (x, y)
    opts,  # their `MultipleOptimizer`: backbone SGD, then head SGD
    w: float,  # mask-loss weight of this epoch (`reference_mask_weight`)
    max_steps: int | None = None,  # cut the epoch after this many batches
) -> dict:  # loss, ce, mask_loss, train_top1, train_mask_accuracy_ref (per image), head_update
    "One epoch of their cifar.py `train`: the whole model in train mode, `ftwt_batch` on every batch."
    model.train()
    h0 = _head_vector(model)
    sums = torch.zeros(6, dtype=torch.float64)  # loss, ce, mask loss, their mask accuracy (%), correct, images
    for i, (x, y) in enumerate(_batches(loader, max_steps)):
        b = ftwt_batch(R, model, opts, x, y, w)
        if not torch.isfinite(b['loss']):
            raise ValueError(f"loss is {b['loss'].item()} at step {i + 1}; the last epoch's last.pt is kept")
        sums += torch.tensor(
            [
                b['loss'].item() * len(y),
                b['ce'].item() * len(y),
                b['mask_loss'].item() * len(y),
                b['mask_acc'].item() * len(y),
                (b['outputs'].argmax(1) == y).sum().item(),
                len(y),
            ],
            dtype=torch.float64,
        )
    loss, ce, ml, acc, correct, n = sums.tolist()
    if n == 0:
        raise ValueError("no training batch in the epoch")
    h1 = _head_vector(model)
    return dict(
        loss=loss / n,
        ce=ce / n,
        mask_loss=ml / n,
        train_top1=100 * correct / n,
        train_mask_accuracy_ref=acc / n,
        head_update=((h1 - h0).norm() / h0.norm()).item(),  # ||heads after - heads before|| / ||heads before||
    )


def train_ftwt(
    c: FtwtConfig,  # the run
    command: str = '',  # the command line, recorded in metrics.json
) -> dict:  # final metrics, as written to metrics.json
    "Their full FTWT from our baseline (backbone and heads, mask loss until the cooldown); evaluated every epoch."
    check_ftwt_config(c)
    R, train_loader, test_loader, model, layers, check = _setup(c)
    out = Path(c.out)
    opts = reference_optimizers(R, model, lr=c.lr, mlr=c.mlr, wd=c.weight_decay, momentum=c.momentum)
    scheds = [  # their scheduler_b (--lr_scheduler_b cosine), stepped per epoch; the heads' (`head_schedule`)
        torch.optim.lr_scheduler.CosineAnnealingLR(opts[0], T_max=c.epochs, eta_min=0.0),
        head_schedule(c, opts[1]),
    ]
    start, rows, res = _resume_ftwt(c, model, opts, scheds)
    out.mkdir(parents=True, exist_ok=True)
    print(f"reference ftwt: {json.dumps(asdict(c))}  baseline check {check}  reference {R.commit}", flush=True)
    if start:
        print(f"resuming {out / 'last.pt'} at epoch {start + 1}", flush=True)
    for epoch in range(start, c.epochs):
        t0, lr, mlr = time.time(), opts[0].param_groups[0]['lr'], opts[1].param_groups[0]['lr']
        w = reference_mask_weight(c, epoch)
        train_loader.set_epoch(epoch)
        tr = ftwt_epoch(R, model, train_loader, opts, w, c.max_steps)
        t1 = time.time()
        res = evaluate_reference(R, model, layers, test_loader, c.max_steps)
        for s in scheds:
            s.step()
        rows.append(
            dict(
                epoch=epoch + 1,
                lr=lr,
                mlr=mlr,
                w=w,
                **tr,
                **{k: v for k, v in res.items() if k in FTWT_LOG_FIELDS},
                train_seconds=t1 - t0,
                seconds=time.time() - t0,
            )
        )
        _end_epoch(
            c, FTWT_FORMAT, FTWT_LOG_FIELDS, model, opts.get_state_dict(), [s.state_dict() for s in scheds], rows, res
        )
        print(
            f"epoch {epoch + 1}/{c.epochs}  lr {lr:.4g}  mlr {mlr:.4g}  w {w:g}  loss {tr['loss']:.3f} "
            f"(ce {tr['ce']:.3f}, mask {tr['mask_loss']:.3f})  head update {tr['head_update']:.2g}  "
            f"top1 {res['top1']:.2f}%  mask acc {res['mask_accuracy']:.1f}% (theirs {res['mask_accuracy_ref']:.1f}%)  "
            f"balanced {res['balanced_accuracy'] or float('nan'):.1f}%  F1 {res['f1'] or float('nan'):.1f}%  "
            f"dynamic filters {res['dynamic_filters']:.2f}%  saving {res['flops_reduction_ref']:.1f}% "
            f"(static {res['static_saving_ref']:.1f}, dynamic {res['dynamic_saving_ref']:.1f})  "
            f"train {rows[-1]['train_seconds']:.0f}s  total {rows[-1]['seconds']:.0f}s",
            flush=True,
        )
    return _final_metrics(
        c, R, rows, res, check, command, 'all', lr=c.lr, weight_decay=c.weight_decay, cooldown=c.cooldown, mode=c.mode
    )


# ----------------------------------------------------------------------------------------------------------------- CLI
RUN_HELP = {
    'reference': 'checkout of github selkerdawy/FTWT (outside this repository)',
    'arch': f"one of {', '.join(ARCHS)}",
    'init': 'hebbnb baseline checkpoint loaded into their backbone',
    'dataset': "'cifar10', or 'synthetic' for tests",
    'data': 'data folder (default: $HEBBNB_DATA)',
    'epochs': 'epochs',
    'subset': 'class-balanced training images (0: all 50,000)',
    'test_subset': 'class-balanced test images: smoke runs only (default: full test set)',
    'batch_size': 'training batch',
    'mlr': 'head learning rate (their --mlr)',
    'momentum': 'head SGD momentum',
    'schedule': "'cosine' or 'constant' head lr",
    'r': 'heatmap-mass threshold of the labels (their --mthresh)',
    'seed': 'seed of data order and head init',
    'threads': 'CPU threads',
    'max_steps': 'batches per epoch (train and eval): smoke runs only',
    'out': 'output folder',
}
FTWT_HELP = RUN_HELP | {
    'momentum': 'SGD momentum of backbone and heads',
    'schedule': "head lr: 'constant' (their cifar.py) or 'cosine' (hebbnb's)",
    'lr': 'backbone learning rate, cosine to 0 over the epochs (their --lr, --lr_scheduler_b cosine)',
    'weight_decay': 'backbone weight decay (their --wd)',
    'cooldown': 'mask loss before epoch int(cooldown * epochs), none after (their --cooldown)',
    'mode': "'decoupled' or 'joint' (their --mode)",
}


def _config_flags(p: argparse.ArgumentParser, cls, help_: dict):
    "A flag for every field of the config dataclass `cls` that `help_` explains, then --softmax/--no-softmax, --resume."
    for f in fields(cls):
        if f.name not in help_:
            continue
        typ = {'int | None': int, 'str | None': str}.get(
            f.type, {'int': int, 'float': float, 'str': str}.get(f.type, str)
        )
        p.add_argument(
            '--' + f.name.replace('_', '-'),
            dest=f.name,
            type=typ,
            default=f.default,
            required=f.name == 'reference',
            help=help_[f.name],
        )
    p.add_argument(
        '--softmax',
        action=argparse.BooleanOptionalAction,
        default=True,
        help='softmax over the pooled head input (their --softmax 1)',
    )
    p.add_argument('--resume', action='store_true', help='continue from OUT/last.pt when it exists')


def parser() -> argparse.ArgumentParser:
    "The command line: `check` (name mapping and logits), `heads` (heads-only), `ftwt` (full FTWT), `eval`."
    p = argparse.ArgumentParser(prog='reference_ftwt.py', description=__doc__.split('\n')[0])
    sub = p.add_subparsers(dest='cmd', required=True)
    ck = sub.add_parser(
        'check', help='map our baseline into their model and compare dense logits; run one reference FTWT step'
    )
    ck.add_argument('--reference', required=True, help=RUN_HELP['reference'])
    ck.add_argument('--init', default=HeadsConfig.init, help='hebbnb ResNet-20 baseline checkpoint')
    h = sub.add_parser('heads', help='train their mask predictors on our frozen baseline, evaluated every epoch')
    _config_flags(h, HeadsConfig, RUN_HELP)
    ft = sub.add_parser(
        'ftwt', help='their full FTWT training loop (backbone and heads) from our baseline, evaluated every epoch'
    )
    _config_flags(ft, FtwtConfig, FTWT_HELP)
    ev = sub.add_parser(
        'eval', help="evaluate a heads or ftwt run's last.pt with hebbnb's measures; writes RUN/eval.json"
    )
    ev.add_argument('--reference', required=True, help=RUN_HELP['reference'])
    ev.add_argument('--run', required=True, help='a heads or ftwt run folder (holds last.pt)')
    ev.add_argument(
        '--test-subset', type=int, default=None, help='class-balanced test images (default: the full test set)'
    )
    ev.add_argument('--threads', type=int, default=1, help='CPU threads')
    return p


RUN_FORMATS = {HEADS_FORMAT: HeadsConfig, FTWT_FORMAT: FtwtConfig}  # last.pt's format -> its config


def eval_main(a):
    "Evaluate a finished (or stopped) run's last.pt on the test set with hebbnb's measures; write RUN/eval.json."
    run = Path(a.run)
    ck = torch.load(run / 'last.pt', map_location='cpu', weights_only=False)  # our own file, written by `_end_epoch`
    if not isinstance(ck, dict) or ck.get('format') not in RUN_FORMATS:
        raise ValueError(f"{run / 'last.pt'} is not a reference heads or FTWT checkpoint")
    cls = RUN_FORMATS[ck['format']]
    c = cls(**{**ck['config'], 'reference': a.reference, 'test_subset': a.test_subset, 'threads': a.threads})
    torch.set_num_threads(c.threads)
    R = import_reference(c.reference)
    _, test_loader, nc = make_data(data_config(c), Runtime(torch.device('cpu')))
    model, _ = build_reference(c.reference, c.arch, num_classes=nc)
    layers = install_heads(R, model, c, nc)
    model.load_state_dict(ck['model'])
    res = dict(
        evaluate_reference(R, model, layers, test_loader),
        epoch=ck['epoch'],
        test_subset=c.test_subset,
        reference_commit=R.commit,
    )
    (run / 'eval.json').write_text(json.dumps(res, indent=2))
    print(json.dumps({k: v for k, v in res.items() if k != 'per_layer'}))


def check_main(a):
    "Print the name mapping's logit check on a real test batch (or random images) and one reference FTWT step."
    R = import_reference(a.reference)
    model, _ = build_reference(a.reference, 'resnet20')
    try:
        tc = TrainConfig(dataset='cifar10', download=False, test_subset=64, batch_size=32)
        x, src = next(iter(make_data(tc, Runtime(torch.device('cpu')))[1]))[0], 'CIFAR-10 test images'
    except (FileNotFoundError, ValueError, RuntimeError):
        x, src = None, 'random images'
    print(
        json.dumps(dict(reference_commit=R.commit, batch=src, **load_hebbnb_baseline(model, a.init, 'resnet20', x=x)))
    )
    steps = reference_steps(a.reference, 'resnet20', batch=16)
    print(json.dumps({k: round(f(), 4) for k, f in steps.items()}))


def main(argv=None):
    "Console entry: one-line errors, exit code 2 on bad input."
    from hebbnb.cli import run_cli

    os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')
    argv = sys.argv[1:] if argv is None else list(argv)

    def go(argv):
        a = parser().parse_args(argv)
        if a.cmd == 'check':
            torch.set_num_threads(1)
            return check_main(a)
        if a.cmd == 'eval':
            return eval_main(a)
        cls, train = (HeadsConfig, train_heads) if a.cmd == 'heads' else (FtwtConfig, train_ftwt)
        kw = {f.name: getattr(a, f.name) for f in fields(cls) if hasattr(a, f.name)}
        if kw['subset'] == 0:
            kw['subset'] = None
        c = cls(**kw)
        if not a.resume and (Path(c.out) / 'last.pt').is_file():
            raise ValueError(f"{c.out}/last.pt exists; pass --resume or another --out")
        train(c, command=shlex.join(['python', 'reproduce/reference_ftwt.py', *argv]))

    sys.exit(run_cli('reference_ftwt.py', go, argv))


if __name__ == '__main__':
    main()
