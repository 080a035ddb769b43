"""Core ML drop-in file: an image input and a classifier, so Apple's Vision (`VNCoreMLRequest`) takes a
`CVPixelBuffer` and returns labels with no preprocessing code.

    from pocketvit.export.coreml_image import export_coreml_image, image_spec_check
    f = export_coreml_image(model, spec, labels, out_dir)        # target 'coreml-dropin', model-dropin.mlpackage
    image_spec_check(f.path)                                      # what Linux can check: the spec, not execution

The input is a `ct.ImageType` in the manifest's colour layout (GRAYSCALE or RGB) whose scale and bias are the
manifest's normalization: Core ML computes ``pixel * scale + bias`` per channel, with one scale for all channels,
so ``scale = manifest scale / std`` and ``bias = -mean / std`` when every channel has the same std; otherwise
the ImageType does ``pixel * scale - mean`` and a per-channel ``/ std`` stays inside the graph. A softmax and
`ct.ClassifierConfig(labels)` make the outputs `classLabel` and `classLabel_probs`. Resizing to the input size
is Vision's job (its `imageCropAndScaleOption`).

Core ML executes only on macOS/iOS: on Linux the file is converted and its spec is checked (image input,
colour layout, scale/bias, class labels); execution needs macOS.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pocketvit.errors import ExportError
from pocketvit.export._common import ExportedFile, atomic_path

if TYPE_CHECKING:  # pragma: no cover
    import torch

TARGET = "coreml-dropin"
INPUT_NAME = "image"


def image_scale_bias(spec: dict[str, Any]) -> tuple[float, list[float], list[float] | None]:
    """(ImageType scale, ImageType bias per channel, per-channel divisor left in the graph or None)."""
    c = int(spec["channels"])
    scale = float(spec.get("scale", 1.0 / 255.0))
    mean = [float(x) for x in (spec.get("mean") or [0.0])]
    std = [float(x) for x in (spec.get("std") or [1.0])]
    mean, std = (mean * c if len(mean) == 1 else mean), (std * c if len(std) == 1 else std)
    if len(set(std)) == 1:
        return scale / std[0], [-m / std[0] for m in mean], None
    return scale, [-m for m in mean], std


def _classifier_module(model: torch.nn.Module, divisor: list[float] | None):
    import torch

    class CoreMLClassifier(torch.nn.Module):
        """ImageType-normalized NCHW -> (per-channel / std when needed) -> model -> softmax."""

        def __init__(self):
            super().__init__()
            self.model = model
            self.divide = divisor is not None
            d = torch.tensor(divisor or [1.0], dtype=torch.float32).reshape(1, -1, 1, 1)
            self.register_buffer("inv_std", 1.0 / d)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if self.divide:
                x = x * self.inv_std
            y = self.model(x)
            if isinstance(y, (tuple, list)):
                y = y[-1]
            return torch.softmax(y, dim=-1)

    return CoreMLClassifier().eval()


def export_coreml_image(
    model: torch.nn.Module,
    spec: dict[str, Any],
    labels: list[str],
    out_dir: Path | str,
    *,
    name: str = "model",
    model_name: str = "model",
    minimum_deployment_target: str = "iOS16",
    disabled_rewrites: tuple[str, ...] = (),
) -> ExportedFile:
    """Write `out_dir/<name>-dropin.mlpackage` (fp16 ML Program, image in, class labels out) and check its spec.
    The export rewrites meant for Core ML (export/rewrites.py) are applied unless disabled."""
    import torch

    from pocketvit.export.coreml import convert_with_fallback, import_coremltools, quiet_coremltools
    from pocketvit.export.prepare import prepare_for_export

    ct = import_coremltools()
    color = spec.get("color_order", "GRAY" if spec["channels"] == 1 else "RGB")
    if color not in ("GRAY", "RGB", "BGR"):
        raise ExportError(f"Could not make a Core ML image model of '{model_name}': colour order {color}")
    if not labels:
        raise ExportError(f"Could not make a Core ML classifier of '{model_name}': the bundle has no labels")
    from pocketvit.export.rewrites import apply_rewrites

    scale, bias, divisor = image_scale_bias(spec)
    inner = prepare_for_export(model)
    rewrites = apply_rewrites(inner, "coreml", disabled_rewrites)
    wrapped = _classifier_module(inner, divisor)
    shape = (1, int(spec["channels"]), int(spec["height"]), int(spec["width"]))
    layout = {"GRAY": ct.colorlayout.GRAYSCALE, "RGB": ct.colorlayout.RGB, "BGR": ct.colorlayout.BGR}[color]
    path = Path(out_dir) / f"{name}-dropin.mlpackage"

    def convert(source):
        return ct.convert(
            source,
            inputs=[ct.ImageType(name=INPUT_NAME, shape=shape, scale=scale,
                                 bias=bias[0] if color == "GRAY" else bias, color_layout=layout)],
            classifier_config=ct.ClassifierConfig(list(labels)),
            convert_to="mlprogram",
            compute_precision=ct.precision.FLOAT16,
            minimum_deployment_target=getattr(ct.target, minimum_deployment_target),
        )

    mlmodel, route = convert_with_fallback(wrapped, (torch.zeros(shape),), convert, model_name,
                                           "ct.convert with an ImageType input", target="coreml")
    mlmodel.short_description = f"{model_name}: image classifier exported by pocketvit"
    mlmodel.user_defined_metadata["pocketvit.preprocessing"] = json.dumps(spec, sort_keys=True)
    with atomic_path(path) as tmp:
        with quiet_coremltools():
            mlmodel.save(str(tmp))
        check = image_spec_check(tmp, spec=spec, labels=labels)
        if not check["ok"]:  # checked before the rename: a file that fails never reaches its final name
            raise ExportError(f"Could not export '{model_name}' to {TARGET}: the Core ML image model's spec does not "
                              f"match the bundle: {check['problems']}")
    info = {**route, "rewrites": rewrites, "spec_check": check, "input_form": "uint8-nhwc",
            "file_outputs": "probabilities",
            "image_input": {"scale": scale, "bias": bias, "color_layout": check["color_space"],
                            "std_in_graph": divisor}}
    return ExportedFile(target=TARGET, path=path, runtime="coreml", precision="fp16", info=info)


def _const_values(blk) -> dict[str, Any]:
    return {op.outputs[0].name: op.attributes["val"] for op in blk.operations if op.type == "const"}


def _floats(value) -> list[float]:
    t = value.immediateValue.tensor
    for field in ("floats", "doubles", "halfs"):
        if t.HasField(field):
            return [float(v) for v in getattr(t, field).values]
    if t.HasField("bytes"):  # fp16 stored as raw bytes
        import numpy as np

        return np.frombuffer(t.bytes.values, dtype=np.float16).astype(float).tolist()
    return []


def image_spec_check(path: Path | str, *, spec: dict[str, Any] | None = None,
                     labels: list[str] | None = None) -> dict[str, Any]:
    """Read a saved .mlpackage's spec (no execution; works on Linux) and check the Vision contract: an image
    input of the right size and colour layout, its scale/bias (the first mul/add on the image), a classifier
    with the class labels. Returns {ok, problems, color_space, width, height, scale, bias, labels, ...}."""
    from pocketvit.export.coreml import import_coremltools

    ct = import_coremltools()
    s = ct.utils.load_spec(str(path))
    desc = s.description
    out: dict[str, Any] = {"model_type": s.WhichOneof("Type"), "problems": []}
    image = [i for i in desc.input if i.type.WhichOneof("Type") == "imageType"]
    if not image:
        out["problems"].append("no image input")
    else:
        it = image[0].type.imageType
        out.update(input=image[0].name, width=int(it.width), height=int(it.height),
                   color_space=ct.proto.FeatureTypes_pb2.ImageFeatureType.ColorSpace.Name(it.colorSpace))
    out["predicted_feature"] = desc.predictedFeatureName
    out["probabilities"] = desc.predictedProbabilitiesName
    scale = bias = None
    classes: list[str] = []
    try:
        for fn in s.mlProgram.functions.values():
            for blk in fn.block_specializations.values():
                consts = _const_values(blk)
                for op in blk.operations:
                    # coremltools names the ops it puts in front of an image input <input>__scaled__ / __biased__
                    produced = op.outputs[0].name if op.outputs else None
                    if op.type == "mul" and image and produced == f"{image[0].name}__scaled__":
                        scale = _floats(consts[op.inputs["y"].arguments[0].name])
                    elif op.type == "add" and image and produced == f"{image[0].name}__biased__":
                        bias = _floats(consts[op.inputs["y"].arguments[0].name])
                    elif op.type == "classify":
                        arg = op.inputs["classes"].arguments[0]
                        val = (consts.get(arg.name) if arg.name else arg.value).immediateValue
                        items = ([s for v in val.list.values for s in v.immediateValue.tensor.strings.values]
                                 if val.WhichOneof("value") == "list" else list(val.tensor.strings.values))
                        classes = [v.decode() if isinstance(v, bytes) else str(v) for v in items]
    except (KeyError, AttributeError, ValueError) as e:
        out["problems"].append(f"cannot read the ML Program: {e}")
    # coremltools writes no multiply for a scale of 1 and no add for an all-zero bias (a mean-0 model: FastViT-MCi,
    # MobileViTv2): a missing op is that identity, not a mismatch
    out["omitted"] = [k for k, v in (("scale", scale), ("bias", bias)) if v is None]
    if image and not any("cannot read" in p for p in out["problems"]):
        scale = [1.0] if scale is None else scale
        bias = [0.0] if bias is None else bias
    out.update(scale=scale, bias=bias, labels=classes)
    if not desc.predictedFeatureName or not desc.predictedProbabilitiesName:
        out["problems"].append("not a classifier (no predictedFeatureName / predictedProbabilitiesName)")
    if spec is not None and image:
        want_color = {"GRAY": "GRAYSCALE", "RGB": "RGB", "BGR": "BGR"}[spec.get("color_order", "RGB")]
        if out["color_space"] != want_color:
            out["problems"].append(f"colour space {out['color_space']} != {want_color}")
        if (out["height"], out["width"]) != (spec["height"], spec["width"]):
            out["problems"].append(f"image size {out['height']}x{out['width']} != {spec['height']}x{spec['width']}")
        want_scale, want_bias, _ = image_scale_bias(spec)
        if scale is None or abs(scale[0] - want_scale) > 1e-4 * abs(want_scale):
            out["problems"].append(f"scale {scale} != {want_scale:.6g}")
        nb = 1 if spec["channels"] == 1 else 3
        if bias is None or len(bias) not in (1, nb) or any(abs(b - w) > 1e-3 for b, w in zip(bias * nb, want_bias)):
            out["problems"].append(f"bias {bias} != {want_bias}")
    if labels is not None and classes != list(labels):
        out["problems"].append(f"class labels {classes[:3]}... != the bundle's {list(labels)[:3]}...")
    out["ok"] = not out["problems"]
    out["note"] = "spec checked on this machine; execution needs macOS/iOS (Core ML)"
    return out


__all__ = ["TARGET", "export_coreml_image", "image_scale_bias", "image_spec_check"]
