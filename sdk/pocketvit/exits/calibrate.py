"""Threshold calibration: one confidence threshold per exit, chosen on held-out data.

An image leaves at the first exit whose top-1 softmax probability is >= that exit's threshold (the
runtime's rule, runtime/predictor.py); otherwise the final head answers. `calibrate` searches the
thresholds that minimise the expected compute while the accuracy stays within `budget` of the final
head's, on the calibration split. A threshold above 1 switches an exit off; 0 makes it take everything.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np

NEVER = 1.01  # above any softmax probability: the exit never fires
MAX_COMBINATIONS = 60000


def softmax_np(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def exit_points(confidence: np.ndarray, thresholds) -> np.ndarray:
    """Index of the exit each sample leaves at: confidence (E, N) of the E early exits -> (N,) in [0, E]."""
    e, n = confidence.shape
    taken = np.full(n, e, dtype=np.int64)
    for i in range(e - 1, -1, -1):
        taken = np.where(confidence[i] >= thresholds[i], i, taken)
    return taken


def evaluate(confidence: np.ndarray, correct: np.ndarray, costs: np.ndarray, thresholds) -> tuple[float, float, np.ndarray]:
    """(accuracy, mean cost, histogram over exits) of a threshold set. correct: (E + 1, N) bool."""
    at = exit_points(confidence, thresholds)
    n = correct.shape[1]
    acc = float(correct[at, np.arange(n)].mean())
    hist = np.bincount(at, minlength=correct.shape[0])
    return acc, float(costs[at].mean()), hist


@dataclass
class Calibration:
    thresholds: list[float]
    accuracy: float
    full_accuracy: float
    cost: float  # expected compute, as a fraction of the full model
    histogram: list[int]
    curve: list[dict] = field(default_factory=list)  # Pareto front: [{cost, accuracy}], cost ascending


def _candidates(conf: np.ndarray, grid: int) -> list[float]:
    """Quantiles of the exit's confidences, each lowered by 1e-6 so the images at that value still leave
    when a runtime computes their confidence a few float32 ulps lower; plus NEVER."""
    qs = np.quantile(conf, np.linspace(0.0, 1.0, grid), method="lower")
    return sorted({max(0.0, float(v) - 1e-6) for v in qs} | {NEVER})


def calibrate(
    logits: np.ndarray, labels: np.ndarray, costs, budget: float = 0.005, grid: int | None = None,
    bound: float | None = None,
) -> Calibration:
    """logits: (E + 1, N, C), final head last; costs: (E + 1,) compute of leaving at each exit (full = 1).

    Exhaustive search over per-exit candidate thresholds (quantiles of that exit's confidence, plus
    NEVER); keeps the cheapest set whose accuracy >= final accuracy - budget (ties: higher accuracy).
    With `bound` (a confidence level, e.g. 0.95) the drop must hold as a one-sided upper bound: measured drop + z * its
    standard error (per-image paired differences with the final head) <= budget, so that thresholds
    chosen on the calibration split keep the budget on unseen images at that confidence.
    """
    logits = np.asarray(logits)
    labels = np.asarray(labels)
    costs = np.asarray(costs, dtype=np.float64)
    probs = softmax_np(logits)
    correct = probs.argmax(-1) == labels[None]
    confidence = probs[:-1].max(-1)
    e = confidence.shape[0]
    full = float(correct[-1].mean())
    if e == 0:
        return Calibration([], full, full, float(costs[-1]), [correct.shape[1]], [{"cost": float(costs[-1]), "accuracy": full}])
    if grid is None:
        grid = max(3, int(MAX_COMBINATIONS ** (1.0 / e)))
    cands = [_candidates(confidence[i], grid) for i in range(e)]
    z = NormalDist().inv_cdf(bound) if bound else 0.0
    n = correct.shape[1]
    rows = np.arange(n)
    final_ok = correct[-1].astype(np.float64)
    best = None
    points = []
    for ths in itertools.product(*cands):
        acc, cost, _ = evaluate(confidence, correct, costs, ths)
        points.append((cost, acc))
        margin = 0.0
        if z and acc < full + budget:  # standard error of the drop, only where it can matter
            diff = correct[exit_points(confidence, ths), rows] - final_ok
            margin = z * float(diff.std(ddof=1)) / np.sqrt(n) if n > 1 else 0.0
        if acc - margin >= full - budget - 1e-12:
            key = (cost, -acc)
            if best is None or key < best[0]:
                best = (key, ths)
    ths = list(best[1]) if best else [NEVER] * e
    acc, cost, hist = evaluate(confidence, correct, costs, ths)
    return Calibration([float(t) for t in ths], acc, full, cost, hist.tolist(), pareto(points))


def pareto(points: list[tuple[float, float]]) -> list[dict]:
    """The accuracy-vs-compute front: for rising cost, only points that raise the best accuracy."""
    front, best = [], -1.0
    for cost, acc in sorted(points, key=lambda p: (p[0], -p[1])):
        if acc > best + 1e-12:
            front.append({"cost": round(cost, 5), "accuracy": round(acc, 5)})
            best = acc
    return front
