"""Tests of shared_lib.data.signals: keyword bursts in noise, anywhere or in chosen ranges."""

from __future__ import annotations

import pytest
import torch

from shared_lib.data.signals import chirp, keyword_signals, keyword_split


def test_chirps_have_unit_energy_and_differ():
    up, down = chirp(16, True), chirp(16, False)
    assert up.shape == (16,)
    assert up.norm().item() == pytest.approx(1.0, abs=1e-5)
    assert down.norm().item() == pytest.approx(1.0, abs=1e-5)
    assert torch.dot(up, down).item() < 0.9  # similar, but the keyword is not the distractor
    torch.testing.assert_close(up, -down.flip(0))  # the keyword played backwards, inverted


def test_balanced_labels_and_repeatable():
    x, y = keyword_signals(100, seed=1)
    assert x.shape == (100, 1, 128) and y.shape == (100,)
    assert int(y.sum()) == 50
    x2, y2 = keyword_signals(100, seed=1)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert not torch.equal(keyword_signals(100, seed=2)[0], x)


def test_burst_lies_in_the_requested_range():
    x, _ = keyword_signals(60, length=64, event_length=8, positions=(40, 50), noise=0.0)
    energy = x[:, 0].square()
    assert torch.all(energy[:, :40] == 0) and torch.all(energy[:, 58:] == 0)
    assert torch.all(energy[:, 40:58].sum(1) > 1.0)


def test_split_uses_disjoint_positions_and_seeds():
    split = keyword_split(40, 30, (0, 10), (60, 70), seed=0, length=96, noise=0.0)
    assert split.x_train.shape == (40, 1, 96) and split.x_test.shape == (30, 1, 96)
    train_energy, test_energy = split.x_train[:, 0].square(), split.x_test[:, 0].square()
    assert torch.all(train_energy[:, 40:] == 0) and torch.all(test_energy[:, :60] == 0)


def test_labels_depend_on_the_burst_not_its_energy():
    x, y = keyword_signals(40, noise=0.0)
    energy = x[:, 0].square().sum(1)
    torch.testing.assert_close(energy, torch.full((40,), 9.0), rtol=1e-4, atol=1e-4)
    assert len(set(y.tolist())) == 2


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="positions"):
        keyword_signals(10, positions=(0, 200))
    with pytest.raises(ValueError, match="event_length"):
        keyword_signals(10, length=8, event_length=16)
    with pytest.raises(ValueError, match="n must"):
        keyword_signals(0)
    with pytest.raises(ValueError, match="noise"):
        keyword_signals(10, noise=-1.0)
    with pytest.raises(ValueError, match="amplitude"):
        keyword_signals(10, amplitude=0.0)
    with pytest.raises(TypeError, match="noise"):
        keyword_signals(10, noise="loud")
    with pytest.raises(TypeError, match="length"):
        chirp(16.0)
