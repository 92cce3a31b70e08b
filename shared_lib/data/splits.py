"""Train/test splits as tensors: sklearn's bundled digits, seeded loaders and mini-batches."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from shared_lib._validation import check_bool, check_float, check_int, describe, require_extra

__all__ = [
    "Batches",
    "Split",
    "balanced_subset",
    "digits",
    "loaders",
]


@dataclass(frozen=True)
class Split:
    """A train/test split of inputs and integer labels, as tensors.

    Attributes:
        x_train: training inputs, one example per row of the first dimension.
        y_train: int64 class labels of ``x_train``, shape ``(n_train,)``.
        x_test: test inputs, shaped like ``x_train`` past the first dimension.
        y_test: int64 class labels of ``x_test``, shape ``(n_test,)``.

    Examples:
        The repr gives the shapes and the number of classes (the largest label plus one):

        >>> import torch
        >>> from shared_lib.data import Split
        >>> Split(torch.zeros(6, 3), torch.tensor([0, 1, 2, 0, 1, 2]), torch.zeros(2, 3),
        ...       torch.tensor([0, 2]))
        Split(train=(6, 3), test=(2, 3), classes=3)
    """

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
    stratified by class, so both halves hold every digit. Nothing is downloaded: the images ship
    with scikit-learn (the optional extra ``shared_lib[book]``).

    Args:
        test_fraction: share of the images in the test half, strictly between 0 and 1.
        seed: ``random_state`` of the stratified split; the same seed gives the same split.
        flat: return each image as a 64-vector (for an MLP) instead of a 1-channel image.

    Returns:
        A :class:`Split` of float32 images in [0, 1] and int64 labels 0–9.

    Raises:
        TypeError: ``test_fraction`` is not a real number, ``seed`` is not an int, or ``flat``
            is not a bool.
        ValueError: ``test_fraction`` is not in (0, 1), or ``seed`` is negative.
        ImportError: scikit-learn is not installed.

    Examples:
        >>> from shared_lib.data import digits
        >>> digits(test_fraction=0.25, seed=0)
        Split(train=(1347, 1, 8, 8), test=(450, 1, 8, 8), classes=10)
        >>> digits(flat=True).x_train.shape
        torch.Size([1347, 64])
    """
    load_digits = require_extra("sklearn.datasets", "The digits data").load_digits
    train_test_split = require_extra("sklearn.model_selection", "The digits data").train_test_split

    check_float(test_fraction, "test_fraction", 0.0, 1.0, low_inclusive=False, high_inclusive=False)
    check_int(seed, "seed", minimum=0)  # sklearn's random_state refuses a negative seed
    check_bool(flat, "flat")
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
    """Shuffled train loader (seeded) and ordered test loader for a :class:`Split`.

    Args:
        split: the tensors to serve.
        batch_size: training examples per batch (the test loader uses batches of 512).
        seed: seeds the generator that shuffles the training set, so two loaders built with the
            same seed give the same batches in the same order.

    Returns:
        ``(train, test)``: :class:`~torch.utils.data.DataLoader` objects yielding
        ``(inputs, labels)``.

    Raises:
        TypeError: ``batch_size`` or ``seed`` is not an int.
        ValueError: ``batch_size`` is below 1.

    Examples:
        >>> from shared_lib.data import digits, loaders
        >>> train, test = loaders(digits(), batch_size=64, seed=0)
        >>> inputs, labels = next(iter(train))
        >>> tuple(inputs.shape), len(train), len(test)
        ((64, 1, 8, 8), 22, 1)
    """
    check_int(batch_size, "batch_size", minimum=1)
    check_int(seed, "seed")
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
    Every pass visits each example once; the last batch may be smaller.

    Args:
        inputs: one example per row of the first dimension.
        targets: as many rows as ``inputs``.
        batch_size: examples per batch, at least 1.
        seed: seeds the generator that draws each pass's order.

    Raises:
        ValueError: ``inputs`` and ``targets`` differ in length, or ``batch_size`` is below 1.
        TypeError: ``batch_size`` or ``seed`` is not an int.

    Examples:
        Ten examples in batches of four: three batches per pass, a new order on each pass.

        >>> import torch
        >>> from shared_lib.data import Batches
        >>> batches = Batches(torch.arange(10.0)[:, None], torch.arange(10), 4, seed=0)
        >>> len(batches), [targets.tolist() for _, targets in batches]
        (3, [[4, 1, 7, 5], [3, 9, 0, 8], [6, 2]])
        >>> [targets.tolist() for _, targets in batches]
        [[3, 9, 4, 2], [7, 8, 6, 0], [5, 1]]
    """

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor, batch_size: int, seed: int):
        if len(inputs) != len(targets):
            raise ValueError(f"inputs and targets differ in length: {len(inputs)}, {len(targets)}")
        self.inputs, self.targets = inputs, targets
        self.batch_size = check_int(batch_size, "batch_size", minimum=1)
        self.generator = torch.Generator().manual_seed(check_int(seed, "seed"))

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

    Args:
        labels: 1-D tensor of class ids, one per example.
        n: how many indices to draw, from 1 to ``len(labels)``.
        seed: fixes the random order within each class.

    Returns:
        A 1-D int64 tensor of ``n`` distinct indices into ``labels``.

    Raises:
        TypeError: ``labels`` is not a tensor, or ``n`` or ``seed`` is not an int.
        ValueError: ``labels`` is not 1-D, or ``n`` is below 1 or above ``len(labels)``.

    Examples:
        Six examples of class 0, three of class 1, one of class 2: five indices take every
        class in turn, and the first three are the subset of size three.

        >>> import torch
        >>> from shared_lib.data import balanced_subset
        >>> labels = torch.tensor([0] * 6 + [1] * 3 + [2])
        >>> chosen = balanced_subset(labels, 5, seed=0)
        >>> labels[chosen].tolist()
        [0, 1, 2, 0, 1]
        >>> balanced_subset(labels, 3, seed=0).tolist() == chosen[:3].tolist()
        True
    """
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"labels must be a 1-D tensor of class ids, got {describe(labels)}")
    if labels.dim() != 1:
        raise ValueError(
            f"labels must be a 1-D tensor of class ids, got shape {tuple(labels.shape)}"
        )
    check_int(n, "n", 1)
    if n > len(labels):
        raise ValueError(f"n must be <= the number of examples ({len(labels)}), got {n}")
    check_int(seed, "seed")
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(labels), generator=generator)
    shuffled = labels[order]
    turn = torch.empty(len(labels), dtype=torch.long)
    for label in shuffled.unique():
        members = (shuffled == label).nonzero().flatten()
        turn[members] = torch.arange(len(members))
    # Sort by turn, breaking ties by the random order: stable sort of turn.
    return order[torch.argsort(turn, stable=True)[:n]]
