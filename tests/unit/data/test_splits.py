"""Tests of shared_lib.data.splits: the digits split, seeded loaders and batches, balanced
subsets (more digits and loaders checks sit in tests/unit/test_training_and_data.py)."""

from __future__ import annotations

import pytest
import torch

from shared_lib.data import Batches, Split, balanced_subset, digits, loaders


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


def test_split_repr_gives_shapes_and_classes():
    split = Split(
        torch.zeros(6, 3), torch.tensor([0, 1, 2, 0, 1, 2]), torch.zeros(2, 3), torch.tensor([0, 2])
    )
    assert repr(split) == "Split(train=(6, 3), test=(2, 3), classes=3)"


def test_loaders_are_seeded():
    split = digits(seed=0, flat=True)
    first = [y for _, y in loaders(split, batch_size=100, seed=4)[0]]
    again = [y for _, y in loaders(split, batch_size=100, seed=4)[0]]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))


def test_batches_reshuffle_each_pass_and_are_seeded():
    x, y = torch.arange(10.0)[:, None], torch.arange(10)
    first, second = ([t.tolist() for _, t in batches] for batches in [Batches(x, y, 4, seed=0)] * 2)
    assert first != second
    assert [t.tolist() for _, t in Batches(x, y, 4, seed=0)] == first


def test_bad_arguments():
    with pytest.raises(TypeError, match="test_fraction"):
        digits(test_fraction="0.25")
    with pytest.raises(ValueError, match="test_fraction"):
        digits(test_fraction=0.0)
    with pytest.raises(TypeError, match="batch_size"):
        loaders(digits(), batch_size=8.0)
    with pytest.raises(ValueError, match="batch_size"):
        Batches(torch.zeros(3), torch.zeros(3), 0, seed=0)
    with pytest.raises(TypeError, match="labels"):
        balanced_subset([0, 1, 1], 2)
    with pytest.raises(ValueError, match="labels"):
        balanced_subset(torch.zeros(2, 3, dtype=torch.long), 2)
    with pytest.raises(TypeError, match="n"):
        balanced_subset(torch.tensor([0, 1, 1]), 2.0)
