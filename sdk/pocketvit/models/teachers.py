"""Teachers used as they come: a timm checkpoint, an open_clip image tower, EfficientNet-Lite's ImageNet
weights, a Hugging Face image classifier folder (hf:FOLDER), another build's student, or an ensemble of these.

Each keeps its own preprocessing (timm's pretrained_cfg via `resolve_data_config`, open_clip's
preprocess_cfg, Lite's [-1, 1], a build's manifest). `TeacherAdapter` takes the *student's* normalized
augmented batch and re-normalizes, recolours and resizes it for the teacher, as timm's distillation task
does, so the teacher sees the same augmented view as the student, at its own input size.

    t = load_teacher({"arch": "efficientnet-lite:lite0"}, base_dir, splits)
    t.model(splits.normalize(uint8_batch))   # logits over t.labels (the 1000 ImageNet classes)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pocketvit.errors import MissingExtraError, RecipeError

SOURCE_OPTIONS = {"input_size", "num_classes"}
OPEN_CLIP_OPTIONS = {"head", "prompt", "input_size"}
DEFAULT_PROMPT = "a photo of a {}."


@dataclass
class LoadedTeacher:
    """A teacher ready for the cache: `model` takes the student's normalized batch and returns logits."""

    model: nn.Module
    labels: list[str]
    arch: str
    inputs: list[dict[str, Any]]  # each member's own input contract (height, width, mean, std, ...)
    notes: list[str] = field(default_factory=list)
    member_labels: list[list[str]] = field(default_factory=list)  # an ensemble's members' own classes


