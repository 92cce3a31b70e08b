"""Hashed weights: many virtual weights share one real weight, chosen by a hash (chapter 07).

:class:`HashedLinear` is the layer of HashedNets (Chen et al., 2015): an ``out × in`` weight
matrix whose entries are not stored. Entry ``(i, j)`` is read from one of ``n_real`` real
weights, picked by a deterministic hash of ``(seed, i·in + j)``, and optionally multiplied by a
±1 sign from a second hash (the paper's sign hash, which makes the sharing noise cancel on
average). The hash is recomputed from the seed, so only the real weights need to be stored.
Because the forward pass builds the virtual matrix by indexing, autograd sums the gradients of
all the entries that share a real weight into it: random, fixed parameter sharing.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from shared_lib._validation import check_bool, check_int

__all__ = ["HashedLinear", "hash_indices"]

_MASK32 = np.uint64(0xFFFFFFFF)
_GOLDEN = 0x9E3779B9


def _mix32(values: np.ndarray) -> np.ndarray:
    """A 32-bit integer finaliser (Wellons' "lowbias32"): every input bit affects every output
    bit. Computed in uint64 so that products wrap harmlessly before masking to 32 bits."""
    x = values & _MASK32
    x ^= x >> np.uint64(16)
    x = (x * np.uint64(0x7FEB352D)) & _MASK32
    x ^= x >> np.uint64(15)
    x = (x * np.uint64(0x846CA68B)) & _MASK32
    x ^= x >> np.uint64(16)
    return x


def hash_indices(count: int, buckets: int, seed: int = 0) -> torch.Tensor:
    """``hash(seed, i) mod buckets`` for ``i = 0 … count-1`` as an int64 tensor (chapter 07).

    Deterministic: the same ``(count, buckets, seed)`` give the same indices on any machine.

    Args:
        count: number of keys ``0 … count-1`` to hash.
        buckets: number of buckets (real weights) to hash them into.
        seed: seed of the hash; another seed gives another, independent pattern.

    Returns:
        An int64 tensor ``(count,)`` with values in ``0 … buckets-1``.

    Raises:
        TypeError: an argument is not an int.
        ValueError: ``count`` or ``seed`` is negative, or ``buckets`` is below 1.

    Examples:
        >>> from shared_lib.layers.hashed import hash_indices
        >>> hash_indices(8, 3)  # 8 virtual weights read from 3 real ones
        tensor([0, 1, 1, 1, 2, 1, 2, 0])
        >>> hash_indices(8, 3, seed=1)
        tensor([2, 1, 1, 2, 2, 0, 0, 1])
    """
    check_int(count, "count", minimum=0)
    check_int(buckets, "buckets", minimum=1)
    check_int(seed, "seed", minimum=0)
    offset = np.uint64((seed * _GOLDEN) & 0xFFFFFFFF)  # Python ints: no overflow warnings
    keys = np.arange(count, dtype=np.uint64) + offset
    hashed = _mix32(_mix32(keys) ^ np.uint64(seed & 0xFFFFFFFF))
    return torch.from_numpy((hashed % np.uint64(buckets)).astype(np.int64))


class HashedLinear(nn.Module):
    """A linear layer whose ``out_features × in_features`` virtual weights share ``n_real`` real
    weights through a seeded hash (HashedNets; chapter 07).

    Args:
        in_features: size of each input sample.
        out_features: size of each output sample.
        n_real: number of real (stored, trained) weights, ``1 … in_features·out_features``.
        bias: add a learned bias (not hashed, as in the paper: it is small).
        seed: seed of the hash; the same seed gives the same sharing pattern.
        sign_hash: multiply each virtual weight by a ±1 sign from a second hash.

    Raises:
        TypeError: a size or the seed is not an int, or ``bias`` or ``sign_hash`` is not a bool.
        ValueError: a size is below 1, the seed is negative, or ``n_real`` exceeds the number
            of virtual weights.

    Shape:
        - Input: ``(*, in_features)``, any leading dimensions.
        - Output: ``(*, out_features)``.

    Examples:
        A 16 → 8 layer applies 128 virtual weights but stores 32 real ones (and 8 biases).

        >>> import torch
        >>> from shared_lib.counting import count_parameters
        >>> from shared_lib.layers.hashed import HashedLinear
        >>> layer = HashedLinear(16, 8, n_real=32)
        >>> layer.virtual_weight().shape, layer.virtual_features
        (torch.Size([8, 16]), 128)
        >>> count_parameters(layer), layer.compression_factor
        (40, 0.25)
        >>> layer(torch.zeros(5, 16)).shape
        torch.Size([5, 8])
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        n_real: int,
        bias: bool = True,
        seed: int = 0,
        sign_hash: bool = True,
    ) -> None:
        super().__init__()
        self.in_features = check_int(in_features, "in_features", minimum=1)
        self.out_features = check_int(out_features, "out_features", minimum=1)
        virtual = in_features * out_features
        check_int(n_real, "n_real", minimum=1)
        if n_real > virtual:
            raise ValueError(
                f"n_real must be <= in_features * out_features = {virtual} (more real than "
                f"virtual weights would leave some unused), got {n_real}"
            )
        self.n_real = n_real
        check_bool(bias, "bias")
        self.seed = check_int(seed, "seed", minimum=0)
        self.sign_hash = check_bool(sign_hash, "sign_hash")
        self.weight = nn.Parameter(torch.empty(n_real))
        self.bias = nn.Parameter(torch.empty(out_features)) if bias else None
        index = hash_indices(virtual, n_real, seed).reshape(out_features, in_features)
        # Buffers are not saved (persistent=False): the seed regenerates them.
        self.register_buffer("index", index, persistent=False)
        if sign_hash:
            bits = hash_indices(virtual, 2, seed + 1).reshape(out_features, in_features)
            self.register_buffer("sign", 1.0 - 2.0 * bits.float(), persistent=False)
        else:
            self.sign = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Uniform in ±1/√in_features, the scale ``nn.Linear`` gives each virtual weight."""
        bound = 1.0 / math.sqrt(self.in_features)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    @property
    def virtual_features(self) -> int:
        """Number of virtual weights, ``in_features · out_features``."""
        return self.in_features * self.out_features

    @property
    def compression_factor(self) -> float:
        """The ratio of real to virtual weights, as the paper defines it (1/8 means 8× fewer)."""
        return self.n_real / self.virtual_features

    def virtual_weight(self) -> torch.Tensor:
        """The ``out × in`` matrix the layer applies, built by indexing the real weights."""
        weight = self.weight[self.index]
        return weight * self.sign if self.sign is not None else weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x @ virtual_weight().T + bias``; the gradient of each real weight sums its uses."""
        if x.shape[-1] != self.in_features:
            raise ValueError(
                f"input's last dimension must be in_features={self.in_features}, "
                f"got shape {tuple(x.shape)}"
            )
        return F.linear(x, self.virtual_weight(), self.bias)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"n_real={self.n_real}, compression_factor={self.compression_factor:.3g}, "
            f"bias={self.bias is not None}, seed={self.seed}, sign_hash={self.sign_hash}"
        )
