"""Devices, seeds, timing, the training loop and fit (shared_lib.training)."""

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


def test_fit_bad_input_names_the_argument():
    model = nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="epochs"):
        sl.fit(model, [], optimizer, epochs=0)
    with pytest.raises(TypeError, match="epochs"):
        sl.fit(model, [], optimizer, epochs=1.0)
    with pytest.raises(TypeError, match="amp"):
        sl.fit(model, [], optimizer, amp=1)


def test_train_steps_is_the_loop_and_checks_its_arguments():
    torch.manual_seed(0)
    model = nn.Linear(1, 1)
    x = torch.linspace(-1, 1, 8)[:, None]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    seen = []

    def loss_of(rows):
        seen.append(rows)
        return nn.functional.mse_loss(model(x[rows]), 2 * x[rows])

    batches = sl.training.random_batches(8, 4, 30, torch.Generator().manual_seed(0))
    losses = sl.training.train_steps(optimizer, batches, loss_of)
    assert len(losses) == len(seen) == 30 and losses[-1] < losses[0]
    assert sl.training.train_steps(optimizer, [], loss_of) == []
    with pytest.raises(TypeError, match="optimizer"):
        sl.training.train_steps(model, [0], loss_of)
    with pytest.raises(TypeError, match="batch_loss"):
        sl.training.train_steps(optimizer, [0], "loss")
    with pytest.raises(ValueError, match="scalar"):
        sl.training.train_steps(optimizer, [torch.arange(8)], lambda rows: model(x[rows]))


def test_data_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="batch_size"):
        loaders(digits(), batch_size=0)
    with pytest.raises(ValueError, match="length"):
        make_sequence_task(4, length=1)


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
