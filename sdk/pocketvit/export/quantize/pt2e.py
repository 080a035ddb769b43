"""PT2E post-training quantization shared by ExecuTorch (XNNPACKQuantizer) and LiteRT (litert-torch's
PT2EQuantizer): torch.export -> prepare_pt2e -> calibrate on training images -> convert_pt2e.

Layers kept in float are named by module path ("stages.0.blocks.1.attn.q"); every op under that path is
left unannotated, so the toolchain runs it in float.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from pocketvit.progress import log

if TYPE_CHECKING:  # pragma: no cover
    import torch

QuantizerFactory = Callable[..., object]
# make(float_layers) -> quantizer for the whole model but those module paths;
# make((), only=[paths]) -> quantizer for those module paths alone (the sensitivity pass).


def xnnpack_quantizer(mode: str = "static", per_channel: bool = True, is_qat: bool = False) -> QuantizerFactory:
    """A factory: float_layers -> XNNPACKQuantizer with those module paths left in float (is_qat: fake-quant
    annotations for prepare_qat_pt2e, quantization-aware training; see qat.py)."""

    def make(float_layers: Sequence[str], only: Sequence[str] | None = None):
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
            XNNPACKQuantizer,
            get_symmetric_quantization_config,
        )

        cfg = get_symmetric_quantization_config(is_per_channel=per_channel, is_dynamic=mode == "dynamic",
                                                is_qat=is_qat)
        q = XNNPACKQuantizer()
        if only is not None:
            # Not set_module_name: its filter must pass every node of a pattern, and a conv's pattern holds its
            # weight, a get_attr that BatchNorm folding (prepare_pt2e) creates without module metadata, so a
            # conv named alone was never quantized (every conv ranked as harmless in the sensitivity pass).
            q.set_global(cfg)
            q.set_filter_function(_under_modules(only))
            return q
        q.set_global(cfg)
        for name in float_layers:
            # set_module_name asserts on None ("not supported yet"), but a None entry is what leaves a
            # module unannotated: the global config skips every listed name and None annotates nothing.
            q.module_name_config[name] = None
        return q

    return make


def _under_modules(names: Sequence[str]) -> Callable:
    """A PT2E node filter: true for ops that come from one of the module paths `names` (or below them),
    and for constants (get_attr / placeholder nodes carry no module metadata; a pattern is annotated only
    when its op passes too, so constants never widen the selection)."""
    from torchao.quantization.pt2e.quantizer.utils import get_module_name_filter

    filters = [get_module_name_filter(n) for n in names]

    def under(node) -> bool:
        return node.op in ("get_attr", "placeholder") or any(f(node) for f in filters)

    return under


def _litert_module_key(fqn: str) -> str:
    # litert-torch 0.10's module-name filter strips a 10-character "L__self___" prefix from the
    # nn_module_stack keys and turns "_" into "."; torch.export keys are "L__self__" + fqn (9 characters),
    # so the name it compares against is this, not the fqn itself.
    return ("L__self__" + fqn)[10:].replace("_", ".")


def litert_quantizer(mode: str = "static", per_channel: bool = True) -> QuantizerFactory:
    """A factory: float_layers -> litert-torch PT2EQuantizer with those module paths left in float."""

    def make(float_layers: Sequence[str], only: Sequence[str] | None = None):
        from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config

        cfg = get_symmetric_quantization_config(is_per_channel=per_channel, is_dynamic=mode == "dynamic")
        q = PT2EQuantizer()
        if only is not None:
            for name in only:
                q.module_name_config[_litert_module_key(name)] = cfg
            return q
        q.set_global(cfg)
        for name in float_layers:
            # set_module_name refuses None ("not supported yet"); a None config annotates nothing and the
            # global config skips the names listed here, which is exactly "leave in float".
            q.module_name_config[_litert_module_key(name)] = None
        return q

    return make


def export_graph(model: torch.nn.Module, example: torch.Tensor, dynamic_batch: bool = False):
    """torch.export's GraphModule of `model` (batch dimension symbolic when dynamic_batch)."""
    import torch

    with torch.no_grad():
        if dynamic_batch:
            try:
                # a batch of 2: torch.export specializes a dimension seen as 0 or 1
                two = example[:1].repeat(2, *([1] * (example.dim() - 1)))
                ep = torch.export.export(model, (two,), dynamic_shapes=({0: torch.export.Dim.AUTO},))
                graph = ep.module()
                with torch.no_grad():
                    graph(example.repeat(3, *([1] * (example.dim() - 1))))  # really dynamic?
                return graph, True
            except Exception as exc:  # noqa: BLE001 - torch.export raises many types; a model whose code pins the batch
                log(f"[dim]  int8: the model does not export with a symbolic batch ({type(exc).__name__}: "
                    f"{str(exc).strip().splitlines()[0][:120] if str(exc).strip() else ''}); calibrating one image at "
                    "a time (slower, the same result)[/dim]")
        return torch.export.export(model, (example,)).module(), False


def calibrate_and_convert(graph, quantizer, calib: torch.Tensor, batched: bool, batch_size: int = 64,
                          fold: bool = True):
    """prepare_pt2e(graph, quantizer), run the calibration images through the observers, convert_pt2e."""
    import torch
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    prepared = prepare_pt2e(graph, quantizer)
    step = batch_size if batched else 1
    with torch.no_grad():
        for i in range(0, len(calib), step):
            prepared(calib[i:i + step])
    return convert_pt2e(prepared, fold_quantize=fold)


def quantized_graph(model: torch.nn.Module, example: torch.Tensor, calib: torch.Tensor,
                    make_quantizer: QuantizerFactory, float_layers: Sequence[str] = (), *, graph=None,
                    batched: bool = False, fold: bool = True, only: Sequence[str] | None = None):
    """The converted (q/dq) GraphModule of `model`; `graph` reuses an exported graph (copied first).

    batched: calibrate on a graph exported with a symbolic batch (64 images per call instead of one);
    the converted graph is then exported again at the example's static shape for lowering."""
    if graph is None:
        graph, batched = export_graph(model, example, dynamic_batch=batched)
    else:
        graph = copy.deepcopy(graph)
    return calibrate_and_convert(graph, make_quantizer(float_layers, only=only), calib, batched, fold=fold)


def quantizable_layers(model: torch.nn.Module) -> list[str]:
    """Module paths of the layers a PT2E quantizer gives int8 weights: every Conv2d and Linear, in order."""
    from torch import nn

    return [name for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and name]
