"""Photo augmentation replayable from the per-(sample, epoch) seed: random resized crop + RandAugment-style ops.

The parameters come from the same counter-based uniforms as augment.py (columns after the ones it
uses), so the teacher cache still stores one int32 seed per view. Every step is elementwise per sample,
or an exact reduction (integer sums, min, max), and values are rounded to integers after each op: a
sample's result does not depend on which other samples share its batch, so a cache replay rebuilds the
teacher's view bit for bit.

Geometric ops (rotate, shear) are folded into the crop's sampling grid (one bilinear resample);
photometric ops (brightness, contrast, color, solarize, posterize, autocontrast) act on the pixels.
"""

from __future__ import annotations

import math

import torch

# Columns of _uniforms(seeds, COLUMNS) used here; 0..6 belong to augment.py's shift/flip/erase.
CROP_COLS = slice(7, 11)  # area fraction, log aspect ratio, centre x, centre y
FIRST_OP_COL = 11  # then (op, magnitude, sign) per RandAugment slot
MAX_OPS = 3
COLUMNS = FIRST_OP_COL + 3 * MAX_OPS

OPS = ("identity", "rotate", "shear_x", "shear_y", "brightness", "contrast", "color", "solarize", "posterize",
       "autocontrast")
GEOMETRIC = ("rotate", "shear_x", "shear_y")
MAX_ROTATE_DEG = 30.0
MAX_SHEAR = 0.3
MAX_ENHANCE = 0.9  # brightness/contrast/color factor 1 ± 0.9 at magnitude 10


def op_choices(u: torch.Tensor, ops: int, magnitude: float) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per slot: (op index (N,), signed magnitude in [-m, m] as a fraction of the maximum (N,))."""
    slots = []
    for k in range(ops):
        c = FIRST_OP_COL + 3 * k
        op = (u[:, c] * len(OPS)).long().clamp(max=len(OPS) - 1)
        mag = u[:, c + 1] * (magnitude / 10.0)
        sign = torch.where(u[:, c + 2] < 0.5, -1.0, 1.0).to(u.dtype)
        slots.append((op, mag * sign))
    return slots


def geometric_matrix(slots: list[tuple[torch.Tensor, torch.Tensor]], n: int) -> torch.Tensor:
    """(N, 2, 2) output→source matrix of the geometric ops chosen in each slot (identity where none)."""
    a = torch.eye(2, dtype=torch.float64).expand(n, 2, 2).clone()
    for op, m in slots:
        theta = m * math.radians(MAX_ROTATE_DEG)
        s = m * MAX_SHEAR
        one, zero = torch.ones_like(m), torch.zeros_like(m)
        mats = {
            "rotate": torch.stack([torch.cos(theta), -torch.sin(theta), torch.sin(theta), torch.cos(theta)], 1),
            "shear_x": torch.stack([one, s, zero, one], 1),
            "shear_y": torch.stack([one, zero, s, one], 1),
        }
        for name, mat in mats.items():
            sel = op == OPS.index(name)
            a[sel] = a[sel] @ mat[sel].view(-1, 2, 2)
    return a


def crop_boxes(u: torch.Tensor, scale: tuple[float, float], ratio: tuple[float, float], h: int, w: int
               ) -> torch.Tensor:
    """(N, 4) crop boxes (centre y, centre x, height, width) in pixels: area fraction in `scale`, aspect
    ratio log-uniform in `ratio`, clipped to the image, centre uniform where the box fits."""
    cols = u[:, CROP_COLS]
    area = (scale[0] + cols[:, 0] * (scale[1] - scale[0])) * h * w
    log_r = math.log(ratio[0]) + cols[:, 1] * (math.log(ratio[1]) - math.log(ratio[0]))
    r = torch.exp(log_r)
    cw = torch.sqrt(area * r).clamp(max=w)
    ch = torch.sqrt(area / r).clamp(max=h)
    cx = cw / 2 + cols[:, 2] * (w - cw)
    cy = ch / 2 + cols[:, 3] * (h - ch)
    return torch.stack([cy, cx, ch, cw], 1)


def full_boxes(n: int, h: int, w: int) -> torch.Tensor:
    return torch.tensor([[h / 2, w / 2, h, w]], dtype=torch.float64).expand(n, 4)


def warp(images: torch.Tensor, boxes: torch.Tensor, mats: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Resample each box of a uint8 batch to the full output size (bilinear, zeros outside the image),
    through its output→source matrix, mirrored where `flip`."""
    n, c, h, w = images.shape
    # output pixel centres relative to the box centre, as fractions of the box in [-0.5, 0.5]
    ys = ((torch.arange(h, dtype=torch.float32) + 0.5) / h - 0.5).view(1, h, 1)
    xs = ((torch.arange(w, dtype=torch.float32) + 0.5) / w - 0.5).view(1, 1, w)
    xs = torch.where(flip.view(n, 1, 1), -xs, xs)
    cy, cx, bh, bw = (boxes[:, i].float().view(n, 1, 1) for i in range(4))
    py, px = ys * bh, xs * bw  # pixels, relative to the box centre
    m = mats.float().view(n, 2, 2, 1, 1)
    sx = cx + m[:, 0, 0] * px + m[:, 0, 1] * py - 0.5
    sy = cy + m[:, 1, 0] * px + m[:, 1, 1] * py - 0.5
    x0, y0 = torch.floor(sx), torch.floor(sy)
    wx, wy = sx - x0, sy - y0
    x0, y0 = x0.long(), y0.long()
    flat = images.reshape(n, c, h * w).float()
    out = torch.zeros(n, c, h, w)
    for dy, dx, wgt in ((0, 0, (1 - wy) * (1 - wx)), (0, 1, (1 - wy) * wx), (1, 0, wy * (1 - wx)), (1, 1, wy * wx)):
        yy, xx = y0 + dy, x0 + dx
        inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        idx = (yy.clamp(0, h - 1) * w + xx.clamp(0, w - 1)).view(n, 1, h * w).expand(n, c, h * w)
        vals = flat.gather(2, idx).view(n, c, h, w)
        out = out + vals * (wgt * inside).unsqueeze(1)
    return out.round().clamp(0, 255)


