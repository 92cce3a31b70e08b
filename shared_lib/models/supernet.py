"""A weight-sharing supernet: one MLP whose sub-networks share slices of its weights (chapter 08).

ENAS (Pham et al., 2018) lets every candidate architecture **inherit** its weights from one
trained supergraph. :class:`SupernetMLP` is the smallest such supergraph: an MLP whose layers
each choose a width (the first ``w`` units of one maximal layer, so narrower candidates reuse a
slice of the wider ones' weights) and an activation. :meth:`SupernetMLP.accuracy` scores a
sub-network with the inherited weights; :meth:`SupernetMLP.standalone` builds the same
architecture with fresh weights.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn

from shared_lib._validation import check_int as _check_int

__all__ = [
    "Architecture",
    "SupernetMLP",
]

#: A sub-network of the supernet, as one ``(width, activation)`` choice per hidden layer.
Architecture = tuple[tuple[int, str], ...]


_ACTIVATIONS = {"relu": torch.relu, "tanh": torch.tanh}


class SupernetMLP(nn.Module):
    """An MLP supernet: ``n_layers`` hidden layers, each of a width in ``widths`` and an
    activation in ``activations``; every candidate uses slices of the same weights.

    Layer ``l`` stores one ``nn.Linear`` of the largest width; a candidate of width ``w`` after
    an input of width ``v`` uses ``weight[:w, :v]`` and ``bias[:w]``. The read-out likewise uses
    the first columns of one ``nn.Linear(max(widths), n_classes)``.
    """

    def __init__(
        self,
        in_features: int,
        n_classes: int,
        widths: Sequence[int] = (2, 4, 8, 16),
        activations: Sequence[str] = ("relu", "tanh"),
        n_layers: int = 2,
    ) -> None:
        super().__init__()
        self.in_features = _check_int(in_features, "in_features", 1)
        self.n_classes = _check_int(n_classes, "n_classes", 2)
        self.n_layers = _check_int(n_layers, "n_layers", 1)
        if isinstance(widths, str) or not widths:
            raise ValueError(f"widths must be a non-empty list of ints, got {widths!r}")
        self.widths = tuple(sorted(_check_int(w, "widths", 1) for w in widths))
        if not activations or any(a not in _ACTIVATIONS for a in activations):
            raise ValueError(f"activations must be a non-empty subset of {sorted(_ACTIVATIONS)}")
        self.activations = tuple(activations)
        widest = self.widths[-1]
        self.hidden = nn.ModuleList(
            nn.Linear(in_features if layer == 0 else widest, widest) for layer in range(n_layers)
        )
        self.readout = nn.Linear(widest, n_classes)

    def search_space(self) -> list[Architecture]:
        """Every architecture, in a fixed order."""
        choices = list(itertools.product(self.widths, self.activations))
        return [tuple(arch) for arch in itertools.product(choices, repeat=self.n_layers)]

    def sample(self, generator: torch.Generator) -> Architecture:
        """One architecture drawn uniformly (each layer's choices independently)."""
        arch = []
        for _ in range(self.n_layers):
            w = self.widths[int(torch.randint(len(self.widths), (1,), generator=generator))]
            i = int(torch.randint(len(self.activations), (1,), generator=generator))
            arch.append((w, self.activations[i]))
        return tuple(arch)

    def _check(self, arch: Architecture) -> None:
        if len(arch) != self.n_layers or any(
            w not in self.widths or a not in self.activations for w, a in arch
        ):
            raise ValueError(
                f"arch must be {self.n_layers} (width, activation) choices, got {arch}"
            )

    def forward(self, x: torch.Tensor, arch: Architecture) -> torch.Tensor:
        self._check(arch)
        h, width_in = x, self.in_features
        for layer, (width, activation) in zip(self.hidden, arch, strict=True):
            h = nn.functional.linear(h, layer.weight[:width, :width_in], layer.bias[:width])
            h, width_in = _ACTIVATIONS[activation](h), width
        return nn.functional.linear(h, self.readout.weight[:, :width_in], self.readout.bias)

    @torch.no_grad()
    def accuracy(self, x: torch.Tensor, y: torch.Tensor, arch: Architecture) -> float:
        """Accuracy of the sub-network ``arch`` with the weights it inherits from the supernet."""
        return (self(x, arch).argmax(-1) == y).float().mean().item()

    def standalone(self, arch: Architecture) -> nn.Sequential:
        """The architecture ``arch`` as an ordinary network with fresh weights (from scratch)."""
        self._check(arch)
        layers: list[nn.Module] = []
        width_in = self.in_features
        for width, activation in arch:
            layers += [nn.Linear(width_in, width), nn.ReLU() if activation == "relu" else nn.Tanh()]
            width_in = width
        return nn.Sequential(*layers, nn.Linear(width_in, self.n_classes))
