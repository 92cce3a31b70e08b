"""Small models the chapters train and draw: one per family of parameter sharing (chapter 01).

Each keeps its sharing visible: the shared module is one object, used several times.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import torch
from torch import nn

__all__ = ["MLP", "ElmanRNN", "MultiTaskNet", "SiameseNet", "SmallConvNet"]


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
