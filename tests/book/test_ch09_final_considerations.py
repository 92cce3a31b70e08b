"""Chapter 09's calculator: its parts add up to the real model's count, and sharing shows."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytest

from shared_lib.book.ch09_final_considerations import encoder_budget, render_budget
from shared_lib.counting import count_parameters, parameter_memory
from shared_lib.models import build_model


@pytest.mark.parametrize("preset", ["bert-base", "albert-base", "albert-large"])
def test_budget_matches_the_preset_it_describes(preset):
    model = build_model(preset, device="meta")
    config = model.config
    embedding = None if config.embedding_size == config.hidden_size else config.embedding_size
    budget = encoder_budget(config.num_layers, config.share, embedding, config.hidden_size)
    assert budget.total == count_parameters(model)
    assert budget.training_bytes == parameter_memory(model, "adam").total


def test_sharing_all_layers_keeps_one_layer_and_counts_every_use():
    unshared = encoder_budget(6, "none", 128)
    shared = encoder_budget(6, "all", 128)
    assert shared.embeddings == unshared.embeddings and shared.pooler == unshared.pooler
    assert shared.layers * 6 == unshared.layers == shared.layers_per_use
    assert shared.training_bytes == 16 * shared.total  # float32 weights + grads + two moments


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_layers": 0, "share": "all"}, "num_layers"),
        ({"num_layers": 2, "share": "some"}, "share"),
        ({"num_layers": 2, "share": "all", "hidden_size": 100}, "hidden_size"),
        ({"num_layers": 2, "share": "all", "embedding_size": 0}, "embedding_size"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        encoder_budget(**kwargs)


def test_render_budget_draws_both_encoders():
    fig = render_budget(2, "all", 128, hidden_size=128)
    assert "fewer parameters" in fig.axes[0].get_title()
    plt.close(fig)
