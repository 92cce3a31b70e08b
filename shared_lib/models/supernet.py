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

from shared_lib._validation import check_choice, check_int, describe

__all__ = [
    "Architecture",
    "SupernetMLP",
]

#: A sub-network of the supernet, as one ``(width, activation)`` choice per hidden layer.
Architecture = tuple[tuple[int, str], ...]


_ACTIVATIONS = {"relu": torch.relu, "tanh": torch.tanh}


class SupernetMLP(nn.Module):
    """An MLP supernet: ``n_layers`` hidden layers, each of a width in ``widths`` and an
    activation in ``activations``; every candidate uses slices of the same weights (chapter 08).

    Layer ``l`` stores one ``nn.Linear`` of the largest width; a candidate of width ``w`` after
    an input of width ``v`` uses ``weight[:w, :v]`` and ``bias[:w]``. The read-out likewise uses
    the first columns of one ``nn.Linear(max(widths), n_classes)``.

    Args:
        in_features: size of an input vector.
        n_classes: number of output logits (at least 2).
        widths: the widths a hidden layer may take.
        activations: the activations a hidden layer may take, from ``"relu"`` and ``"tanh"``.
        n_layers: number of hidden layers.

    Raises:
        TypeError: a size is not an int, or ``widths`` or ``activations`` is a string or holds
            a value of the wrong type.
        ValueError: a size is below its minimum, ``widths`` or ``activations`` is empty, or an
            activation is unknown.

    Shape:
        - Input: ``x`` of shape ``(batch, in_features)`` and an architecture ``arch``, one
          ``(width, activation)`` choice per hidden layer.
        - Output: ``(batch, n_classes)``, logits.

    Examples:
        Sixteen candidate networks inherit their weights from one set of 171 parameters.

        >>> import torch
        >>> from shared_lib.counting import count_parameters
        >>> from shared_lib.models.supernet import SupernetMLP
        >>> supernet = SupernetMLP(8, 3, widths=(4, 8), n_layers=2)
        >>> space = supernet.search_space()
        >>> len(space), count_parameters(supernet)
        (16, 171)
        >>> supernet(torch.randn(5, 8), space[0]).shape, space[0]
        (torch.Size([5, 3]), ((4, 'relu'), (4, 'relu')))
        >>> sum(count_parameters(supernet.standalone(arch)) for arch in space)  # unshared
        1872
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
        self.in_features = check_int(in_features, "in_features", 1)
        self.n_classes = check_int(n_classes, "n_classes", 2)
        self.n_layers = check_int(n_layers, "n_layers", 1)
        if isinstance(widths, str):
            raise TypeError(f"widths must be a list of ints, got {describe(widths)}")
        if not widths:
            raise ValueError(f"widths must be a non-empty list of ints, got {widths!r}")
        self.widths = tuple(sorted(check_int(w, "widths", 1) for w in widths))
        if isinstance(activations, str):
            raise TypeError(
                f"activations must be a list of names from {sorted(_ACTIVATIONS)}, "
                f"got {describe(activations)}"
            )
        if not activations:
            raise ValueError(f"activations must be a non-empty subset of {sorted(_ACTIVATIONS)}")
        for activation in activations:
            check_choice(activation, "every entry of activations", sorted(_ACTIVATIONS))
        self.activations = tuple(activations)
        widest = self.widths[-1]
        self.hidden = nn.ModuleList(
            nn.Linear(in_features if layer == 0 else widest, widest) for layer in range(n_layers)
        )
        self.readout = nn.Linear(widest, n_classes)

    def search_space(self) -> list[Architecture]:
        """Every architecture, in a fixed order: ``(len(widths) · len(activations))**n_layers``."""
        choices = list(itertools.product(self.widths, self.activations))
        return [tuple(arch) for arch in itertools.product(choices, repeat=self.n_layers)]

    def sample(self, generator: torch.Generator) -> Architecture:
        """One architecture drawn uniformly (each layer's choices independently).

        Args:
            generator: the source of randomness (the global one is left alone).
        """
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
        """Logits of the sub-network ``arch``, computed with the slices of the shared weights.

        Raises:
            ValueError: ``arch`` is not an architecture of this search space.
        """
        self._check(arch)
        h, width_in = x, self.in_features
        for layer, (width, activation) in zip(self.hidden, arch, strict=True):
            h = nn.functional.linear(h, layer.weight[:width, :width_in], layer.bias[:width])
            h, width_in = _ACTIVATIONS[activation](h), width
        return nn.functional.linear(h, self.readout.weight[:, :width_in], self.readout.bias)

    @torch.no_grad()
    def accuracy(self, x: torch.Tensor, y: torch.Tensor, arch: Architecture) -> float:
        """Accuracy of the sub-network ``arch`` with the weights it inherits from the supernet.

        Args:
            x: inputs ``(batch, in_features)``.
            y: labels ``(batch,)``.
            arch: the sub-network, one ``(width, activation)`` per hidden layer.
        """
        return (self(x, arch).argmax(-1) == y).float().mean().item()

    def standalone(self, arch: Architecture) -> nn.Sequential:
        """The architecture ``arch`` as an ordinary network with fresh weights (from scratch).

        Args:
            arch: the sub-network, one ``(width, activation)`` per hidden layer.

        Raises:
            ValueError: ``arch`` is not an architecture of this search space.
        """
        self._check(arch)
        layers: list[nn.Module] = []
        width_in = self.in_features
        for width, activation in arch:
            layers += [nn.Linear(width_in, width), nn.ReLU() if activation == "relu" else nn.Tanh()]
            width_in = width
        return nn.Sequential(*layers, nn.Linear(width_in, self.n_classes))
