"""Digits as pairs (one-shot verification) and as several tasks (multi-task) (chapter 04).

*Pairs*: :func:`held_out_digits` splits sklearn's digits by class — a model trains on pairs of
some digits and is tested on digits it never saw; :func:`sample_pairs` draws balanced
same/different pairs.

*Tasks*: :func:`multitask_digits` labels the same digits for several related tasks (the digit,
its parity, whether it is at least 5, its remainder mod 3), each with its own number of labelled
examples. The training and scoring live in :mod:`shared_lib.book.ch04_applications`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from shared_lib._validation import check_bool, check_int
from shared_lib.data.splits import digits

__all__ = [
    "TASKS",
    "HeldOutDigits",
    "MultiTaskDigits",
    "PairSet",
    "held_out_digits",
    "multitask_digits",
    "sample_pairs",
]


def _all_digits(flat: bool) -> tuple[torch.Tensor, torch.Tensor]:
    split = digits(test_fraction=0.5, seed=0, flat=flat)
    return torch.cat([split.x_train, split.x_test]), torch.cat([split.y_train, split.y_test])


# --------------------------------------------------------------------------------------------
# Pairs
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HeldOutDigits:
    """Digits split by class: ``seen`` classes to train on, ``new`` classes to test on.

    Attributes:
        x_seen: images of the classes a model may train on.
        y_seen: their int64 labels.
        x_new: images of the held-out classes, never seen in training.
        y_new: their int64 labels.

    Examples:
        >>> import torch
        >>> from shared_lib.data.pairs import HeldOutDigits
        >>> x = torch.zeros(5, 64)
        >>> HeldOutDigits(x[:3], torch.tensor([0, 1, 1]), x[3:], torch.tensor([9, 9]))
        HeldOutDigits(seen=[0, 1]: 3 images, new=[9]: 2 images)
    """

    x_seen: torch.Tensor
    y_seen: torch.Tensor
    x_new: torch.Tensor
    y_new: torch.Tensor

    def __repr__(self) -> str:
        seen = sorted(set(self.y_seen.tolist()))
        new = sorted(set(self.y_new.tolist()))
        return (
            f"HeldOutDigits(seen={seen}: {len(self.y_seen)} images, "
            f"new={new}: {len(self.y_new)} images)"
        )


def held_out_digits(held_out: Sequence[int] = (7, 8, 9), flat: bool = False) -> HeldOutDigits:
    """All 1,797 digits, split into the classes in ``held_out`` and the others.

    Images are (n, 1, 8, 8) in [0, 1], or (n, 64) with ``flat=True``. A verification model
    trained on pairs of the seen classes is tested on pairs of classes it never saw (one-shot
    learning, chapter 04).

    Args:
        held_out: the digit classes to hold out, 2 to 8 distinct digits 0–9.
        flat: return each image as a 64-vector instead of a 1-channel image.

    Returns:
        A :class:`HeldOutDigits` with all 1,797 images, in a fixed order.

    Raises:
        TypeError: a class in ``held_out`` is not an int, or ``flat`` is not a bool.
        ValueError: ``held_out`` is empty, holds a class outside 0–9, or leaves fewer than two
            classes on either side.
        ImportError: scikit-learn is not installed.

    Examples:
        >>> from shared_lib.data.pairs import held_out_digits
        >>> held_out_digits((7, 8, 9))
        HeldOutDigits(seen=[0, 1, 2, 3, 4, 5, 6]: 1264 images, new=[7, 8, 9]: 533 images)
    """
    held = sorted(set(held_out))
    for digit in held:
        check_int(digit, "held_out")
    if not held or any(not 0 <= c <= 9 for c in held):
        raise ValueError(f"held_out must be digits 0-9, got {held_out!r}")
    if len(held) < 2 or len(held) > 8:
        raise ValueError(f"held_out must leave >= 2 classes on each side, got {held_out!r}")
    check_bool(flat, "flat")
    x, y = _all_digits(flat)
    new = torch.isin(y, torch.tensor(held))
    return HeldOutDigits(x[~new], y[~new], x[new], y[new])


@dataclass(frozen=True)
class PairSet:
    """Pairs of inputs ``(a[i], b[i])`` and whether they show the same class (1.0) or not.

    Attributes:
        a: first members of the pairs, one per row.
        b: second members, shaped like ``a``.
        same: float32 ``(n,)``, 1.0 where ``a[i]`` and ``b[i]`` share a class, else 0.0.

    Examples:
        >>> import torch
        >>> from shared_lib.data.pairs import PairSet
        >>> len(PairSet(torch.zeros(3, 64), torch.ones(3, 64), torch.tensor([1.0, 0.0, 1.0])))
        3
    """

    a: torch.Tensor
    b: torch.Tensor
    same: torch.Tensor

    def __len__(self) -> int:
        return len(self.same)


def sample_pairs(x: torch.Tensor, y: torch.Tensor, n: int, generator: torch.Generator) -> PairSet:
    """``n`` pairs, alternately same-class and different-class; the two members of a same-class
    pair are always different images.

    Args:
        x: inputs, one per row.
        y: 1-D class labels of ``x``.
        n: number of pairs, at least 1 (pairs ``0, 2, 4, ...`` are same-class).
        generator: draws the first members and their partners.

    Returns:
        A :class:`PairSet` of ``n`` pairs.

    Raises:
        TypeError: ``n`` is not an int.
        ValueError: ``n`` is below 1, ``x`` and ``y`` differ in length, or ``y`` has fewer than
            two classes or a class with a single example.

    Examples:
        Inputs that are their own index, to read off which images were paired:

        >>> import torch
        >>> from shared_lib.data.pairs import sample_pairs
        >>> x, y = torch.arange(4.0)[:, None], torch.tensor([0, 0, 1, 1])
        >>> pairs = sample_pairs(x, y, 4, torch.Generator().manual_seed(0))
        >>> pairs.a.flatten().tolist(), pairs.b.flatten().tolist(), pairs.same.tolist()
        ([0.0, 3.0, 1.0, 0.0], [1.0, 1.0, 0.0, 3.0], [1.0, 0.0, 1.0, 0.0])
    """
    check_int(n, "n", 1)
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
    first = torch.randint(0, len(x), (n,), generator=generator)
    same = torch.arange(n) % 2 == 0
    allowed = (y[None, :] == y[first][:, None]) == same[:, None]  # (n, len(x)) candidates
    allowed[torch.arange(n), first] = False
    if not allowed.any(dim=1).all():
        raise ValueError("y must hold at least two classes, each with at least two examples")
    noise = torch.rand(n, len(x), generator=generator)
    second = torch.where(allowed, noise, -1.0).argmax(dim=1)  # a random allowed partner
    return PairSet(x[first], x[second], same.float())


# --------------------------------------------------------------------------------------------
# Multi-task
# --------------------------------------------------------------------------------------------

#: The tasks defined on a digit label, as name → (number of classes, label function).
TASKS = {
    "digit": (10, lambda y: y),
    "parity": (2, lambda y: y % 2),
    "at least 5": (2, lambda y: (y >= 5).long()),
    "mod 3": (3, lambda y: y % 3),
}


@dataclass(frozen=True)
class MultiTaskDigits:
    """Per-task training sets (inputs, labels) and one test set labelled for every task.

    Attributes:
        train: task name → ``(inputs, labels)``, the task's labelled training examples.
        x_test: the shared test inputs.
        y_test: task name → labels of ``x_test`` for that task.

    Examples:
        >>> import torch
        >>> from shared_lib.data.pairs import MultiTaskDigits
        >>> data = MultiTaskDigits({"parity": (torch.zeros(4, 64), torch.tensor([0, 1, 0, 1]))},
        ...                        torch.zeros(2, 64), {"parity": torch.tensor([1, 0])})
        >>> data, data.num_classes
        (MultiTaskDigits(train {parity: 4}, test 2), {'parity': 2})
    """

    train: dict[str, tuple[torch.Tensor, torch.Tensor]]
    x_test: torch.Tensor
    y_test: dict[str, torch.Tensor]

    @property
    def num_classes(self) -> dict[str, int]:
        """Classes of each task."""
        return {task: TASKS[task][0] for task in self.train}

    def __repr__(self) -> str:
        sizes = ", ".join(f"{task}: {len(x)}" for task, (x, _) in self.train.items())
        return f"MultiTaskDigits(train {{{sizes}}}, test {len(self.x_test)})"


def multitask_digits(
    labelled: Mapping[str, int], test_fraction: float = 0.3, seed: int = 0, flat: bool = True
) -> MultiTaskDigits:
    """Digits labelled for several tasks, ``labelled[task]`` training examples for each.

    Every task draws its examples from the front of one shuffled training pool, so a task with
    fewer labels sees a subset of the images of a task with more. The test set is shared.
    Related tasks share a trunk, and a task with few labels borrows from one with many
    (chapter 04).

    Args:
        labelled: task name (a key of :data:`TASKS`) → number of labelled training examples.
        test_fraction: share of the digits in the shared test set.
        seed: fixes the train/test split and the order in which training images are labelled.
        flat: return each image as a 64-vector (default) instead of a 1-channel image.

    Returns:
        A :class:`MultiTaskDigits` with one training set per task in ``labelled``.

    Raises:
        TypeError: a count in ``labelled`` or ``seed`` is not an int, or ``flat`` is not a bool.
        ValueError: ``labelled`` is empty, names an unknown task, or asks for fewer than 1 or
            more examples than the training pool holds, or ``seed`` is negative.

    Examples:
        The 50 digit labels fall on the first 50 of the 1,000 images labelled for parity:

        >>> import torch
        >>> from shared_lib.data.pairs import multitask_digits
        >>> data = multitask_digits({"digit": 50, "parity": 1000})
        >>> data, data.num_classes
        (MultiTaskDigits(train {digit: 50, parity: 1000}, test 540), {'digit': 10, 'parity': 2})
        >>> torch.equal(data.train["digit"][0], data.train["parity"][0][:50])
        True
    """
    if not labelled:
        raise ValueError("labelled must name at least one task")
    unknown = [task for task in labelled if task not in TASKS]
    if unknown:
        raise ValueError(f"labelled: unknown tasks {unknown}; choose from {list(TASKS)}")
    check_int(seed, "seed", minimum=0)  # as digits(): sklearn refuses a negative seed
    check_bool(flat, "flat")
    split = digits(test_fraction=test_fraction, seed=seed, flat=flat)
    pool = len(split.x_train)
    for task, n in labelled.items():
        check_int(n, f"labelled[{task!r}]", 1)
        if n > pool:
            raise ValueError(f"labelled[{task!r}] = {n} exceeds the {pool} training images")
    order = torch.randperm(pool, generator=torch.Generator().manual_seed(seed))
    train = {}
    for task, n in labelled.items():
        chosen = order[:n]
        train[task] = (split.x_train[chosen], TASKS[task][1](split.y_train[chosen]))
    y_test = {task: TASKS[task][1](split.y_test) for task in labelled}
    return MultiTaskDigits(train, split.x_test, y_test)
