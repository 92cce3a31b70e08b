"""shared_lib.data.conflict: two generated tasks whose relatedness is a dial."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from shared_lib.data.conflict import related_tasks, related_teachers


def flat(teacher):
    return torch.cat([part.flatten() for part in teacher])


@pytest.mark.parametrize("relatedness", [0.0, 0.3, 0.9, 1.0])
def test_teacher_cosine_is_the_relatedness(relatedness):
    teachers = related_teachers(relatedness, width=5, hidden=3, n_classes=2, seed=4)
    a, b = flat(teachers["a"]), flat(teachers["b"])
    assert teachers["a"][0].shape == (3, 5) and teachers["b"][1].shape == (2, 3)
    assert nn.functional.cosine_similarity(a, b, dim=0).item() == pytest.approx(
        relatedness, abs=1e-5
    )
    assert b.norm().item() == pytest.approx(a.norm().item(), rel=1e-5)


def test_tasks_are_seeded_and_agree_more_when_related():
    pair = related_tasks(50, 0.5, n_test=300, seed=1)
    again = related_tasks(50, 0.5, n_test=300, seed=1)
    assert torch.equal(pair.train["a"][0], again.train["a"][0])
    assert torch.equal(pair.y_test["b"], again.y_test["b"])
    assert pair.train["a"][0].shape == (50, 16) and pair.x_test.shape == (300, 16)
    assert not torch.equal(pair.train["a"][0], pair.train["b"][0])  # own inputs per task
    agreement = {
        r: (lambda p: (p.y_test["a"] == p.y_test["b"]).float().mean().item())(
            related_tasks(10, r, n_test=2000, seed=0)
        )
        for r in (0.0, 0.9, 1.0)
    }
    assert agreement[1.0] == 1.0
    assert agreement[0.0] < 0.4 < agreement[0.9] < 1.0  # 4 classes: chance is about 0.25


def test_bad_arguments():
    with pytest.raises(ValueError, match="relatedness"):
        related_tasks(10, 1.5)
    with pytest.raises(TypeError, match="relatedness"):
        related_teachers("high")
    with pytest.raises(ValueError, match="n_train"):
        related_tasks(0, 0.5)
    with pytest.raises(ValueError, match="n_classes"):
        related_teachers(0.5, n_classes=1)
    with pytest.raises(TypeError, match="relatedness"):
        related_teachers(True)
    with pytest.raises(TypeError, match="n_train"):
        related_tasks(10.0, 0.5)
