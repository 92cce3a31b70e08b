"""Chapter 04, *Applications*: language models with and without tied embeddings, Siamese pairs,
multi-task digits, and the applications explorer.

:func:`train_language_model`, :func:`perplexity` and :func:`bigram_perplexity` train and score
any model that maps ``(batch, time)`` ids to next-token logits on :mod:`shared_lib.data.text`'s
corpus; :func:`train_pair_model`, :func:`verification_accuracy`, :func:`one_shot_accuracy` and
:func:`asymmetry` train and measure any pair model ``f(a, b) -> logit`` on
:mod:`shared_lib.data.pairs`; :func:`train_multitask` and :func:`multitask_accuracy` do the same
for ``model(x, task)``; :func:`plot_application` draws one application's counts, sharing map and
headline result. :func:`validation_split`, :func:`split_test` and :func:`best_learning_rate` give
every model of a comparison its own learning rate, picked on validation data, never on the test.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn
from torch.nn import functional as F

from shared_lib._validation import check_int
from shared_lib.counting import count_parameters
from shared_lib.data.conflict import TaskPair
from shared_lib.data.pairs import MultiTaskDigits, PairSet, sample_pairs
from shared_lib.data.text import TextCorpus, lm_batch
from shared_lib.plotting import PALETTE, book_style, plot_sharing_map
from shared_lib.training import train_steps
from shared_lib.uses import Use, conv_position_uses, trace_uses, unit_names, unit_of

__all__ = [
    "Headline",
    "asymmetry",
    "best_learning_rate",
    "bigram_perplexity",
    "conv_sequence_uses",
    "multitask_accuracy",
    "one_shot_accuracy",
    "perplexity",
    "plot_application",
    "split_test",
    "traced_uses",
    "train_language_model",
    "train_multitask",
    "train_pair_model",
    "validation_split",
    "verification_accuracy",
]


def bigram_perplexity(corpus: TextCorpus, smoothing: float = 0.1) -> float:
    """Validation perplexity of a count-based bigram model (add-``smoothing``): a baseline."""
    if smoothing <= 0:
        raise ValueError(f"smoothing must be > 0, got {smoothing}")
    size = len(corpus.vocab)
    counts = torch.full((size, size), float(smoothing))
    ones = torch.ones(len(corpus.train) - 1)
    counts.index_put_((corpus.train[:-1], corpus.train[1:]), ones, accumulate=True)
    log_probs = (counts / counts.sum(dim=1, keepdim=True)).log()
    return math.exp(-log_probs[corpus.val[:-1], corpus.val[1:]].mean().item())


def _logits(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    out = model(inputs)
    return out[0] if isinstance(out, tuple) else out  # GPT returns (logits, loss)


@torch.no_grad()
def perplexity(model: nn.Module, ids: torch.Tensor, length: int = 64) -> float:
    """exp(mean next-token cross-entropy) of ``model`` over ``ids``, in consecutive windows."""
    if ids.dim() != 1 or len(ids) <= length:
        raise ValueError(f"ids must be 1-D and longer than length={length}")
    was_training = model.training
    model.eval()
    n_windows = (len(ids) - 1) // length
    inputs = ids[: n_windows * length].view(n_windows, length)
    targets = ids[1 : n_windows * length + 1].view(n_windows, length)
    device = next(model.parameters()).device
    logits = _logits(model, inputs.to(device))
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1).to(device))
    model.train(was_training)
    return math.exp(loss.item())


def train_language_model(
    model: nn.Module,
    corpus: TextCorpus,
    steps: int = 300,
    batch_size: int = 32,
    length: int = 32,
    lr: float = 3e-3,
    seed: int = 0,
) -> list[float]:
    """Train ``model`` with Adam on random windows of ``corpus.train``; return the losses.

    The batches depend only on ``seed``, so two models trained with the same seed see the same
    data in the same order (a paired comparison).
    """
    check_int(steps, "steps", 1)
    generator = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()

    def window_loss(batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        inputs, targets = batch
        logits = _logits(model, inputs.to(device))
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1).to(device))

    windows = (lm_batch(corpus.train, batch_size, length, generator) for _ in range(steps))
    return train_steps(optimizer, windows, window_loss)


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
    check_int(epochs, "epochs", 1)
    check_int(batch_size, "batch_size", 1)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    history = []
    for _ in range(epochs):
        pairs = sample_pairs(x, y, pairs_per_epoch, generator)
        order = torch.randperm(len(pairs), generator=generator)
        batches = list(order.split(batch_size))

        def pair_loss(batch: torch.Tensor, pairs: PairSet = pairs) -> torch.Tensor:
            logits = model(pairs.a[batch], pairs.b[batch])
            return F.binary_cross_entropy_with_logits(logits, pairs.same[batch])

        total = 0.0
        for loss, batch in zip(train_steps(optimizer, batches, pair_loss), batches, strict=True):
            total += loss * len(batch)
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
    check_int(episodes, "episodes", 1)
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


def train_multitask(
    model: nn.Module,
    data: MultiTaskDigits | TaskPair,
    steps: int = 300,
    lr: float = 3e-3,
    batch_size: int = 32,
    seed: int = 0,
    on_step: Callable[[int], None] | None = None,
) -> list[float]:
    """Train ``model(x, task) -> logits`` on every task at once; return the summed losses.

    Each step draws a batch from every task's training set and adds the losses. For a model
    made of separate networks this trains each exactly as alone (the losses touch disjoint
    parameters); for a shared trunk, the trunk's gradient is the sum over tasks. ``data`` is
    anything whose ``train`` maps a task to its ``(inputs, labels)``; ``on_step(step)``, if
    given, runs at every step after the losses and before the backward pass (chapter 05 measures
    the tasks' gradient cosine there).
    """
    check_int(steps, "steps", 1)
    check_int(batch_size, "batch_size", 1)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()

    def summed_loss(step: int) -> torch.Tensor:  # one fresh batch per task, drawn in task order
        loss = torch.zeros(())
        for task, (x, y) in data.train.items():
            batch = torch.randint(0, len(x), (batch_size,), generator=generator)
            loss = loss + F.cross_entropy(model(x[batch], task), y[batch])
        if on_step is not None:
            on_step(step)
        return loss

    return train_steps(optimizer, range(steps), summed_loss)


@torch.no_grad()
def multitask_accuracy(model: nn.Module, data: MultiTaskDigits) -> dict[str, float]:
    """Test accuracy of ``model`` on every task."""
    model.eval()
    return {
        task: (model(data.x_test, task).argmax(-1) == y).float().mean().item()
        for task, y in data.y_test.items()
    }


def validation_split(
    x: torch.Tensor, y: torch.Tensor, fraction: float = 0.2, seed: int = 0
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """Split ``(x, y)`` at random into ``(train, validation)``, ``fraction`` of every class held
    out (at least two images per class on each side, as one-shot episodes need).

    Examples:
        >>> import torch
        >>> from shared_lib.book.ch04_applications import validation_split
        >>> y = torch.arange(20) % 2
        >>> (x_train, y_train), (x_val, y_val) = validation_split(y[:, None].float(), y, 0.2)
        >>> len(y_train), len(y_val), y_val.tolist().count(0)
        (16, 4, 2)
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be between 0 and 1, got {fraction}")
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
    generator = torch.Generator().manual_seed(seed)
    held = torch.zeros(len(y), dtype=torch.bool)
    for c in sorted(set(y.tolist())):
        members = torch.nonzero(y == c).squeeze(1)
        n_held = round(fraction * len(members))
        if n_held < 2 or len(members) - n_held < 2:
            raise ValueError(f"class {c} has too few examples ({len(members)}) to split")
        held[members[torch.randperm(len(members), generator=generator)[:n_held]]] = True
    return (x[~held], y[~held]), (x[held], y[held])


def split_test(
    data: MultiTaskDigits, fraction: float = 0.5, seed: int = 0
) -> tuple[MultiTaskDigits, MultiTaskDigits]:
    """Split ``data``'s test set at random into a validation set (``fraction`` of it) and the
    test set proper; both keep ``data``'s training sets. Returns ``(validation, test)``, each a
    :class:`~shared_lib.data.pairs.MultiTaskDigits` that :func:`multitask_accuracy` scores.

    Examples:
        >>> from shared_lib.book.ch04_applications import split_test
        >>> from shared_lib.data.pairs import multitask_digits
        >>> validation, test = split_test(multitask_digits({"digit": 50, "parity": 1000}))
        >>> len(validation.x_test), len(test.x_test)
        (270, 270)
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be between 0 and 1, got {fraction}")
    n = len(data.x_test)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = round(fraction * n)
    if not 0 < n_val < n:
        raise ValueError(f"a test set of {n} items cannot be split with fraction={fraction}")
    parts = []
    for index in (order[:n_val], order[n_val:]):
        y_part = {task: y[index] for task, y in data.y_test.items()}
        parts.append(MultiTaskDigits(data.train, data.x_test[index], y_part))
    return parts[0], parts[1]


def best_learning_rate(
    validation: Mapping[float, Sequence[float]], higher_is_better: bool = True
) -> float:
    """The learning rate whose validation scores (one per seed) have the best mean.

    Examples:
        >>> from shared_lib.book.ch04_applications import best_learning_rate
        >>> best_learning_rate({1e-3: [0.7, 0.8], 3e-3: [0.9, 0.8]})
        0.003
        >>> best_learning_rate({1e-3: [20.0], 3e-3: [18.5]}, higher_is_better=False)
        0.003
    """
    if not validation:
        raise ValueError("validation must hold at least one learning rate")
    means = {lr: float(np.mean(scores)) for lr, scores in validation.items()}
    pick = max if higher_is_better else min
    return pick(means, key=means.__getitem__)


def traced_uses(
    model: nn.Module, run: Callable[[], object], units: bool = True
) -> tuple[list[Use], Callable[[str], str] | None]:
    """Uses of ``model`` while ``run()`` runs, per building block (``units``) or per module,
    with the matching ``column_of`` for :func:`shared_lib.plotting.plot_sharing_map`."""
    names = unit_names(model) if units else None
    with torch.no_grad():
        uses = trace_uses(model, run, modules=names)
    return uses, (unit_of(names) if units else None)


def conv_sequence_uses(model: nn.Sequential, length: int) -> tuple[list[Use], Callable[[str], str]]:
    """Uses of a 1-D convolutional ``nn.Sequential`` on a signal of ``length`` samples: one per
    output position of each ``Conv1d`` (the sharing hidden inside the call), one per other layer
    with parameters. Padding must keep the length ("same" convolutions)."""
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"model must be an nn.Sequential, got {type(model).__name__}")
    check_int(length, "length", 1)
    uses, labels, conv_number = [], {}, 0
    for index, layer in enumerate(model):
        params = list(layer.named_parameters())
        if not params:
            continue
        if isinstance(layer, nn.Conv1d):
            conv_number += 1
            labels[str(index)] = f"conv {conv_number}"
            for use in conv_position_uses(layer, (length,)):
                names = tuple(f"{index}.{name}" for name in use.tensors)
                position = use.label.split()[-1]
                uses.append(Use(f"conv {conv_number} @ t={position}", names, use.numel))
        else:
            labels[str(index)] = f"{type(layer).__name__.lower()} {index}"
            names = tuple(f"{index}.{name}" for name, _ in params)
            uses.append(Use(labels[str(index)], names, count_parameters(layer)))

    def column_of(name: str) -> str:
        return labels[name.split(".")[0]]

    return uses, column_of


@dataclass(frozen=True)
class Headline:
    """An application's headline measurement: per-seed values of the shared and unshared model."""

    measure: str
    shared_label: str
    unshared_label: str
    shared_values: Sequence[float]
    unshared_values: Sequence[float]


def plot_application(
    title: str,
    uses: Sequence[Use],
    unique: int,
    per_use: int,
    headline: Headline,
    shared: bool,
    column_of: Callable[[str], str] | None = None,
) -> Figure:
    """Three panels: stored vs per-use parameters, the sharing map, and the headline result
    (the shown variant in full colour, the other faded; dots are seeds)."""
    if unique < 1 or per_use < unique:
        raise ValueError(f"need 1 <= unique <= per_use, got unique={unique}, per_use={per_use}")
    with book_style():
        # 7.5 inches wide: the counts and the headline above, the sharing map below
        figure = plt.figure(figsize=(7.5, 6.6))
        grid = figure.add_gridspec(2, 2, height_ratios=[1, 1.25])
        counts_ax = figure.add_subplot(grid[0, 0])
        result_ax = figure.add_subplot(grid[0, 1])
        map_ax = figure.add_subplot(grid[1, :])
        counts = [unique, per_use]
        bars = counts_ax.bar(["stored", "per use"], counts, color=PALETTE[:2])
        counts_ax.bar_label(bars, labels=[f"{c:,}" for c in counts], fontsize=10)
        counts_ax.set_ylim(0, 1.2 * max(counts))
        counts_ax.set_ylabel("parameters")
        counts_ax.set_title(f"{per_use / unique:.1f}× uses per stored weight", fontsize=10)
        plot_sharing_map(uses, ax=map_ax, column_of=column_of, max_rows=12, title=title)
        map_ax.set_xlabel("")
        sides = (
            (0, headline.shared_values, headline.shared_label),
            (1, headline.unshared_values, headline.unshared_label),
        )
        for x, values, _ in sides:
            values = np.asarray(values, dtype=float)
            chosen = (x == 0) == shared
            result_ax.bar(x, values.mean(), color=PALETTE[x], alpha=1.0 if chosen else 0.35)
            result_ax.scatter(np.full(len(values), x), values, color="black", s=10, zorder=3)
        result_ax.set_xticks([0, 1], [label for _, _, label in sides])
        result_ax.set_title(headline.measure, fontsize=10)
        figure.tight_layout()
    return figure
