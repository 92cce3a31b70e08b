"""Train/test splits as tensors: sklearn's bundled digits, seeded loaders and mini-batches."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from shared_lib._validation import check_int, require_extra

__all__ = [
    "Batches",
    "Split",
    "balanced_subset",
    "digits",
    "loaders",
]


@dataclass(frozen=True)
class Split:
    """A train/test split of inputs and integer labels, as tensors."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    def __repr__(self) -> str:
        return (
            f"Split(train={tuple(self.x_train.shape)}, test={tuple(self.x_test.shape)}, "
            f"classes={int(self.y_train.max()) + 1})"
        )


def digits(test_fraction: float = 0.25, seed: int = 0, flat: bool = False) -> Split:
    """sklearn's 1,797 bundled 8×8 handwritten digits, scaled to [0, 1], split with a seed.

    Images have shape ``(n, 1, 8, 8)``, or ``(n, 64)`` with ``flat=True``. The split is
    stratified by class, so both halves hold every digit.
    """
    load_digits = require_extra("sklearn.datasets", "The digits data").load_digits
    train_test_split = require_extra("sklearn.model_selection", "The digits data").train_test_split

    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    bunch = load_digits()
    images = (bunch.images / 16.0).astype(np.float32)
    labels = bunch.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=test_fraction, random_state=seed, stratify=labels
    )
    shape = (-1, 64) if flat else (-1, 1, 8, 8)
    return Split(
        torch.from_numpy(x_train).reshape(shape),
        torch.from_numpy(y_train),
        torch.from_numpy(x_test).reshape(shape),
        torch.from_numpy(y_test),
    )


def loaders(split: Split, batch_size: int = 64, seed: int = 0) -> tuple[DataLoader, DataLoader]:
    """Shuffled train loader (seeded) and ordered test loader for a :class:`Split`."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    generator = torch.Generator().manual_seed(seed)
    train = DataLoader(
        TensorDataset(split.x_train, split.y_train),
        batch_size=batch_size,
        shuffle=True,
        generator=generator,
    )
    test = DataLoader(TensorDataset(split.x_test, split.y_test), batch_size=512)
    return train, test


class Batches:
    """Shuffled mini-batches of two tensors, reshuffled each pass by a seeded generator.

    A lighter stand-in for a ``DataLoader`` over a ``TensorDataset``: it slices whole batches
    instead of collating examples one by one, which matters when each step takes a millisecond.
    """

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor, batch_size: int, seed: int):
        if len(inputs) != len(targets):
            raise ValueError(f"inputs and targets differ in length: {len(inputs)}, {len(targets)}")
        self.inputs, self.targets = inputs, targets
        self.batch_size = check_int(batch_size, "batch_size", minimum=1)
        self.generator = torch.Generator().manual_seed(seed)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(len(self.targets), generator=self.generator)
        for start in range(0, len(order), self.batch_size):
            chosen = order[start : start + self.batch_size]
            yield self.inputs[chosen], self.targets[chosen]

    def __len__(self) -> int:
        return math.ceil(len(self.targets) / self.batch_size)


def balanced_subset(labels: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """Indices of ``n`` examples drawn at random with the classes as balanced as possible.

    Classes take turns (a random example of each class, then a second of each, ...), so a small
    subset still holds every class; the same ``seed`` gives the same subset, and the subset of a
    smaller ``n`` is contained in that of a larger one.
    """
    if not isinstance(labels, torch.Tensor) or labels.dim() != 1:
        raise TypeError("labels must be a 1-D tensor of class ids")
    check_int(n, "n", 1)
    if n > len(labels):
        raise ValueError(f"n must be <= the number of examples ({len(labels)}), got {n}")
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(labels), generator=generator)
    shuffled = labels[order]
    turn = torch.empty(len(labels), dtype=torch.long)
    for label in shuffled.unique():
        members = (shuffled == label).nonzero().flatten()
        turn[members] = torch.arange(len(members))
    # Sort by turn, breaking ties by the random order: stable sort of turn.
    return order[torch.argsort(turn, stable=True)[:n]]
