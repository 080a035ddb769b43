"""LiteRT (TFLite): litert_torch.convert(model, (example,)) -> .tflite.

The single-entry file has one signature, "serving_default" (input "args_0", output "output_0").
`export_litert_signatures` writes one .tflite with one signature per segment (early exits).
`info["ops"]` counts the builtin operators in the flatbuffer, read back with ai_edge_litert's
Interpreter, so a user sees what the graph became; `info["delegate_calls"]`, `["ops_outside"]`,
`["outside_ops"]` and `["transposes"]` say what the XNNPACK delegate took (export/litert_graph.py).
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path
from collections.abc import Mapping
from typing import TYPE_CHECKING

from pocketvit.errors import ExportError, MissingExtraError
from pocketvit.export._common import ExportedFile, atomic_path, env_override, lowering_error, require
from pocketvit.export.litert_graph import DELEGATION_KEYS, delegation

if TYPE_CHECKING:  # pragma: no cover
    import torch

TARGET = "litert"
_WHY = "needed to write .tflite files"
DEFAULT_SIGNATURE = "serving_default"


@contextlib.contextmanager
def quiet_litert():
    # litert-torch prints a progress tree on stdout unless LITERT_TORCH_SHOW_PROGRESS is off.
    sink = io.StringIO()
    with env_override(LITERT_TORCH_SHOW_PROGRESS="n"), contextlib.redirect_stdout(sink):
        yield


def describe_tflite(path: Path | str) -> dict:
    """Op counts and signatures of a .tflite file, read with ai_edge_litert's Interpreter."""
    try:
        interp_mod = require("ai_edge_litert.interpreter", "litert", "needed to read .tflite files")
    except MissingExtraError as e:  # the file is written; only its facts are not read
        return {"describe_error": str(e)}
    info: dict = {}
    try:
        interp = interp_mod.Interpreter(model_path=str(path))
        sigs = interp.get_signature_list()
        info["signatures"] = {
            name: {"inputs": list(s.get("inputs", [])), "outputs": list(s.get("outputs", []))}
            for name, s in sigs.items()
        }
        interp.allocate_tensors()  # applies the default XNNPACK delegate: DELEGATE nodes join the op list
        info.update(delegation(interp._get_ops_details()))
        info["input_shapes"] = [
            [int(v) for v in d["shape"]] for d in interp.get_input_details()
        ]
    except Exception as exc:  # reading facts must never fail an export that worked
        info.setdefault("ops", {})
        info["describe_error"] = f"{type(exc).__name__}: {exc}"[:200]
    return info


def _write(edge_model, path: Path, model_name: str) -> None:
    with atomic_path(path) as tmp:
        try:
            with quiet_litert():
                edge_model.export(str(tmp))
        except ExportError:
            raise
        except Exception as exc:
            raise lowering_error(model_name, TARGET, exc, "writing the flatbuffer") from exc


def export_litert(
    model: torch.nn.Module,
    example: torch.Tensor | tuple,
    path: Path | str,
    *,
    model_name: str = "model",
    prepare: bool = True,
    disabled_rewrites: tuple[str, ...] = (),
    compare_rewrites: bool = False,
) -> ExportedFile:
    """Convert `model` with litert-torch and write a .tflite at `path`.

    With prepare, the export rewrites meant for LiteRT (export/rewrites.py) are applied unless disabled;
    compare_rewrites: when one changed the model, also convert it without them (not kept) and put that
    file's description in info["before_rewrites"].
    """
    from pocketvit.export.prepare import prepare_for_export
    from pocketvit.export.rewrites import apply_rewrites

    require("litert_torch", "litert", _WHY)
    args = example if isinstance(example, tuple) else (example,)
    rewrites: dict[str, int] = {}
    source = model
    if prepare:
        model = prepare_for_export(model)
        rewrites = apply_rewrites(model, TARGET, disabled_rewrites)
    f = written_file(_convert(model, args, model_name), Path(path), model_name, signature=DEFAULT_SIGNATURE)
    f.info["rewrites"] = rewrites
    if compare_rewrites and rewrites:
        with tempfile.TemporaryDirectory() as tmp:
            plain = Path(tmp) / "before.tflite"
            try:
                _write(_convert(prepare_for_export(source), args, model_name), plain, model_name)
            except ExportError as e:  # a rewrite that works around a converter failure (linear-attention-broadcast)
                f.info["before_rewrites"] = {"error": str(e).splitlines()[0]}
                return f
            before = describe_tflite(plain)
        f.info["before_rewrites"] = {k: before[k] for k in DELEGATION_KEYS if k in before}
    return f


def _convert(model: torch.nn.Module, args: tuple, model_name: str):
    import torch

    litert_torch = require("litert_torch", "litert", _WHY)
    try:
        with quiet_litert(), torch.no_grad():
            return litert_torch.convert(model, args)
    except Exception as exc:
        raise lowering_error(model_name, TARGET, exc, "litert_torch.convert") from exc


def export_litert_signatures(
    methods: Mapping[str, tuple[torch.nn.Module, tuple]],
    path: Path | str,
    *,
    model_name: str = "model",
    prepare: bool = True,
) -> ExportedFile:
    """One .tflite with one signature per entry of {signature_name: (module, example_args)}."""
    import torch

    from pocketvit.export.prepare import prepare_many

    litert_torch = require("litert_torch", "litert", _WHY)
    if not methods:
        raise ExportError(f"Could not export '{model_name}' to {TARGET}: no signatures given.")
    names = list(methods)
    modules = [methods[n][0] for n in names]
    args = [methods[n][1] if isinstance(methods[n][1], tuple) else (methods[n][1],) for n in names]
    if prepare:
        modules = prepare_many(modules)
    try:
        with quiet_litert(), torch.no_grad():
            conv = None
            for n, m, a in zip(names, modules, args):
                conv = litert_torch.signature(n, m, a) if conv is None else conv.signature(n, m, a)
            edge_model = conv.convert()
    except Exception as exc:
        raise lowering_error(model_name, TARGET, exc, "litert_torch.convert") from exc
    return written_file(edge_model, Path(path), model_name, methods=names)


def written_file(edge_model, path: Path, model_name: str, **extra) -> ExportedFile:
    """Write the converted model atomically and describe what the file holds."""
    _write(edge_model, path, model_name)
    info = describe_tflite(path)
    info.setdefault("ops", {})
    info.update(extra)
    return ExportedFile(target=TARGET, path=path, runtime="litert", precision="fp32", info=info)
