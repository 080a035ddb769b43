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
        q = _mended(XNNPACKQuantizer, "executorch.backends.xnnpack.quantizer.xnnpack_quantizer_utils",
                    dq_per_user=True)()
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


_PAD_OPS = ("aten.pad.default", "aten.constant_pad_nd.default")
_SCALAR_OPS = ("aten.add.Tensor", "aten.mul.Tensor", "aten.sub.Tensor", "aten.div.Tensor")


def _mended(base: type, utils_module: str, dq_per_user: bool = False) -> type:
    """`base` quantizer (XNNPACKQuantizer, litert-torch's PT2EQuantizer) with three mends to its annotation
    (and, with `dq_per_user`, one to the converted graph: see one_dq_per_user):

    - every zero pad of an int8 tensor keeps its input's scale and zero point (share_pad_qparams). Neither
      quantizer annotates pad, so PT2E leaves it in float between a dequantize and the next op's quantize, with
      other parameters after it than before; XNNPACK's static pad takes one scale in and out and refuses the .pte
      at load ("Failed to create StaticConstantPad node ... xnn_status_invalid_parameter": TinyViT's and Swin's
      window padding at 64 x 64). A zero pad is exact at the input's scale (zero is a quantization level).
    - integer operands of a float add / mul are made float first (float_scalars): the quantizer turns a scalar
      into a tensor constant and observes it, and an integer constant stops calibration ('"histogram_cpu" not
      implemented for 'Long'': EdgeNeXt's and XCiT's Fourier position encodings).
    - nothing that is not a float tensor is observed (drop_non_float): an add of two symbolic sizes (Swin's window
      count times the batch) was annotated like activations ("'int' object has no attribute 'numel'")."""
    import importlib

    propagate = importlib.import_module(utils_module).propagate_annotation

    class MendedQuantizer(base):
        mends: dict[str, int]  # mend -> how many nodes it changed in the last graph annotated (file info)

        def transform_for_annotation(self, model):
            self.mends = {"float-scalars": float_scalars(model)}
            return super().transform_for_annotation(model)

        def annotate(self, model):
            model = super().annotate(model)
            self.mends = getattr(self, "mends", {}) | {"drop-non-float": drop_non_float(model)}
            self.mends["pad-shares-scale"] = share_pad_qparams(model)
            if self.mends["pad-shares-scale"]:
                propagate(model)  # the views and permutes after a newly annotated pad share its parameters too
            return model

        def mend_converted(self, converted) -> None:
            if dq_per_user:
                self.mends["dq-per-user"] = one_dq_per_user(converted)

    MendedQuantizer.__name__ = MendedQuantizer.__qualname__ = f"{base.__name__}+pocketvit"
    return MendedQuantizer


def _is_float_tensor(node) -> bool:
    val = getattr(node, "meta", {}).get("val")
    return getattr(val, "is_floating_point", lambda: False)()


def _is_other_value(node, model) -> bool:
    """The node's value is known and is not a float tensor (a symbolic size, an integer tensor)."""
    val = getattr(node, "meta", {}).get("val")
    if val is None and getattr(node, "op", None) == "get_attr":
        val = _attribute(model, node.target)
    return val is not None and not getattr(val, "is_floating_point", lambda: False)()


def _attribute(model, target: str):
    obj = model
    for part in str(target).split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def float_scalars(model) -> int:
    """Python int operands of add / sub / mul / div nodes whose result is a float tensor become floats (the same
    arithmetic). Returns how many it changed."""
    count = 0
    for node in model.graph.nodes:
        if node.op != "call_function" or str(node.target) not in _SCALAR_OPS or not _is_float_tensor(node):
            continue
        ints = [i for i, a in enumerate(node.args) if isinstance(a, int) and not isinstance(a, bool)]
        if ints:
            node.args = tuple(float(a) if i in ints else a for i, a in enumerate(node.args))
            count += len(ints)
    return count


def drop_non_float(model) -> int:
    """Remove quantization specs from values known not to be float tensors (symbolic sizes, integer tensors and
    constants): the output spec of such a node and the input specs on such operands; a value whose type the graph
    does not record keeps its spec. Returns how many specs it removed."""
    from torchao.quantization.pt2e.quantizer.quantizer import Q_ANNOTATION_KEY

    count = 0
    for node in model.graph.nodes:
        ann = node.meta.get(Q_ANNOTATION_KEY)
        if ann is None:
            continue
        if ann.output_qspec is not None and _is_other_value(node, model):
            ann.output_qspec = None
            count += 1
        for arg in [a for a in ann.input_qspec_map if _is_other_value(a, model)]:
            del ann.input_qspec_map[arg]
            count += 1
    return count


