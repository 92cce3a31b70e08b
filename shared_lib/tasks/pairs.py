"""Digits as pairs (one-shot verification) and as several tasks (multi-task) (chapter 04).

*Pairs*: :func:`held_out_digits` splits sklearn's digits by class — a model trains on pairs of
some digits and is tested on digits it never saw; :func:`sample_pairs` draws balanced
same/different pairs; :func:`train_pair_model`, :func:`verification_accuracy`,
:func:`one_shot_accuracy` and :func:`asymmetry` train and measure any model ``f(a, b) -> logit``.

*Tasks*: :func:`multitask_digits` labels the same digits for several related tasks (the digit,
its parity, whether it is at least 5, its remainder mod 3), each with its own number of labelled
examples; :func:`train_multitask` trains any ``model(x, task)`` on all of them at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from shared_lib.data import digits

__all__ = [
    "TASKS",
    "HeldOutDigits",
    "MultiTaskDigits",
    "PairSet",
    "asymmetry",
    "held_out_digits",
    "multitask_accuracy",
    "multitask_digits",
    "one_shot_accuracy",
    "sample_pairs",
    "train_multitask",
    "train_pair_model",
    "verification_accuracy",
]


def _positive_int(value: object, argument: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{argument} must be a positive int, got {value!r}")
    return value


def _all_digits(flat: bool) -> tuple[torch.Tensor, torch.Tensor]:
    split = digits(test_fraction=0.5, seed=0, flat=flat)
    return torch.cat([split.x_train, split.x_test]), torch.cat([split.y_train, split.y_test])


# --------------------------------------------------------------------------------------------
# Pairs
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HeldOutDigits:
    """Digits split by class: ``seen`` classes to train on, ``new`` classes to test on."""

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

    Images are (n, 1, 8, 8) in [0, 1], or (n, 64) with ``flat=True``.
    """
    held = sorted(set(held_out))
    if not held or any(not isinstance(c, int) or not 0 <= c <= 9 for c in held):
        raise ValueError(f"held_out must be digits 0-9, got {held_out!r}")
    if len(held) < 2 or len(held) > 8:
        raise ValueError(f"held_out must leave >= 2 classes on each side, got {held_out!r}")
    x, y = _all_digits(flat)
    new = torch.isin(y, torch.tensor(held))
    return HeldOutDigits(x[~new], y[~new], x[new], y[new])


@dataclass(frozen=True)
class PairSet:
    """Pairs of inputs ``(a[i], b[i])`` and whether they show the same class (1.0) or not."""

    a: torch.Tensor
    b: torch.Tensor
    same: torch.Tensor

    def __len__(self) -> int:
        return len(self.same)


def sample_pairs(x: torch.Tensor, y: torch.Tensor, n: int, generator: torch.Generator) -> PairSet:
    """``n`` pairs, alternately same-class and different-class; the two members of a same-class
    pair are always different images."""
    _positive_int(n, "n")
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


