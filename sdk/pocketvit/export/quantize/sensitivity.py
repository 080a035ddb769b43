"""The ViT-aware sensitivity pass: which layers must stay in float for int8 to meet an accuracy budget.

1. Quantize one layer at a time (that layer alone int8, with the target's own PT2E quantizer, calibrated
   on training images) and measure how far the logits move on held-out images: relative squared error
   ||q - f||^2 / ||f||^2 and top-1 agreement with float.
2. Quantize everything; while the top-1 drop on the held-out images exceeds the budget (or top-1 agreement
   with float is below min_agreement), move the next most sensitive layer back to float and measure again.

The result (ranking, each step, the float layers chosen) goes into the export info and the report.
The simulation is the converted PT2E graph in eager torch (q/dq reference ops), batched; the shipped file
is then measured again on its runtime over the whole test split.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from pocketvit.progress import log, progress_bar

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from pocketvit.export.quantize.pt2e import QuantizerFactory


@dataclass
class SensitivityResult:
    budget: float
    min_agreement: float
    fp32_top1: float
    all_int8_top1: float
    final_top1: float
    float_layers: list[str]
    met: bool
    held_out_images: int
    calibration_images: int
    ranking: list[dict[str, Any]] = field(default_factory=list)  # [{layer, rel_error, agreement}], worst first
    steps: list[dict[str, Any]] = field(default_factory=list)  # [{float_layers, top1, drop, agreement}]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def model_logits(fn, x: torch.Tensor, batched: bool, batch: int = 256) -> torch.Tensor:
    import torch

    step = batch if batched else 1
    with torch.no_grad():
        return torch.cat([fn(x[i:i + step]) for i in range(0, len(x), step)])


def logit_error(q: torch.Tensor, f: torch.Tensor) -> tuple[float, float]:
    """(mean relative squared error, top-1 agreement) of quantized logits q against float logits f."""
    rel = ((q - f).pow(2).sum(1) / f.pow(2).sum(1).clamp_min(1e-12)).mean()
    return float(rel), float((q.argmax(1) == f.argmax(1)).float().mean())


def choose_float_layers(
    model: torch.nn.Module,
    example: torch.Tensor,
    calib: torch.Tensor,
    held_x: torch.Tensor,
    held_y: torch.Tensor | None,
    make_quantizer: QuantizerFactory,
    budget: float = 0.005,
    *,
    layers: Sequence[str] | None = None,
    max_float: int | None = None,
    min_agreement: float = 0.0,
    what: str = "int8",
    reference: torch.nn.Module | None = None,
) -> SensitivityResult:
    """Rank `layers` (default: every Conv2d/Linear) by sensitivity, then keep the worst in float until the
    top-1 drop on (held_x, held_y) is at most `budget` (a fraction: 0.005 = 0.5 points) and top-1 agreement
    with float at least `min_agreement`. held_y None: the
    float model's own predictions stand in for labels (the budget is then on agreement with float).
    reference: the float model the drop and agreement are measured against (default `model`; QAT passes
    the fp32 student its fine-tuned weights came from)."""
    from pocketvit.export.prepare import prepare_for_export
    from pocketvit.export.quantize.pt2e import export_graph, quantizable_layers, quantized_graph

    model = prepare_for_export(model, unfused_attention=True)
    layers = list(layers) if layers is not None else quantizable_layers(model)
    max_float = len(layers) if max_float is None else min(max_float, len(layers))
    graph, batched = export_graph(model, example, dynamic_batch=True)
    ref = model_logits(model if reference is None else prepare_for_export(reference, unfused_attention=True), held_x, True)
    if held_y is None:  # unlabelled held-out images: the budget is on top-1 agreement with float
        held_y = ref.argmax(1)
    fp32_top1 = float((ref.argmax(1) == held_y).float().mean())

    def trial(float_layers=(), only=None):
        q = quantized_graph(model, example, calib, make_quantizer, float_layers, graph=graph, batched=batched,
                            only=only)
        return model_logits(q, held_x, batched)

    ranking = []
    with progress_bar(f"sensitivity ({what}): one layer at a time", len(layers)) as advance:
        for name in layers:
            rel, agree = logit_error(trial(only=[name]), ref)
            ranking.append({"layer": name, "rel_error": rel, "agreement": agree})
            advance(1, info=name)
    ranking.sort(key=lambda r: (-r["rel_error"], r["agreement"]))

    steps = []
    keep: list[str] = []
    while True:
        out = trial(float_layers=keep)
        top1 = float((out.argmax(1) == held_y).float().mean())
        _, agree = logit_error(out, ref)
        steps.append({"float_layers": len(keep), "added": keep[-1] if keep else None, "top1": top1,
                      "drop": fp32_top1 - top1, "agreement": agree})
        if (fp32_top1 - top1 <= budget and agree >= min_agreement) or len(keep) >= max_float:
            break
        keep.append(ranking[len(keep)]["layer"])
    met = steps[-1]["drop"] <= budget and steps[-1]["agreement"] >= min_agreement
    log(f"  sensitivity ({what}): fp32 {fp32_top1:.4f}, all-int8 {steps[0]['top1']:.4f}, final "
        f"{steps[-1]['top1']:.4f} with {len(keep)} layer(s) in float"
        + ("" if met else f" — budget {budget:.3f} NOT met"))
    return SensitivityResult(budget=budget, min_agreement=min_agreement, fp32_top1=fp32_top1, all_int8_top1=steps[0]["top1"],
                             final_top1=steps[-1]["top1"], float_layers=keep, met=met, held_out_images=len(held_x),
                             calibration_images=len(calib), ranking=ranking, steps=steps)