def _zero_pad(node) -> bool:
    """aten.pad in constant mode, or constant_pad_nd, padding with 0 (exact at any scale)."""
    args, kw = list(node.args), node.kwargs
    if str(node.target) == "aten.constant_pad_nd.default":
        value = args[2] if len(args) > 2 else kw.get("value", 0)
    else:
        mode = args[2] if len(args) > 2 else kw.get("mode", "constant")
        value = args[3] if len(args) > 3 else kw.get("value")
        if mode != "constant":
            return False
    return value is None or value == 0


def share_pad_qparams(model) -> int:
    """Annotate each unannotated zero pad whose input carries an int8 output spec: input and output shared with
    that input. Returns how many pads it annotated."""
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation, SharedQuantizationSpec
    from torchao.quantization.pt2e.quantizer.quantizer import Q_ANNOTATION_KEY

    count = 0
    for node in model.graph.nodes:
        if node.op != "call_function" or str(node.target) not in _PAD_OPS or not node.args:
            continue
        source = node.args[0]
        given = getattr(source, "meta", {}).get(Q_ANNOTATION_KEY)
        own = node.meta.get(Q_ANNOTATION_KEY)
        if (not _zero_pad(node) or given is None or given.output_qspec is None
                or (own is not None and own._annotated)):
            continue
        shared = SharedQuantizationSpec(source)
        node.meta[Q_ANNOTATION_KEY] = QuantizationAnnotation(input_qspec_map={source: shared}, output_qspec=shared,
                                                             _annotated=True)
        count += 1
    return count


def _requantized(node) -> bool:
    """The op's result goes to a quantize (an int8 op in PT2E's q/dq form), not on in float."""
    return any(str(u.target).startswith("quantized_decomposed.quantize_per_tensor") for u in node.users)


def one_dq_per_user(converted) -> int:
    """Give the float consumers of a shared activation dequantize their own copy (the same value) when int8 ops or
    the graph's output read it too. PT2E copies a dequantize only for annotated users, so a float op (the channel
    statistics of layernorm2d-as-conv) shares one with the int8 path; XNNPACK's channels-last pass, converting that
    dequantize's layout for one consumer, redirects all of them, and a delegate output read by such a float op was
    left channels-last ("Attempted to resize a static tensor. Expected shape (1, 128, 8, 8), but received
    (1, 8, 8, 128)": CoAtNet int8 at 64 x 64). One copy for all the float consumers: each extra copy is one more
    int8 -> float conversion at run time. Returns how many copies it made."""
    graph, count = converted.graph, 0
    for node in list(graph.nodes):
        if node.op != "call_function" or str(node.target) != "quantized_decomposed.dequantize_per_tensor.default":
            continue
        floats = [u for u in node.users if u.op == "call_function" and not _requantized(u)]
        if not floats or len(floats) == len(node.users):
            continue
        with graph.inserting_after(node):
            twin = graph.node_copy(node)
        for user in floats:
            user.replace_input_with(node, twin)
        count += 1
    if count:
        converted.recompile()
    return count


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
        q = _mended(PT2EQuantizer, "litert_torch.quantize.pt2e_quantizer_utils")()
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
    """prepare_pt2e(graph, quantizer), run the calibration images through the observers, convert_pt2e (the
    quantizer's mends recorded in the graph's meta, see quantizer_mends)."""
    import torch
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    prepared = prepare_pt2e(graph, quantizer)
    step = batch_size if batched else 1
    with torch.no_grad():
        for i in range(0, len(calib), step):
            prepared(calib[i:i + step])
    converted = convert_pt2e(prepared, fold_quantize=fold)
    if hasattr(quantizer, "mend_converted"):
        quantizer.mend_converted(converted)
    converted.meta["quantizer_mends"] = {k: v for k, v in getattr(quantizer, "mends", {}).items() if v}
    return converted


def quantizer_mends(converted) -> dict[str, int]:
    """The mends the quantizer applied to this converted graph (_mended): name -> nodes changed, only those used."""
    return dict(getattr(converted, "meta", {}).get("quantizer_mends") or {})


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
