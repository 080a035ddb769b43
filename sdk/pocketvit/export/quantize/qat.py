"""Quantization-aware training (QAT) for the PT2E int8 targets (ExecuTorch XNNPACK, LiteRT).

When post-training quantization (PTQ) misses the recipe's accuracy budget on held-out validation images
(`quantize.qat: auto`, the default) or when asked (`always`), the student is fine-tuned for a few epochs
under XNNPACK's fake quantization: torch.export -> prepare_qat_pt2e (XNNPACKQuantizer, is_qat=True) ->
training against the build's teacher cache (the distill stage's sparse KD loss) or, without a teacher, the
training labels -> the trained weights go back into the eager (export-prepared) student. Each int8 target
then calibrates, converts (convert_pt2e) and lowers those weights exactly as PTQ does, and the sensitivity
pass chooses the float layers again on them. Training data is the training split only (never test).

    model, graph, losses = qat_finetune(model, example, batches, loss_fn, QATSettings(epochs=1), steps)
    # model: the trained eager model; graph: the fake-quant graph (eval mode), the QAT model's simulated output
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pocketvit.errors import ExportError
from pocketvit.progress import progress_bar

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from pocketvit.export.quantize.pt2e import QuantizerFactory

WEIGHTS_FILE = "qat.safetensors"
QAT_TARGETS = ("executorch", "litert")  # PT2E int8 with the same symmetric int8 scheme the QAT simulates


@dataclass(frozen=True)
class QATSettings:
    epochs: int = 1
    lr: float = 1e-4
    weight_decay: float = 0.0
    seed: int = 0


def qat_finetune(model: torch.nn.Module, example: torch.Tensor, batches: Callable[[int], Iterable[tuple[Any, Any]]],
                 loss_fn: Callable, settings: QATSettings, steps_per_epoch: int, *,
                 make_quantizer: QuantizerFactory | None = None, float_layers: Sequence[str] = ()):
    """(trained export-prepared eager model, fake-quant graph in eval mode, mean loss per epoch).

    batches(epoch) yields (normalized training images, target) and loss_fn(logits, target) is the loss."""
    import torch
    from torchao.quantization.pt2e import move_exported_model_to_eval, move_exported_model_to_train
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e

    from pocketvit.distill.trainer import to_device
    from pocketvit.export.prepare import prepare_for_export
    from pocketvit.export.quantize.pt2e import export_graph, xnnpack_quantizer

    torch.manual_seed(settings.seed)
    model = prepare_for_export(model, unfused_attention=True)
    graph, batched = export_graph(model, example, dynamic_batch=True)
    if not batched:
        raise ExportError("QAT needs a model that torch.export can trace with a symbolic batch dimension (it trains "
                          "on batches); this model pins its batch size. Set quantize.qat: never to use PTQ only.")
    make = make_quantizer or xnnpack_quantizer(is_qat=True)
    prepared = prepare_qat_pt2e(graph, make(tuple(float_layers)))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    prepared.to(device)
    move_exported_model_to_train(prepared)
    opt = torch.optim.AdamW([p for p in prepared.parameters() if p.requires_grad], lr=settings.lr,
                            weight_decay=settings.weight_decay)
    losses: list[float] = []
    with progress_bar("QAT (int8 fake quantization)", settings.epochs * steps_per_epoch) as advance:
        for epoch in range(settings.epochs):
            total, n = 0.0, 0
            for x, target in batches(epoch):
                loss = loss_fn(prepared(x.to(device)), to_device(target, device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total, n = total + float(loss.detach()), n + 1
                advance(1, info=f"epoch {epoch + 1} loss {total / n:.4f}")
            losses.append(total / max(n, 1))
    move_exported_model_to_eval(prepared)
    prepared.to("cpu")
    _copy_weights(prepared, model)
    return model, prepared, losses


def _copy_weights(prepared: torch.nn.Module, model: torch.nn.Module) -> None:
    """The trained parameters and BatchNorm statistics of the graph back into the eager model (same names)."""
    import torch

    trained = prepared.state_dict()
    own = model.state_dict()
    missing = [k for k, v in own.items() if k not in trained and not k.endswith("num_batches_tracked")]
    if missing:
        raise ExportError(f"QAT: the trained graph lacks {len(missing)} of the model's tensors ({missing[:3]}); "
                          "this architecture cannot take QAT weights back. Set quantize.qat: never.")
    with torch.no_grad():
        for k, v in own.items():
            if k in trained:
                v.copy_(trained[k])


def ptq_scores(model: torch.nn.Module, example: torch.Tensor, calib: torch.Tensor, held_x: torch.Tensor,
               held_y: torch.Tensor | None, float_layers: Sequence[str] = (), per_channel: bool = True,
               reference: torch.nn.Module | None = None) -> dict:
    """fp32 and PTQ int8 (XNNPACK PT2E simulated in torch) top-1 and agreement on held-out images; fp32 and
    agreement are those of `reference` (default the model itself)."""
    from pocketvit.export.prepare import prepare_for_export
    from pocketvit.export.quantize.pt2e import quantized_graph, xnnpack_quantizer
    from pocketvit.export.quantize.sensitivity import logit_error, model_logits

    model = prepare_for_export(model, unfused_attention=True)
    ref = model_logits(model if reference is None else prepare_for_export(reference, unfused_attention=True), held_x, True)
    y = ref.argmax(1) if held_y is None else held_y
    q = quantized_graph(model, example, calib, xnnpack_quantizer(per_channel=per_channel), float_layers, batched=True)
    out = model_logits(q, held_x, True)
    _, agree = logit_error(out, ref)
    return {"fp32_top1": float((ref.argmax(1) == y).float().mean()), "top1": float((out.argmax(1) == y).float().mean()),
            "agreement": agree}


def decide(mode: str, before: dict, budget: float, min_agreement: float) -> tuple[bool, str]:
    """(run QAT?, why): `always` runs; `auto` runs when all-int8 PTQ misses the budget on held-out images."""
    drop = before["fp32_top1"] - before["top1"]
    missed = drop > budget or before["agreement"] < min_agreement
    text = (f"all-int8 PTQ on held-out validation images: top-1 drop {100 * drop:.2f} points (budget "
            f"{100 * budget:.2f}), agreement with fp32 {before['agreement']:.4f} (min {min_agreement})")
    if mode == "always":
        return True, f"asked for (quantize.qat: always); {text}"
    if mode == "auto":
        return missed, f"{text}: {'missed, so QAT ran' if missed else 'met, so QAT was not needed'}"
    return False, "off (quantize.qat: never)"


def keep_qat(after: dict, qat_float: int, ptq_met: bool, ptq_float: int, budget: float,
             min_agreement: float) -> tuple[bool, str]:
    """(ship the QAT weights?, why). Only when, measured against the fp32 student that ships, they meet the
    budget and min_agreement, and PTQ either missed it or needed more layers in float. QAT changes the
    weights, so its int8 model can disagree with the fp32 files more than PTQ's does, and no layer put back
    in float undoes that: then the int8 files keep the PTQ weights and plan."""
    drop = after["fp32_top1"] - after["final_top1"]
    if drop > budget or after["final_agreement"] < min_agreement:
        return False, (f"QAT weights missed it against the fp32 student (drop {100 * drop:.2f} points, agreement "
                       f"{after['final_agreement']:.4f} with {qat_float} layer(s) in float): int8 files keep PTQ")
    if ptq_met and qat_float >= ptq_float:
        return False, (f"PTQ met it with {ptq_float} layer(s) in float, QAT needs {qat_float}: int8 files keep PTQ")
    return True, (f"QAT weights used: budget met with {qat_float} layer(s) in float (PTQ: {ptq_float}, "
                  f"{'met' if ptq_met else 'missed'})")
