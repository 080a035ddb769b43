"""Fine-tune a pretrained teacher on the data's classes (`teacher.pretrained` + `teacher.finetune`).

The teacher keeps its own preprocessing (models/teachers.py `TeacherAdapter`: the student's normalized images
resized and re-normalized inside), gets a head for the data's classes and is trained in two phases:

1. linear probe: the head alone, on the frozen network's features of a few augmented passes over the labeled
   training images (computed once, so hundreds of head steps cost almost nothing);
2. the whole network at a lower learning rate (`teacher.train.finetune_lr`, default lr / 10; optionally
   layer-wise decay), with the data's augmentation, bf16 autocast where the hardware has it, early stopping
   on val top-1 and the best epoch's weights kept; resumable per epoch like every stage.

An ensemble fine-tunes each member on its own. `teacher.init: random` trains the same architecture, with the
same preprocessing and schedule, from random weights: the control that shows what the pretraining gives.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pocketvit.data.augment import AugmentConfig
from pocketvit.data.datasets import Splits, plain_batches
from pocketvit.errors import RecipeError
from pocketvit.progress import log, progress_bar
from pocketvit.runtime.io import write_json

HEAD_STEPS = 2000  # at most this many head steps in the probe (features are cached: cheap)


def classifier_slot(model: nn.Module) -> tuple[nn.Module, str, nn.Linear]:
    """(parent module, attribute name, the classifier) of a teacher network: open_clip's `head`, timm's
    `get_classifier()`, else the last `nn.Linear` (EfficientNet-Lite's `_fc`, pocketvit's own models)."""
    head = getattr(model, "head", None) if model.__class__.__name__ == "OpenClipClassifier" else None
    if head is None and hasattr(model, "get_classifier"):
        head = model.get_classifier()
    if not isinstance(head, nn.Linear):
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        head = linears[-1] if linears else None
    if head is None:
        raise RecipeError(f"teacher {type(model).__name__}: no linear classifier found to replace with a head for "
                          "the data's classes; fine-tuning needs a network that ends in nn.Linear")
    for name, module in model.named_modules():
        for attr, child in module.named_children():
            if child is head:
                return module, attr, head
    raise RecipeError(f"teacher {type(model).__name__}: its classifier is not a child module")  # pragma: no cover


def new_head(network: nn.Module, num_classes: int) -> nn.Linear:
    """Replace the network's classifier with a fresh one for `num_classes` classes; returns it."""
    parent, attr, old = classifier_slot(network)
    head = nn.Linear(old.in_features, num_classes)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    setattr(parent, attr, head)
    return head


def reinitialize(network: nn.Module, seed: int) -> None:
    """Random weights for every layer (PyTorch's default initialisation), BatchNorm statistics reset."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for m in network.modules():
            if hasattr(m, "reset_parameters") and m is not network:
                m.reset_parameters()


def layer_of(name: str) -> str:
    """A parameter's layer for layer-wise decay: its path up to the first block index (`_blocks.12`,
    `blocks.3`, `stages.1`), else its top-level module (`_conv_stem`, `_bn0`)."""
    m = re.match(r"^(.*?\.\d+)(\.|$)", name)
    return m.group(1) if m else name.split(".")[0]


def layer_depths(network: nn.Module, head: nn.Module) -> dict[str, int]:
    """Each parameter's layer counted down from the top: -1 for the head, 0 for the layer just below it, ..."""
    head_ids = {id(p) for p in head.parameters()}
    order: list[str] = []
    for name, p in network.named_parameters():
        if id(p) not in head_ids and layer_of(name) not in order:
            order.append(layer_of(name))
    depth = {layer: len(order) - 1 - i for i, layer in enumerate(order)}
    return {name: -1 if id(p) in head_ids else depth[layer_of(name)] for name, p in network.named_parameters()}


def layer_decay_scales(network: nn.Module, head: nn.Module, decay: float, prefix: str = "") -> Callable[[str], float]:
    """LR multiplier per parameter name (names as seen from the module `prefix` belongs to): 1 for the head, decay^k
    for the k-th layer counted back from the top (k = 1 for the layer just below the head)."""
    depths = {prefix + name: d for name, d in layer_depths(network, head).items()}
    return lambda name: decay ** (depths.get(name, -1) + 1)


