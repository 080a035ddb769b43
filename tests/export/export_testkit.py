"""Tiny models and runtime runners for the export tests (real lowering, real runtimes).

A uniquely named module (not conftest) so test files can import it without clashing with other
test folders' helpers.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn


class TinyConvNet(nn.Module):
    """conv-bn-relu x2, depthwise, pool, linear: what a small CNN lowers to."""

    def __init__(self, in_ch: int = 3, classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_ch, 8, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False),
            nn.BatchNorm2d(8),
            nn.Hardswish(),
            nn.Conv2d(8, 16, 1),
            nn.ReLU(),
        )
        self.head = nn.Linear(16, classes)

    def forward(self, x):
        x = self.features(x)
        return self.head(x.mean(dim=(2, 3)))


class Attention(nn.Module):
    """Hand-written multi-head attention (matmul + softmax)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(c // self.heads))
        x = attn.softmax(dim=-1) @ v
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class TinyViT(nn.Module):
    """Patch embed + one pre-norm transformer block + LayerNorm + head.

    mha=True uses nn.MultiheadAttention (lowers through scaled_dot_product_attention), False the
    hand-written attention above.
    """

    def __init__(self, in_ch: int = 3, img: int = 32, patch: int = 8, dim: int = 32, classes: int = 10,
                 mha: bool = True):
        super().__init__()
        self.patch = nn.Conv2d(in_ch, dim, patch, patch)
        tokens = (img // patch) ** 2
        self.pos = nn.Parameter(torch.randn(1, tokens, dim) * 0.02)
        self.norm1 = nn.LayerNorm(dim)
        self.mha = mha
        self.attn = nn.MultiheadAttention(dim, 2, batch_first=True) if mha else Attention(dim, 2)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2) + self.pos
        h = self.norm1(x)
        x = x + (self.attn(h, h, h, need_weights=False)[0] if self.mha else self.attn(h))
        x = x + self.mlp(self.norm2(x))
        return self.head(self.norm(x).mean(dim=1))


def seeded(model: nn.Module, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    for p in model.parameters():
        # Larger than default init so that the logits are well separated (argmax is meaningful).
        nn.init.normal_(p, std=0.2) if p.dim() > 1 else nn.init.normal_(p, std=0.05)
    return model


def build_tiny_models():
    """name -> (model, example). Built once per session; exporters never mutate the model."""
    from pocketvit.export.prepare import recalibrate_batchnorm

    torch.manual_seed(0)
    conv = seeded(TinyConvNet()).eval()
    recalibrate_batchnorm(conv, (4, 3, 32, 32), batches=2)
    vit = seeded(TinyViT()).eval()
    gray = seeded(TinyViT(in_ch=1, img=28, patch=7, mha=False), seed=1).eval()
    gen = torch.Generator().manual_seed(123)
    return {
        "tiny_conv": (conv, torch.randn(1, 3, 32, 32, generator=gen)),
        "tiny_vit": (vit, torch.randn(1, 3, 32, 32, generator=gen)),
        "tiny_vit_gray": (gray, torch.randn(1, 1, 28, 28, generator=gen)),
    }


# --- runners: each executes a written file on its own runtime ----------------------------------------

def run_onnx(path: Path, x: torch.Tensor) -> np.ndarray:
    ort = pytest.importorskip("onnxruntime")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["input"]
    assert sess.get_outputs()[0].name == "output"
    return sess.run(None, {"input": x.numpy()})[0]


def run_tflite(path: Path, x: torch.Tensor, signature: str | None = None) -> np.ndarray:
    interp_mod = pytest.importorskip("ai_edge_litert.interpreter")
    interp = interp_mod.Interpreter(model_path=str(path))
    if signature is None:
        interp.allocate_tensors()
        inp = interp.get_input_details()[0]
        interp.set_tensor(inp["index"], x.numpy())
        interp.invoke()
        return interp.get_tensor(interp.get_output_details()[0]["index"])
    runner = interp.get_signature_runner(signature)
    out = runner(args_0=x.numpy())
    return next(iter(out.values()))


def run_pte(path: Path, x: torch.Tensor, method: str = "forward") -> np.ndarray:
    rt = pytest.importorskip("executorch.runtime")
    program = rt.Runtime.get().load_program(str(path))
    out = program.load_method(method).execute([x])
    return out[0].numpy()


RUNNERS = {"onnx": run_onnx, "litert": run_tflite, "executorch": run_pte}


def eager(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return model(x).numpy()


def spread_tiny_vit():
    """A tiny TinyViT whose logits are spread out (random init, BatchNorm re-estimated, head scaled), and the
    seeded generator its tests draw their images from."""
    from pocketvit.export.prepare import recalibrate_batchnorm
    from pocketvit.models.tinyvit import TinyViTConfig, TinyViTStudent

    torch.manual_seed(0)
    m = TinyViTStudent(TinyViTConfig(in_chans=1, num_classes=10, img_size=16, stem_dim=8, dims=[16], depths=[1],
                                     heads=[1], mlp_ratio=2.0))
    recalibrate_batchnorm(m, (16, 1, 16, 16))
    with torch.no_grad():
        m.head.weight.mul_(8.0)
    return m.eval(), torch.Generator().manual_seed(1)


def mobilevitv2_like():
    """MobileViTv2's structure in small: a strided conv, the map unfolded into (B, C, P, N) patches, timm's
    LinearSelfAttention (separable self-attention) with a residual, folded back, pooled, a linear head."""
    from timm.models.mobilevit import LinearSelfAttention
    from torch import nn

    class Net(nn.Module):
        def __init__(self, c: int = 16, patch: int = 2):
            super().__init__()
            self.stem, self.attn, self.head, self.patch = nn.Conv2d(3, c, 4, stride=4), LinearSelfAttention(c), \
                nn.Linear(c, 5), patch

        def forward(self, x):
            x = self.stem(x)
            b, c, h, w = x.shape
            p = self.patch
            t = x.reshape(b, c, h // p, p, w // p, p).permute(0, 1, 3, 5, 2, 4).reshape(b, c, p * p, -1)
            t = t + self.attn(t)
            return self.head(t.mean((2, 3)))

    torch.manual_seed(0)
    return Net().eval(), torch.randn(1, 3, 32, 32)
