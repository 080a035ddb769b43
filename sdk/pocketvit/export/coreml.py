"""Core ML: coremltools.convert -> ML Program (.mlpackage), FLOAT16 compute, iOS16+.

The torch.export route is tried first; models it cannot take (GhostNet: "Unsupported fx node alias",
see TOOLCHAINS.md) go through torch.jit.trace. Input "input" and output "output" stay float32 at the
interface (the cast to float16 happens inside), so an app feeds the same array to every runtime.

Core ML cannot execute on Linux. In its place the saved package's spec is loaded back and checked
(ML Program, input name and shape, output present); `info["executed"]` is False and
`info["spec_check"]` holds what was checked.
"""

from __future__ import annotations

import contextlib
import io
import sys
import warnings
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from pocketvit.errors import ExportError
from pocketvit.export._common import (
    ExportedFile,
    atomic_path,
    env_override,
    lowering_error,
    offending_op,
    require,
    short_reason,
)

if TYPE_CHECKING:  # pragma: no cover
    import torch

TARGET = "coreml"
_WHY = "needed to write .mlpackage files"
DEFAULT_DEPLOYMENT_TARGET = "iOS16"


@contextlib.contextmanager
def quiet_coremltools():
    # coremltools draws tqdm progress bars on sys.stderr; tqdm reads TQDM_DISABLE only at import.
    sink = io.StringIO()
    with (
        env_override(TQDM_DISABLE="1"),
        warnings.catch_warnings(),
        contextlib.redirect_stdout(sink),
        contextlib.redirect_stderr(sink),
    ):
        warnings.simplefilter("ignore")
        yield


def import_coremltools():
    # coremltools logs a dozen "Failed to load ..." lines on Linux at import; they say nothing new.
    if "coremltools" in sys.modules:
        return sys.modules["coremltools"]
    import logging

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with quiet_coremltools():
            return require("coremltools", "coreml", _WHY)
    finally:
        root.setLevel(level)


def _output_names(model, args) -> list[str]:
    import torch

    with torch.no_grad():
        out = model(*args)
    n = len(out) if isinstance(out, (tuple, list)) else 1
    return ["output"] + [f"output_{i}" for i in range(1, n)]


def _convert(ct, source, example, outputs, deployment_target):
    import numpy as np

    return ct.convert(
        source,
        inputs=[ct.TensorType(name="input", shape=tuple(example.shape), dtype=np.float32)],
        outputs=[ct.TensorType(name=o, dtype=np.float32) for o in outputs],
        convert_to="mlprogram",
        compute_precision=ct.precision.FLOAT16,
        minimum_deployment_target=getattr(ct.target, deployment_target),
    )


def _trace(model, args):
    """torch.jit.trace, refusing a trace whose control flow depends on the example's values."""
    import torch

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        traced = torch.jit.trace(model, args, check_trace=False)
    for w in caught:
        if issubclass(w.category, torch.jit.TracerWarning) and "Python boolean" in str(w.message):
            raise RuntimeError(
                "the traced graph branches on tensor values (it would only be right for the example "
                f"input): {str(w.message).splitlines()[0][:160]}"
            )
    return traced


def drop_aliases(ep) -> int:
    """Replace every aten.alias node of an exported program by its input (an alias is the identity on an inference
    graph; coremltools 9.0's torch.export frontend has no conversion for it, coremltools#2517). An alias that is a
    graph output stays (the signature names it). Returns how many were dropped."""
    import torch

    dropped = 0
    for node in list(ep.graph.nodes):
        if node.op == "call_function" and node.target == torch.ops.aten.alias.default \
                and not any(u.op == "output" for u in node.users):
            node.replace_all_uses_with(node.args[0])
            ep.graph.erase_node(node)
            dropped += 1
    if dropped:
        ep.graph_module.recompile()
    return dropped


def convert_with_fallback(model, args, convert, model_name: str, stage: str, target: str = TARGET):
    """(mlmodel, info): `convert(source)` on the torch.export program, or, when that route fails (GhostNet:
    "Unsupported fx node alias", TOOLCHAINS.md), on a torch.jit.trace of the model; when the trace is refused too
    (Swin: its graph branches on tensor values) and torch.export failed on aten.alias, on the torch.export program
    with its alias nodes dropped (``alias-as-identity``). info["frontend"] says which route; after a fallback
    info["fallback_reason"] holds why torch.export failed. Every route failing raises an ExportError that names the
    operator and the reasons."""
    import torch

    first_exc: Exception | None = None
    ep = None
    try:
        with quiet_coremltools(), torch.no_grad():
            ep = torch.export.export(model, args).run_decompositions({})
            return convert(ep), {"frontend": "torch.export"}
    except Exception as exc:
        first_exc = exc
    try:
        with quiet_coremltools(), torch.no_grad():
            mlmodel = convert(_trace(model, args))
    except Exception as exc:
        trace_exc = exc
    else:
        return mlmodel, {"frontend": "torch.jit.trace", "fallback_reason": short_reason(first_exc)}
    if ep is not None and offending_op(str(first_exc)) == "alias":
        try:
            with quiet_coremltools(), torch.no_grad():
                dropped = drop_aliases(ep)
                mlmodel = convert(ep)
            return mlmodel, {"frontend": "torch.export", "rewrite": "alias-as-identity", "aliases_dropped": dropped,
                             "fallback_reason": short_reason(first_exc),
                             "trace_refused": short_reason(trace_exc)}
        except Exception as exc:  # noqa: BLE001 — reported below with the other routes' reasons
            trace_exc = RuntimeError(f"{short_reason(trace_exc)}; without its alias nodes: {short_reason(exc)}")
    err = lowering_error(model_name, target, first_exc, stage)
    if offending_op(str(first_exc)) is None and offending_op(str(trace_exc)):
        err = lowering_error(model_name, target, trace_exc, f"{stage} (torch.jit.trace route)")
    err.args = (f"{err.args[0]}\n(The torch.jit.trace route failed too: {short_reason(trace_exc)})",)
    raise err from first_exc


