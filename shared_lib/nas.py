"""Weight-sharing architecture search: one supernet, many sub-networks (chapter 08).

ENAS (Pham et al., 2018) made architecture search cheap by letting every candidate architecture
**inherit** its weights from one trained supergraph instead of training each from scratch.
:class:`SupernetMLP` is the smallest such supergraph: an MLP whose layers each choose a width
(the first ``w`` units of one maximal layer, so narrower candidates reuse a slice of the wider
ones' weights) and an activation. :func:`train_supernet` trains it by sampling one path per
step; :meth:`SupernetMLP.accuracy` scores a sub-network with the inherited weights;
:meth:`SupernetMLP.standalone` builds the same architecture with fresh weights to train from
scratch; :func:`kendall_tau` compares the two rankings.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn

from shared_lib._validation import check_int as _check_int
from shared_lib.training import adam_on_random_batches

__all__ = ["Architecture", "SupernetMLP", "kendall_tau", "train_standalone", "train_supernet"]

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


def train_supernet(
    supernet: SupernetMLP,
    x: torch.Tensor,
    y: torch.Tensor,
    steps: int = 600,
    lr: float = 0.01,
    batch_size: int = 128,
    seed: int = 0,
) -> SupernetMLP:
    """Single-path training: every step samples one architecture and a mini-batch and updates
    only the weight slices that architecture uses."""
    _check_int(steps, "steps", 1)
    _check_int(batch_size, "batch_size", 1)
    generator = torch.Generator().manual_seed(seed)

    def batch_loss(rows: torch.Tensor) -> torch.Tensor:
        arch = supernet.sample(generator)
        return nn.functional.cross_entropy(supernet(x[rows], arch), y[rows])

    adam_on_random_batches(
        supernet.parameters(), batch_loss, len(x), steps, lr, batch_size, generator
    )
    return supernet


def train_standalone(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    steps: int = 300,
    lr: float = 0.01,
    batch_size: int = 128,
    seed: int = 0,
) -> nn.Module:
    """Train one network from scratch with the same mini-batch recipe as :func:`train_supernet`."""
    _check_int(steps, "steps", 1)
    _check_int(batch_size, "batch_size", 1)
    generator = torch.Generator().manual_seed(seed)

    def batch_loss(rows: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(model(x[rows]), y[rows])

    adam_on_random_batches(model.parameters(), batch_loss, len(x), steps, lr, batch_size, generator)
    return model


def kendall_tau(a: Sequence[float], b: Sequence[float]) -> float:
    """Kendall's rank correlation tau-b of two equally long sequences (ties allowed): +1 same
    order, -1 reversed, about 0 unrelated."""
    if len(a) != len(b) or len(a) < 2:
        raise ValueError(f"a and b must have the same length >= 2, got {len(a)} and {len(b)}")
    concordant = discordant = ties_a = ties_b = 0
    for i, j in itertools.combinations(range(len(a)), 2):
        da, db = a[i] - a[j], b[i] - b[j]
        if da == 0 and db == 0:
            continue
        if da == 0:
            ties_a += 1
        elif db == 0:
            ties_b += 1
        elif (da > 0) == (db > 0):
            concordant += 1
        else:
            discordant += 1
    denominator = ((concordant + discordant + ties_a) * (concordant + discordant + ties_b)) ** 0.5
    if denominator == 0:
        raise ValueError("kendall_tau is undefined when a or b is constant")
    return (concordant - discordant) / denominator
