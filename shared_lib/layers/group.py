"""Sharing across rotations: p4 group convolutions (chapter 06).

After Cohen & Welling (2016), "Group Equivariant Convolutional Networks". A p4 layer shares one
filter across its four 90° rotations, so its output carries a rotation axis of size 4:
``(batch, channels, 4, height, width)``. Rotating the input by 90° rotates every output map and
shifts the rotation axis cyclically by one (:func:`rotate_p4`); pooling over that axis gives
features that rotate with the input and do not change otherwise.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from shared_lib._validation import check_choice, check_int

__all__ = ["P4ConvP4", "P4ConvZ2", "RotationPool", "rotate", "rotate_p4"]


def rotate(images: torch.Tensor, k: int = 1) -> torch.Tensor:
    """Rotate the last two (spatial) dimensions by ``k`` × 90° counter-clockwise (ch. 06).

    Args:
        images: a tensor ``(..., height, width)``.
        k: number of quarter turns; negative turns clockwise.

    Returns:
        The rotated tensor, ``(..., width, height)``.

    Raises:
        ValueError: ``images`` has fewer than two dimensions.

    Examples:
        >>> import torch
        >>> from shared_lib.layers.group import rotate
        >>> rotate(torch.tensor([[1, 2], [3, 4]]))
        tensor([[2, 4],
                [1, 3]])
    """
    if images.dim() < 2:
        raise ValueError(f"images must have two spatial dimensions, got {tuple(images.shape)}")
    return torch.rot90(images, k, dims=(-2, -1))


def rotate_p4(features: torch.Tensor, k: int = 1) -> torch.Tensor:
    """How a p4 feature map ``(batch, channels, 4, H, W)`` transforms when the input rotates by
    ``k`` × 90°: every map rotates and the rotation axis shifts cyclically by ``k`` (ch. 06).

    Args:
        features: a p4 feature map ``(batch, channels, 4, height, width)``.
        k: number of quarter turns of the input.

    Returns:
        The transformed map, of the same shape for square maps.

    Raises:
        ValueError: ``features`` is not 5-D with a rotation axis of size 4.

    Examples:
        >>> import torch
        >>> from shared_lib.layers.group import rotate_p4
        >>> rotate_p4(torch.arange(4.0).view(1, 1, 4, 1, 1)).flatten()  # the axis shifts by one
        tensor([3., 0., 1., 2.])
    """
    if features.dim() != 5 or features.shape[2] != 4:
        raise ValueError(
            f"features must be (batch, channels, 4, height, width), got {tuple(features.shape)}"
        )
    return rotate(torch.roll(features, shifts=k, dims=2), k)


class _P4Conv(nn.Module):
    """Shared argument checks and initialisation of the two p4 layers."""

    input_rotations = 1

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        padding: int = 0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.in_channels = check_int(in_channels, "in_channels", 1)
        self.out_channels = check_int(out_channels, "out_channels", 1)
        self.kernel_size = check_int(kernel_size, "kernel_size", 1)
        if kernel_size % 2 == 0:
            raise ValueError(
                f"kernel_size must be odd, so that a filter and its rotations share a centre; "
                f"got {kernel_size}"
            )
        self.padding = check_int(padding, "padding", 0)
        rotations = (self.input_rotations,) if self.input_rotations > 1 else ()
        self.weight = nn.Parameter(
            torch.empty(out_channels, in_channels, *rotations, kernel_size, kernel_size)
        )
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming-uniform, as :class:`torch.nn.Conv2d`, with fan-in counted over rotations."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.in_channels * self.input_rotations * self.kernel_size**2
            bound = 1 / math.sqrt(fan_in)
            nn.init.uniform_(self.bias, -bound, bound)

    def _filters(self) -> torch.Tensor:  # (out * 4, in * input_rotations, k, k)
        raise NotImplementedError

    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._check_input(x)
        out = F.conv2d(x, self._filters(), padding=self.padding)
        out = out.view(x.shape[0], self.out_channels, 4, *out.shape[-2:])
        if self.bias is not None:  # one bias per filter, shared by its four rotations
            out = out + self.bias.view(1, -1, 1, 1, 1)
        return out

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"padding={self.padding}, bias={self.bias is not None}"
        )


class P4ConvZ2(_P4Conv):
    """Lifting p4 convolution: images ``(B, in, H, W)`` → p4 maps ``(B, out, 4, H', W')``.

    Output rotation ``r`` correlates the input with the filter rotated by ``r`` × 90°: one
    stored filter, four uses. It stores exactly as many parameters as
    ``nn.Conv2d(in, out, kernel_size)`` while producing four times as many maps (chapter 06).

    Args:
        in_channels: channels of the input.
        out_channels: stored filters; each gives four output maps, one per rotation.
        kernel_size: side of the square filters; odd, so that a filter and its rotations share
            a centre.
        padding: zeros added on every side.
        bias: learn one bias per filter, shared by its four rotations.

    Raises:
        TypeError: a size is not an int.
        ValueError: a size is below its minimum, or ``kernel_size`` is even.

    Shape:
        - Input: ``(batch, in_channels, height, width)``.
        - Output: ``(batch, out_channels, 4, out_height, out_width)``, with
          ``out = height + 2·padding − kernel_size + 1`` (likewise for the width).

    Examples:
        The parameters of one convolution, used four times; rotating the input rotates the
        maps and shifts the rotation axis (:func:`rotate_p4`).

        >>> import torch
        >>> from torch import nn
        >>> from shared_lib.counting import count_parameters
        >>> from shared_lib.layers.group import P4ConvZ2, rotate, rotate_p4
        >>> layer = P4ConvZ2(1, 4, kernel_size=3, padding=1)
        >>> count_parameters(layer) == count_parameters(nn.Conv2d(1, 4, 3))
        True
        >>> x = torch.randn(2, 1, 9, 9)
        >>> layer(x).shape
        torch.Size([2, 4, 4, 9, 9])
        >>> torch.allclose(layer(rotate(x)), rotate_p4(layer(x)), atol=1e-5)
        True
    """

    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"input must be (batch, {self.in_channels}, height, width), got {tuple(x.shape)}"
            )
        return x

    def _filters(self) -> torch.Tensor:
        rotated = torch.stack([rotate(self.weight, r) for r in range(4)], dim=1)
        return rotated.reshape(self.out_channels * 4, self.in_channels, *self.weight.shape[-2:])


class P4ConvP4(_P4Conv):
    """Group-to-group p4 convolution: ``(B, in, 4, H, W)`` → ``(B, out, 4, H', W')``.

    Output rotation ``r`` uses the stored filter rotated by ``r`` × 90° with its own
    rotation axis shifted cyclically by ``r`` — again one filter shared by four uses
    (chapter 06). It stores as many parameters as ``nn.Conv2d(4 · in, out, kernel_size)``.

    Args:
        in_channels: channels of the input (each with its rotation axis of size 4).
        out_channels: stored filters; each gives four output maps, one per rotation.
        kernel_size: side of the square filters; odd, so that a filter and its rotations share
            a centre.
        padding: zeros added on every side.
        bias: learn one bias per filter, shared by its four rotations.

    Raises:
        TypeError: a size is not an int.
        ValueError: a size is below its minimum, or ``kernel_size`` is even.

    Shape:
        - Input: ``(batch, in_channels, 4, height, width)``.
        - Output: ``(batch, out_channels, 4, out_height, out_width)``, with
          ``out = height + 2·padding − kernel_size + 1`` (likewise for the width).

    Examples:
        >>> import torch
        >>> from shared_lib.layers.group import P4ConvP4, P4ConvZ2, rotate, rotate_p4
        >>> lift, layer = P4ConvZ2(1, 4, padding=1), P4ConvP4(4, 3, padding=1)
        >>> h = lift(torch.randn(2, 1, 9, 9))
        >>> layer(h).shape
        torch.Size([2, 3, 4, 9, 9])
        >>> torch.allclose(layer(rotate_p4(h)), rotate_p4(layer(h)), atol=1e-5)  # equivariant
        True
    """

    input_rotations = 4

    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5 or x.shape[1] != self.in_channels or x.shape[2] != 4:
            raise ValueError(
                f"input must be (batch, {self.in_channels}, 4, height, width), got {tuple(x.shape)}"
            )
        return x.flatten(1, 2)

    def _filters(self) -> torch.Tensor:
        rotated = torch.stack(
            [rotate(torch.roll(self.weight, shifts=r, dims=2), r) for r in range(4)], dim=1
        )
        return rotated.reshape(self.out_channels * 4, self.in_channels * 4, *self.weight.shape[-2:])


class RotationPool(nn.Module):
    """Pool a p4 map ``(B, C, 4, H, W)`` over its rotation axis → ``(B, C, H, W)``.

    The result no longer changes with the input's orientation, only rotates with it; add a
    global spatial pooling to make it invariant (chapter 06).

    Args:
        mode: ``"max"`` or ``"mean"`` over the four rotations.

    Raises:
        TypeError: ``mode`` is not a string.
        ValueError: ``mode`` is neither ``"max"`` nor ``"mean"``.

    Shape:
        - Input: ``(batch, channels, 4, height, width)``.
        - Output: ``(batch, channels, height, width)``.

    Examples:
        >>> import torch
        >>> from shared_lib.layers.group import P4ConvZ2, RotationPool, rotate
        >>> features = torch.nn.Sequential(P4ConvZ2(1, 4, padding=1), RotationPool())
        >>> x = torch.randn(2, 1, 9, 9)
        >>> features(x).shape
        torch.Size([2, 4, 9, 9])
        >>> torch.allclose(features(rotate(x)), rotate(features(x)), atol=1e-5)  # rotates along
        True
    """

    def __init__(self, mode: str = "max") -> None:
        super().__init__()
        self.mode = check_choice(mode, "mode", ("max", "mean"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5 or x.shape[2] != 4:
            raise ValueError(f"input must be (batch, channels, 4, H, W), got {tuple(x.shape)}")
        return x.amax(dim=2) if self.mode == "max" else x.mean(dim=2)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"
