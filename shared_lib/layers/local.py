"""Convolution without sharing, and convolution written out as a dense layer (chapter 02).

:class:`LocallyConnected2d` has the receptive field of :class:`torch.nn.Conv2d` but one filter
per output position (no sharing across space), as in DeepFace. :func:`conv_as_dense` writes a
convolution as the matrix of an equivalent ``nn.Linear`` and says which kernel entry every
matrix entry uses. The ``*_parameter_count`` functions count the three layers from their
shapes alone, so that huge layers can be compared without allocating them.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from shared_lib._validation import check_bool, check_choice, check_int, describe

__all__ = [
    "LocallyConnected2d",
    "conv2d_parameter_count",
    "conv_as_dense",
    "conv_output_size",
    "linear_parameter_count",
    "locally_connected2d_parameter_count",
    "shift2d",
    "shift_equivariance_error",
]

_PADDING_MODES = ("zeros", "circular")


def _pair(value: int | tuple[int, int], argument: str, minimum: int = 1) -> tuple[int, int]:
    """``3`` → ``(3, 3)``; checks that both entries are ints ``>= minimum``.

    A pair-of-ints check (as ``nn.Conv2d`` takes its sizes), which ``_validation`` has not.
    """
    pair = (value, value) if isinstance(value, int) and not isinstance(value, bool) else value
    if (
        not isinstance(pair, (tuple, list))
        or len(pair) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in pair)
    ):
        raise TypeError(f"{argument} must be an int or a pair of ints, got {describe(value)}")
    if min(pair) < minimum:
        raise ValueError(f"{argument} must be >= {minimum}, got {value!r}")
    return int(pair[0]), int(pair[1])


def conv_output_size(
    input_size: int | tuple[int, int],
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
) -> tuple[int, int]:
    """Height and width of a 2-D convolution's output (the formula of ``nn.Conv2d``; ch. 02).

    Args:
        input_size: ``(height, width)`` of the input, or one int for a square input.
        kernel_size: window size, an int or ``(kh, kw)``.
        stride: step between windows.
        padding: pixels added on every side (``>= 0``).
        dilation: spacing between the taps of the kernel.

    Returns:
        ``(out_height, out_width)``, ``(n + 2·padding − dilation·(kernel − 1) − 1) // stride + 1``
        per axis.

    Raises:
        TypeError: an argument is not an int or a pair of ints.
        ValueError: an argument is below its minimum, or the kernel does not fit the input.

    Examples:
        >>> from shared_lib.layers.local import conv_output_size
        >>> conv_output_size((28, 28), 5)
        (24, 24)
        >>> conv_output_size(32, 3, stride=2, padding=1)
        (16, 16)
    """
    sizes = _pair(input_size, "input_size")
    kernels = _pair(kernel_size, "kernel_size")
    strides = _pair(stride, "stride")
    paddings = _pair(padding, "padding", minimum=0)
    dilations = _pair(dilation, "dilation")
    out = tuple(
        (n + 2 * p - d * (k - 1) - 1) // s + 1
        for n, k, s, p, d in zip(sizes, kernels, strides, paddings, dilations, strict=True)
    )
    if min(out) < 1:
        raise ValueError(
            f"kernel_size={kernel_size!r} (dilation {dilation!r}) does not fit input_size="
            f"{input_size!r} with padding={padding!r}: the output would be {out}"
        )
    return out  # type: ignore[return-value]


def conv2d_parameter_count(
    in_channels: int, out_channels: int, kernel_size: int | tuple[int, int], bias: bool = True
) -> int:
    """Parameters of ``nn.Conv2d``: one kernel for all positions, any image size (ch. 02).

    Args:
        in_channels: channels of the input.
        out_channels: channels of the output.
        kernel_size: window size, an int or ``(kh, kw)``.
        bias: count one bias per output channel.

    Returns:
        ``out_channels · in_channels · kh · kw`` (+ ``out_channels`` with a bias).

    Raises:
        TypeError: a size is not an int (or pair of ints), or ``bias`` is not a bool.
        ValueError: a size is below 1.

    Examples:
        >>> from shared_lib.layers.local import conv2d_parameter_count
        >>> conv2d_parameter_count(3, 16, 3)  # the same 448 for a 32×32 or a 1024×1024 image
        448
    """
    kh, kw = _pair(kernel_size, "kernel_size")
    in_channels = check_int(in_channels, "in_channels", minimum=1)
    out_channels = check_int(out_channels, "out_channels", minimum=1)
    check_bool(bias, "bias")
    return out_channels * in_channels * kh * kw + (out_channels if bias else 0)


def locally_connected2d_parameter_count(
    in_channels: int,
    out_channels: int,
    input_size: int | tuple[int, int],
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    bias: bool = True,
) -> int:
    """Parameters of :class:`LocallyConnected2d`: a kernel and bias per output position (ch. 02).

    Args:
        in_channels: channels of the input.
        out_channels: channels of the output (filters per position).
        input_size: ``(height, width)`` of the input, or one int for a square input.
        kernel_size: window size, an int or ``(kh, kw)``.
        stride: step between windows.
        padding: pixels added on every side.
        bias: count one bias per output channel and position.

    Returns:
        ``out_height · out_width`` times :func:`conv2d_parameter_count`.

    Raises:
        TypeError: a size is not an int (or pair of ints), or ``bias`` is not a bool.
        ValueError: a size is below its minimum, or the kernel does not fit the input.

    Examples:
        >>> from shared_lib.layers.local import (
        ...     conv2d_parameter_count, locally_connected2d_parameter_count)
        >>> locally_connected2d_parameter_count(3, 16, 32, 3, padding=1)  # 32·32 positions
        458752
        >>> 32 * 32 * conv2d_parameter_count(3, 16, 3)
        458752
    """
    check_bool(bias, "bias")
    oh, ow = conv_output_size(input_size, kernel_size, stride, padding)
    return oh * ow * conv2d_parameter_count(in_channels, out_channels, kernel_size, bias)


def linear_parameter_count(in_features: int, out_features: int, bias: bool = True) -> int:
    """Parameters of ``nn.Linear``: a weight per (input, output) pair, plus a bias (ch. 02).

    Args:
        in_features: size of each input sample.
        out_features: size of each output sample.
        bias: count one bias per output.

    Returns:
        ``in_features · out_features`` (+ ``out_features`` with a bias).

    Raises:
        TypeError: a size is not an int, or ``bias`` is not a bool.
        ValueError: a size is below 1.

    Examples:
        >>> from shared_lib.layers.local import linear_parameter_count
        >>> linear_parameter_count(3 * 32 * 32, 16 * 32 * 32)  # the dense twin of a 448-weight conv
        50348032
    """
    in_features = check_int(in_features, "in_features", minimum=1)
    out_features = check_int(out_features, "out_features", minimum=1)
    check_bool(bias, "bias")
    return in_features * out_features + (out_features if bias else 0)


class LocallyConnected2d(nn.Module):
    """A convolution without sharing across space: every output position has its own filter.

    Each output pixel ``(i, j)`` sees the same ``kernel_size`` window as in ``nn.Conv2d``, but
    through its own weights ``weight[i, j]`` (shape ``(out_channels, in_channels, kh, kw)``) and
    its own bias ``bias[:, i, j]``. The input size must therefore be fixed when the layer is
    built. Used in chapter 02 as the unshared twin of a convolution (and by DeepFace for aligned
    faces).

    Args:
        in_channels: channels of the input.
        out_channels: channels of the output (filters per position).
        input_size: ``(height, width)`` of the input, or one int for a square input.
        kernel_size: window size, an int or ``(kh, kw)``.
        stride: step between windows.
        padding: zeros (or wrapped values) added on every side.
        bias: learn one bias per output channel **and position**.
        padding_mode: ``"zeros"`` (as ``nn.Conv2d``'s default) or ``"circular"``.
        device: where to allocate the parameters.
        dtype: dtype of the parameters.

    Raises:
        TypeError: a size is not an int (or pair of ints), or ``bias`` is not a bool.
        ValueError: a size is below its minimum, ``padding_mode`` is unknown, or the kernel
            does not fit the input.

    Shape:
        - Input: ``(batch, in_channels, height, width)`` with ``(height, width) == input_size``.
        - Output: ``(batch, out_channels, out_height, out_width)``, where
          ``(out_height, out_width)`` is ``output_size`` (as :func:`conv_output_size`).

    Examples:
        The convolution it unties: the same output, a filter per position instead of one.

        >>> import torch
        >>> from torch import nn
        >>> from shared_lib.counting import count_parameters
        >>> from shared_lib.layers.local import LocallyConnected2d
        >>> conv = nn.Conv2d(2, 4, 3, padding=1)
        >>> local = LocallyConnected2d.from_conv(conv, input_size=(8, 8))
        >>> x = torch.randn(1, 2, 8, 8)
        >>> torch.allclose(local(x), conv(x), atol=1e-6)
        True
        >>> count_parameters(conv), count_parameters(local)  # 8·8 positions × 76
        (76, 4864)
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        input_size: int | tuple[int, int],
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        check_choice(padding_mode, "padding_mode", _PADDING_MODES)
        check_bool(bias, "bias")
        self.in_channels = check_int(in_channels, "in_channels", minimum=1)
        self.out_channels = check_int(out_channels, "out_channels", minimum=1)
        self.input_size = _pair(input_size, "input_size")
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride = _pair(stride, "stride")
        self.padding = _pair(padding, "padding", minimum=0)
        self.padding_mode = padding_mode
        self.output_size = conv_output_size(
            self.input_size, self.kernel_size, self.stride, self.padding
        )
        factory = {"device": device, "dtype": dtype}
        oh, ow = self.output_size
        self.weight = nn.Parameter(
            torch.empty(oh, ow, out_channels, in_channels, *self.kernel_size, **factory)
        )
        if bias:
            self.bias = nn.Parameter(torch.empty(out_channels, oh, ow, **factory))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise every position's filter as ``nn.Conv2d`` initialises its one filter:
        uniform in ``±1/sqrt(fan_in)``, independently per position."""
        fan_in = self.in_channels * self.kernel_size[0] * self.kernel_size[1]
        bound = 1.0 / math.sqrt(fan_in)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, input_size: int | tuple[int, int]) -> LocallyConnected2d:
        """A locally connected layer whose filter at every position is a copy of ``conv``'s:
        the same function as ``conv`` on inputs of ``input_size``, with the tie cut.

        Args:
            conv: an ``nn.Conv2d`` with ``groups=1``, ``dilation=1``, numeric padding and
                padding mode ``"zeros"`` or ``"circular"``.
            input_size: ``(height, width)`` of the inputs, or one int for a square input.

        Returns:
            A new layer on ``conv``'s device and dtype; later changes to either do not reach
            the other.

        Raises:
            TypeError: ``conv`` is not an ``nn.Conv2d``.
            ValueError: ``conv`` has groups, dilation, string padding or another padding mode.
        """
        if not isinstance(conv, nn.Conv2d):
            raise TypeError(f"conv must be an nn.Conv2d, got {describe(conv)}")
        if conv.groups != 1 or conv.dilation != (1, 1) or isinstance(conv.padding, str):
            raise ValueError(
                "conv must have groups=1, dilation=1 and numeric padding, got "
                f"groups={conv.groups}, dilation={conv.dilation}, padding={conv.padding!r}"
            )
        check_choice(conv.padding_mode, "conv.padding_mode", _PADDING_MODES)
        layer = cls(
            conv.in_channels,
            conv.out_channels,
            input_size,
            conv.kernel_size,  # type: ignore[arg-type]
            conv.stride,  # type: ignore[arg-type]
            conv.padding,  # type: ignore[arg-type]
            bias=conv.bias is not None,
            padding_mode=conv.padding_mode,
            device=conv.weight.device,
            dtype=conv.weight.dtype,
        )
        with torch.no_grad():
            layer.weight.copy_(conv.weight.expand_as(layer.weight))
            if conv.bias is not None:
                layer.bias.copy_(conv.bias[:, None, None].expand_as(layer.bias))
        return layer

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """Apply every position's own filter to its window (see Shape above)."""
        if input.dim() != 4:
            raise ValueError(
                f"input must be 4-D (batch, channels, height, width), got {tuple(input.shape)}"
            )
        if input.shape[1] != self.in_channels or tuple(input.shape[2:]) != self.input_size:
            raise ValueError(
                f"input must have shape (N, {self.in_channels}, {self.input_size[0]}, "
                f"{self.input_size[1]}) for this layer, got {tuple(input.shape)}"
            )
        padding = self.padding
        if self.padding_mode == "circular" and any(padding):
            ph, pw = padding
            input = F.pad(input, (pw, pw, ph, ph), mode="circular")
            padding = (0, 0)
        # patches: (N, C·kh·kw, L) — the window of every output position, as a column.
        patches = F.unfold(input, self.kernel_size, padding=padding, stride=self.stride)
        oh, ow = self.output_size
        weight = self.weight.reshape(oh * ow, self.out_channels, -1)  # (L, O, C·kh·kw)
        # One small matrix product per position l, with a different filter at each: batch over
        # l. Contiguous operands keep bmm from copying every batch entry separately.
        output = torch.bmm(
            patches.permute(2, 0, 1).contiguous(), weight.transpose(1, 2).contiguous()
        )  # (L, N, O)
        output = output.permute(1, 2, 0).reshape(input.shape[0], self.out_channels, oh, ow)
        if self.bias is not None:
            output = output + self.bias
        return output

    def extra_repr(self) -> str:
        text = (
            f"{self.in_channels}, {self.out_channels}, input_size={self.input_size}, "
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
            f"output_size={self.output_size}"
        )
        if self.bias is None:
            text += ", bias=False"
        if self.padding_mode != "zeros":
            text += f", padding_mode={self.padding_mode!r}"
        return text


def _conv_padding(conv: nn.Conv2d) -> tuple[int, int]:
    """Top and left padding of ``conv`` (``padding="same"`` puts any odd extra on the far side)."""
    if conv.padding == "valid":
        return 0, 0
    if conv.padding == "same":
        return tuple(d * (k - 1) // 2 for d, k in zip(conv.dilation, conv.kernel_size, strict=True))  # type: ignore[return-value]
    return conv.padding  # type: ignore[return-value]


def conv_as_dense(
    conv: nn.Conv2d, input_shape: tuple[int, int, int], max_entries: int = 4_000_000
) -> tuple[torch.Tensor, torch.Tensor]:
    """The matrix of the linear map a convolution computes, and which kernel entry each uses.

    ``matrix @ x.flatten() + bias_per_row`` equals ``conv(x).flatten()`` for an input ``x`` of
    shape ``input_shape = (C, H, W)``; the bias (``conv.bias`` repeated over positions) is not
    part of the matrix. ``index_map`` has the matrix's shape and holds, for every entry, the
    flat index into ``conv.weight`` of the kernel entry it uses, or ``-1`` for a structural zero
    (an input pixel outside that output's window). Chapter 02: convolution is a dense layer
    whose weights are tied and mostly zero.

    Args:
        conv: an ``nn.Conv2d`` with ``groups=1`` and padding mode ``"zeros"`` or ``"circular"``.
        input_shape: ``(channels, height, width)`` of one input.
        max_entries: refuse to build a matrix larger than this (it grows as the image squared).

    Returns:
        ``(matrix, index_map)``, both of shape ``(out_channels·H_out·W_out, C·H·W)``; the matrix
        has ``conv.weight``'s dtype and device, the map is ``int64``.

    Raises:
        TypeError: ``conv`` is not an ``nn.Conv2d``, or ``input_shape`` is not a tuple of ints.
        ValueError: ``conv`` has groups or another padding mode; ``input_shape`` is not three
            positive sizes or has the wrong channels; the matrix would exceed ``max_entries``;
            a circular kernel would wrap onto the same pixel twice.

    Examples:
        A 3×3 convolution on a 4×4 image is a 16×16 matrix with 100 non-zero entries, all
        copies of the kernel's 9 weights.

        >>> import torch
        >>> from torch import nn
        >>> from shared_lib.layers.local import conv_as_dense
        >>> conv = nn.Conv2d(1, 1, 3, padding=1, bias=False)
        >>> matrix, index_map = conv_as_dense(conv, (1, 4, 4))
        >>> x = torch.randn(1, 1, 4, 4)
        >>> matrix.shape, torch.allclose(matrix @ x.flatten(), conv(x).flatten(), atol=1e-6)
        (torch.Size([16, 16]), True)
        >>> int((index_map >= 0).sum()), int(index_map.max()) + 1
        (100, 9)
    """
    if not isinstance(conv, nn.Conv2d):
        raise TypeError(f"conv must be an nn.Conv2d, got {describe(conv)}")
    if conv.groups != 1:
        raise ValueError(f"conv must have groups=1, got groups={conv.groups}")
    check_choice(conv.padding_mode, "conv.padding_mode", _PADDING_MODES)
    if not isinstance(input_shape, (tuple, list, torch.Size)):
        raise TypeError(
            f"input_shape must be a tuple (channels, height, width), got {describe(input_shape)}"
        )
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (channels, height, width), got {input_shape!r}")
    for size in input_shape:
        check_int(size, "every entry of input_shape (channels, height, width)", minimum=1)
    channels, height, width = input_shape
    if channels != conv.in_channels:
        raise ValueError(
            f"input_shape has {channels} channels but conv expects in_channels={conv.in_channels}"
        )
    kh, kw = conv.kernel_size
    sh, sw = conv.stride
    dh, dw = conv.dilation
    ph, pw = _conv_padding(conv)
    if conv.padding == "same":  # the output keeps the input size (stride is 1 for "same")
        oh, ow = height, width
    else:
        oh, ow = conv_output_size(
            (height, width), conv.kernel_size, conv.stride, (ph, pw), conv.dilation
        )
    rows, cols = conv.out_channels * oh * ow, channels * height * width
    if rows * cols > max_entries:
        raise ValueError(
            f"the dense matrix would have {rows}×{cols} = {rows * cols:,} entries, more than "
            f"max_entries={max_entries:,}; use a smaller input_shape"
        )
    circular = conv.padding_mode == "circular"
    if circular and (dh * (kh - 1) >= height or dw * (kw - 1) >= width):
        raise ValueError(
            f"a {kh}×{kw} kernel (dilation {conv.dilation}) wraps onto the same pixel twice on a "
            f"{height}×{width} input with circular padding; use a larger input_shape"
        )
    # Every (output position, kernel tap) pair: which input pixel it reads.
    out_y = torch.arange(oh)[:, None, None, None]
    out_x = torch.arange(ow)[None, :, None, None]
    tap_y = torch.arange(kh)[None, None, :, None]
    tap_x = torch.arange(kw)[None, None, None, :]
    in_y = (out_y * sh - ph + tap_y * dh).expand(oh, ow, kh, kw)
    in_x = (out_x * sw - pw + tap_x * dw).expand(oh, ow, kh, kw)
    if circular:
        in_y, in_x = in_y % height, in_x % width
        inside = torch.ones_like(in_y, dtype=torch.bool)
    else:
        inside = (in_y >= 0) & (in_y < height) & (in_x >= 0) & (in_x < width)
    index_map = torch.full((rows, cols), -1, dtype=torch.int64)
    position = (out_y * ow + out_x).expand(oh, ow, kh, kw)
    tap = (tap_y * kw + tap_x).expand(oh, ow, kh, kw)
    pixel = in_y * width + in_x
    position, tap, pixel = position[inside], tap[inside], pixel[inside]
    for o in range(conv.out_channels):
        for c in range(channels):
            kernel_index = (o * channels + c) * kh * kw + tap
            index_map[o * oh * ow + position, c * height * width + pixel] = kernel_index
    structural = index_map < 0
    flat_weight = conv.weight.detach().reshape(-1)
    matrix = flat_weight[index_map.clamp(min=0).to(flat_weight.device)]
    matrix = matrix.masked_fill(structural.to(flat_weight.device), 0.0)
    return matrix, index_map


def shift2d(images: torch.Tensor, dy: int, dx: int, mode: str = "zeros") -> torch.Tensor:
    """Shift images down by ``dy`` and right by ``dx`` pixels (negative: up, left) (ch. 02).

    ``mode="zeros"`` fills the vacated pixels with zeros and drops what leaves the frame;
    ``mode="circular"`` wraps around (``torch.roll``).

    Args:
        images: a tensor ``(..., height, width)``.
        dy: rows to shift down (negative: up).
        dx: columns to shift right (negative: left).
        mode: ``"zeros"`` or ``"circular"``.

    Returns:
        A new tensor of the shape of ``images``.

    Raises:
        TypeError: ``mode`` is not a string.
        ValueError: ``mode`` is unknown, or ``images`` has fewer than 2 dimensions.

    Examples:
        >>> import torch
        >>> from shared_lib.layers.local import shift2d
        >>> x = torch.arange(9.0).reshape(3, 3)
        >>> shift2d(x, 1, 0)
        tensor([[0., 0., 0.],
                [0., 1., 2.],
                [3., 4., 5.]])
        >>> shift2d(x, 0, 1, mode="circular")
        tensor([[2., 0., 1.],
                [5., 3., 4.],
                [8., 6., 7.]])
    """
    check_choice(mode, "mode", _PADDING_MODES)
    if images.dim() < 2:
        raise ValueError(f"images must have at least 2 dims (…, H, W), got {tuple(images.shape)}")
    if mode == "circular":
        return torch.roll(images, (dy, dx), dims=(-2, -1))
    height, width = images.shape[-2:]
    shifted = torch.zeros_like(images)
    if abs(dy) >= height or abs(dx) >= width:
        return shifted
    shifted[..., max(dy, 0) : height + min(dy, 0), max(dx, 0) : width + min(dx, 0)] = images[
        ..., max(-dy, 0) : height + min(-dy, 0), max(-dx, 0) : width + min(-dx, 0)
    ]
    return shifted


def shift_equivariance_error(
    layer: nn.Module,
    images: torch.Tensor,
    dy: int,
    dx: int,
    mode: str = "zeros",
    margin: int = 1,
) -> tuple[float, float | None]:
    """How far ``layer`` is from commuting with a shift: ``layer(shift(x))`` vs ``shift(layer(x))``.

    Returns the largest absolute difference relative to the largest ``|layer(x)|``, separately
    for the **interior** and the **border** (chapter 02). With ``mode="zeros"`` the content that
    leaves the frame is lost and new zeros come in, so even a convolution cannot commute with
    the shift near the edges: the interior is the region at least ``margin`` pixels (the
    receptive-field radius) away from both the frame and the vacated band. With
    ``mode="circular"`` nothing is lost, the whole map is interior and the border is ``None``.
    ``layer`` must keep the spatial size (stride 1, "same" padding).

    Args:
        layer: the module to test, applied to ``images`` as a batch.
        images: a batch ``(batch, channels, height, width)``.
        dy: rows to shift down (negative: up).
        dx: columns to shift right (negative: left).
        mode: ``"zeros"`` or ``"circular"``, as in :func:`shift2d`.
        margin: width of the band next to the frame and the vacated pixels that counts as
            border (``mode="zeros"`` only).

    Returns:
        ``(interior, border)``: the largest relative differences; ``border`` is ``None`` for
        ``mode="circular"`` or when there is no border.

    Raises:
        TypeError: ``mode`` is not a string.
        ValueError: ``mode`` is unknown, ``layer`` changes the spatial size, or the shift and
            the margin leave no interior.

    Examples:
        A shared (convolutional) filter commutes with the shift; one filter per position does
        not.

        >>> import torch
        >>> from torch import nn
        >>> from shared_lib.layers.local import LocallyConnected2d, shift_equivariance_error
        >>> _ = torch.manual_seed(0)
        >>> x = torch.randn(1, 1, 8, 8)
        >>> conv = nn.Conv2d(1, 2, 3, padding=1, padding_mode="circular")
        >>> interior, border = shift_equivariance_error(conv, x, 1, 2, mode="circular")
        >>> interior < 1e-6, border
        (True, None)
        >>> local = LocallyConnected2d(1, 2, 8, 3, padding=1, padding_mode="circular")
        >>> shift_equivariance_error(local, x, 1, 2, mode="circular")[0] > 0.5
        True
    """
    with torch.no_grad():
        output = layer(images)
        if output.shape[-2:] != images.shape[-2:]:
            raise ValueError(
                f"layer must keep the spatial size, got {tuple(images.shape[-2:])} -> "
                f"{tuple(output.shape[-2:])}"
            )
        difference = (layer(shift2d(images, dy, dx, mode)) - shift2d(output, dy, dx, mode)).abs()
    scale = output.abs().max().item() or 1.0
    if mode == "circular":
        return difference.max().item() / scale, None
    height, width = images.shape[-2:]
    inside = torch.zeros(height, width, dtype=torch.bool)
    rows = slice(margin + max(dy, 0), height - margin - max(-dy, 0))
    cols = slice(margin + max(dx, 0), width - margin - max(-dx, 0))
    inside[rows, cols] = True
    if not inside.any():
        raise ValueError(f"no interior left: shift ({dy}, {dx}) with margin {margin} is too large")
    interior = difference[..., inside].max().item() / scale
    border = difference[..., ~inside].max().item() / scale if (~inside).any() else None
    return interior, border
