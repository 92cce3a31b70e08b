"""The weight-sharing supernet and Kendall's tau (chapter 08)."""

from __future__ import annotations

import pytest
import torch

import shared_lib as sl
from shared_lib.models.supernet import SupernetMLP


def test_search_space_and_sampling():
    net = SupernetMLP(5, 3, widths=(2, 4), activations=("relu", "tanh"), n_layers=2)
    space = net.search_space()
    assert len(space) == 16 and len(set(space)) == 16
    generator = torch.Generator().manual_seed(0)
    assert all(net.sample(generator) in space for _ in range(20))


def test_sub_networks_share_slices_of_the_same_weights():
    torch.manual_seed(0)
    net = SupernetMLP(5, 3, widths=(2, 4), n_layers=2)
    x = torch.randn(7, 5)
    arch = ((2, "relu"), (4, "tanh"))
    h = torch.relu(x @ net.hidden[0].weight[:2, :5].T + net.hidden[0].bias[:2])
    h = torch.tanh(h @ net.hidden[1].weight[:4, :2].T + net.hidden[1].bias[:4])
    expected = h @ net.readout.weight[:, :4].T + net.readout.bias
    torch.testing.assert_close(net(x, arch), expected)
    # a gradient step of one architecture changes the weights the other ones use
    net(x, arch).sum().backward()
    assert net.hidden[1].weight.grad[:4, :2].abs().sum() > 0
    assert net.hidden[1].weight.grad[:, 2:].abs().sum() == 0
    assert sl.count_parameters(net) == (5 * 4 + 4) + (4 * 4 + 4) + (4 * 3 + 3)


def test_standalone_has_the_architecture_shape():
    net = SupernetMLP(5, 3, widths=(2, 4), n_layers=2)
    model = net.standalone(((4, "tanh"), (2, "relu")))
    assert model(torch.randn(3, 5)).shape == (3, 3)
    assert sl.count_parameters(model) == (5 * 4 + 4) + (4 * 2 + 2) + (2 * 3 + 3)


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"widths": "24"}, TypeError, "widths"),
        ({"widths": ()}, ValueError, "widths"),
        ({"widths": (2, 0)}, ValueError, "widths"),
        ({"activations": "relu"}, TypeError, "activations"),
        ({"activations": ()}, ValueError, "activations"),
        ({"activations": ("relu", "gelu")}, ValueError, "activations"),
        ({"n_layers": 1.0}, TypeError, "n_layers"),
    ],
)
def test_bad_arguments(kwargs, error, name):
    with pytest.raises(error, match=name):
        SupernetMLP(5, 3, **kwargs)
