"""Tests of shared_lib.models.small: the one-family-each models keep their sharing visible, and
their arguments are checked (a wrong type is a TypeError, a wrong value a ValueError)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from shared_lib.counting import count_parameters
from shared_lib.models.small import (
    MLP,
    ConvStep,
    ElmanRNN,
    GRUClassifier,
    MultiTaskNet,
    SiameseNet,
    SmallConvNet,
    StepRNN,
)
from shared_lib.tying import shared_groups


def test_conv_step_keeps_the_state_shape():
    step = ConvStep(width=4)
    state, inputs = torch.zeros(2, 9, 4), torch.randn(2, 9, 4)
    assert step(state, inputs).shape == (2, 9, 4)


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


def test_step_rnn_registers_one_cell_at_every_step():
    model = StepRNN(length=4, input_size=3, hidden_size=5, num_classes=2)
    assert all(cell is model.cells[0] for cell in model.cells)
    assert count_parameters(model, unique=False) - count_parameters(model) == 3 * count_parameters(
        model.cells[0]
    )
    assert len(shared_groups(model)) == 4  # weight_ih, weight_hh, bias_ih, bias_hh


def test_siamese_net_is_symmetric():
    net = SiameseNet(nn.Linear(6, 4), 4)
    a, b = torch.randn(3, 6), torch.randn(3, 6)
    assert torch.equal(net(a, b), net(b, a))


@pytest.mark.parametrize(
    ("build", "error", "name"),
    [
        (lambda: MLP(4), ValueError, "sizes"),
        (lambda: MLP(4, 0), ValueError, "sizes"),
        (lambda: MLP(4, 2.0), TypeError, "sizes"),
        (lambda: SmallConvNet(channels=0), ValueError, "channels"),
        (lambda: SmallConvNet(in_channels="1"), TypeError, "in_channels"),
        (lambda: ElmanRNN(4, 0, 2), ValueError, "hidden_size"),
        (lambda: ElmanRNN(4, 8, 2, vocab_size=2.5), TypeError, "vocab_size"),
        (lambda: SiameseNet(nn.Identity(), 0), ValueError, "embedding_size"),
        (lambda: MultiTaskNet(nn.Identity(), {}), ValueError, "heads"),
        (lambda: StepRNN(0, 3, 4, 2), ValueError, "length"),
        (lambda: StepRNN(4, 3, True, 2), TypeError, "hidden_size"),
    ],
)
def test_bad_arguments_name_themselves(build, error, name):
    with pytest.raises(error, match=name):
        build()


def test_multi_task_net_rejects_an_unknown_task():
    net = MultiTaskNet(nn.Linear(3, 4), {"a": nn.Linear(4, 2)})
    with pytest.raises(ValueError, match="task"):
        net(torch.randn(1, 3), "b")
