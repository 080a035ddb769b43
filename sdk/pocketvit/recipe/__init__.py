"""Recipes: load a YAML file, apply `--set key.path=value` overrides, validate everything at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from pocketvit.errors import RecipeError
from pocketvit.recipe.schema import Recipe

__all__ = ["Recipe", "load_recipe", "apply_overrides"]


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """`distill.epochs=3` sets data['distill']['epochs'] = 3 (the value is parsed as YAML)."""
    for item in overrides:
        if "=" not in item:
            raise RecipeError(f"--set {item!r}: expected key.path=value, e.g. --set distill.epochs=3")
        key, raw = item.split("=", 1)
        parts = [p for p in key.strip().split(".") if p]
        if not parts:
            raise RecipeError(f"--set {item!r}: empty key")
        node = data
        for p in parts[:-1]:
            child = node.setdefault(p, {})
            if not isinstance(child, dict):
                raise RecipeError(f"--set {item!r}: '{p}' is not a section")
            node = child
        node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else None
    return data


def _format_errors(source: str, err: ValidationError) -> str:
    lines = [f"{source}: {err.error_count()} problem(s):"]
    for e in err.errors():
        path = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; `pocketvit validate --help` points to the recipe reference)"
        else:
            msg = e["msg"]
            if "input" in e and e["type"] != "missing":
                msg += f", got {e['input']!r}"
        lines.append(f"  {path}: {msg}")
    return "\n".join(lines)


def _check_paths(recipe: Recipe, base: Path) -> list[str]:
    problems = []
    root = Path(recipe.data.root)
    if recipe.data.dataset == "image-folder":
        if not recipe.data.root.startswith("pocketvit:") and not root.expanduser().is_dir():
            problems.append(f"  data.root: folder {root} does not exist — point it at your images (one subfolder "
                            "per class, or a flat folder), or use the shipped photos: `pocketvit data photos DIR` "
                            "or data.root: pocketvit:photos")
        for key in ("unlabeled", "test_root"):
            value = getattr(recipe.data, key)
            if value and value != "loose" and not value.startswith("pocketvit:") and \
                    not Path(value).expanduser().is_dir():
                problems.append(f"  data.{key}: folder {value} does not exist")
    elif not root.is_dir():
        problems.append(
            f"  data.root: folder {root} does not exist — install the data (`sudo apt-get install "
            f"dataset-fashion-mnist`) or pass --set data.root=/path/to/idx-files"
        )
    ckpt = recipe.teacher.checkpoint
    if ckpt and not resolve(ckpt, base).is_file():
        problems.append(f"  teacher.checkpoint: file {ckpt} not found (relative paths are from the recipe's folder)")
    for i, member in enumerate(recipe.teacher.ensemble or []):
        if member.checkpoint and not resolve(member.checkpoint, base).is_file():
            problems.append(f"  teacher.ensemble.{i}.checkpoint: file {member.checkpoint} not found")
    for i, ckpt in enumerate(recipe.clip.image_teachers if recipe.clip else []):
        if ckpt != "open_clip" and not resolve(ckpt, base).is_file():
            problems.append(f"  clip.image_teachers[{i}]: file {ckpt} not found (relative paths are from the recipe's folder)")
    return problems


def resolve(path: str, base: Path) -> Path:
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists():
        return p
    return base / p


def load_recipe(path: str | Path, overrides: list[str] | None = None, check_paths: bool = True) -> Recipe:
    path = Path(path)
    if path.is_dir():
        raise RecipeError(f"recipe {path} is a folder; pass a recipe file (the shipped ones are in recipes/)")
    if not path.is_file():
        raise RecipeError(f"recipe {path} not found; the shipped ones are in recipes/")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise RecipeError(f"{path}: not valid YAML: {e}") from None
    except UnicodeDecodeError:
        raise RecipeError(f"{path}: not a text file (a recipe is YAML); pass a recipe such as recipes/fashion-mnist.yaml"
                          ) from None
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: expected a mapping of sections at the top level")
    data = apply_overrides(data, overrides or [])
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as e:
        raise RecipeError(_format_errors(str(path), e)) from None
    if check_paths:
        problems = _check_paths(recipe, path.parent)
        if problems:
            raise RecipeError(f"{path}: {len(problems)} problem(s):\n" + "\n".join(problems))
    return recipe
