"""Chapter 05's capacity and conflict experiments, the learning-rate sweep, and its explorer."""

from __future__ import annotations

import dataclasses

import matplotlib.pyplot as plt
import pytest
import torch
from torch import nn

from shared_lib.book.ch04_applications import multitask_accuracy, train_multitask
from shared_lib.book.ch05_challenges import (
    CONFLICT_KINDS,
    Tuned,
    conflict_model,
    fit_student,
    render_conflict,
    train_conflict_model,
    train_offset_copier,
    train_task_pair,
    trunk_gradient_cosine,
    tune_learning_rate,
    tuned_conflict_model,
)
from shared_lib.counting import count_parameters
from shared_lib.data.conflict import TaskPair, related_tasks
from shared_lib.data.sequences import layerwise_teacher
from shared_lib.models import TransformerConfig
from shared_lib.models.small import MLP, MultiTaskNet
from shared_lib.sharing import SharedStack
from shared_lib.tying import shared_groups

COPIER = TransformerConfig(
    vocab_size=6,
    hidden_size=8,
    num_layers=2,
    num_heads=1,
    intermediate_size=8,
    max_position=5,
    type_vocab_size=1,
    pooler=False,
)


def test_offset_copier_is_seeded_and_counts_unique_parameters():
    shared = dataclasses.replace(COPIER, share="all", n_unique=1)
    result = train_offset_copier(shared, [1, 2], steps=3, batch_size=8, seed=1, n_test=50)
    again = train_offset_copier(shared, [1, 2], steps=3, batch_size=8, seed=1, n_test=50)
    assert result == again
    validation, test, params = result
    assert 0.0 <= validation <= 1.0 and 0.0 <= test <= 1.0
    _, _, unshared = train_offset_copier(COPIER, [1, 2], steps=3, batch_size=8, seed=1, n_test=50)
    layer = 4 * (8 * 8 + 8) + 2 * 8 + (8 * 8 + 8) * 2 + 2 * 8  # attention, FFN, two LayerNorms
    assert unshared - params == layer  # sharing two layers stores one layer's parameters fewer


def test_offset_copier_learns_a_single_offset():
    wider = dataclasses.replace(COPIER, hidden_size=16, intermediate_size=16)
    validation, test, _ = train_offset_copier(wider, [1], steps=150, batch_size=64, seed=0)
    assert validation > 0.9 and test > 0.9  # chance is 1/6


def test_offset_copier_errors():
    with pytest.raises(TypeError, match="config"):
        train_offset_copier("bert", [1])
    with pytest.raises(ValueError, match="lr"):
        train_offset_copier(COPIER, [1], lr=0)
    with pytest.raises(ValueError, match="offsets"):
        train_offset_copier(COPIER, [5])


def test_tune_learning_rate_keeps_the_best_validation_and_reports_every_rate():
    tuned = tune_learning_rate(lambda lr: (1 - abs(lr - 0.05), {"lr": lr}), [0.01, 0.05, 0.1])
    assert isinstance(tuned, Tuned)
    assert tuned.lr == 0.05 and tuned.result == {"lr": 0.05}
    assert tuned.validation_by_lr == pytest.approx({0.01: 0.96, 0.05: 1.0, 0.1: 0.95})
    tie = tune_learning_rate(lambda lr: (0.5, lr), [0.2, 0.1])
    assert tie.lr == 0.2  # a tie keeps the first listed
    with pytest.raises(ValueError, match="learning_rates"):
        tune_learning_rate(lambda lr: (0.0, None), [])
    with pytest.raises(ValueError, match="learning_rates"):
        tune_learning_rate(lambda lr: (0.0, None), [0.0])
    with pytest.raises(TypeError, match="run"):
        tune_learning_rate("not callable", [0.1])


def test_fit_student_scores_every_set_and_leaves_the_global_random_state_alone():
    train = layerwise_teacher(128, 8, 2, 3, seed=0, data_seed=1)
    test = layerwise_teacher(256, 8, 2, 3, seed=0, data_seed=2)

    def stack():
        return SharedStack.build(lambda: nn.Sequential(nn.Linear(8, 8), nn.Tanh()), 2, 1)

    torch.manual_seed(5)
    expected = torch.rand(1)
    torch.manual_seed(5)
    scores, params = fit_student(stack, train, [train, test], seed=3, epochs=20)
    assert torch.equal(torch.rand(1), expected)
    assert len(scores) == 2 and all(0.0 <= s <= 1.0 for s in scores)
    assert params == (8 * 8 + 8) + (8 * 3 + 3)  # one shared layer and the read-out
    assert fit_student(stack, train, [train, test], seed=3, epochs=20) == (scores, params)
    with pytest.raises(ValueError, match="lr"):
        fit_student(stack, train, [test], seed=0, lr=-1.0)


def test_conflict_models_have_the_documented_shapes():
    shared, trunk = conflict_model("shared", hidden=16)
    separate, none = conflict_model("separate", hidden=4)
    assert none is None and isinstance(trunk, nn.Module)
    assert count_parameters(shared) == 16 * 16 + 16 + 2 * (16 * 4 + 4)
    assert count_parameters(separate) == 2 * (16 * 4 + 4 + 4 * 4 + 4)
    first, _ = conflict_model("shared", seed=2)
    again, _ = conflict_model("shared", seed=2)
    assert all(
        torch.equal(a, b) for a, b in zip(first.parameters(), again.parameters(), strict=True)
    )
    with pytest.raises(ValueError, match="kind"):
        conflict_model("soft")


