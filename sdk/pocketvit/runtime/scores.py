"""Scores from a model's outputs: softmax (and an exact fast path for short rows), L2 normalisation. numpy only."""

from __future__ import annotations

import math

import numpy as np

_INF = math.inf


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return (e / e.sum(axis=axis, keepdims=True)).astype(np.float32)


# -- softmax of a short row with as few numpy calls as exactness allows (predict()'s fast path).
# Right after a runtime call the CPU caches hold the model, not numpy's ufunc and reduction
# machinery, so every numpy call is several microseconds; Python float arithmetic is IEEE double
# like numpy's, so only exp needs numpy (its SIMD exp is not libm's) and the sum is numpy's
# pairwise summation replayed in Python, checked once per row length against numpy itself.

SMALL_SOFTMAX_MAX = 64
_small_softmax_ok: dict[int, bool] = {}


def pairwise_sum(a: list, lo: int = 0, n: int | None = None) -> float:
    """numpy's float64 sum of ``a[lo:lo + n]``: the additions of its pairwise_sum
    (numpy/_core/src/umath/loops_utils.h.src) in the same order, hence the same double."""
    if n is None:
        n = len(a) - lo
    if n < 8:
        res = -0.0
        for i in range(lo, lo + n):
            res += a[i]
        return res
    if n <= 128:
        r0, r1, r2, r3, r4, r5, r6, r7 = a[lo : lo + 8]
        i = lo + 8
        stop = lo + n - n % 8
        while i < stop:
            r0 += a[i]
            r1 += a[i + 1]
            r2 += a[i + 2]
            r3 += a[i + 3]
            r4 += a[i + 4]
            r5 += a[i + 5]
            r6 += a[i + 6]
            r7 += a[i + 7]
            i += 8
        res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
        for j in range(i, lo + n):
            res += a[j]
        return res
    n2 = n // 2
    n2 -= n2 % 8
    return pairwise_sum(a, lo, n2) + pairwise_sum(a, lo + n2, n - n2)


def softmax_list(logits: list) -> np.ndarray | None:
    """``softmax(np.float32(logits)[None])[0]`` for a short row given as Python floats (float32
    values), or None when it has NaN or inf (use ``softmax`` then). Same floats as numpy's:
    ``v - max`` and ``v / sum`` are the same IEEE double operations, exp is numpy's on the same
    float64 array, the sum replays numpy's order, and float32 conversion rounds alike."""
    e = np.exp(list(map(max(logits).__rsub__, logits))).tolist()  # [v - max]: a float64 array
    s = pairwise_sum(e)
    if not 1.0 <= s < _INF:  # NaN or inf among the logits (a finite row has its max's exp(0) = 1)
        return None
    return np.array(list(map(s.__rtruediv__, e)), dtype=np.float32)  # [v / s]


def small_softmax_exact(n: int) -> bool:
    """Whether ``softmax_list`` gives numpy's softmax bit for bit for rows of ``n`` values with
    this numpy: checked once per n on random rows, the float64 sums included (a different
    summation order shows there even where the float32 result hides it)."""
    ok = _small_softmax_ok.get(n)
    if ok is None:
        ok = 1 <= n <= SMALL_SOFTMAX_MAX and _check_small_softmax(n)
        _small_softmax_ok[n] = ok
    return ok


def _check_small_softmax(n: int) -> bool:
    rng = np.random.default_rng(n)
    for scale in (0.01, 1.0, 8.0, 100.0):
        for _ in range(16):
            row = (rng.standard_normal(n) * scale).astype(np.float32)
            x = row.astype(np.float64)
            e = np.exp(x - x.max())
            got = softmax_list(row.tolist())
            if got is None or pairwise_sum(e.tolist()) != float(e.sum()):
                return False
            if got.tobytes() != softmax(row[None])[0].tobytes():
                return False
    return True


def l2_normalize(x: np.ndarray, axis: int = -1) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=axis, keepdims=True)
    return x / np.maximum(n, 1e-12)
