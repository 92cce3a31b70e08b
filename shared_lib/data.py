"""Data that needs no download: sklearn's bundled digits and small generated tasks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

__all__ = ["Split", "digits", "loaders", "make_sequence_task"]


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
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

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


def make_sequence_task(
    n: int, length: int, vocab: int = 8, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random token sequences labelled by whether the first token reappears later.

    A small generated task for sequence models: the answer depends on a token far from the end,
    so a model must carry information across time steps.
    """
    for argument, value, minimum in (("n", n, 1), ("length", length, 2), ("vocab", vocab, 2)):
        if value < minimum:
            raise ValueError(f"{argument} must be >= {minimum}, got {value}")
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, vocab, (n, length), generator=generator)
    labels = (tokens[:, 1:] == tokens[:, :1]).any(dim=1).long()
    return tokens, labels
