"""TODO docstring."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from shared_lib.book.ch03_advantages import (
    LearningCurves,
    learning_curves,
    plot_learning_curves,
    plot_step_costs,
)
from shared_lib.data.sequences import make_motif_task
from shared_lib.data.splits import Split
from shared_lib.models.small import StepRNN


def tiny_task() -> Split:
    x, y = make_motif_task(300, length=5, vocab=3, motif=(0,), seed=0)
    return Split(x[:200], y[:200], x[200:], y[200:])


def test_plot_step_costs_draws_the_model_and_its_twin():
    import matplotlib.pyplot as plt

    costs = {
        (depth, share): {"parameters (k)": depth * (1 if share == "all" else 5), "FLOPs (G)": 2.0}
        for depth in (2, 4)
        for share in ("none", "all")
    }
    figure = plot_step_costs(costs, 4, "all")
    ax = figure.axes[0]
    heights = [bar.get_height() for bar in ax.patches]
    assert heights == pytest.approx([4 / 20, 1.0, 1.0, 1.0])  # fractions of each cost's maximum
    plt.close(figure)
    with pytest.raises(ValueError, match="no costs"):
        plot_step_costs(costs, 8, "all")


def test_learning_curves_train_each_model_as_if_alone():
    data = tiny_task()

    def factory():
        return StepRNN(5, 3, 8, 2)

    both = learning_curves({"rnn": factory}, data, sizes=[10, 40], seeds=(0, 1), steps=15)
    alone = learning_curves({"rnn": factory}, data, sizes=[40], seeds=(1,), steps=15)
    assert both.accuracy["rnn"].shape == (2, 2)
    assert ((both.accuracy["rnn"] >= 0) & (both.accuracy["rnn"] <= 1)).all()
    # Training several seeds and sizes together (vmap) changes nothing for any one of them,
    # up to float rounding (at most one test example of 100).
    assert abs(both.accuracy["rnn"][1, 1] - alone.accuracy["rnn"][0, 0]) <= 0.01
    state = torch.get_rng_state()
    learning_curves({"rnn": factory}, data, sizes=[10], seeds=(0,), steps=2)
    assert torch.equal(torch.get_rng_state(), state)


def test_learning_curves_validate_their_arguments():
    data = tiny_task()
    with pytest.raises(ValueError, match="factories"):
        learning_curves({}, data, sizes=[10])
    with pytest.raises(TypeError, match=r"factories\['a'\]"):
        learning_curves({"a": 3}, data, sizes=[10])
    with pytest.raises(TypeError, match="data"):
        learning_curves({"a": nn.Linear}, (data.x_train, data.y_train), sizes=[10])
    with pytest.raises(ValueError, match="increasing"):
        learning_curves({"a": nn.Linear}, data, sizes=[20, 10])
    with pytest.raises(ValueError, match="exceeds"):
        learning_curves({"a": nn.Linear}, data, sizes=[10, 1000])
    with pytest.raises(ValueError, match="lr"):
        learning_curves({"a": nn.Linear}, data, sizes=[10], lr=0.0)


def test_learning_curve_summaries():
    curves = LearningCurves(
        sizes=(10, 100, 1000),
        seeds=(0, 1),
        accuracy={
            "shared": np.array([[0.8, 0.6], [0.9, 0.9], [0.9, 0.95]]),
            "unshared": np.array([[0.5, 0.5], [0.8, 0.9], [0.95, 1.0]]),
        },
    )
    assert np.allclose(curves.mean("shared"), [0.7, 0.9, 0.925])
    assert np.allclose(curves.std("unshared"), [0.0, 0.05, 0.025])
    assert np.allclose(curves.gap("shared", "unshared")[:, 0], [0.3, 0.1, -0.05])
    assert curves.crossing("shared", "unshared") == 1000
    assert curves.crossing("shared", "shared") is None
    assert "shared" in curves.table() and "0.700 ± 0.100" in curves.table()
    ax = plot_learning_curves(curves, title="test")
    assert ax.get_xlabel() == "training examples"
    import matplotlib.pyplot as plt

    plt.close(ax.figure)
