"""The student's training step, plain vs fast (`distill.fast_train`: training-time model form + fused AdamW).

Two copies of the recipe's student (same weights) train on the same real augmented batches with the recipe's
batch size and learning rate; steps alternate between the two (order flipped every round) and the figure is the
ratio of medians. Times are the process's CPU seconds (at 1 thread they barely move when other processes share the
cores) and wall seconds. Before timing, one step of each checks that the forms compute the same function: logits
and the gradient of every parameter compared.

    python -m benchmarks.train_step recipes/fashion-mnist.yaml [--steps 30] [--threads 1] [--set k=v]...
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def _grads(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def compare_forms(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Logits and parameter gradients of `model` plain vs in its training form: largest abs differences, and the
    gradient one over the largest gradient entry of the model (some gradients are exactly zero in exact arithmetic,
    e.g. a key bias under softmax, so per-parameter ratios would compare rounding noise with rounding noise)."""
    from pocketvit.models.train_forms import training_form

    out = {}
    for fast in (False, True):
        model.zero_grad(set_to_none=True)
        with training_form(model, fast):
            logits = model(x)
            F.cross_entropy(logits, y).backward()
        out[fast] = (logits.detach(), _grads(model))
    model.zero_grad(set_to_none=True)
    (la, ga), (lb, gb) = out[False], out[True]
    diff = max(float((ga[n] - gb[n]).abs().max()) for n in ga)
    scale = max(float(g.abs().max()) for g in ga.values())
    return {"logits_max_abs_diff": float((la - lb).abs().max()), "grad_max_abs_diff": diff,
            "grad_max_rel_diff": diff / scale}


def measure(recipe_path: str | Path, steps: int = 30, threads: int = 1, overrides: list[str] | None = None) -> dict[str, Any]:
    from pocketvit.data import load_dataset
    from pocketvit.data.augment import AugmentConfig
    from pocketvit.data.datasets import augmented_batches
    from pocketvit.distill.trainer import make_optimizer, train_step
    from pocketvit.models.train_forms import training_form
    from pocketvit.models.weights import build_from_meta
    from pocketvit.recipe import load_recipe
    from pocketvit.scale.engine import LocalEngine

    recipe = load_recipe(recipe_path, overrides)
    torch.set_num_threads(threads)
    torch.manual_seed(recipe.seed)
    splits = load_dataset(recipe.data, recipe.seed)
    aug = AugmentConfig(**recipe.data.augment.model_dump())
    d = recipe.distill
    batches = augmented_batches(splits.train, aug, recipe.seed, 0, d.batch_size)
    data = [(splits.normalize(images), splits.train.labels[torch.as_tensor(idx)])
            for _, (idx, _, images) in zip(range(8), batches)]
    layout = torch.channels_last
    plain = build_from_meta(recipe.student.model_dump(), splits).to(memory_format=layout).train()
    fast = copy.deepcopy(plain)
    numerics = compare_forms(plain, data[0][0].contiguous(memory_format=layout), data[0][1])
    engine = LocalEngine(torch.device("cpu"))
    arms = {}
    for name, model, on in (("plain", plain, False), ("fast", fast, True)):
        arms[name] = (model, make_optimizer(model, d.lr, d.weight_decay, fused=on), on)
    times: dict[str, dict[str, list[float]]] = {a: {"cpu": [], "wall": []} for a in arms}

    def step(name: str, i: int) -> None:
        model, opt, on = arms[name]
        x, y = data[i % len(data)]
        with training_form(model, on):
            c, w = time.process_time(), time.perf_counter()
            train_step(engine, model, opt, x, y, F.cross_entropy, 5.0, layout)
            times[name]["cpu"].append(time.process_time() - c)
            times[name]["wall"].append(time.perf_counter() - w)

    for i in range(2 + steps):
        for name in (("plain", "fast") if i % 2 == 0 else ("fast", "plain")):
            step(name, i)
    med = {a: {k: statistics.median(v[2:]) for k, v in t.items()} for a, t in times.items()}
    return {"recipe": recipe.name, "student": recipe.student.model_dump(), "batch_size": d.batch_size,
            "threads": threads, "steps": steps, **numerics,
            **{f"{a}_step_{k}_ms": round(v * 1e3, 2) for a, m in med.items() for k, v in m.items()},
            "speedup_cpu": round(med["plain"]["cpu"] / med["fast"]["cpu"], 3),
            "speedup_wall": round(med["plain"]["wall"] / med["fast"]["wall"], 3)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("recipe")
    ap.add_argument("--steps", type=int, default=30, help="timed steps per form (after 2 untimed each)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="recipe override key=value")
    args = ap.parse_args(argv)
    print(json.dumps(measure(args.recipe, args.steps, args.threads, args.overrides), indent=1))


if __name__ == "__main__":
    main()