def _mil_ops(spec) -> dict:
    counts: Counter[str] = Counter()

    def _block(block):
        for op in block.operations:
            counts[op.type] += 1
            for b in op.blocks:
                _block(b)

    for fn in spec.mlProgram.functions.values():
        for block in fn.block_specializations.values():
            _block(block)
    return dict(counts.most_common())


def spec_check(path: Path | str, input_shape, outputs: list[str]) -> dict:
    """Load a saved .mlpackage's spec (no execution) and check its interface."""
    ct = import_coremltools()
    spec = ct.utils.load_spec(str(path))
    desc = spec.description
    ins = {i.name: [int(d) for d in i.type.multiArrayType.shape] for i in desc.input}
    outs = [o.name for o in desc.output]
    model_type = spec.WhichOneof("Type")
    check = {
        "model_type": model_type,
        "spec_version": int(spec.specificationVersion),
        "inputs": ins,
        "outputs": outs,
        "input_ok": ins.get("input") == [int(d) for d in input_shape],
        "outputs_ok": all(o in outs for o in outputs),
    }
    check["ok"] = bool(model_type == "mlProgram" and check["input_ok"] and check["outputs_ok"])
    try:
        check["mil_ops"] = _mil_ops(spec)
    except (AttributeError, KeyError, TypeError, ValueError) as e:  # reading facts must not fail a conversion that worked
        check["mil_ops"] = {}
        check["mil_ops_error"] = f"{type(e).__name__}: {e}"[:200]
    return check


def export_coreml(
    model: torch.nn.Module,
    example: torch.Tensor,
    path: Path | str,
    *,
    model_name: str = "model",
    prepare: bool = True,
    minimum_deployment_target: str = DEFAULT_DEPLOYMENT_TARGET,
    disabled_rewrites: tuple[str, ...] = (),
) -> ExportedFile:
    """Convert `model` to an fp16 ML Program and save it as an .mlpackage folder at `path`. With prepare, the
    export rewrites meant for Core ML (export/rewrites.py) are applied unless disabled."""
    from pocketvit.export.prepare import prepare_for_export
    from pocketvit.export.rewrites import apply_rewrites

    ct = import_coremltools()
    if isinstance(example, tuple):
        if len(example) != 1:
            raise ExportError(f"Could not export '{model_name}' to {TARGET}: one image input is supported.")
        (example,) = example
    if not hasattr(ct.target, minimum_deployment_target):
        raise ExportError(
            f"Unknown Core ML deployment target '{minimum_deployment_target}' (try iOS16, iOS17, iOS18)."
        )
    rewrites: dict[str, int] = {}
    if prepare:
        model = prepare_for_export(model)
        rewrites = apply_rewrites(model, TARGET, disabled_rewrites)
    args = (example,)
    outputs = _output_names(model, args)

    mlmodel, info = convert_with_fallback(
        model, args, lambda source: _convert(ct, source, example, outputs, minimum_deployment_target),
        model_name, "coremltools.convert")

    path = Path(path)
    with atomic_path(path) as tmp:
        try:
            with quiet_coremltools():
                mlmodel.save(str(tmp))
        except Exception as exc:
            raise lowering_error(model_name, TARGET, exc, "saving the .mlpackage") from exc
        try:
            check = spec_check(tmp, example.shape, outputs)
        except Exception as exc:
            raise lowering_error(model_name, TARGET, exc, "the spec check") from exc
        if not check["ok"]:
            raise ExportError(
                f"Could not export '{model_name}' to {TARGET}: the saved package failed its spec check "
                f"(type {check['model_type']}, inputs {check['inputs']}, outputs {check['outputs']}); "
                "rerun with --debug for details."
            )
    info.update(
        rewrites=rewrites,
        executed=False,
        reason="Core ML runs only on Apple platforms; the saved spec was checked instead",
        spec_check=check,
        minimum_deployment_target=minimum_deployment_target,
        compute_precision="float16",
    )
    return ExportedFile(target=TARGET, path=path, runtime="coreml", precision="fp16", info=info)
