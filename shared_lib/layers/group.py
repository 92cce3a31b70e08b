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

from shared_lib._validation import check_int as _check_int

__all__ = ["P4ConvP4", "P4ConvZ2", "RotationPool", "rotate", "rotate_p4"]


def rotate(images: torch.Tensor, k: int = 1) -> torch.Tensor:
    """Rotate the last two (spatial) dimensions by ``k`` × 90° counter-clockwise."""
    if images.dim() < 2:
        raise ValueError(f"images must have two spatial dimensions, got {tuple(images.shape)}")
    return torch.rot90(images, k, dims=(-2, -1))


def rotate_p4(features: torch.Tensor, k: int = 1) -> torch.Tensor:
    """How a p4 feature map ``(batch, channels, 4, H, W)`` transforms when the input rotates by
    ``k`` × 90°: every map rotates and the rotation axis shifts cyclically by ``k``."""
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
        self.in_channels = _check_int(in_channels, "in_channels", 1)
        self.out_channels = _check_int(out_channels, "out_channels", 1)
        self.kernel_size = _check_int(kernel_size, "kernel_size", 1)
        if kernel_size % 2 == 0:
            raise ValueError(
                f"kernel_size must be odd, so that a filter and its rotations share a centre; "
                f"got {kernel_size}"
            )
        self.padding = _check_int(padding, "padding", 0)
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
    ``nn.Conv2d(in, out, kernel_size)`` while producing four times as many maps.
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
    rotation axis shifted cyclically by ``r`` — again one filter shared by four uses.
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
    global spatial pooling to make it invariant.
    """

    def __init__(self, mode: str = "max") -> None:
        super().__init__()
        if mode not in ("max", "mean"):
            raise ValueError(f"mode must be 'max' or 'mean', got {mode!r}")
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5 or x.shape[2] != 4:
            raise ValueError(f"input must be (batch, channels, 4, H, W), got {tuple(x.shape)}")
        return x.amax(dim=2) if self.mode == "max" else x.mean(dim=2)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"