def _gray(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] != 3:
        return x.mean(1, keepdim=True)
    return (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]).round()


def _blend(base: torch.Tensor, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    f = (1.0 + MAX_ENHANCE * m).float().view(-1, 1, 1, 1)
    return base + f * (x - base)


def _contrast(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    # mean grey level from an exact float64 sum of integer values: independent of batch and summation order
    g = _gray(x)
    mean = (g.double().sum((1, 2, 3)) / g[0].numel()).round().float().view(-1, 1, 1, 1)
    return _blend(mean, x, m)


def _autocontrast(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    lo = x.amin((2, 3), keepdim=True)
    hi = x.amax((2, 3), keepdim=True)
    span = (hi - lo).clamp(min=1)
    return torch.where(hi > lo, (x - lo) * (255.0 / span), x)


def _posterize(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    step = torch.pow(2.0, (m.abs() * 4).round()).float().view(-1, 1, 1, 1)  # keep 8..4 bits
    return torch.floor(x / step) * step


def _solarize(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    thr = (256.0 - 256.0 * m.abs()).float().view(-1, 1, 1, 1)
    return torch.where(x >= thr, 255.0 - x, x)


PHOTOMETRIC = {
    "brightness": lambda x, m: _blend(torch.zeros_like(x), x, m),
    "contrast": _contrast,
    "color": lambda x, m: _blend(_gray(x), x, m),
    "solarize": _solarize,
    "posterize": _posterize,
    "autocontrast": _autocontrast,
}


def photometric(x: torch.Tensor, slots: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """Apply each slot's photometric op to the samples that drew it; x holds integer values as float32."""
    for op, m in slots:
        for name, fn in PHOTOMETRIC.items():
            sel = op == OPS.index(name)
            if bool(sel.any()):
                x[sel] = fn(x[sel], m[sel]).round().clamp(0, 255)
    return x


def photo_augment(images: torch.Tensor, u: torch.Tensor, crop_scale: tuple[float, float] | None,
                  crop_ratio: tuple[float, float], hflip: bool, ops: int, magnitude: float) -> torch.Tensor:
    """Random resized crop (when crop_scale) + `ops` RandAugment-style ops, as float32 integer values.

    `u` are the sample's uniforms (N, COLUMNS); the flip reuses augment.py's column 2."""
    n, _, h, w = images.shape
    slots = op_choices(u, ops, magnitude)
    boxes = crop_boxes(u, crop_scale, crop_ratio, h, w) if crop_scale is not None else full_boxes(n, h, w)
    flip = (u[:, 2] < 0.5) if (hflip and crop_scale is not None) else torch.zeros(n, dtype=torch.bool)
    needs_warp = crop_scale is not None or any(bool(torch.isin(op, _geometric_ids()).any()) for op, _ in slots)
    x = warp(images, boxes, geometric_matrix(slots, n), flip) if needs_warp else images.float()
    return photometric(x, slots)


def _geometric_ids() -> torch.Tensor:
    return torch.tensor([OPS.index(g) for g in GEOMETRIC])