def test_tuned_conflict_model_is_seeded_and_scores_on_held_out_data():
    tuned = tuned_conflict_model("shared", 1.0, seed=3, learning_rates=(1e-3, 1e-2), steps=20,
                                 n_train=60, n_validation=100, batch_size=30)  # fmt: skip
    again = tuned_conflict_model("shared", 1.0, seed=3, learning_rates=(1e-3, 1e-2), steps=20,
                                 n_train=60, n_validation=100, batch_size=30)  # fmt: skip
    assert tuned == again
    assert tuned.lr in (1e-3, 1e-2) and set(tuned.validation_by_lr) == {1e-3, 1e-2}
    assert tuned.validation == max(tuned.validation_by_lr.values())
    assert set(tuned.result["test"]) == {"a", "b"}
    assert tuned.result["params"] == 16 * 8 + 8 + 2 * (8 * 4 + 4)
    assert -1.0 <= tuned.result["cosine"] <= 1.0
    separate = tuned_conflict_model("separate", 1.0, seed=3, learning_rates=(1e-2,), steps=5,
                                    n_train=60, n_validation=100, batch_size=30)  # fmt: skip
    assert separate.result["cosine"] is None


def test_train_conflict_model_validates_on_the_validation_inputs():
    data = related_tasks(40, 0.0, n_test=100, seed=0)
    validation = related_tasks(1, 0.0, n_test=80, seed=0, data_seed=9)
    score, result = train_conflict_model("separate", data, validation, steps=5, batch_size=20)
    assert 0.0 <= score <= 1.0 and result["cosine"] is None


def test_render_conflict_draws_the_chosen_relatedness_and_refuses_others():
    accuracy = {
        r: {"shared": {"a": 0.7, "b": 0.72}, "separate": {"a": 0.71, "b": 0.7}} for r in (0.0, 1.0)
    }
    cosine = {0.0: -0.05, 1.0: 0.6}
    fig = render_conflict(1.0, accuracy, cosine)
    assert "+0.005" in fig.axes[0].get_title()
    plt.close(fig)
    with pytest.raises(ValueError, match="relatedness"):
        render_conflict(0.5, accuracy, cosine)


def test_training_records_the_trunk_cosine():
    data = related_tasks(40, 1.0, n_test=100, seed=0)
    torch.manual_seed(0)
    trunk = nn.Sequential(nn.Linear(16, 8), nn.ReLU())
    shared = MultiTaskNet(trunk, {"a": nn.Linear(8, 4), "b": nn.Linear(8, 4)})
    cosines = train_task_pair(shared, data, steps=20, measure_every=5, shared=trunk)
    assert len(cosines) == 4 and all(-1.0 <= c <= 1.0 for c in cosines)
    assert trunk_gradient_cosine(shared, data, trunk) == pytest.approx(
        trunk_gradient_cosine(shared, data, trunk)
    )
    separate = MultiTaskNet(nn.Identity(), {"a": MLP(16, 8, 4), "b": MLP(16, 8, 4)})
    assert train_task_pair(separate, data, steps=3) == []
    with pytest.raises(TypeError, match="shared"):
        train_task_pair(shared, data, steps=1, shared=trunk.parameters())


@pytest.mark.parametrize("rank", [1, 3])
def test_adapter_models_store_the_trunk_once_and_start_as_hard_sharing(rank):
    trunk_n, head_n, adapter_n = 8 * 16 + 8, 8 * 4 + 4, rank * (16 + 8)
    adapters, trunk = conflict_model("adapters", seed=4, rank=rank)
    frozen, frozen_trunk = conflict_model("frozen", seed=4, rank=rank)
    assert count_parameters(adapters) == trunk_n + 2 * (head_n + adapter_n)
    assert count_parameters(frozen) == trunk_n + 2 * head_n + adapter_n
    assert count_parameters(trunk) == count_parameters(frozen_trunk) == trunk_n
    assert len(shared_groups(adapters)) == 2  # the trunk's weight and bias, used by both tasks
    _, hard_trunk = conflict_model("shared", seed=4)
    x = torch.randn(5, 16)
    with torch.no_grad():  # same seed, same trunk; B = 0, so every tower starts at the trunk
        for model in (adapters, frozen):
            for task in ("a", "b"):
                assert torch.equal(model.heads[task][0](x), hard_trunk(x))
    with pytest.raises(ValueError, match="rank"):
        conflict_model("adapters", rank=0)
    with pytest.raises(ValueError, match="adapters"):
        conflict_model("lora")
    assert set(CONFLICT_KINDS) == {"shared", "separate", "adapters", "frozen"}


def test_adapters_train_jointly_and_report_the_trunk_cosine():
    tuned = tuned_conflict_model("adapters", 0.0, seed=3, learning_rates=(1e-2,), steps=20,
                                 n_train=60, n_validation=100, batch_size=30, rank=2)  # fmt: skip
    assert tuned.result["params"] == 136 + 2 * (36 + 48)
    assert -1.0 <= tuned.result["cosine"] <= 1.0
    assert set(tuned.result["test"]) == {"a", "b"}


def test_frozen_trunk_serves_task_b_without_changing_task_a():
    data = related_tasks(60, 0.0, n_test=200, seed=1)
    validation = related_tasks(1, 0.0, n_test=100, seed=1, data_seed=5)
    score, result = train_conflict_model(
        "frozen", data, validation, lr=1e-2, seed=2, steps=30, batch_size=20
    )
    assert 0.0 <= score <= 1.0 and result["cosine"] is None
    assert result["params"] == 136 + 2 * 36 + 48
    # Task a alone with the same recipe: the second stage must leave its trunk and head alone.
    alone, _ = conflict_model("frozen", seed=2)
    only_a = TaskPair({"a": data.train["a"]}, data.x_test, data.y_test, data.relatedness)
    train_multitask(alone, only_a, 30, 1e-2, 20, 2)
    assert result["test"]["a"] == multitask_accuracy(alone, data)["a"]