def freeze_below(network: nn.Module, head: nn.Module, layers: int) -> list[nn.Module]:
    """Keep only the top `layers` layers below the head trainable (and the head); returns the frozen modules,
    whose BatchNorm statistics must stay as they are (eval mode while training)."""
    depths = layer_depths(network, head)
    frozen_names = {n for n, d in depths.items() if d >= layers}
    for name, p in network.named_parameters():
        p.requires_grad_(name not in frozen_names)
    frozen = []
    for name, module in network.named_modules():
        own = [f"{name}.{n}" if name else n for n, _ in module.named_parameters(recurse=False)]
        if own and all(n in frozen_names for n in own):
            frozen.append(module)
    return frozen


@torch.no_grad()
def features(adapter: nn.Module, network: nn.Module, batches, total: int, precision: str, description: str
             ) -> torch.Tensor:
    """The frozen network's head inputs for normalized student batches (the classifier swapped for Identity)."""
    from pocketvit.distill.trainer import inference_autocast

    parent, attr, head = classifier_slot(network)
    setattr(parent, attr, nn.Identity())
    device = next(adapter.parameters()).device
    out = []
    try:
        adapter.eval()
        with progress_bar(description, total) as advance:
            for x in batches:
                x = x.to(device)
                if x.device.type == "cpu":
                    x = x.contiguous(memory_format=torch.channels_last)
                with inference_autocast(precision, device):
                    out.append(adapter(x).float().cpu())
                advance(len(x))
    finally:
        setattr(parent, attr, head)
    return torch.cat(out)


