"""Zero-shot classification: class prompt embeddings, top-1 from image embeddings, measured on the runtime."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pocketvit.data.datasets import Splits
from pocketvit.progress import log


def class_text_embeddings(encoder: Any, class_names: Sequence[str]) -> np.ndarray:
    """(C, D) float32: each class's prompt embeddings averaged (CLIP prompt ensembling), then L2-normalised."""
    from pocketvit.clip.corpus import class_prompts

    rows = []
    for name in class_names:
        e = encoder.encode(class_prompts(name)).mean(0)
        rows.append((e / e.norm()).numpy())
    return np.stack(rows).astype(np.float32)


def zero_shot_scores(image_emb: np.ndarray, text_emb: np.ndarray, labels: np.ndarray,
                     heldout: Sequence[int] = ()) -> dict[str, float | None]:
    """top-1 over all classes; on the held-out classes' images (all classes as candidates, and held-out only)."""
    emb = image_emb / np.maximum(np.linalg.norm(image_emb, axis=1, keepdims=True), 1e-12)
    sims = emb @ text_emb.T
    pred = sims.argmax(1)
    out: dict[str, float | None] = {"test_top1": float((pred == labels).mean()), "heldout_top1": None,
                                    "heldout_top1_among_heldout": None, "seen_top1": None}
    held = np.asarray(list(heldout), dtype=np.int64)
    if len(held):
        on = np.isin(labels, held)
        out["heldout_top1"] = float((pred[on] == labels[on]).mean()) if on.any() else None
        out["seen_top1"] = float((pred[~on] == labels[~on]).mean()) if (~on).any() else None
        among = held[sims[on][:, held].argmax(1)]
        out["heldout_top1_among_heldout"] = float((among == labels[on]).mean()) if on.any() else None
    return out


@torch.no_grad()
def eager_embeddings(model: torch.nn.Module, splits: Splits, images: torch.Tensor, batch_size: int = 500) -> np.ndarray:
    device = next(model.parameters()).device
    model.eval()
    return torch.cat([model(splits.normalize(images[i : i + batch_size]).to(device)).float().cpu()
                      for i in range(0, len(images), batch_size)]).numpy()


def runtime_embeddings(exported: Any, splits: Splits, spec: dict[str, Any], threads: int | None,
                       description: str) -> np.ndarray:
    """The test split's image embeddings from an exported file on its own runtime (batch 1, the bundle's
    preprocessing in the file's input form)."""
    from pocketvit.bench.measure import file_inputs, run_batch1, runtime_inputs
    from pocketvit.runtime import open_backend

    x = runtime_inputs(splits, spec)
    xr = file_inputs(splits, spec, exported.meta.get("info") or {}, x)
    backend = open_backend(exported.meta["runtime"], str(exported.path / exported.meta["file"]), num_threads=threads)
    try:
        return run_batch1(backend.run, xr, description).reshape(len(x), -1)
    finally:
        backend.close()


def runtime_zero_shot_stage_fn(target: str, exported: Any, model_fn: Callable[[], torch.nn.Module], splits: Splits,
                               spec: dict[str, Any], text_emb: np.ndarray, heldout: Sequence[int],
                               cfg: Any) -> Callable[[Path], dict]:
    """Stage `zeroshot-<target>`: the exported file on its own runtime over the whole test split (batch 1,
    the bundle's preprocessing in the file's input form), zero-shot top-1 from its embeddings, parity and latency
    against eager."""
    def run(path: Path) -> dict[str, Any]:
        from pocketvit.bench.timing import file_latency
        from pocketvit.bench.measure import file_inputs, parity, run_batch1, runtime_inputs
        from pocketvit.runtime import open_backend
        from pocketvit.runtime.io import path_bytes

        file = exported.path / exported.meta["file"]
        entry: dict[str, Any] = {"file": exported.meta["file"], "bytes": path_bytes(file),
                                 "runtime": exported.meta["runtime"], "precision": exported.meta["precision"],
                                 "export_info": exported.meta["info"]}
        x = runtime_inputs(splits, spec)
        # a drop-in file takes its own form (NHWC pixels, RGB for a gray model); eager torch gets the float form
        xr = file_inputs(splits, spec, exported.meta.get("info") or {}, x)
        backend = open_backend(exported.meta["runtime"], str(file), num_threads=cfg.threads)
        out = run_batch1(backend.run, xr, f"zero-shot {target} on its runtime").reshape(len(x), -1)
        model = model_fn()
        with torch.no_grad():
            eager = torch.cat([model(torch.from_numpy(x[i : i + 500])) for i in range(0, len(x), 500)]).numpy()
        labels = splits.test.labels.numpy()
        scores = zero_shot_scores(out, text_emb, labels, heldout)
        entry.update(scores)
        entry["eager_test_top1"] = zero_shot_scores(eager, text_emb, labels, heldout)["test_top1"]
        entry["parity"] = parity(out, eager)
        entry["runtime_info"] = backend.describe()
        for fb in backend.fallbacks:
            log(f"  [yellow]{target}: fallback[/yellow] — {fb}")
        backend.close()  # latency: timed as `pocketvit bench` times it (a process of its own at more than 1 thread)
        entry["latency_ms"] = file_latency(exported.meta["runtime"], file, xr[:1], cfg.latency_runs, cfg.threads)
        p, tol = entry["parity"], cfg.tolerance
        entry["within_tolerance"] = bool(p["max_abs_diff"] <= tol.max_abs_diff and p["cosine"] >= tol.cosine)
        held = "" if scores["heldout_top1"] is None else f", held-out classes {scores['heldout_top1']:.4f}"
        log(f"  {target}: zero-shot test top-1 {scores['test_top1']:.4f} on {exported.meta['runtime']}{held} "
            f"(eager {entry['eager_test_top1']:.4f}), max|Δ| {p['max_abs_diff']:.2e}, "
            f"median {entry['latency_ms']['median']:.2f} ms")
        return entry

    return run
