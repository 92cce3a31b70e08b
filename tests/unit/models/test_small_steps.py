"""Chapter 06's experiment helpers: shapes, errors, and the properties the chapter relies on."""

from __future__ import annotations

import pytest
import torch

from shared_lib import count_parameters
from shared_lib.models.small import ConvStep, GRUClassifier


def test_gru_classifier_accepts_any_length_with_the_same_parameters():
    model = GRUClassifier(hidden_size=5)
    before = count_parameters(model)
    for length in (1, 7, 50):
        assert model(torch.randint(0, 2, (3, length))).shape == (3, 2)
    assert count_parameters(model) == before
    with pytest.raises(ValueError, match="bits"):
        model(torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="hidden_size"):
        GRUClassifier(hidden_size=0)


def test_conv_step_keeps_the_state_shape():
    step = ConvStep(width=4)
    state, inputs = torch.zeros(2, 9, 4), torch.randn(2, 9, 4)
    assert step(state, inputs).shape == (2, 9, 4)