class TeacherAdapter(nn.Module):
    """Student-normalized NCHW in → the teacher's own preprocessing → the teacher's logits."""

    def __init__(self, model: nn.Module, teacher_input: dict[str, Any], student_mean: list[float],
                 student_std: list[float]):
        super().__init__()
        self.model = model.eval()
        self.size = (int(teacher_input["height"]), int(teacher_input["width"]))
        self.channels = int(teacher_input.get("channels", 3))
        self.register_buffer("s_mean", torch.tensor(student_mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("s_std", torch.tensor(student_std, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("t_mean", torch.tensor(teacher_input["mean"], dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("t_std", torch.tensor(teacher_input["std"], dtype=torch.float32).view(1, -1, 1, 1))

    def teacher_input(self, x: torch.Tensor) -> torch.Tensor:
        pixels = x.float() * self.s_std + self.s_mean  # back to [0, 1]
        if pixels.shape[1] == 1 and self.channels == 3:
            pixels = pixels.expand(-1, 3, -1, -1)
        elif pixels.shape[1] == 3 and self.channels == 1:
            pixels = pixels.mean(1, keepdim=True)
        if tuple(pixels.shape[-2:]) != self.size:
            down = pixels.shape[-1] > self.size[1]
            pixels = F.interpolate(pixels, size=self.size, mode="bilinear", align_corners=False, antialias=down)
        return ((pixels - self.t_mean) / self.t_std).to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.teacher_input(x))


class EnsembleTeacher(nn.Module):
    """Averages the members' probabilities; returns their log, so softmax(output) is the averaged distribution."""

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = torch.stack([torch.softmax(m(x).float(), dim=1) for m in self.members]).mean(0)
        return torch.log(probs.clamp(min=1e-12))


class OpenClipClassifier(nn.Module):
    """An open_clip image tower with a classification head: zero-shot (the class prompts' text embeddings times
    the logit scale, over L2-normalized image embeddings) or linear. The head is a plain `nn.Linear`, so
    fine-tuning (distill/finetune.py) starts from the zero-shot head and trains it like any other."""

    def __init__(self, visual: nn.Module, weight: torch.Tensor, bias: torch.Tensor | None, scale: float,
                 normalize: bool):
        super().__init__()
        self.visual = visual
        self.head = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            self.head.weight.copy_(float(scale) * weight.float())
            self.head.bias.copy_(bias.float() if bias is not None else torch.zeros(len(weight)))
        self.normalize = normalize

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.visual(x)
        if isinstance(e, (tuple, list)):
            e = e[0]
        e = F.normalize(e.float(), dim=-1) if self.normalize else e.float()
        return self.head(e)


def is_pretrained(teacher: Any) -> bool:
    """Whether the recipe's teacher is used as it comes (this module) rather than trained by the build."""
    arch = teacher.arch
    return bool(teacher.pretrained or teacher.ensemble or arch.startswith(("open_clip:", "hf:")) or _is_path(arch))


def _is_path(arch: str) -> bool:
    return "/" in arch or "\\" in arch or arch.startswith(".") or Path(arch).is_dir()


def member_specs(teacher: Any) -> list[dict[str, Any]]:
    """The recipe's teacher as a list of {arch, checkpoint, options} (one entry unless it is an ensemble)."""
    if teacher.ensemble:
        return [m.model_dump() for m in teacher.ensemble]
    return [{"arch": teacher.arch, "checkpoint": teacher.checkpoint, "options": dict(teacher.options)}]


def fingerprint(specs: list[dict[str, Any]], base_dir: Path) -> list[dict[str, Any]]:
    """The specs plus the sha256 of every weights file they read: the teacher stage's cache key."""
    from pocketvit.runtime.io import sha256_file

    out = []
    for spec in specs:
        files = [p for p in _weight_files(spec, base_dir) if p.is_file()]
        out.append(spec | {"sha256": {p.name: sha256_file(p) for p in files}})
    return out


def _weight_files(spec: dict[str, Any], base_dir: Path) -> list[Path]:
    from pocketvit.recipe import resolve

    arch = spec["arch"]
    files = [resolve(spec["checkpoint"], base_dir)] if spec.get("checkpoint") else []
    head = (spec.get("options") or {}).get("head")
    if head and head != "zero-shot":
        files.append(resolve(head, base_dir))
    if arch.startswith("efficientnet-lite:") and not spec.get("checkpoint"):
        from pocketvit.models import efficientnet_lite

        files.append(efficientnet_lite.weights_file(arch.split(":", 1)[1]))
    target = arch.split(":", 1)[1] if arch.startswith(("open_clip:", "hf:")) else arch
    folder = resolve(target, base_dir)
    if not ((_is_path(target) or arch.startswith("hf:")) and folder.is_dir()):
        return files
    for bundle in (folder / "bundle", folder):  # a build directory or a bundle: its manifest and reference weights
        if (bundle / "manifest.json").is_file():
            from pocketvit.models import REFERENCE_WEIGHTS

            return files + [bundle / "manifest.json", bundle / REFERENCE_WEIGHTS]
    return files + sorted(p for p in folder.rglob("*") if p.suffix in (".safetensors", ".json"))


def load_teacher(teacher: Any, base_dir: Path, splits: Any, same_classes: bool = True) -> LoadedTeacher:
    """The recipe's `teacher` section (or a dict spec) as a LoadedTeacher for the student's data `splits`.
    `same_classes=False`: an ensemble's members may predict different classes (each gets a new head when
    fine-tuned)."""
    specs = member_specs(teacher) if hasattr(teacher, "arch") else [dict(teacher)]
    members = [load_member(s, base_dir, splits) for s in specs]
    if len(members) == 1:
        return members[0]
    sizes = {len(m.labels) for m in members}
    if len(sizes) != 1 and same_classes:
        raise RecipeError(f"teacher.ensemble: the members have different class counts {sorted(sizes)}; an ensemble "
                          "averages probabilities over the same classes")
    arch = "ensemble(" + " + ".join(m.arch for m in members) + ")"
    return LoadedTeacher(EnsembleTeacher([m.model for m in members]).eval(), members[0].labels, arch,
                         [i for m in members for i in m.inputs], [n for m in members for n in m.notes],
                         [list(m.labels) for m in members])


def load_member(spec: dict[str, Any], base_dir: Path, splits: Any) -> LoadedTeacher:
    """One teacher (timm:NAME + checkpoint, open_clip:ARCH|DIR, efficientnet-lite:VARIANT, a build directory)."""
    from pocketvit.recipe import resolve

    arch, options = spec["arch"], dict(spec.get("options") or {})
    ckpt = resolve(spec["checkpoint"], base_dir) if spec.get("checkpoint") else None
    if arch.startswith("open_clip:"):
        model, contract, labels = _open_clip(arch.split(":", 1)[1], ckpt, options, base_dir, splits)
        notes: list[str] = []
    else:
        model, contract, labels, notes = _resolved(arch, ckpt, options, base_dir)
    adapter = TeacherAdapter(model, contract, list(splits.mean), list(splits.std))
    return LoadedTeacher(adapter.eval(), labels, arch, [contract], notes)


def _check_options(arch: str, options: dict[str, Any], known: set[str]) -> None:
    unknown = sorted(set(options) - known)
    if unknown:
        raise RecipeError(f"teacher {arch}: unknown option(s) {unknown}; a teacher used as it comes takes "
                          f"{sorted(known)}")


def _resolved(arch: str, ckpt: Path | None, options: dict[str, Any], base_dir: Path):
    """timm / EfficientNet-Lite / hf: folders / build directories through models/sources.py (the export path's
    loader)."""
    from pocketvit.models.sources import resolve_model
    from pocketvit.recipe import resolve

    _check_options(arch, options, SOURCE_OPTIONS)
    from pocketvit.models import LOCAL_ARCHS

    if arch in LOCAL_ARCHS:
        raise RecipeError(f"teacher {arch} with teacher.pretrained: pocketvit's own architectures are trained by the "
                          "build (drop teacher.pretrained), or used as they come through the build that trained them "
                          "(teacher.arch: runs/NAME)")
    if arch.startswith("timm:") and ckpt is None:
        raise RecipeError(f"teacher {arch}: a timm teacher used as it comes needs teacher.checkpoint (safetensors "
                          "weights); without one it would be random. To train it on the data instead, drop "
                          "teacher.pretrained")
    size = options.get("input_size")
    if isinstance(size, int):
        size = (size, size)
    if arch.startswith("hf:"):  # a Hugging Face folder, relative to the recipe like every path
        target = f"hf:{resolve(arch.split(':', 1)[1], base_dir)}"
    else:
        target = str(resolve(arch, base_dir)) if _is_path(arch) else arch
    r = resolve_model(target, checkpoint=ckpt, input_size=tuple(size) if size else None,
                      num_classes=options.get("num_classes"))
    return r.model.eval(), r.input, list(r.labels), list(r.notes)


def _open_clip_module():
    try:
        import open_clip
    except ImportError as exc:
        raise MissingExtraError("open_clip", "clip", "open_clip teachers") from exc
    return open_clip


def _open_clip(name: str, ckpt: Path | None, options: dict[str, Any], base_dir: Path, splits: Any):
    """open_clip:NAME (a built-in config) + checkpoint, or open_clip:DIR (open_clip_config.json + weights)."""
    from pocketvit.recipe import resolve

    _check_options(f"open_clip:{name}", options, OPEN_CLIP_OPTIONS)
    open_clip = _open_clip_module()
    folder = resolve(name, base_dir)
    if _is_path(name) or folder.is_dir():
        if not (folder / "open_clip_config.json").is_file():
            raise RecipeError(f"teacher open_clip:{name}: {folder} has no open_clip_config.json (the layout of "
                              "open_clip's Hugging Face folders: config + open_clip_model.safetensors)")
        if ckpt is not None:
            raise RecipeError(f"teacher open_clip:{name}: the folder carries its weights; drop teacher.checkpoint")
        model_name, pretrained = f"local-dir:{folder}", None
    else:
        if name not in open_clip.list_models():
            raise RecipeError(f"teacher open_clip:{name}: unknown open_clip model; known: "
                              f"{', '.join(open_clip.list_models()[:8])}, ... or a folder with open_clip_config.json")
        if ckpt is None:
            raise RecipeError(f"teacher open_clip:{name} needs teacher.checkpoint (safetensors); pocketvit does not "
                              "download weights")
        model_name, pretrained = name, str(ckpt)
    try:
        clip = open_clip.create_model(model_name, pretrained=pretrained, require_pretrained=True)
    except Exception as e:  # noqa: BLE001 - open_clip raises RuntimeError, ValueError, FileNotFoundError, ...
        raise RecipeError(f"teacher open_clip:{name}: open_clip could not load it ({type(e).__name__}: "
                          f"{str(e).splitlines()[0][:200]})") from None
    clip.eval()
    pcfg = getattr(clip.visual, "preprocess_cfg", {}) or {}
    size = options.get("input_size") or pcfg.get("size") or clip.visual.image_size
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    contract = {"height": int(h), "width": int(w), "channels": 3, "mean": list(pcfg.get("mean", (0.5,) * 3)),
                "std": list(pcfg.get("std", (0.5,) * 3)), "color_order": "RGB"}
    head = options.get("head", "zero-shot")
    if head == "zero-shot":
        labels = list(splits.labels)
        if not labels or not splits.labeled:
            raise RecipeError(f"teacher open_clip:{name}: a zero-shot head needs class names, and this data has no "
                              "labels; give options.head: FILE.safetensors (a linear head: weight [classes, dim], "
                              "bias) or use labeled data (class folders)")
        tokenizer = open_clip.get_tokenizer(model_name)
        prompt = options.get("prompt", DEFAULT_PROMPT)
        with torch.no_grad():
            text = F.normalize(clip.encode_text(tokenizer([prompt.format(c) for c in labels])).float(), dim=-1)
        model = OpenClipClassifier(clip.visual, text, None, clip.logit_scale.detach().exp().item(), normalize=True)
        return model.eval(), contract, labels
    from safetensors.torch import load_file

    path = resolve(head, base_dir)
    if not path.is_file():
        raise RecipeError(f"teacher open_clip:{name}: options.head {head} is neither 'zero-shot' nor a file")
    state = load_file(str(path))
    if "weight" not in state:
        raise RecipeError(f"{path}: a linear head holds 'weight' [classes, dim] (and optionally 'bias'); found "
                          f"{sorted(state)[:5]}")
    from pocketvit.models.imagenet import labels_for

    n = int(state["weight"].shape[0])
    labels = list(splits.labels) if len(splits.labels) == n and splits.labeled else labels_for(n)
    model = OpenClipClassifier(clip.visual, state["weight"], state.get("bias"), 1.0, normalize=False)
    return model.eval(), contract, labels
