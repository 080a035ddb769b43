"""ExecuTorch: torch.export -> to_edge_transform_and_lower(XNNPACK) -> .pte.

The lowered edge program tells why a model is slow: every `executorch_call_delegate` is one trip into
XNNPACK, every other call_function node runs on the portable kernels between them. `info` carries
both counts and the outside operators by name.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from collections.abc import Mapping
from typing import TYPE_CHECKING

from pocketvit.errors import ExportError
from pocketvit.export._common import ExportedFile, atomic_path, lowering_error, require

if TYPE_CHECKING:  # pragma: no cover
    import torch

TARGET = "executorch"
_WHY = "needed to write .pte files"


def _op_name(target) -> str:
    name = getattr(target, "__name__", None)
    if isinstance(name, str) and name:
        # EdgeOpOverload.__name__ is "aten.native_layer_norm.default"; builtins give "getitem", "mul"
        return name if "." in name else f"{getattr(target, '__module__', '') or ''}.{name}".lstrip(".")
    return str(target)


def delegation_summary(edge_program) -> dict:
    """Count delegate calls and the nodes left outside the delegate in a lowered edge ExportedProgram."""
    import operator

    delegate_calls = 0
    outside: Counter[str] = Counter()
    delegated_nodes = 0
    gm = edge_program.graph_module
    for node in gm.graph.nodes:
        if node.op != "call_function":
            continue
        if node.target is operator.getitem:
            continue
        name = getattr(node.target, "__name__", "")
        if name == "executorch_call_delegate":
            delegate_calls += 1
            lowered = getattr(gm, str(node.args[0].target), None) if node.args else None
            original = getattr(lowered, "original_module", None)
            if original is not None:
                delegated_nodes += sum(
                    1
                    for n in original.graph.nodes
                    if n.op == "call_function" and n.target is not operator.getitem
                )
            continue
        outside[_op_name(node.target)] += 1
    return {
        "delegate_calls": delegate_calls,
        "nodes_outside": sum(outside.values()),
        "nodes_delegated": delegated_nodes,
        "outside_ops": dict(outside.most_common()),
    }


def lower_program(programs, model_name: str, serialise: bool = True):
    """torch ExportedProgram(s) -> (ExecutorchProgramManager, {method: summary}); (None, summaries) when
    serialise is False (only the delegation summary is wanted)."""
    exir = require("executorch.exir", "executorch", _WHY)
    xnn = require("executorch.backends.xnnpack.partition.xnnpack_partitioner", "executorch", _WHY)
    try:
        edge = exir.to_edge_transform_and_lower(programs, partitioner=[xnn.XnnpackPartitioner()])
    except Exception as exc:
        raise lowering_error(model_name, TARGET, exc, "to_edge_transform_and_lower (XNNPACK)") from exc
    summaries = {m: delegation_summary(edge.exported_program(m)) for m in sorted(edge.methods)}
    if not serialise:
        return None, summaries
    try:
        et = edge.to_executorch()
    except Exception as exc:
        raise lowering_error(model_name, TARGET, exc, "to_executorch") from exc
    return et, summaries


def torch_export(module, args: tuple, model_name: str, method: str = "forward"):
    import torch

    try:
        with torch.no_grad():
            return torch.export.export(module, tuple(args))
    except Exception as exc:
        stage = "torch.export" if method == "forward" else f"torch.export of method '{method}'"
        raise lowering_error(model_name, TARGET, exc, stage) from exc


def write_program(et, path: Path, model_name: str) -> None:
    with atomic_path(path) as tmp:
        try:
            with open(tmp, "wb") as f:
                et.write_to_file(f)
        except ExportError:
            raise
        except Exception as exc:
            raise lowering_error(model_name, TARGET, exc, "serialisation") from exc


def export_executorch(
    model: torch.nn.Module,
    example: torch.Tensor | tuple,
    path: Path | str,
    *,
    model_name: str = "model",
    prepare: bool = True,
    unfused_attention: bool = True,
    disabled_rewrites: tuple[str, ...] = (),
    compare_rewrites: bool = False,
) -> ExportedFile:
    """Lower `model` for ExecuTorch with the XNNPACK delegate and write a .pte with method "forward".

    compare_rewrites: when a rewrite changed the model, also lower it without the rewrites (not written)
    and put that delegation summary in info["before_rewrites"], so a user sees what they bought.
    """
    from pocketvit.export.prepare import prepare_for_export
    from pocketvit.export.rewrites import apply_rewrites

    require("executorch.exir", "executorch", _WHY)
    args = example if isinstance(example, tuple) else (example,)
    rewrites: dict[str, int] = {}
    source = model
    if prepare:
        model = prepare_for_export(model, unfused_attention=unfused_attention)
        rewrites = apply_rewrites(model, TARGET, disabled_rewrites)
    ep = torch_export(model, args, model_name)
    et, summaries = lower_program(ep, model_name)
    path = Path(path)
    write_program(et, path, model_name)
    info = dict(summaries["forward"])
    info["methods"] = ["forward"]
    info["rewrites"] = rewrites
    if compare_rewrites and rewrites:
        plain = prepare_for_export(source, unfused_attention=unfused_attention)
        info["before_rewrites"] = lower_program(torch_export(plain, args, model_name), model_name, serialise=False)[1]["forward"]
    return ExportedFile(target=TARGET, path=path, runtime="executorch", precision="fp32", info=info)


def export_executorch_methods(
    methods: Mapping[str, tuple[torch.nn.Module, tuple]],
    path: Path | str,
    *,
    model_name: str = "model",
    prepare: bool = True,
    unfused_attention: bool = True,
) -> ExportedFile:
    """One .pte with several methods: {method_name: (module, example_args)}.

    Used for early-exit segments: each segment is its own method and the app chains them. Modules are
    prepared with one deep copy, so weights shared between segments stay shared (and are stored once).
    info has the summed counts plus `per_method` with each method's own.
    """
    from pocketvit.export.prepare import prepare_many

    require("executorch.exir", "executorch", _WHY)
    if not methods:
        raise ExportError(f"Could not export '{model_name}' to {TARGET}: no methods given.")
    names = list(methods)
    modules = [methods[n][0] for n in names]
    args = [methods[n][1] if isinstance(methods[n][1], tuple) else (methods[n][1],) for n in names]
    # No delegate rewrites here: with layernorm-as-linear, a multi-method program whose methods share
    # weights fails at run time in XNNPACK ("Propagating input shapes failed"), while each method
    # exported alone runs and matches eager. Left as a known ExecuTorch issue (see README).
    if prepare:
        modules = prepare_many(modules, unfused_attention=unfused_attention)
    programs = {n: torch_export(m, a, model_name, n) for n, m, a in zip(names, modules, args)}
    et, summaries = lower_program(programs, model_name)
    path = Path(path)
    write_program(et, path, model_name)
    total: Counter[str] = Counter()
    for s in summaries.values():
        total.update(s["outside_ops"])
    info = {
        "methods": names,
        "delegate_calls": sum(s["delegate_calls"] for s in summaries.values()),
        "nodes_outside": sum(s["nodes_outside"] for s in summaries.values()),
        "nodes_delegated": sum(s["nodes_delegated"] for s in summaries.values()),
        "outside_ops": dict(total.most_common()),
        "per_method": summaries,
        "rewrites": {},
    }
    return ExportedFile(target=TARGET, path=path, runtime="executorch", precision="fp32", info=info)
