"""Read a checkpoint without trusting pickles (safetensors, or torch.load with weights_only) and put it into a
model with a message that names what does not match."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pocketvit.errors import RecipeError


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A tensor state dict from a .safetensors file, or from a .pth/.pt that torch.load(weights_only=True) reads.

    Nothing is unpickled beyond tensors and plain containers: a checkpoint that needs arbitrary pickled
    objects is refused with the command that converts it to safetensors.
    """
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"{path}: no such checkpoint file")
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(path)))
        except Exception as e:  # safetensors raises several types for damaged files
            raise RecipeError(f"{path}: not a readable safetensors file ({first_line(e)})") from None
    import torch

    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:
        raise RecipeError(
            f"{path}: pocketvit reads checkpoints as safetensors, and this file is not a plain tensor state dict "
            f"that torch.load(weights_only=True) can read ({first_line(e)}). Unpickling it could run arbitrary "
            "code, so it is refused. If you trust the file, load its state dict yourself (unpickling allowed) and "
            "write it with safetensors.torch.save_file({k: v.contiguous() for k, v in sd.items()}, "
            "'model.safetensors'), then pass --checkpoint model.safetensors"
        ) from None
    state = _unwrap_state_dict(obj)
    if state is None:
        raise RecipeError(f"{path}: holds a {type(obj).__name__}, not a state dict of tensors; save "
                          "model.state_dict() as safetensors and pass that")
    return state


def _unwrap_state_dict(obj: Any) -> dict[str, Any] | None:
    import torch

    for _ in range(3):
        if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            keys = list(obj)
            if all(k.startswith("module.") for k in keys):  # saved from DataParallel / DDP
                obj = {k[len("module."):]: v for k, v in obj.items()}
            return dict(obj)
        if not isinstance(obj, dict):
            return None
        inner = next((obj[k] for k in ("state_dict", "model_state_dict", "model", "state_dict_ema", "ema")
                      if isinstance(obj.get(k), dict)), None)
        if inner is None:
            return None
        obj = inner
    return None


def apply_checkpoint(model: Any, state: dict[str, Any], path: Path, what: str) -> None:
    """load_state_dict, with a message that says which keys or shapes do not fit (and the likely flag)."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k}: checkpoint {list(state[k].shape)} vs model {list(own[k].shape)}"
              for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        if shapes:
            parts.append(f"{len(shapes)} shape mismatch(es), e.g. {'; '.join(shapes[:3])}")
        if missing:
            parts.append(f"{len(missing)} missing key(s), e.g. {missing[:3]}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s), e.g. {unexpected[:3]}")
        raise RecipeError(
            f"{path} does not fit {what}: {' | '.join(parts)}. Check --num-classes / --in-chans / --input-size "
            "(the classifier and the stem must match the checkpoint); a checkpoint from a pocketvit build is "
            "exported best by passing the build directory"
        )
    model.load_state_dict(state)


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0][:200]}" if text else type(e).__name__
