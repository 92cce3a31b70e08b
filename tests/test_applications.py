"""Chapter 04's explorer helpers: traced uses, convolution position uses, the three-panel plot."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest
import torch
from torch import nn

import shared_lib as sl
from shared_lib.applications import (
    Headline,
    conv_sequence_uses,
    plot_application,
    traced_uses,
)
from shared_lib.uses import count_per_use


def keyword_conv():
    return nn.Sequential(nn.Conv1d(1, 4, 5, padding=2), nn.ReLU(),
                         nn.AdaptiveMaxPool1d(1), nn.Flatten(), nn.Linear(4, 2))  # fmt: skip


def test_conv_sequence_uses_count_every_position_once_per_layer():
    model = keyword_conv()
    uses, column_of = conv_sequence_uses(model, 32)
    conv = sl.count_parameters(model[0])
    assert len(uses) == 32 + 1
    assert count_per_use(uses) == 32 * conv + sl.count_parameters(model[4])
    assert column_of("0.weight") == "conv 1" and column_of("4.bias") == "linear 4"
    with pytest.raises(TypeError, match="model"):
        conv_sequence_uses(nn.Linear(2, 2), 8)
    with pytest.raises(ValueError, match="length"):
        conv_sequence_uses(model, 0)


def test_traced_uses_by_unit_and_by_module():
    net = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 3))
    net[2].weight = net[0].weight
    x = torch.randn(1, 3)
    uses, column_of = traced_uses(net, lambda: net(x))
    assert column_of is not None and len(uses) == 2
    assert count_per_use(uses) == sl.count_parameters(net, unique=False)
    uses, column_of = traced_uses(net, lambda: net(x), units=False)
    assert column_of is None and len(uses) == 2


def test_plot_application_draws_three_panels_and_checks_counts():
    model = keyword_conv()
    uses, column_of = conv_sequence_uses(model, 16)
    headline = Headline("accuracy", "conv", "mlp", [0.9, 1.0], [0.5, 0.45])
    unique = sl.count_parameters(model)
    figure = plot_application("demo", uses, unique, count_per_use(uses), headline, True, column_of)
    assert len(figure.axes) == 3
    with pytest.raises(ValueError, match="unique"):
        plot_application("demo", uses, 10, 5, headline, True)
    plt.close("all")
