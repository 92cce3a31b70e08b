"""Tests of shared_lib.layers.local: LocallyConnected2d against a naive loop, conv_as_dense
against the convolution, parameter-count formulas against real (and meta-device) modules."""

from __future__ import annotations

import itertools

import matplotlib
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from shared_lib.counting import count_parameters
from shared_lib.layers.local import (
    LocallyConnected2d,
    conv2d_parameter_count,
    conv_as_dense,
    conv_output_size,
    linear_parameter_count,
    locally_connected2d_parameter_count,
    shift2d,
    shift_equivariance_error,
)

matplotlib.use("Agg")


# --------------------------------------------------------------------------------------------
# Independent references, written as plainly as possible.
# --------------------------------------------------------------------------------------------


def naive_locally_connected(layer: LocallyConnected2d, x: torch.Tensor) -> torch.Tensor:
    """Every output value as an explicit sum over its window, with that position's own filter."""
    ph, pw = layer.padding
    mode = "circular" if layer.padding_mode == "circular" else "constant"
    padded = F.pad(x, (pw, pw, ph, ph), mode=mode) if ph or pw else x
    (kh, kw), (sh, sw), (oh, ow) = layer.kernel_size, layer.stride, layer.output_size
    out = torch.zeros(x.shape[0], layer.out_channels, oh, ow, dtype=x.dtype)
    for n, o, i, j in itertools.product(range(x.shape[0]), range(layer.out_channels),
                                        range(oh), range(ow)):  # fmt: skip
        total = 0.0
        for c, a, b in itertools.product(range(layer.in_channels), range(kh), range(kw)):
            total += layer.weight[i, j, o, c, a, b].item() * padded[n, c, i * sh + a, j * sw + b]
        if layer.bias is not None:
            total += layer.bias[o, i, j].item()
        out[n, o, i, j] = total
    return out


