"""TinyCLIP manual weight inheritance: a smaller encoder of the same family, initialised from the teacher.

Keep evenly spaced layers (first and last always), and optionally the leading attention heads (the head
size stays, so the width shrinks to heads * head_dim) and the leading FFN channels. Every student tensor
is the leading slice of the teacher tensor it comes from, so an inherited student with full width is the
teacher with some layers removed, tensor for tensor.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import torch
from torch import nn

from pocketvit.errors import RecipeError

_LAYER = re.compile(r"^(.*\.layer\.)(\d+)(\..*)$")


def evenly_spaced(n_teacher: int, n_student: int) -> list[int]:
    """Indices of n_student of n_teacher layers, evenly spaced, first and last included: 6 -> 3 gives [0, 3, 5]."""
    if not 1 <= n_student <= n_teacher:
        raise RecipeError(f"inherit: cannot keep {n_student} of {n_teacher} layers (need 1..{n_teacher})")
    if n_student == 1:
        return [n_teacher - 1]
    return [int(i * (n_teacher - 1) / (n_student - 1) + 0.5) for i in range(n_student)]


def student_config(teacher_cfg: Any, layers: int, heads: int | None = None, intermediate: int | None = None) -> Any:
    """The teacher's transformers config shrunk to `layers`, `heads` (width = heads * head size) and FFN size."""
    cfg = copy.deepcopy(teacher_cfg)
    head_dim = teacher_cfg.hidden_size // teacher_cfg.num_attention_heads
    if heads is not None:
        if not 1 <= heads <= teacher_cfg.num_attention_heads:
            raise RecipeError(f"inherit.heads: {heads} not in 1..{teacher_cfg.num_attention_heads}")
        cfg.num_attention_heads, cfg.hidden_size = heads, heads * head_dim
    if intermediate is not None:
        if not 1 <= intermediate <= teacher_cfg.intermediate_size:
            raise RecipeError(f"inherit.intermediate: {intermediate} not in 1..{teacher_cfg.intermediate_size}")
        cfg.intermediate_size = intermediate
    cfg.num_hidden_layers = layers
    return cfg


def leading_slice(t: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    if any(s > ts for s, ts in zip(shape, t.shape)) or len(shape) != t.ndim:
        raise RecipeError(f"inherit: student tensor {tuple(shape)} is larger than the teacher's {tuple(t.shape)}")
    return t[tuple(slice(0, s) for s in shape)].clone()


def inherit_state(teacher: nn.Module, student: nn.Module, keep: list[int]) -> dict[str, str]:
    """Fill `student` from `teacher`: student layer i <- teacher layer keep[i], leading slices everywhere.

    Returns the student-key -> teacher-key map (what came from where)."""
    t_state = teacher.state_dict()
    mapping: dict[str, str] = {}
    new_state = {}
    for key, value in student.state_dict().items():
        m = _LAYER.match(key)
        src = f"{m.group(1)}{keep[int(m.group(2))]}{m.group(3)}" if m else key
        if src not in t_state:
            raise RecipeError(f"inherit: the teacher has no tensor {src} for the student's {key}; "
                              "inheritance needs a student of the same family")
        new_state[key] = leading_slice(t_state[src], value.shape)
        mapping[key] = src
    student.load_state_dict(new_state)
    return mapping


def inherit_text_encoder(teacher: Any, layers: int, heads: int | None = None, intermediate: int | None = None,
                         random_init: bool = False, seed: int = 0) -> tuple[Any, list[int]]:
    """A smaller TransformerTextEncoder from a transformers one; `random_init` gives the same shape untrained."""
    from transformers import AutoModel

    from pocketvit.models.text import TransformerTextEncoder

    t_model = teacher.model
    n = t_model.config.num_hidden_layers
    keep = evenly_spaced(n, layers)
    cfg = student_config(t_model.config, layers, heads, intermediate)
    torch.manual_seed(seed)
    s_model = AutoModel.from_config(cfg)
    if not random_init:
        inherit_state(t_model, s_model, keep)
    student = TransformerTextEncoder(s_model, teacher.tokenizer, teacher.pooling, teacher.max_length,
                                     name=f"{teacher.name}-L{layers}" + ("-random" if random_init else ""))
    return student, keep
