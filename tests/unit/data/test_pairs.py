"""Tests of shared_lib.data.pairs: held-out digit classes, same/different pairs, multi-task
digits."""

from __future__ import annotations

import pytest
import torch

from shared_lib.data.pairs import TASKS, held_out_digits, multitask_digits, sample_pairs


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
    with pytest.raises(TypeError, match="held_out"):
        held_out_digits((1.0, 2.0))


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
    with pytest.raises(TypeError, match="digit"):
        multitask_digits({"digit": 10.0})
