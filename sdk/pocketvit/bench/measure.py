"""Measuring an exported file against eager torch: parity, the test split through the bundle's own preprocessing,
batch-1 runs (latency: bench/latency.py's file_latency, the method `pocketvit bench` uses). Shared by the build's
verify stages, exits and zero-shot."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from pocketvit.data.datasets import Splits
from pocketvit.progress import progress_bar

# probabilities are compared as log-probabilities (the logits up to a constant per image), floored here: above
# float16's smallest normal number (6.1e-5), so a Core ML fp16 file's underflowed classes are not read as errors
PROBABILITY_FLOOR = 1e-4


def parity(runtime_out: np.ndarray, eager_out: np.ndarray, outputs: str = "logits") -> dict[str, float]:
    """max |runtime - eager|, the smallest per-image cosine and top-1 agreement, and `constant_output` (a failure
    message) when the file ignores its input. outputs="probabilities" (a drop-in file's softmax) compares
    log-probabilities: over 1,000 classes a softmax maps a 0.02 error in the logits to ~2e-5, far under any
    absolute tolerance, where the log keeps it 0.02 (the same figure as the float file's)."""
    a, b = runtime_out.reshape(len(runtime_out), -1).astype(np.float64), eager_out.reshape(len(eager_out), -1)
    if outputs == "probabilities":
        a, b = (np.log(np.maximum(v.astype(np.float64), PROBABILITY_FLOOR)) for v in (a, b))
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)
    figures = {
        "max_abs_diff": float(np.abs(a - b).max()),
        "cosine": float(cos.min()),
        "top1_agreement": float((a.argmax(1) == b.argmax(1)).mean()),
    }
    broken = constant_output(runtime_out, eager_out)
    return figures | ({"constant_output": broken} if broken else {})


CONSTANT_OUTPUT = "the file's output does not depend on its input"


def constant_output(runtime_out: np.ndarray, eager_out: np.ndarray) -> str | None:
    """A failure when the file gives every input the same output (all zeros, say) where eager torch does not: a
    broken file, not an inaccurate one, whatever its cosine (an int8 file's looser tolerance must not pass it)."""
    a = runtime_out.reshape(len(runtime_out), -1)
    b = eager_out.reshape(len(eager_out), -1)
    if a.shape != b.shape or np.array_equal(a, b) or not (np.isfinite(a).all() and np.ptp(a, axis=0).max(initial=0.0) == 0.0):
        return None
    if len(a) > 1 and np.ptp(b, axis=0).max(initial=0.0) == 0.0:
        return None  # eager is constant on these inputs too
    if len(a) == 1 and (a != 0).any():
        return None  # one input: only an all-zero output is plainly broken
    what = "every value is 0" if not a.any() else f"all {len(a)} inputs give the same output"
    return f"{CONSTANT_OUTPUT} ({what})"


def runtime_inputs(splits: Splits, spec: dict[str, Any], form: str = "float-nchw") -> np.ndarray:
    """The test split through the bundle's own preprocessing (as an app would run it), one batch, in `form`."""
    from pocketvit.runtime import preprocess_batch

    images = splits.test.images.permute(0, 2, 3, 1).numpy()  # NHWC uint8 in the model's colour order
    color = "RGB" if splits.color_order == "RGB" else "GRAY"
    return preprocess_batch(list(images), spec, input_color=color, form=form)


def file_inputs(splits: Splits, spec: dict[str, Any], info: dict[str, Any], x: np.ndarray) -> np.ndarray:
    """The test split in the form an exported file takes (its export info's `input_form` / `file_input`):
    `x` itself for the float NCHW form, else the pixels a drop-in file wants."""
    form = info.get("input_form", "float-nchw")
    return x if form == "float-nchw" else runtime_inputs(splits, {**spec, **(info.get("file_input") or {})}, form)


def run_batch1(run: Callable[[np.ndarray], np.ndarray], x: np.ndarray, description: str) -> np.ndarray:
    """Every row of x through `run` one at a time (batch 1, as on a device), with a progress bar."""
    outs = []
    with progress_bar(description, len(x)) as advance:
        for i in range(len(x)):
            outs.append(run(x[i : i + 1]))
            advance(1)
    return np.concatenate(outs)


def agreement_with_teacher(entry: dict[str, Any], out: np.ndarray, eager: np.ndarray, splits: Splits) -> None:
    """`teacher_agreement`: the runtime's top-1 equals the pretrained teacher's on this fraction of the test
    split (the measure of label-free builds; distill/pretrained.py puts the teacher's top-1 on the split)."""
    ref = splits.test.teacher_top1
    if ref is not None:
        entry["teacher_agreement"] = float((out.argmax(1) == ref.numpy()).mean())
        entry["eager_teacher_agreement"] = float((eager.argmax(1) == ref.numpy()).mean())