def linear_probe(adapter: nn.Module, network: nn.Module, splits: Splits, aug: AugmentConfig, seed: int,
                 cfg: Any, precision: str) -> float | None:
    """Train the head alone on frozen features of `cfg.probe_epochs` augmented passes; returns val top-1."""
    from pocketvit.distill.supervised import label_batches

    data = splits.labeled_train
    head = classifier_slot(network)[2]
    batch = cfg.batch_size
    collected: list[torch.Tensor] = []

    def views():  # augmented passes, streamed: only the features are kept
        for epoch in range(cfg.probe_epochs):
            for x, y in label_batches(splits, aug, seed, batch)(epoch):
                collected.append(y)
                yield x

    feats = features(adapter, network, views(), cfg.probe_epochs * len(data), precision, "teacher probe features")
    labels = torch.cat(collected)
    val_feats = features(adapter, network, (splits.normalize(x) for x, _ in plain_batches(splits.val, 250)),
                         len(splits.val), precision, "teacher probe val features") if len(splits.val) else None
    steps_per_pass = math.ceil(len(labels) / batch)
    passes = max(1, min(100, HEAD_STEPS // steps_per_pass))
    total = passes * steps_per_pass
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total, pct_start=0.1)
    gen = torch.Generator().manual_seed(seed)
    device = head.weight.device
    head.train()
    with torch.enable_grad():
        for _ in range(passes):
            order = torch.randperm(len(labels), generator=gen)
            for start in range(0, len(order), batch):
                idx = order[start : start + batch]
                loss = F.cross_entropy(head(feats[idx].to(device)), labels[idx].to(device),
                                       label_smoothing=cfg.label_smoothing)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
    head.eval()
    log(f"  teacher linear probe: head trained {total} steps on frozen features of {len(labels)} augmented views "
        f"({cfg.probe_epochs} pass(es) over {len(data)} labeled images)")
    if val_feats is None:
        return None
    with torch.no_grad():
        top1 = float((head(val_feats.to(device)).argmax(1).cpu() == splits.val.labels).float().mean())
    log(f"  teacher linear probe: val top-1 {top1:.4f}")
    return top1


@torch.no_grad()
def precise_batchnorm(adapter: nn.Module, batches, precision: str) -> None:
    """Re-estimate every BatchNorm layer's running statistics as the exact average over `batches` (normalized
    training images), with the weights as they are now. Pretrained CNNs keep their statistics with a small momentum
    (EfficientNet-Lite: 0.01), so after a few hundred fine-tuning steps the running statistics still lean on
    ImageNet's while the weights have moved: evaluation then sees the wrong statistics. Done before every
    validation, so the scored (and the kept) weights carry statistics that match them."""
    from pocketvit.distill.trainer import inference_autocast

    trainable = [m for m in adapter.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                 and m.track_running_stats and any(p.requires_grad for p in m.parameters())]  # frozen ones keep theirs
    if not trainable:
        return
    state = [(m, m.momentum, m.training) for m in trainable]
    for m in trainable:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches
    was = adapter.training
    adapter.eval()
    for m in trainable:
        m.train()
    device = next(adapter.parameters()).device
    for x in batches:
        x = x.to(device)
        if x.ndim == 4 and device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        with inference_autocast(precision, device):
            adapter(x)
    for m, momentum, training in state:
        m.momentum = momentum
        m.train(training)
    adapter.train(was)


def finetune_member(adapter: nn.Module, splits: Splits, aug: AugmentConfig, seed: int, cfg: Any, head_mode: str,
                    init: str, epochs: int, precision: str, work_dir: Path, who: str) -> dict[str, Any]:
    """Fine-tune one teacher (a `TeacherAdapter`) in place on the labeled training images; returns its record."""
    from pocketvit.distill.supervised import evaluate, label_batches
    from pocketvit.distill.trainer import TrainSettings, Validation, train

    network = adapter.model
    if init == "random":
        reinitialize(network, seed)
    if head_mode == "new":
        new_head(network, len(splits.labels))
    head = classifier_slot(network)[2]
    record: dict[str, Any] = {"head": head_mode, "init": init}
    record["precision"] = precision
    log(f"  {who} training precision: {precision}")
    probe = cfg.probe_epochs > 0 and init == "pretrained"
    probe_file = work_dir / "probe.json"
    if probe and not (work_dir / "checkpoint.pt").exists():  # a resumed run already has the probed head
        record["probe_val_top1"] = linear_probe(adapter, network, splits, aug, seed, cfg, precision)
        write_json(probe_file, {"probe_val_top1": record["probe_val_top1"]})
    elif probe and probe_file.exists():
        record |= json.loads(probe_file.read_text())
    lr = cfg.lr if init == "random" else (cfg.finetune_lr or cfg.lr / 10)
    scale = layer_decay_scales(network, head, cfg.layer_decay, "model.") if cfg.layer_decay else None
    frozen: list[nn.Module] = []
    if cfg.trainable_layers is not None and init == "pretrained":
        frozen = freeze_below(network, head, cfg.trainable_layers)
        trainable = sum(p.numel() for p in network.parameters() if p.requires_grad)
        log(f"  {who}: training the top {cfg.trainable_layers} layer(s) and the head ({trainable:,} of "
            f"{sum(p.numel() for p in network.parameters()):,} parameters); the layers below stay as pretrained")

    def train_mode(model: nn.Module) -> None:
        for m in frozen:
            m.eval()

    data = splits.labeled_train
    steps = -(-len(data) // cfg.batch_size)
    settings = TrainSettings(epochs=epochs, lr=lr, weight_decay=cfg.weight_decay, steps_per_epoch=steps,
                             fast=False, precision=precision, lr_scale=scale, train_mode=train_mode if frozen else None)
    validation = None
    stats_batches = label_batches(splits, aug, seed, 2 * cfg.batch_size)

    def score(model: nn.Module) -> float:
        # BatchNorm statistics of this epoch's weights (one augmented pass, a fixed seed), then val top-1
        precise_batchnorm(model, (x for x, _ in stats_batches(0x5EED)), precision)
        return evaluate(model, splits, splits.val, f"{who} val")

    if len(splits.val):
        validation = Validation(score, patience=cfg.patience)

    def loss_fn(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, labels, label_smoothing=cfg.label_smoothing)

    summary: dict[str, Any] = {}
    train(adapter, label_batches(splits, aug, seed, cfg.batch_size), loss_fn, settings, work_dir,
          f"{who} fine-tune" if init == "pretrained" else f"{who} from random weights", validation=validation,
          summary=summary)
    if validation is None:  # no val split: the statistics of the last epoch's weights
        precise_batchnorm(adapter, (x for x, _ in stats_batches(0x5EED)), precision)
    for p in network.parameters():
        p.requires_grad_(True)
    record |= {"lr": lr, "layer_decay": cfg.layer_decay, "trainable_layers": cfg.trainable_layers, "train": summary}
    return record


def prepare_network(adapter: nn.Module, head_mode: str, num_classes: int) -> None:
    """Give a freshly loaded teacher the shape its fine-tuned weights have (before loading them)."""
    if head_mode == "new":
        new_head(adapter.model, num_classes)
