"""p4 group convolutions: one filter shared across four rotations (chapter 06)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import shared_lib as sl
from shared_lib.layers.group import P4ConvP4, P4ConvZ2, RotationPool, rotate, rotate_p4


def double(module: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    return module.double()


@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize(("kernel_size", "padding"), [(1, 0), (3, 0), (3, 1), (5, 2)])
def test_lifting_layer_is_rotation_equivariant(k, kernel_size, padding):
    layer = double(P4ConvZ2(2, 3, kernel_size, padding=padding))
    x = torch.randn(2, 2, 9, 9, dtype=torch.float64)
    torch.testing.assert_close(layer(rotate(x, k)), rotate_p4(layer(x), k), rtol=0, atol=1e-12)


@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("bias", [True, False])
def test_group_layer_is_rotation_equivariant(k, bias):
    lift, group = double(P4ConvZ2(1, 3, 3)), double(P4ConvP4(3, 2, 3, padding=1, bias=bias))
    x = torch.randn(2, 1, 10, 10, dtype=torch.float64)
    features = lift(x)
    torch.testing.assert_close(
        group(rotate_p4(features, k)), rotate_p4(group(features), k), rtol=0, atol=1e-12
    )


def test_plain_convolution_is_not_rotation_equivariant():
    conv = double(nn.Conv2d(1, 4, 3, padding=1))
    x = torch.randn(2, 1, 9, 9, dtype=torch.float64)
    error = (conv(rotate(x)) - rotate(conv(x))).norm() / conv(x).norm()
    assert error > 0.3


def test_rotation_zero_is_an_ordinary_convolution():
    layer = P4ConvZ2(2, 3, 3, padding=1)
    x = torch.randn(2, 2, 7, 7)
    torch.testing.assert_close(layer(x)[:, :, 0], F.conv2d(x, layer.weight, layer.bias, padding=1))


def test_shapes_and_parameter_counts():
    lift, group = P4ConvZ2(3, 5, 3), P4ConvP4(5, 4, 3, padding=1)
    x = torch.randn(2, 3, 8, 8)
    assert lift(x).shape == (2, 5, 4, 6, 6)
    assert group(lift(x)).shape == (2, 4, 4, 6, 6)
    # One stored filter per output channel, used in four orientations.
    assert sl.count_parameters(lift) == sl.count_parameters(nn.Conv2d(3, 5, 3))
    assert sl.count_parameters(group) == 4 * 5 * 4 * 3 * 3 + 4
    assert "kernel_size=3" in repr(group)


@pytest.mark.parametrize("layer", [P4ConvZ2(1, 2, 3), P4ConvP4(1, 2, 3)])
def test_gradients_are_correct(layer):
    layer = layer.double()
    shape = (1, 1, 5, 5) if isinstance(layer, P4ConvZ2) else (1, 1, 4, 5, 5)
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (x,))


def test_rotate_p4_has_order_four_and_checks_its_input():
    y = torch.randn(2, 3, 4, 5, 5)
    assert torch.equal(rotate_p4(rotate_p4(y, 3), 1), y)
    assert torch.equal(rotate_p4(y, 4), y)
    with pytest.raises(ValueError, match="features"):
        rotate_p4(torch.randn(2, 3, 5, 5))
    with pytest.raises(ValueError, match="images"):
        rotate(torch.randn(3))


@pytest.mark.parametrize("mode", ["max", "mean"])
def test_rotation_pooling_makes_maps_rotate_with_the_input(mode):
    lift, pool = double(P4ConvZ2(1, 3, 3, padding=1)), RotationPool(mode)
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(pool(lift(rotate(x))), rotate(pool(lift(x))), rtol=0, atol=1e-12)
    invariant = pool(lift(rotate(x))).mean(dim=(-2, -1))
    torch.testing.assert_close(invariant, pool(lift(x)).mean(dim=(-2, -1)), rtol=0, atol=1e-12)
    assert f"{mode!r}" in repr(pool)


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: P4ConvZ2(1, 2, 4), ValueError, "odd"),
        (lambda: P4ConvZ2(0, 2, 3), ValueError, "in_channels"),
        (lambda: P4ConvP4(1, 0, 3), ValueError, "out_channels"),
        (lambda: P4ConvZ2(1, 2, 3, padding=-1), ValueError, "padding"),
        (lambda: P4ConvZ2(1.0, 2, 3), TypeError, "in_channels"),
        (lambda: RotationPool("min"), ValueError, "mode"),
        (lambda: RotationPool(None), TypeError, "mode"),
    ],
)
def test_bad_arguments(build, error, message):
    with pytest.raises(error, match=message):
        build()


def test_bad_inputs():
    with pytest.raises(ValueError, match="input"):
        P4ConvZ2(2, 3, 3)(torch.randn(1, 1, 5, 5))
    with pytest.raises(ValueError, match="input"):
        P4ConvP4(2, 3, 3)(torch.randn(1, 2, 5, 5))
    with pytest.raises(ValueError, match="input"):
        P4ConvP4(2, 3, 3)(torch.randn(1, 2, 3, 5, 5))
    with pytest.raises(ValueError, match="input"):
        RotationPool()(torch.randn(1, 2, 5, 5))
