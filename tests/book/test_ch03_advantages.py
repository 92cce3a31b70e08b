"""Chapter 03's experiments: learning curves (vectorised seeds, per-model learning rates chosen
on validation data), the step-cost figure, and the inference memories (weights, KV cache)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from shared_lib.book.ch03_advantages import (
    LearningCurves,
    hold_out,
    kv_cache_bytes,
    learning_curves,
    plot_learning_curves,
    plot_step_costs,
    weight_bytes,
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
    with pytest.raises(ValueError, match="lr"):
        learning_curves({"a": nn.Linear}, data, sizes=[10], lr=())
    with pytest.raises(ValueError, match="validation"):
        learning_curves({"a": nn.Linear}, data, sizes=[10], lr=(1e-3, 1e-2))


def test_a_learning_rate_sweep_keeps_the_rate_best_on_validation():
    data = tiny_task()

    def factory():
        return StepRNN(5, 3, 8, 2)

    rates = (1e-4, 3e-2)
    validation = (data.x_test[:50], data.y_test[:50])
    swept = learning_curves(
        {"rnn": factory}, data, sizes=[10, 40], seeds=(0, 1), steps=15, lr=rates,
        validation=validation,
    )  # fmt: skip
    assert set(swept.learning_rates["rnn"]) <= set(rates)
    # Each rate trained alone, with torch's own Adam: the sweep reports the test accuracy of the
    # rate that is best on validation, size by size.
    for i, size in enumerate((10, 40)):
        alone = {
            rate: learning_curves(
                {"rnn": factory},
                data,
                sizes=[size],
                seeds=(0, 1),
                steps=15,
                lr=rate,
                validation=validation,
            )
            for rate in rates
        }
        chosen = swept.learning_rates["rnn"][i]
        assert np.abs(swept.accuracy["rnn"][i] - alone[chosen].accuracy["rnn"][0]).max() <= 0.01
        assert alone[chosen].learning_rates == {"rnn": (chosen,)}


def test_hold_out_splits_the_pool_and_keeps_the_test_set():
    data = tiny_task()
    pool, (x_val, y_val) = hold_out(data, 40, seed=3)
    assert len(pool.y_train) == 160 and len(y_val) == 40
    assert torch.equal(pool.x_test, data.x_test)
    together = torch.cat([pool.x_train, x_val]).flatten(1).tolist()
    assert sorted(together) == sorted(data.x_train.flatten(1).tolist())  # a partition of the pool
    assert torch.bincount(y_val).tolist() == [20, 20]  # class-balanced
    with pytest.raises(ValueError, match="n must be below"):
        hold_out(data, 200, seed=0)


def test_inference_memory_weights_shrink_with_sharing_the_kv_cache_does_not():
    from shared_lib.models import PRESETS

    bert, albert = PRESETS["bert-large"], PRESETS["albert-large"]
    assert weight_bytes(bert) > 15 * weight_bytes(albert)
    assert kv_cache_bytes(bert, 512) == kv_cache_bytes(albert, 512) == 2 * 24 * 1024 * 512 * 2
    assert kv_cache_bytes(albert, 512, kv_heads=1) * 16 == kv_cache_bytes(albert, 512)
    assert kv_cache_bytes(albert, 512, kv_layers=12, batch=2) == kv_cache_bytes(albert, 512)
    with pytest.raises(TypeError):
        kv_cache_bytes(albert, 512.0)


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
