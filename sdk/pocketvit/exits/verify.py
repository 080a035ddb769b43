"""`pocketvit verify` for early-exit programs: the runtime's segment chain against the eager exit model.

For each target whose manifest entry has `segments`, every image runs through pocketvit.runtime with
exits on (it stops at the first confident exit); the eager EarlyExitModel, rebuilt from the bundle's
reference/exits.safetensors, gives every exit's logits. Figures: parity of the runtime's output with the
eager logits of the exit the runtime took, and `decision_agreement`, the share of images where the
runtime leaves at the same exit as eager with the manifest's thresholds (it must reach the top-1
tolerance too)."""

from __future__ import annotations

import numpy as np


def eager_exit_model(bundle):
    """The eager EarlyExitModel of a bundle, or None when it carries no exit weights."""
    import torch
    from safetensors.torch import load_file

    from pocketvit.exits.model import EarlyExitModel
    from pocketvit.models import build_model

    src = bundle.manifest.get("source") or {}
    ex = src.get("exits")
    if not ex:
        return None
    student = build_model(src["arch"], src["in_chans"], src["num_classes"], src["img_size"], src.get("options"))
    model = EarlyExitModel(student, ex["after_blocks"], ex["heads"], src["num_classes"])
    model.load_state_dict(load_file(str(bundle.root / ex["weights"])))
    torch.set_grad_enabled(False)
    return model.eval()


def exit_rows(bundle, targets: list[str], crops, spec, tols, threads, explicit: bool, row_cls, check) -> list:
    """One extra row per target with an exit program, named '<target> exits'."""
    import torch

    from pocketvit.bench._common import eager_inputs, open_target, precision_class
    from pocketvit.bench.measure import parity
    from pocketvit.exits.calibrate import exit_points, softmax_np
    from pocketvit.runtime import load, preprocess_array

    with_segments = [t for t in targets if bundle.file_info(t).get("segments")]
    if not with_segments or not bundle.exits:
        return []
    model = eager_exit_model(bundle)
    rows = []
    eager = None
    for t in with_segments:
        info = bundle.file_info(t)
        row = row_cls(f"{t} exits", info["runtime"], str(info.get("precision", "fp32")), "not run")
        probe, note = open_target(bundle, t, threads, explicit)
        if probe is None:
            row.note = note
            rows.append(row)
            continue
        probe.close()
        if model is None:
            row.note = "the bundle carries no reference/exits.safetensors; exit program not compared"
            rows.append(row)
            continue
        if eager is None:
            with torch.no_grad():
                eager = [o.numpy() for o in model(torch.from_numpy(eager_inputs(crops, spec)))]
        p = load(bundle, target=t, num_threads=threads, warmup=0, use_exits=True)
        try:
            names = [e["name"] for e in p.exits]
            thresholds = [e["threshold"] for e in p.exits[:-1]]
            x = preprocess_array(crops, spec, p.input_form)
            outs, taken = [], []
            for i in range(len(x)):
                y, ex, _ = p._infer(x[i : i + 1])
                outs.append(np.asarray(y, dtype=np.float32).reshape(1, -1))
                taken.append(names.index(ex) if ex is not None else len(names) - 1)
        finally:
            p.close()
        taken = np.asarray(taken)
        probs = softmax_np(np.stack(eager))
        eager_at = exit_points(probs[:-1].max(-1), thresholds)
        ref = np.stack(eager)[taken, np.arange(len(taken))]
        figures = parity(np.concatenate(outs), ref)
        row.max_abs_diff, row.cosine = figures["max_abs_diff"], figures["cosine"]
        row.constant_output = figures.get("constant_output")
        agreement = float((eager_at == taken).mean())
        row.top1_agreement = min(figures["top1_agreement"], agreement)
        hist = np.bincount(taken, minlength=len(names))
        row.note = (f"exit decisions agree with eager on {agreement:.4f} of the images; exits taken: "
                    + ", ".join(f"{n} {c}" for n, c in zip(names, hist)))
        check(row, tols[precision_class(t, info)])
        rows.append(row)
    return rows
