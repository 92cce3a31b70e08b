"""Tests of chapter 02's experiments: the contenders, the validation split, the learning-rate
sweep and the figures."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytest
import torch
from matplotlib.figure import Figure
from torch import nn

from shared_lib.book.ch02_how_it_works import (
    KINDS,
    LEARNING_RATES,
    SET_KINDS,
    SET_TASKS,
    PositionResult,
    _set_labels,
    plot_conv_as_dense,
    plot_filters,
    plot_set_results,
    plot_sharing_explorer,
    position_model,
    run_position_experiment,
    run_set_experiment,
    set_invariance_error,
    set_model,
    set_task,
    train_position_model,
    train_set_model,
    with_validation,
)
from shared_lib.counting import count_parameters
from shared_lib.data.canvas import unseen_position_task, where_task
from shared_lib.layers.local import (
    LocallyConnected2d,
    conv_as_dense,
)


def test_plot_conv_as_dense_draws_and_checks_its_input():
    import matplotlib.pyplot as plt

    conv = nn.Conv2d(1, 1, 3, padding=1)
    _, index_map = conv_as_dense(conv, (1, 4, 4))
    kernel_ax, matrix_ax = plot_conv_as_dense(conv.weight, index_map)
    assert "16×16" in matrix_ax.get_title() and "9 weights" in kernel_ax.get_title()
    plt.close("all")
    with pytest.raises(ValueError, match="index_map"):
        plot_conv_as_dense(conv.weight[..., :2], index_map)


def test_position_models_differ_only_in_sharing():
    conv, flat, local, mlp = (position_model(kind) for kind in KINDS)
    x = torch.rand(3, 1, 16, 16)
    for model in (conv, flat, local, mlp):
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
    # conv-flat: the same convolutions, a flatten head in place of the global pooling.
    assert [type(m) for m in flat[:5]] == [type(m) for m in conv[:5]]
    assert not any(isinstance(m, nn.AdaptiveMaxPool2d) for m in flat)
    assert flat[-1].in_features == 16 * 8 * 8
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
    flat = position_model("conv-flat").double()  # equivariant features, but the head reads where
    assert (flat(shifted) - flat(x)).abs().max() > 1e-3


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
    assert set(where.accuracy) == {"validation", "test"}
    with pytest.raises(ValueError, match="task"):
        run_position_experiment("conv", 20, task="rotation")
    figure = plot_sharing_explorer(results, "no", 20)
    assert isinstance(figure, Figure)
    assert "untouched" in figure.axes[2].get_xlabel()
    with pytest.raises(ValueError, match="no result"):
        plot_sharing_explorer(results, "yes", 30)
    with pytest.raises(ValueError, match="MLP"):
        plot_filters(where)
    plt.close("all")


def test_with_validation_keeps_the_three_sets_disjoint():
    task = unseen_position_task(30, seed=1)
    split = with_validation(task, 100, seed=2)
    assert list(split.test) == ["validation", "seen", "unseen"]
    x_val, y_val = split.test["validation"]
    assert len(y_val) == 100 and len(split.test["seen"][1]) == len(task.test["seen"][1]) - 100
    # seen and unseen still show the same digits, in the same order
    assert torch.equal(split.test["seen"][1], split.test["unseen"][1])
    # every validation image is one of the seen-position test images, and none is left there
    seen_x = task.test["seen"][0].flatten(1)
    kept_x = split.test["seen"][0].flatten(1)
    for image in x_val.flatten(1)[:10]:
        assert (seen_x == image).all(1).any() and not (kept_x == image).all(1).any()
    assert torch.equal(with_validation(task, 100, seed=2).test["validation"][1], y_val)
    assert list(with_validation(where_task(20), 50).test) == ["validation", "test"]
    with pytest.raises(ValueError, match="source"):
        with_validation(task, 10, source="nowhere")
    with pytest.raises(ValueError, match="n_validation"):
        with_validation(task, len(task.test["seen"][1]))


def test_the_sweep_keeps_the_best_validation_run():
    result = run_position_experiment("mlp", 40, seed=0, lrs=(1e-1, 1e-4), steps=5)
    assert set(result.validation) == {1e-4, 1e-1}
    assert result.validation[result.lr] == max(result.validation.values())
    assert result.accuracy["validation"] == result.validation[result.lr]
    again = run_position_experiment("mlp", 40, seed=0, lrs=(result.lr,), steps=5)
    assert again.accuracy == result.accuracy  # the chosen run, reproduced alone
    assert len(LEARNING_RATES) >= 3
    with pytest.raises(ValueError, match="lrs"):
        run_position_experiment("mlp", 40, lrs=())
    with pytest.raises(ValueError, match="lrs"):
        run_position_experiment("mlp", 40, lr=0.1)


@pytest.mark.parametrize("task", SET_TASKS)
def test_set_tasks_are_balanced_and_seeded(task):
    data = set_task(task, 200, seed=3, n_validation=2000, n_test=1000)
    assert data.x_train.shape == (200, 9, 1)
    assert abs(data.validation[1].float().mean().item() - 0.5) < 0.05
    again = set_task(task, 200, seed=3, n_validation=2000, n_test=1000)
    assert torch.equal(data.x_train, again.x_train)
    assert not torch.equal(data.x_train, set_task(task, 200, seed=4).x_train)


def test_order_test_set_pairs_every_set_with_its_swap():
    x, y = set_task("order", 10, seed=0, n_test=40).test
    first, second = x[:20], x[20:]
    assert torch.equal(second[:, 0], first[:, -1]) and torch.equal(second[:, -1], first[:, 0])
    assert torch.equal(y[:20], 1 - y[20:])
    assert torch.equal(second[:, 1:-1], first[:, 1:-1])


def test_count_label_is_order_free():
    data = set_task("count", 50, seed=1)
    x, y = data.test
    assert torch.equal(_set_labels("count", x.flip(1)), y)


def test_set_models_shapes_counts_and_invariance():
    x = torch.randn(30, 9, 1)
    counts = {}
    for kind in SET_KINDS:
        torch.manual_seed(0)
        model = set_model(kind)
        assert model(x).shape == (30, 2)
        counts[kind] = count_parameters(model)
    assert counts["mlp"] > counts["deepsets+position"] > counts["deepsets"]
    torch.manual_seed(0)
    assert set_invariance_error(set_model("deepsets"), x) < 1e-5
    assert set_invariance_error(set_model("deepsets+position"), x) > 1e-3
    assert set_invariance_error(set_model("mlp"), x) > 1e-3


def test_deep_sets_is_at_chance_on_the_paired_order_test_even_after_training():
    result = train_set_model("deepsets", set_task("order", 100, seed=0), steps=30)
    assert abs(result.accuracy["test"] - 0.5) < 0.02


def test_set_experiment_keeps_the_best_validation_run_and_plots():
    results = {
        (kind, task, 0): run_set_experiment(kind, task, 40, 0, lrs=(1e-2, 1e-3), steps=10)
        for kind in SET_KINDS
        for task in SET_TASKS
    }
    best = results["mlp", "count", 0]
    assert set(best.validation) == {1e-3, 1e-2}
    assert best.accuracy["validation"] == max(best.validation.values())
    assert best.lr in best.validation
    ax = plot_set_results(results)
    assert len(ax.get_xticklabels()) == len(SET_TASKS)
    plt.close("all")


def test_set_bad_input():
    with pytest.raises(ValueError, match="task"):
        set_task("sum", 10)
    with pytest.raises(ValueError, match="set_size"):
        set_task("count", 10, set_size=8)
    with pytest.raises(ValueError, match="kind"):
        set_model("transformer")
    with pytest.raises(ValueError, match="lrs"):
        run_set_experiment("mlp", "count", 10, lrs=())
    with pytest.raises(ValueError, match="steps"):
        train_set_model("mlp", set_task("count", 10), steps=0)
