"""Small models the chapters train and draw: one per family of parameter sharing (chapter 01).

Each keeps its sharing visible: the shared module is one object, used several times.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import torch
from torch import nn
from torch.nn import functional as F

from shared_lib._validation import check_int
from shared_lib._validation import check_int as _check_int

__all__ = [
    "MLP",
    "ConvStep",
    "ElmanRNN",
    "GRUClassifier",
    "MultiTaskNet",
    "SiameseNet",
    "SmallConvNet",
    "StepRNN",
]


def _positive(value: int, argument: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{argument} must be a positive int, got {value!r}")
    return value


class MLP(nn.Sequential):
    """Fully connected net ``sizes[0] → … → sizes[-1]`` with ReLU between layers; no sharing."""

    def __init__(self, *sizes: int) -> None:
        if len(sizes) < 2:
            raise ValueError(f"sizes needs at least an input and an output size, got {sizes}")
        layers: list[nn.Module] = []
        for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
            layers.append(nn.Linear(_positive(fan_in, "sizes"), _positive(fan_out, "sizes")))
            if i < len(sizes) - 2:
                layers.append(nn.ReLU())
        super().__init__(*layers)


class SmallConvNet(nn.Module):
    """Two 3×3 convolutions, global average pooling and a linear classifier (sharing across space).

    Global pooling keeps the classifier's size independent of the image size, so the same
    network runs on any input at least 3×3.
    """

    def __init__(self, in_channels: int = 1, channels: int = 16, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(_positive(in_channels, "in_channels"), _positive(channels, "channels"), 3),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.classifier = nn.Linear(channels, _positive(num_classes, "num_classes"))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(images))


class ElmanRNN(nn.Module):
    """One :class:`torch.nn.RNNCell` applied at every time step, then a classifier (sharing across
    time). Takes token ids ``(batch, time)`` or features ``(batch, time, input_size)``."""

    def __init__(
        self, input_size: int, hidden_size: int, num_classes: int, vocab_size: int | None = None
    ) -> None:
        super().__init__()
        self.embedding = (
            nn.Embedding(_positive(vocab_size, "vocab_size"), input_size) if vocab_size else None
        )
        self.cell = nn.RNNCell(
            _positive(input_size, "input_size"), _positive(hidden_size, "hidden_size")
        )
        self.classifier = nn.Linear(hidden_size, _positive(num_classes, "num_classes"))

    def forward(self, sequence: torch.Tensor) -> torch.Tensor:
        inputs = self.embedding(sequence) if self.embedding is not None else sequence
        if inputs.dim() != 3:
            raise ValueError(
                f"sequence must be (batch, time[, features]), got {tuple(sequence.shape)}"
            )
        state = inputs.new_zeros(inputs.shape[0], self.cell.hidden_size)
        for step in range(inputs.shape[1]):
            state = self.cell(inputs[:, step], state)  # the same weights at every step
        return self.classifier(state)


class SiameseNet(nn.Module):
    """One encoder applied to every input (sharing across inputs); scores a pair by distance.

    ``forward(a, b)`` returns a logit that ``a`` and ``b`` belong together. Because both inputs go
    through the same encoder and the score uses ``|f(a) - f(b)|``, it is symmetric by
    construction.
    """

    def __init__(self, encoder: nn.Module, embedding_size: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.score = nn.Linear(_positive(embedding_size, "embedding_size"), 1)

    def embed(self, *inputs: torch.Tensor) -> list[torch.Tensor]:
        """The encoder applied to each input (two for a pair, three for a triplet, …)."""
        return [self.encoder(x) for x in inputs]

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        fa, fb = self.embed(a, b)
        return self.score((fa - fb).abs()).squeeze(-1)


class MultiTaskNet(nn.Module):
    """A shared trunk with one head per task (hard parameter sharing, Caruana 1997).

    ``forward(x, task)`` runs the trunk and that task's head.
    """

    def __init__(self, trunk: nn.Module, heads: Mapping[str, nn.Module]) -> None:
        super().__init__()
        if not heads:
            raise ValueError("heads must name at least one task")
        self.trunk = trunk
        self.heads = nn.ModuleDict(dict(heads))

    def forward(self, x: torch.Tensor, task: str) -> torch.Tensor:
        if task not in self.heads:
            raise ValueError(f"task must be one of {list(self.heads)}, got {task!r}")
        return self.heads[task](self.trunk(x))


# ---------------------------------------------------------------------------------------------
# A recurrent model whose sharing across time can be cut.


class StepRNN(nn.Module):
    """An Elman RNN whose cell at step ``t`` is ``cells[t]`` (sharing across time made visible).

    Built with one :class:`torch.nn.RNNCell` registered at every step, it is an ordinary RNN;
    :func:`shared_lib.untie` turns it into a network with a separate cell per step — the same
    function at the start, but nothing learned at one step carries over to another (chapter 03).

    Args:
        length: number of time steps (the input length is fixed).
        input_size: features per step (e.g. a one-hot vocabulary).
        hidden_size: size of the hidden state.
        num_classes: outputs of the classifier on the last state.
    """

    def __init__(self, length: int, input_size: int, hidden_size: int, num_classes: int) -> None:
        super().__init__()
        _check_int(length, "length", 1)
        _check_int(input_size, "input_size", 1)
        cell = nn.RNNCell(input_size, _check_int(hidden_size, "hidden_size", 1))
        self.cells = nn.ModuleList([cell] * length)  # one object at every step: shared weights
        self.classifier = nn.Linear(hidden_size, _check_int(num_classes, "num_classes", 1))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """``inputs``: ``(batch, length, input_size)``; returns logits ``(batch, num_classes)``."""
        if inputs.dim() != 3 or inputs.shape[1] != len(self.cells):
            raise ValueError(
                f"inputs must be (batch, {len(self.cells)}, features), got {tuple(inputs.shape)}"
            )
        state = inputs.new_zeros(inputs.shape[0], self.cells[0].hidden_size)
        for step, cell in enumerate(self.cells):
            # RNNCell's own formula, written with F.linear so that torch.func.vmap batches it.
            state = torch.tanh(
                F.linear(inputs[:, step], cell.weight_ih, cell.bias_ih)
                + F.linear(state, cell.weight_hh, cell.bias_hh)
            )
        return self.classifier(state)


class GRUClassifier(nn.Module):
    """One GRU cell applied at every step of a bit string, then a linear read-out of the last
    state: the same parameters for strings of any length (chapter 06)."""

    def __init__(
        self, hidden_size: int = 16, embedding_size: int = 4, num_classes: int = 2
    ) -> None:
        super().__init__()
        check_int(hidden_size, "hidden_size", 1)
        check_int(embedding_size, "embedding_size", 1)
        check_int(num_classes, "num_classes", 2)
        self.embed = nn.Embedding(2, embedding_size)
        self.out = nn.Linear(hidden_size, num_classes)
        self.gru = nn.GRU(embedding_size, hidden_size, batch_first=True)

    def forward(self, bits: torch.Tensor) -> torch.Tensor:
        """Logits ``(batch, num_classes)`` for ``bits`` ``(batch, time)`` with values 0/1."""
        if bits.dim() != 2:
            raise ValueError(f"bits must have shape (batch, time), got {tuple(bits.shape)}")
        return self.out(self.gru(self.embed(bits))[1][-1])


class ConvStep(nn.Module):
    """One iteration of a looped net: ``state ← tanh(conv(state) + inputs)``, each cell seeing its
    two neighbours (a width-3 convolution along the cells)."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        check_int(width, "width", 1)
        self.conv = nn.Conv1d(width, width, 3, padding=1)

    def forward(self, state: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """Next state, shape ``(batch, cells, width)`` like ``state`` and ``inputs``."""
        return torch.tanh(self.conv(state.transpose(1, 2)).transpose(1, 2) + inputs)
