"""Tests of shared_lib.tasks.positions: where the digits are placed, what the models share, and
that a short training run reports what it measured."""

from __future__ import annotations

import matplotlib
import pytest
import torch
from matplotlib.figure import Figure

from shared_lib.counting import count_parameters
from shared_lib.layers.local import LocallyConnected2d
from shared_lib.tasks.positions import (
    KINDS,
    PositionResult,
    digit_glyphs,
    place_glyphs,
    plot_filters,
    plot_sharing_explorer,
    position_model,
    run_position_experiment,
    train_position_model,
    unseen_position_task,
    where_task,
)

matplotlib.use("Agg")


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
    with pytest.raises(ValueError, match="overlap"):
        unseen_position_task(10, train_columns=(0, 5), unseen_columns=(5, 8))
    with pytest.raises(ValueError, match="unseen_columns"):
        unseen_position_task(10, unseen_columns=(5, 9))
    with pytest.raises(ValueError, match="test_fraction"):
        unseen_position_task(10, test_fraction=1.5)


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


def test_position_models_differ_only_in_sharing():
    conv, local, mlp = (position_model(kind) for kind in KINDS)
    x = torch.rand(3, 1, 16, 16)
    for model in (conv, local, mlp):
        assert model(x).shape == (3, 10)
    assert [type(m) for m in conv if not isinstance(m, torch.nn.Conv2d)] == [
        type(m) for m in local if not isinstance(m, LocallyConnected2d)
    ]
    assert isinstance(local[0], LocallyConnected2d) and isinstance(conv[0], torch.nn.Conv2d)
    # Every conv layer becomes one copy of itself per output position.
    positions = [16 * 16, 8 * 8]
    conv_layers = [conv[0], conv[3]]
    assert count_parameters(local) == sum(
        p * count_parameters(layer) for p, layer in zip(positions, conv_layers, strict=True)
    ) + count_parameters(conv[-1])
    with pytest.raises(ValueError, match="kind"):
        position_model("transformer")
    with pytest.raises(ValueError, match="even"):
        position_model("conv", canvas_size=15)


def test_circular_conv_model_is_invariant_to_even_circular_shifts():
    torch.manual_seed(0)
    model = position_model("conv").double()
    x = torch.rand(4, 1, 16, 16, dtype=torch.float64)
    shifted = torch.roll(x, (2, 6), dims=(-2, -1))  # even shifts commute with 2×2 pooling
    torch.testing.assert_close(model(shifted), model(x), rtol=0, atol=1e-12)
    local = position_model("local").double()
    assert (local(shifted) - local(x)).abs().max() > 1e-3


def test_training_reports_accuracies_and_leaves_unseen_filters_untouched():
    task = unseen_position_task(60, seed=0)
    threads = torch.get_num_threads()
    local = train_position_model("local", task, seed=0, steps=3)
    assert torch.get_num_threads() == threads  # restored after training on one thread
    assert isinstance(local, PositionResult) and local.n_train == 60
    assert set(local.accuracy) == {"seen", "unseen"}
    assert all(0.0 <= a <= 1.0 for a in local.accuracy.values())
    assert local.parameters == count_parameters(local.model)
    # The 5×5 window of first-layer column 13 covers input columns 11..15, blank in every
    # training image: that filter never received a gradient. Column 5's window did.
    assert torch.equal(local.first_layer[8, 13], local.first_layer_initial[8, 13])
    assert not torch.equal(local.first_layer[8, 5], local.first_layer_initial[8, 5])
    again = train_position_model("local", task, seed=0, steps=3)
    assert again.accuracy == local.accuracy  # seeded
    with pytest.raises(ValueError, match="steps"):
        train_position_model("conv", task, steps=0)


def test_run_position_experiment_and_plots():
    results = {
        (share, n): run_position_experiment(kind, n, seed=0, steps=2)
        for share, kind in (("yes", "conv"), ("no", "local"))
        for n in (20, 40)
    }
    assert results["yes", 20].kind == "conv" and results["no", 40].n_train == 40
    where = run_position_experiment("mlp", 20, task="where", steps=2)
    assert set(where.accuracy) == {"test"}
    with pytest.raises(ValueError, match="task"):
        run_position_experiment("conv", 20, task="rotation")
    figure = plot_sharing_explorer(results, "no", 20)
    assert isinstance(figure, Figure)
    assert "untouched" in figure.axes[2].get_xlabel()
    with pytest.raises(ValueError, match="no result"):
        plot_sharing_explorer(results, "yes", 30)
    with pytest.raises(ValueError, match="MLP"):
        plot_filters(where)
    import matplotlib.pyplot as plt

    plt.close("all")