def train_pair_model(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    pairs_per_epoch: int = 512,
    epochs: int = 8,
    lr: float = 3e-3,
    batch_size: int = 64,
    seed: int = 0,
) -> list[float]:
    """Train ``model(a, b) -> logit`` with binary cross-entropy on fresh pairs every epoch.

    Returns the mean loss of each epoch. The pairs depend only on ``seed``, so two models
    trained with one seed see the same pairs in the same order.
    """
    _positive_int(epochs, "epochs")
    _positive_int(batch_size, "batch_size")
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    history = []
    for _ in range(epochs):
        pairs = sample_pairs(x, y, pairs_per_epoch, generator)
        order = torch.randperm(len(pairs), generator=generator)
        total = 0.0
        for start in range(0, len(pairs), batch_size):
            batch = order[start : start + batch_size]
            logits = model(pairs.a[batch], pairs.b[batch])
            loss = F.binary_cross_entropy_with_logits(logits, pairs.same[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        history.append(total / len(pairs))
    return history


@torch.no_grad()
def verification_accuracy(model: nn.Module, pairs: PairSet) -> float:
    """Fraction of pairs where ``model(a, b) > 0`` agrees with ``pairs.same``."""
    model.eval()
    predicted = (model(pairs.a, pairs.b) > 0).float()
    return (predicted == pairs.same).float().mean().item()


@torch.no_grad()
def asymmetry(model: nn.Module, pairs: PairSet) -> float:
    """Largest ``|model(a, b) - model(b, a)|`` over the pairs: 0 for a symmetric model."""
    model.eval()
    return (model(pairs.a, pairs.b) - model(pairs.b, pairs.a)).abs().max().item()


@torch.no_grad()
def one_shot_accuracy(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, episodes: int = 500, seed: int = 0
) -> float:
    """Accuracy of one-shot identification (Koch et al., 2015) over the classes in ``y``.

    Each episode shows one example of every class (the *support*) and one other image (the
    *query*); the model must score the query highest against the support of its own class.
    Chance is 1 / number of classes.
    """
    _positive_int(episodes, "episodes")
    classes = sorted(set(y.tolist()))
    if len(classes) < 2:
        raise ValueError("y must hold at least two classes")
    generator = torch.Generator().manual_seed(seed)
    members = [torch.nonzero(y == c).squeeze(1) for c in classes]
    if min(len(m) for m in members) < 2:
        raise ValueError("every class needs at least two examples")

    def draw(pool: torch.Tensor, count: int) -> torch.Tensor:
        return pool[torch.randint(0, len(pool), (count,), generator=generator)]

    supports = torch.stack([draw(m, episodes) for m in members], dim=1)  # (episodes, classes)
    answer = torch.randint(0, len(classes), (episodes,), generator=generator)
    query = torch.empty(episodes, dtype=torch.long)
    for k in range(episodes):  # a query image different from its class's support image
        pool = members[answer[k]]
        query[k] = draw(pool[pool != supports[k, answer[k]]], 1)
    model.eval()
    n_classes = len(classes)
    scores = model(x[query].repeat_interleave(n_classes, 0), x[supports.reshape(-1)])
    predicted = scores.view(episodes, n_classes).argmax(dim=1)
    return (predicted == answer).float().mean().item()


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
    """Per-task training sets (inputs, labels) and one test set labelled for every task."""

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

    >>> data = multitask_digits({"digit": 50, "parity": 1000})
    """
    if not labelled:
        raise ValueError("labelled must name at least one task")
    unknown = [task for task in labelled if task not in TASKS]
    if unknown:
        raise ValueError(f"labelled: unknown tasks {unknown}; choose from {list(TASKS)}")
    split = digits(test_fraction=test_fraction, seed=seed, flat=flat)
    pool = len(split.x_train)
    for task, n in labelled.items():
        _positive_int(n, f"labelled[{task!r}]")
        if n > pool:
            raise ValueError(f"labelled[{task!r}] = {n} exceeds the {pool} training images")
    order = torch.randperm(pool, generator=torch.Generator().manual_seed(seed))
    train = {}
    for task, n in labelled.items():
        chosen = order[:n]
        train[task] = (split.x_train[chosen], TASKS[task][1](split.y_train[chosen]))
    y_test = {task: TASKS[task][1](split.y_test) for task in labelled}
    return MultiTaskDigits(train, split.x_test, y_test)


def train_multitask(
    model: nn.Module,
    data: MultiTaskDigits,
    steps: int = 300,
    lr: float = 3e-3,
    batch_size: int = 32,
    seed: int = 0,
) -> list[float]:
    """Train ``model(x, task) -> logits`` on every task at once; return the summed losses.

    Each step draws a batch from every task's training set and adds the losses. For a model
    made of separate networks this trains each exactly as alone (the losses touch disjoint
    parameters); for a shared trunk, the trunk's gradient is the sum over tasks.
    """
    _positive_int(steps, "steps")
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        loss = torch.zeros(())
        for task, (x, y) in data.train.items():
            batch = torch.randint(0, len(x), (batch_size,), generator=generator)
            loss = loss + F.cross_entropy(model(x[batch], task), y[batch])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


@torch.no_grad()
def multitask_accuracy(model: nn.Module, data: MultiTaskDigits) -> dict[str, float]:
    """Test accuracy of ``model`` on every task."""
    model.eval()
    return {
        task: (model(data.x_test, task).argmax(-1) == y).float().mean().item()
        for task, y in data.y_test.items()
    }
