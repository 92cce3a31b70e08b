"""Tests of shared_lib.data.canvas: where the digits are placed on the canvas, and the labels."""

from __future__ import annotations

import pytest
import torch

from shared_lib.data.canvas import digit_glyphs, place_glyphs, unseen_position_task, where_task


def test_digit_glyphs():
    images, labels = digit_glyphs()
    assert images.shape == (1797, 8, 8) and labels.shape == (1797,)
    assert images.min() >= 0 and images.max() <= 1 and set(labels.tolist()) == set(range(10))


def test_place_glyphs_puts_each_glyph_at_its_corner():
    glyphs = torch.arange(2 * 2 * 3, dtype=torch.float32).reshape(2, 2, 3) + 1
    canvas = place_glyphs(glyphs, torch.tensor([0, 3]), torch.tensor([1, 2]), canvas_size=5)
    assert canvas.shape == (2, 1, 5, 5)
    assert torch.equal(canvas[0, 0, 0:2, 1:4], glyphs[0])
    assert torch.equal(canvas[1, 0, 3:5, 2:5], glyphs[1])
    assert canvas.sum() == glyphs.sum()  # nothing else is drawn
    with pytest.raises(ValueError, match="does not fit"):
        place_glyphs(glyphs, torch.tensor([0, 4]), torch.tensor([0, 0]), canvas_size=5)
    with pytest.raises(ValueError, match="rows and cols"):
        place_glyphs(glyphs, torch.tensor([0]), torch.tensor([0, 0]), canvas_size=5)
    with pytest.raises(ValueError, match="glyphs"):
        place_glyphs(glyphs[0], torch.tensor([0]), torch.tensor([0]))


def test_unseen_position_task_keeps_training_ink_on_the_left():
    task = unseen_position_task(300, seed=0)
    assert task.x_train.shape == (300, 1, 16, 16) and task.num_classes == 10
    assert set(task.test) == {"seen", "unseen"}
    # Left edges in columns 0..3: an 8-wide glyph ends by column 10; columns 11..15 stay blank.
    assert task.x_train[..., 11:].abs().sum() == 0
    assert task.test["seen"][0][..., 11:].abs().sum() == 0
    # Unseen: left edges in columns 5..8, so columns 0..4 stay blank and the right side has ink.
    unseen = task.test["unseen"][0]
    assert unseen[..., :5].abs().sum() == 0 and unseen[..., 11:].abs().sum() > 0
    # Both test sets show the same held-out digits.
    assert torch.equal(task.test["seen"][1], task.test["unseen"][1])
    assert torch.equal(
        task.test["seen"][0].sum(dim=(1, 2, 3)), task.test["unseen"][0].sum(dim=(1, 2, 3))
    )
    assert len(task.test["seen"][1]) == 719  # 40% of 1,797, stratified
    assert "unseen=719" in repr(task)


def test_unseen_position_task_is_seeded():
    a, b, c = (unseen_position_task(50, seed=s) for s in (1, 1, 2))
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_train, b.y_train)
    assert not torch.equal(a.x_train, c.x_train)


def test_unseen_position_task_errors():
    with pytest.raises(ValueError, match="n_train"):
        unseen_position_task(0)
    with pytest.raises(TypeError, match="n_train"):
        unseen_position_task(10.0)
    with pytest.raises(TypeError, match="n_train"):
        where_task(True)
    with pytest.raises(ValueError, match="overlap"):
        unseen_position_task(10, train_columns=(0, 5), unseen_columns=(5, 8))
    with pytest.raises(ValueError, match="unseen_columns"):
        unseen_position_task(10, unseen_columns=(5, 9))
    with pytest.raises(ValueError, match="test_fraction"):
        unseen_position_task(10, test_fraction=1.5)
    with pytest.raises(TypeError, match="test_fraction"):
        where_task(10, test_fraction="0.4")


def test_where_task_labels_are_quadrants():
    task = where_task(400, seed=0)
    x, y = task.x_train, task.y_train
    assert task.num_classes == 4 and set(y.tolist()) == {0, 1, 2, 3}
    top, left = y < 2, y % 2 == 0
    # Top: glyph rows start at 0..3, so rows 11..15 are blank; bottom: start at 5..8.
    assert x[top][..., 11:, :].abs().sum() == 0 and x[~top][..., :5, :].abs().sum() == 0
    assert x[left][..., :, 11:].abs().sum() == 0 and x[~left][..., :, :5].abs().sum() == 0
    with pytest.raises(ValueError, match="canvas_size"):
        where_task(10, canvas_size=9)
    with pytest.raises(TypeError, match="canvas_size"):
        where_task(10, canvas_size=16.0)
