"""Chapter 05's capacity and conflict experiments and its explorer."""

from __future__ import annotations

import dataclasses

import matplotlib.pyplot as plt
import pytest
import torch
from torch import nn

from shared_lib.book.ch05_challenges import (
    render_conflict,
    shared_and_separate,
    train_offset_copier,
    train_task_pair,
    trunk_gradient_cosine,
)
from shared_lib.data.conflict import related_tasks
from shared_lib.models import TransformerConfig
from shared_lib.models.small import MLP, MultiTaskNet

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
    accuracy, params = train_offset_copier(shared, [1, 2], steps=3, batch_size=8, seed=1, n_test=50)
    again = train_offset_copier(shared, [1, 2], steps=3, batch_size=8, seed=1, n_test=50)
    assert (accuracy, params) == again
    assert 0.0 <= accuracy <= 1.0
    _, unshared = train_offset_copier(COPIER, [1, 2], steps=3, batch_size=8, seed=1, n_test=50)
    layer = 4 * (8 * 8 + 8) + 2 * 8 + (8 * 8 + 8) * 2 + 2 * 8  # attention, FFN, two LayerNorms
    assert unshared - params == layer  # sharing two layers stores one layer's parameters fewer


def test_offset_copier_learns_a_single_offset():
    wider = dataclasses.replace(COPIER, hidden_size=16, intermediate_size=16)
    accuracy, _ = train_offset_copier(wider, [1], steps=150, batch_size=64, seed=0)
    assert accuracy > 0.9  # chance is 1/6; seeds 0-3 all reach 1.0


def test_offset_copier_errors():
    with pytest.raises(TypeError, match="config"):
        train_offset_copier("bert", [1])
    with pytest.raises(ValueError, match="lr"):
        train_offset_copier(COPIER, [1], lr=0)
    with pytest.raises(ValueError, match="offsets"):
        train_offset_copier(COPIER, [5])


def test_shared_and_separate_is_seeded_and_counts_both_models():
    first = shared_and_separate(1.0, seed=3, n_train=60, steps=20, batch_size=30)
    again = shared_and_separate(1.0, seed=3, n_train=60, steps=20, batch_size=30)
    assert first == again
    assert set(first["shared"]) == set(first["separate"]) == {"a", "b"}
    # one 16 → 8 trunk with two 8 → 4 heads, against two 16 → 8 → 4 networks
    assert first["params"] == (16 * 8 + 8 + 2 * (8 * 4 + 4), 2 * (16 * 8 + 8 + 8 * 4 + 4))
    assert -1.0 <= first["cosine"] <= 1.0


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
