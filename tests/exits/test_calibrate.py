"""Threshold calibration on synthetic exits whose answer is known."""

from __future__ import annotations

import itertools
import math

import numpy as np
from pocketvit.exits.calibrate import NEVER, calibrate, evaluate, exit_points, pareto


def _logits(conf: np.ndarray, pred: np.ndarray, classes: int = 2) -> np.ndarray:
    """Two-class logits whose softmax top-1 is `pred` with probability `conf`."""
    d = np.log(conf / (1 - conf))
    out = np.zeros((len(conf), classes))
    out[np.arange(len(conf)), pred] = d
    return out


def _case():
    """exit1: 700 images at 0.95 (right), 300 at 0.6 of which 200 wrong; exit2: the 300 at 0.9, 290 right;
    final: all right. Costs 0.3 / 0.6 / 1.0."""
    n = 1000
    labels = np.zeros(n, dtype=int)
    c1 = np.r_[np.full(700, 0.95), np.full(300, 0.6)]
    p1 = np.r_[np.zeros(700, int), np.zeros(100, int), np.ones(200, int)]
    c2 = np.full(n, 0.9)
    p2 = np.r_[np.zeros(700, int), np.zeros(290, int), np.ones(10, int)]
    final = _logits(np.full(n, 0.99), np.zeros(n, int))
    logits = np.stack([_logits(c1, p1), _logits(c2, p2), final])
    return logits, labels, np.array([0.3, 0.6, 1.0])


def test_calibration_meets_the_budget_at_the_known_cheapest_thresholds():
    logits, labels, costs = _case()
    cal = calibrate(logits, labels, costs, budget=0.005)
    assert cal.full_accuracy == 1.0
    assert cal.accuracy >= 1.0 - 0.005
    # the cheapest set within 0.5 pt: the 700 confident images leave at exit1 (threshold in (0.6, 0.95]);
    # exit2 would cost 10 errors (1 pt) for the other 300, so they go to the final head
    assert 0.6 < cal.thresholds[0] <= 0.95
    assert cal.thresholds[1] > 0.9
    assert cal.histogram == [700, 0, 300]
    assert math.isclose(cal.cost, 0.7 * 0.3 + 0.3 * 1.0)


def test_a_looser_budget_lets_the_second_exit_take_the_rest():
    logits, labels, costs = _case()
    cal = calibrate(logits, labels, costs, budget=0.011)
    assert cal.histogram == [700, 300, 0]
    assert math.isclose(cal.accuracy, 0.99)
    assert math.isclose(cal.cost, 0.7 * 0.3 + 0.3 * 0.6)


def test_a_budget_of_everything_sends_every_image_out_at_the_first_exit():
    logits, labels, costs = _case()
    cal = calibrate(logits, labels, costs, budget=1.0)
    assert cal.histogram == [1000, 0, 0] and math.isclose(cal.cost, 0.3)


def test_zero_budget_never_loses_accuracy():
    logits, labels, costs = _case()
    cal = calibrate(logits, labels, costs, budget=0.0)
    assert cal.accuracy == 1.0 and cal.histogram == [700, 0, 300]


def test_thresholds_zero_and_above_one():
    conf = np.random.default_rng(0).uniform(0, 1, size=(2, 50))
    assert (exit_points(conf, [0.0, 0.0]) == 0).all()
    assert (exit_points(conf, [NEVER, NEVER]) == 2).all()
    assert (exit_points(conf, [NEVER, 0.0]) == 1).all()


def test_curve_is_a_rising_front():
    logits, labels, costs = _case()
    front = calibrate(logits, labels, costs).curve
    assert [p["cost"] for p in front] == sorted(p["cost"] for p in front)
    assert all(a["accuracy"] < b["accuracy"] for a, b in itertools.pairwise(front))
    assert pareto([(0.5, 0.9), (0.4, 0.95), (0.6, 0.92)]) == [{"cost": 0.4, "accuracy": 0.95}]
    acc, cost, hist = evaluate(np.array([[0.9, 0.1]]), np.array([[True, False], [True, True]]), np.array([0.5, 1.0]), [0.5])
    assert (acc, cost, hist.tolist()) == (1.0, 0.75, [1, 1])


def test_a_confidence_bound_is_more_careful_than_the_plain_estimate():
    rng = np.random.default_rng(0)
    n = 2000
    labels = rng.integers(0, 2, n)
    conf1 = rng.uniform(0.5, 1.0, n)
    right1 = rng.uniform(0, 1, n) < conf1  # the more confident, the more often right
    pred1 = np.where(right1, labels, 1 - labels)
    final = _logits(np.full(n, 0.99), labels)
    logits = np.stack([_logits(conf1, pred1), final])
    costs = np.array([0.4, 1.0])
    plain = calibrate(logits, labels, costs, budget=0.01)
    bounded = calibrate(logits, labels, costs, budget=0.01, bound=0.95)
    assert plain.full_accuracy - plain.accuracy <= 0.01 + 1e-9
    assert bounded.accuracy >= plain.accuracy and bounded.cost >= plain.cost
    assert bounded.thresholds[0] > plain.thresholds[0]
