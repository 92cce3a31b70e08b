"""Tests of shared_lib.tasks.pairs: held-out digit pairs, one-shot scoring, multi-task digits."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from shared_lib.models.small import MLP, MultiTaskNet
from shared_lib.models.twin import TwinNet
from shared_lib.tasks.pairs import (
    TASKS,
    PairSet,
    asymmetry,
    held_out_digits,
    multitask_accuracy,
    multitask_digits,
    one_shot_accuracy,
    sample_pairs,
    train_multitask,
    train_pair_model,
    verification_accuracy,
)


def test_held_out_classes_are_disjoint_and_complete():
    data = held_out_digits((7, 8, 9))
    assert set(data.y_seen.tolist()) == set(range(7))
    assert set(data.y_new.tolist()) == {7, 8, 9}
    assert len(data.y_seen) + len(data.y_new) == 1797
    assert data.x_seen.shape[1:] == (1, 8, 8)
    assert held_out_digits((0, 1), flat=True).x_new.shape[1:] == (64,)
    with pytest.raises(ValueError, match="held_out"):
        held_out_digits((3,))
    with pytest.raises(ValueError, match="held_out"):
        held_out_digits((10, 11))


def test_pairs_are_balanced_and_labelled_correctly():
    y = torch.tensor([0, 0, 1, 1, 2, 2, 2])
    x = torch.arange(7).float()[:, None]  # the input is the index, to recover the pair
    pairs = sample_pairs(x, y, 200, torch.Generator().manual_seed(0))
    assert len(pairs) == 200 and pairs.same.sum() == 100
    first, second = pairs.a[:, 0].long(), pairs.b[:, 0].long()
    assert torch.equal((y[first] == y[second]).float(), pairs.same)
    assert torch.all(first != second)  # a same pair is two different images
    with pytest.raises(ValueError, match="two classes"):
        sample_pairs(x[:1], y[:1], 4, torch.Generator())


class _Oracle(nn.Module):
    """Scores a pair by whether the first coordinates (the class) agree."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.where(a[:, 0] == b[:, 0], 1.0, -1.0) + self.dummy


def test_metrics_on_an_oracle_and_on_a_constant():
    y = torch.arange(30) % 3
    x = torch.stack([y.float(), torch.randn(30)], dim=1)
    pairs = sample_pairs(x, y, 100, torch.Generator().manual_seed(0))
    assert verification_accuracy(_Oracle(), pairs) == 1.0
    assert one_shot_accuracy(_Oracle(), x, y, episodes=50) == 1.0
    assert asymmetry(_Oracle(), pairs) == 0.0
    always_same = _Oracle()
    always_same.forward = lambda a, b: torch.ones(len(a))
    assert verification_accuracy(always_same, PairSet(pairs.a, pairs.b, pairs.same)) == 0.5


def test_training_a_siamese_pair_model_runs_and_is_repeatable():
    data = held_out_digits(flat=True)

    def run() -> list[float]:
        torch.manual_seed(0)
        model = TwinNet(MLP(64, 16, 8))
        return train_pair_model(model, data.x_seen, data.y_seen, 128, 2, seed=0)

    losses = run()
    assert losses == run() and len(losses) == 2


def test_multitask_digits_label_subsets():
    data = multitask_digits({"digit": 20, "parity": 200}, seed=0)
    x_digit, _ = data.train["digit"]
    x_parity, y_parity = data.train["parity"]
    assert len(x_digit) == 20 and len(x_parity) == 200
    assert torch.equal(x_digit, x_parity[:20])  # the few labels are a subset of the many
    assert set(y_parity.tolist()) <= {0, 1} and data.num_classes == {"digit": 10, "parity": 2}
    assert torch.equal(data.y_test["parity"], data.y_test["parity"] % 2)
    assert set(TASKS) >= {"digit", "parity", "at least 5", "mod 3"}
    with pytest.raises(ValueError, match="unknown"):
        multitask_digits({"colour": 3})
    with pytest.raises(ValueError, match="exceeds"):
        multitask_digits({"digit": 10_000})


def test_train_multitask_and_accuracy():
    data = multitask_digits({"digit": 50, "parity": 100}, seed=0)
    torch.manual_seed(0)
    model = MultiTaskNet(
        nn.Sequential(MLP(64, 16, 16), nn.ReLU()),
        {"digit": nn.Linear(16, 10), "parity": nn.Linear(16, 2)},
    )
    losses = train_multitask(model, data, steps=30, seed=0)
    assert len(losses) == 30 and losses[-1] < losses[0]
    accuracy = multitask_accuracy(model, data)
    assert set(accuracy) == {"digit", "parity"} and all(0 <= a <= 1 for a in accuracy.values())
