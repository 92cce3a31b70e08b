"""Devices, seeding, timing, the fit loop and the offline data."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn

import shared_lib as sl
from shared_lib.data import digits, loaders
from shared_lib.data.sequences import make_sequence_task
from shared_lib.models.small import MLP, SmallConvNet


def test_seed_everything_makes_runs_repeatable():
    sl.seed_everything(3)
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    sl.seed_everything(3)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first
    with pytest.raises(TypeError, match="seed"):
        sl.seed_everything("3")


def test_get_device_prefers_accelerators_and_honours_overrides(monkeypatch):
    monkeypatch.delenv("BOOK_DEVICE", raising=False)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available() and torch.backends.mps.is_available():
        expected = "mps"
    assert sl.get_device().type == expected
    assert sl.get_device("cpu").type == "cpu"
    monkeypatch.setenv("BOOK_DEVICE", "cpu")
    assert sl.get_device().type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            sl.get_device("cuda")


def test_benchmark_returns_a_median_and_validates():
    calls = []
    seconds = sl.benchmark(lambda: calls.append(1), warmup=2, repeats=5)
    assert len(calls) == 7 and seconds >= 0
    with pytest.raises(ValueError, match="repeats"):
        sl.benchmark(lambda: None, repeats=0)


def test_autocast_is_a_no_op_on_cpu():
    with sl.autocast_for("cpu"):
        out = nn.Linear(4, 4)(torch.randn(2, 4))
    assert out.dtype == torch.float32


def test_digits_split_is_offline_stratified_and_seeded():
    split = digits(test_fraction=0.25, seed=0)
    assert split.x_train.shape[1:] == (1, 8, 8) and split.x_train.dtype == torch.float32
    assert len(split.x_train) + len(split.x_test) == 1797
    assert float(split.x_train.max()) <= 1.0
    assert set(split.y_test.tolist()) == set(range(10))
    again = digits(test_fraction=0.25, seed=0, flat=True)
    assert torch.equal(again.x_train, split.x_train.reshape(-1, 64))
    with pytest.raises(ValueError, match="test_fraction"):
        digits(test_fraction=1.5)


def test_fit_learns_digits_and_records_history():
    sl.seed_everything(0)
    split = digits(seed=0, flat=True)
    train, test = loaders(split, batch_size=64, seed=0)
    model = MLP(64, 32, 10)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    history = sl.fit(model, train, optimizer, epochs=5, val_loader=test)
    assert len(history.train_loss) == len(history.val_accuracy) == len(history.epoch_seconds) == 5
    assert history.train_loss[-1] < history.train_loss[0]
    assert history.val_accuracy[-1] > 0.85  # chance is 0.10
    _, accuracy = sl.evaluate(model, test, nn.functional.cross_entropy)
    assert accuracy == pytest.approx(history.val_accuracy[-1])


def test_fit_is_repeatable_with_a_seed():
    def run():
        sl.seed_everything(1)
        split = digits(seed=0)
        train, _ = loaders(split, batch_size=128, seed=1)
        model = SmallConvNet(channels=4)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        return sl.fit(model, train, optimizer, epochs=1).train_loss

    assert run() == run()


def test_fit_and_data_bad_input():
    model = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="epochs"):
        sl.fit(model, [], torch.optim.SGD(model.parameters(), lr=0.1), epochs=0)
    with pytest.raises(ValueError, match="batch_size"):
        loaders(digits(), batch_size=0)
    with pytest.raises(ValueError, match="length"):
        make_sequence_task(4, length=1)


def test_sequence_task_labels_follow_the_rule():
    tokens, labels = make_sequence_task(200, length=6, vocab=4, seed=2)
    for row, label in zip(tokens.tolist(), labels.tolist(), strict=True):
        assert label == int(row[0] in row[1:])
    assert 0.2 < labels.float().mean() < 0.9  # both classes occur


def test_adam_on_random_batches_is_seeded_and_lowers_the_loss():
    x = torch.randn(64, 3, generator=torch.Generator().manual_seed(0))
    y = x @ torch.tensor([1.0, -2.0, 0.5])

    def run() -> tuple[float, torch.Tensor]:
        weight = torch.zeros(3, requires_grad=True)

        def batch_loss(rows: torch.Tensor) -> torch.Tensor:
            return ((x[rows] @ weight - y[rows]) ** 2).mean()

        start = batch_loss(torch.arange(64)).item()
        sl.training.adam_on_random_batches(
            [weight], batch_loss, 64, steps=100, lr=0.05, batch_size=8,
            generator=torch.Generator().manual_seed(1),
        )  # fmt: skip
        return start, weight.detach()

    (start, first), (_, second) = run(), run()
    assert torch.equal(first, second)
    assert ((x @ first - y) ** 2).mean().item() < 0.01 * start