def naive_index_map(conv: nn.Conv2d, shape: tuple[int, int, int]) -> torch.Tensor:
    """Which kernel entry every dense-matrix entry uses, by looping over outputs and taps."""
    channels, height, width = shape
    (kh, kw), (sh, sw), (dh, dw), (ph, pw) = (conv.kernel_size, conv.stride, conv.dilation,
                                              conv.padding)  # fmt: skip
    oh = (height + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (width + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    index = torch.full((conv.out_channels * oh * ow, channels * height * width), -1)
    for o, i, j, c, a, b in itertools.product(range(conv.out_channels), range(oh), range(ow),
                                              range(channels), range(kh), range(kw)):  # fmt: skip
        y, x = i * sh - ph + a * dh, j * sw - pw + b * dw
        if conv.padding_mode == "circular":
            y, x = y % height, x % width
        elif not (0 <= y < height and 0 <= x < width):
            continue
        row = (o * oh + i) * ow + j
        col = (c * height + y) * width + x
        index[row, col] = ((o * channels + c) * kh + a) * kw + b
    return index


# --------------------------------------------------------------------------------------------
# LocallyConnected2d
# --------------------------------------------------------------------------------------------

LC_CONFIGS = [
    dict(in_channels=2, out_channels=3, input_size=5, kernel_size=3),
    dict(in_channels=1, out_channels=2, input_size=(6, 5), kernel_size=(3, 2), stride=2),
    dict(in_channels=2, out_channels=2, input_size=(4, 6), kernel_size=3, padding=1, bias=False),
    dict(in_channels=1, out_channels=2, input_size=5, kernel_size=3, padding=(2, 1), stride=(1, 2)),
    dict(in_channels=2, out_channels=1, input_size=5, kernel_size=3, padding=1,
         padding_mode="circular"),
]  # fmt: skip


@pytest.mark.parametrize("config", LC_CONFIGS, ids=lambda c: str(sorted(c.items())))
def test_locally_connected_matches_naive_loop(config):
    torch.manual_seed(0)
    layer = LocallyConnected2d(**config).double()
    size = layer.input_size
    x = torch.randn(2, layer.in_channels, *size, dtype=torch.float64)
    expected = naive_locally_connected(layer, x)
    output = layer(x)
    assert output.shape == (2, layer.out_channels, *layer.output_size)
    torch.testing.assert_close(output, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("config", LC_CONFIGS, ids=lambda c: str(sorted(c.items())))
def test_parameter_count_formula_matches_module(config):
    layer = LocallyConnected2d(**config)
    keys = ("in_channels", "out_channels", "input_size", "kernel_size", "stride", "padding", "bias")
    formula = locally_connected2d_parameter_count(**{k: v for k, v in config.items() if k in keys})
    assert count_parameters(layer) == formula
    oh, ow = layer.output_size
    per_position = conv2d_parameter_count(
        layer.in_channels, layer.out_channels, layer.kernel_size, layer.bias is not None
    )
    assert formula == oh * ow * per_position


def test_count_formulas_against_torch_modules_and_reference_figure():
    for c_in, c_out, k, bias in [(64, 64, 3, True), (3, 8, (5, 3), False), (1, 1, 1, True)]:
        assert conv2d_parameter_count(c_in, c_out, k, bias) == count_parameters(
            nn.Conv2d(c_in, c_out, k, bias=bias)
        )
    assert conv2d_parameter_count(64, 64, 3) == 36_928  # REFERENCES.md
    assert linear_parameter_count(10, 7) == count_parameters(nn.Linear(10, 7))
    assert linear_parameter_count(10, 7, bias=False) == 70
    with torch.device("meta"):  # the chapter's big layers, counted without memory
        big = LocallyConnected2d(64, 64, 32, 3)
        dense = nn.Linear(64 * 32 * 32, 64 * 30 * 30)
    assert count_parameters(big) == locally_connected2d_parameter_count(64, 64, 32, 3)
    assert count_parameters(big) == 900 * 36_928
    assert count_parameters(dense) == linear_parameter_count(64 * 32 * 32, 64 * 30 * 30)


def test_conv_output_size_matches_torch():
    for size, k, s, p, d in [(32, 3, 1, 0, 1), (7, 3, 2, 1, 1), ((9, 6), (3, 2), (2, 1), 1, 2)]:
        conv = nn.Conv2d(1, 1, k, stride=s, padding=p, dilation=d)
        shape = (size, size) if isinstance(size, int) else size
        expected = conv(torch.zeros(1, 1, *shape)).shape[-2:]
        assert conv_output_size(size, k, s, p, d) == tuple(expected)
    with pytest.raises(ValueError, match="does not fit"):
        conv_output_size(2, 3)


@pytest.mark.parametrize("padding_mode", ["zeros", "circular"])
def test_from_conv_computes_the_convolution(padding_mode):
    torch.manual_seed(1)
    conv = nn.Conv2d(3, 4, 3, stride=2, padding=1, padding_mode=padding_mode).double()
    layer = LocallyConnected2d.from_conv(conv, (9, 8))
    x = torch.randn(2, 3, 9, 8, dtype=torch.float64)
    torch.testing.assert_close(layer(x), conv(x), rtol=0, atol=1e-12)
    assert layer.weight.dtype == torch.float64
    # The copies are independent tensors: changing one position leaves the conv untouched.
    with torch.no_grad():
        layer.weight[0, 0].zero_()
    assert conv.weight.abs().sum() > 0


def test_from_conv_rejects_what_it_cannot_copy():
    with pytest.raises(TypeError, match=r"nn\.Conv2d"):
        LocallyConnected2d.from_conv(nn.Linear(2, 2), 5)
    with pytest.raises(ValueError, match="groups"):
        LocallyConnected2d.from_conv(nn.Conv2d(2, 2, 3, groups=2), 5)
    with pytest.raises(ValueError, match="padding_mode"):
        LocallyConnected2d.from_conv(nn.Conv2d(1, 1, 3, padding=1, padding_mode="reflect"), 5)


def test_reset_parameters_is_per_position_and_bounded_like_conv():
    torch.manual_seed(2)
    layer = LocallyConnected2d(4, 3, 6, 3)
    bound = 1 / (4 * 9) ** 0.5
    assert layer.weight.abs().max() <= bound and layer.bias.abs().max() <= bound
    assert not torch.equal(layer.weight[0, 0], layer.weight[1, 1])  # independent filters
    before = layer.weight.detach().clone()
    layer.reset_parameters()
    assert not torch.equal(before, layer.weight)


def test_each_position_gets_its_own_gradient():
    layer = LocallyConnected2d(1, 2, 6, 3)
    x = torch.zeros(1, 1, 6, 6)
    x[..., :3, :3] = 1.0  # ink only under the window of output position (0, 0)
    layer(x).sum().backward()
    grad = layer.weight.grad.abs().sum(dim=(2, 3, 4, 5))  # (4, 4): per position
    assert grad[0, 0] > 0
    assert grad[3, 3] == 0  # that window saw only zeros: no gradient reaches its filter


def test_shape_and_argument_errors_are_clear():
    layer = LocallyConnected2d(2, 3, (5, 6), 3)
    with pytest.raises(ValueError, match=r"input must have shape \(N, 2, 5, 6\)"):
        layer(torch.zeros(1, 2, 6, 5))
    with pytest.raises(ValueError, match="input must have shape"):
        layer(torch.zeros(1, 1, 5, 6))
    with pytest.raises(ValueError, match="4-D"):
        layer(torch.zeros(2, 5, 6))
    with pytest.raises(ValueError, match="padding_mode"):
        LocallyConnected2d(1, 1, 5, 3, padding_mode="reflect")
    with pytest.raises(ValueError, match="does not fit"):
        LocallyConnected2d(1, 1, 2, 3)
    with pytest.raises(ValueError, match="padding"):
        LocallyConnected2d(1, 1, 5, 3, padding=-1)
    with pytest.raises(TypeError, match="kernel_size"):
        LocallyConnected2d(1, 1, 5, 2.5)
    with pytest.raises(TypeError, match="in_channels"):
        LocallyConnected2d(1.0, 1, 5, 3)
    with pytest.raises(ValueError, match="out_channels"):
        LocallyConnected2d(1, 0, 5, 3)


def test_extra_repr_names_the_shape():
    text = repr(LocallyConnected2d(2, 3, 5, 3, padding=1, bias=False, padding_mode="circular"))
    for piece in ("2, 3", "input_size=(5, 5)", "kernel_size=(3, 3)", "output_size=(5, 5)",
                  "bias=False", "padding_mode='circular'"):  # fmt: skip
        assert piece in text


# --------------------------------------------------------------------------------------------
# conv_as_dense
# --------------------------------------------------------------------------------------------

CONV_CONFIGS = [
    dict(in_channels=1, out_channels=1, kernel_size=3, padding=1),
    dict(in_channels=2, out_channels=3, kernel_size=3),
    dict(in_channels=2, out_channels=2, kernel_size=(3, 2), stride=2, padding=1),
    dict(in_channels=1, out_channels=2, kernel_size=3, dilation=2, padding=2),
    dict(in_channels=2, out_channels=1, kernel_size=3, padding=1, padding_mode="circular"),
    dict(in_channels=1, out_channels=2, kernel_size=3, padding="valid"),
]


@pytest.mark.parametrize("config", CONV_CONFIGS, ids=lambda c: str(sorted(c.items())))
def test_conv_as_dense_reproduces_the_convolution(config):
    torch.manual_seed(3)
    conv = nn.Conv2d(**config).double()
    shape = (conv.in_channels, 6, 5)
    matrix, index_map = conv_as_dense(conv, shape)
    x = torch.randn(3, *shape, dtype=torch.float64)
    y = conv(x)
    bias = conv.bias.repeat_interleave(y[0, 0].numel())
    dense = x.flatten(1) @ matrix.T + bias
    torch.testing.assert_close(dense, y.flatten(1), rtol=0, atol=1e-13)
    # The map says exactly which kernel weight each entry is, and nothing else is non-zero.
    used = index_map >= 0
    torch.testing.assert_close(matrix[used], conv.weight.detach().flatten()[index_map[used]])
    assert (matrix[~used] == 0).all()


@pytest.mark.parametrize("config", CONV_CONFIGS[:5], ids=lambda c: str(sorted(c.items())))
def test_index_map_matches_a_naive_loop(config):
    conv = nn.Conv2d(**config)
    shape = (conv.in_channels, 6, 5)
    _, index_map = conv_as_dense(conv, shape)
    assert torch.equal(index_map, naive_index_map(conv, shape))


def test_conv_as_dense_same_padding_with_even_kernel():
    torch.manual_seed(4)
    conv = nn.Conv2d(1, 1, 4, padding="same").double()
    matrix, _ = conv_as_dense(conv, (1, 5, 6))
    x = torch.randn(1, 1, 5, 6, dtype=torch.float64)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns that "same" with an even kernel copies
        y = conv(x)
    torch.testing.assert_close(matrix @ x.flatten() + conv.bias, y.flatten(), rtol=0, atol=1e-13)


def test_conv_as_dense_counts_the_sharing():
    conv = nn.Conv2d(1, 1, 3, padding=1)
    _, index_map = conv_as_dense(conv, (1, 5, 5))
    used = index_map >= 0
    assert index_map.shape == (25, 25)
    assert used.sum() == 13 * 13  # per axis: 2 + 3 + 3 + 3 + 2 in-bounds taps
    assert torch.bincount(index_map[used]).tolist() == [16, 20, 16, 20, 25, 20, 16, 20, 16]


def test_conv_as_dense_errors():
    with pytest.raises(TypeError, match=r"nn\.Conv2d"):
        conv_as_dense(nn.Linear(2, 2), (1, 3, 3))
    with pytest.raises(ValueError, match="groups"):
        conv_as_dense(nn.Conv2d(2, 2, 3, groups=2), (2, 5, 5))
    with pytest.raises(ValueError, match="in_channels=2"):
        conv_as_dense(nn.Conv2d(2, 2, 3), (1, 5, 5))
    with pytest.raises(ValueError, match="input_shape"):
        conv_as_dense(nn.Conv2d(1, 1, 3), (5, 5))
    with pytest.raises(ValueError, match="input_shape"):
        conv_as_dense(nn.Conv2d(1, 1, 3), (1, 0, 5))
    with pytest.raises(TypeError, match="input_shape"):
        conv_as_dense(nn.Conv2d(1, 1, 3), (1, 5.0, 5))
    with pytest.raises(TypeError, match="input_shape"):
        conv_as_dense(nn.Conv2d(1, 1, 3), "1x5x5")
    with pytest.raises(ValueError, match="max_entries"):
        conv_as_dense(nn.Conv2d(1, 1, 3, padding=1), (1, 64, 64))
    with pytest.raises(ValueError, match="padding_mode"):
        conv_as_dense(nn.Conv2d(1, 1, 3, padding=1, padding_mode="reflect"), (1, 5, 5))
    with pytest.raises(ValueError, match="same pixel twice"):
        conv_as_dense(nn.Conv2d(1, 1, 3, padding=1, padding_mode="circular"), (1, 2, 5))


# --------------------------------------------------------------------------------------------
# Shifts and equivariance
# --------------------------------------------------------------------------------------------


def test_shift2d():
    x = torch.arange(12.0).reshape(1, 3, 4)
    shifted = shift2d(x, 1, -1)
    expected = torch.tensor([[[0.0, 0, 0, 0], [1, 2, 3, 0], [5, 6, 7, 0]]])
    assert torch.equal(shifted, expected)
    assert torch.equal(shift2d(x, 1, -1, mode="circular"), torch.roll(x, (1, -1), (-2, -1)))
    assert torch.equal(shift2d(x, 3, 0), torch.zeros_like(x))
    assert torch.equal(shift2d(x, 0, 0), x)
    with pytest.raises(ValueError, match="mode"):
        shift2d(x, 1, 1, mode="reflect")
    with pytest.raises(TypeError, match="mode"):
        shift2d(x, 1, 1, mode=None)


def test_shift_equivariance_error_separates_conv_from_locally_connected():
    torch.manual_seed(5)
    x = torch.randn(2, 1, 12, 12)
    circular = nn.Conv2d(1, 3, 3, padding=1, padding_mode="circular")
    interior, border = shift_equivariance_error(circular, x, 2, -3, mode="circular")
    assert interior < 1e-5 and border is None
    zeros = nn.Conv2d(1, 3, 3, padding=1)
    interior, border = shift_equivariance_error(zeros, x, 2, -3, mode="zeros")
    assert interior < 1e-5 and border > 0.05  # content left the frame: the border differs
    local = LocallyConnected2d(1, 3, 12, 3, padding=1)
    interior, _ = shift_equivariance_error(local, x, 2, -3, mode="zeros")
    assert interior > 0.3
    with pytest.raises(ValueError, match="spatial size"):
        shift_equivariance_error(nn.Conv2d(1, 1, 3), x, 1, 1)
    with pytest.raises(ValueError, match="no interior"):
        shift_equivariance_error(zeros, x, 11, 0)
