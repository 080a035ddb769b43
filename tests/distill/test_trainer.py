"""The training loop's early stopping: the best epoch's weights are kept, it never stops during the warm-up, and
a run killed mid-way resumes with its validation history (checkpoint.pt carries it)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from pocketvit.distill.trainer import TrainSettings, Validation, plan_epochs, train
from torch import nn


def _batches(stop_in_epoch: int | None = None):
    def batches(epoch: int):
        if epoch == stop_in_epoch:
            raise KeyboardInterrupt  # the run is killed here
        g = torch.Generator().manual_seed(epoch)
        for _ in range(2):
            x = torch.randn(8, 4, generator=g)
            yield x, (x[:, 0] > 0).long()

    return batches


class Scores:
    """Val scores by epoch (what a held-out set would say), and the weights each epoch ended with."""

    def __init__(self, values):
        self.values, self.seen = list(values), []

    def __call__(self, model: nn.Module) -> float:
        self.seen.append({k: v.clone() for k, v in model.state_dict().items()})
        return self.values[len(self.seen) - 1]


def _train(tmp_path, scores, patience, batches, summary=None, epochs=8):
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    settings = TrainSettings(epochs=epochs, lr=0.05, weight_decay=0.0, steps_per_epoch=2, channels_last=False)
    return train(model, batches, F.cross_entropy, settings, tmp_path, "test", validation=Validation(scores, patience),
                 summary=summary)


def test_early_stop_keeps_the_best_epoch(tmp_path):
    scores = Scores([0.5, 0.7, 0.6, 0.65, 0.6, 0.9, 0.9, 0.9])
    summary: dict = {}
    model = _train(tmp_path, scores, 2, _batches(), summary)
    assert summary["epochs"] == 4 and summary["stopped_early"] and summary["best_epoch"] == 2
    assert summary["steps"] == 8 and summary["planned_epochs"] == 8
    assert all(torch.equal(model.state_dict()[k], scores.seen[1][k]) for k in scores.seen[1])


def test_no_early_stop_before_the_warm_up_ends(tmp_path):
    # 40 epochs x 2 steps: warm-up is the first 8 steps (4 epochs); the score only falls from epoch 1
    summary: dict = {}
    _train(tmp_path, Scores([0.9] + [0.1] * 39), 1, _batches(), summary, epochs=40)
    assert summary["epochs"] == 4  # epochs 2-3 had no better score, but stopping waited for the warm-up


def test_a_killed_run_resumes_with_its_validation_history(tmp_path):
    values = [0.5, 0.7, 0.6, 0.65, 0.6, 0.9, 0.9, 0.9]
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path, Scores(values), 2, _batches(stop_in_epoch=3))
    resumed = Scores(values[3:])
    summary: dict = {}
    _train(tmp_path, resumed, 2, _batches(), summary)
    assert len(resumed.seen) == 1  # only epoch 4 ran again: epochs 1-3 and their scores came from the checkpoint
    assert summary["val_history"] == values[:4] and summary["best_epoch"] == 2 and summary["stopped_early"]


def test_plan_epochs():
    assert plan_epochs(8, 11) == 8
    assert plan_epochs(8, 11, min_steps=500) == 46
    assert plan_epochs(8, 11, steps=100, min_steps=500) == 10
    assert plan_epochs(8, 500, min_steps=500) == 8
