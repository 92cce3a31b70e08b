"""Sample efficiency: data, a model pair and learning curves for shared vs. unshared (chapter 03).

Chapter 03 asks whether a model that shares its weights needs fewer examples. It compares pairs
of models that start as **the same function** and differ only in whether a weight is one tensor
used everywhere or one copy per use: a convolution vs. the locally connected layer made from it,
and a recurrent cell shared across time vs. one cell per step (:class:`StepRNN`, untied with
:func:`shared_lib.untie`). :func:`learning_curves` trains every (model, training-set size, seed)
on the same examples in the same order and tests it on a held-out set; the seeds of one model
are trained together, vectorised with :func:`torch.func.vmap`, which gives the same updates as
training them one by one (Adam works element by element) at a fraction of the cost.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from shared_lib._validation import check_int as _check_int
from shared_lib.data import Split

__all__ = [
    "LearningCurves",
    "StepRNN",
    "balanced_subset",
    "learning_curves",
    "make_motif_task",
    "plot_learning_curves",
]


# ---------------------------------------------------------------------------------------------
# Data.


def make_motif_task(
    n: int,
    length: int = 10,
    vocab: int = 4,
    motif: Sequence[int] = (1, 2),
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random token sequences labelled by whether ``motif`` (consecutive tokens) occurs anywhere.

    Half the sequences (label 1) contain the motif at a uniformly random position; the other
    half (label 0) are random sequences in which it never occurs. The rule is the same at every
    position, which is what sharing across time assumes.

    Returns:
        ``(inputs, labels)``: one-hot inputs of shape ``(n, length, vocab)`` (float32) and
        int64 labels of shape ``(n,)``, in random order.

    >>> x, y = make_motif_task(6, length=5, seed=0)
    >>> tuple(x.shape), int(y.sum())
    ((6, 5, 4), 3)
    """
    _check_int(n, "n", 1)
    _check_int(length, "length", 1)
    _check_int(vocab, "vocab", 2)
    _check_int(seed, "seed", 0)
    motif = tuple(motif)
    if not 1 <= len(motif) <= length or not all(
        isinstance(t, int) and not isinstance(t, bool) and 0 <= t < vocab for t in motif
    ):
        raise ValueError(
            f"motif must be 1 to length={length} token ids in [0, {vocab}), got {motif!r}"
        )
    if len(set(motif)) == 1 and len(motif) > 1:
        raise ValueError(f"motif must not repeat a single token, got {motif!r}")
    generator = torch.Generator().manual_seed(seed)
    span = len(motif)
    pattern = torch.tensor(motif)

    def has_motif(tokens: torch.Tensor) -> torch.Tensor:
        windows = tokens.unfold(1, span, 1)  # (rows, length - span + 1, span)
        return (windows == pattern).all(dim=2).any(dim=1)

    positives = n // 2
    tokens = torch.randint(0, vocab, (n, length), generator=generator)
    where = torch.randint(0, length - span + 1, (positives,), generator=generator)
    for offset, token in enumerate(motif):
        tokens[torch.arange(positives), where + offset] = token
    negatives = tokens[positives:]  # a view: redrawing it redraws those rows of tokens
    bad = has_motif(negatives)
    while bool(bad.any()):  # redraw the negatives that contain the motif by chance
        negatives[bad] = torch.randint(0, vocab, (int(bad.sum()), length), generator=generator)
        bad = has_motif(negatives)
    labels = torch.zeros(n, dtype=torch.long)
    labels[:positives] = 1
    order = torch.randperm(n, generator=generator)
    return F.one_hot(tokens[order], vocab).float(), labels[order]


def balanced_subset(labels: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """Indices of ``n`` examples drawn at random with the classes as balanced as possible.

    Classes take turns (a random example of each class, then a second of each, ...), so a small
    subset still holds every class; the same ``seed`` gives the same subset, and the subset of a
    smaller ``n`` is contained in that of a larger one.
    """
    if not isinstance(labels, torch.Tensor) or labels.dim() != 1:
        raise TypeError("labels must be a 1-D tensor of class ids")
    _check_int(n, "n", 1)
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


# ---------------------------------------------------------------------------------------------
# Learning curves.


@dataclass(frozen=True)
class LearningCurves:
    """Test accuracy of several models vs. the number of training examples, over seeds.

    Attributes:
        sizes: training-set sizes, increasing.
        seeds: the seeds (each fixes the initialisation, the subset and the minibatch order).
        accuracy: model name → array of shape ``(len(sizes), len(seeds))``.
    """

    sizes: tuple[int, ...]
    seeds: tuple[int, ...]
    accuracy: dict[str, np.ndarray]

    def mean(self, name: str) -> np.ndarray:
        """Mean accuracy over seeds, one value per size."""
        return self.accuracy[name].mean(axis=1)

    def std(self, name: str) -> np.ndarray:
        """Standard deviation over seeds (ddof=0), one value per size."""
        return self.accuracy[name].std(axis=1)

    def gap(self, first: str, second: str) -> np.ndarray:
        """``accuracy[first] - accuracy[second]``, per size and seed (paired by seed)."""
        return self.accuracy[first] - self.accuracy[second]

    def crossing(self, first: str, second: str) -> int | None:
        """The first size at which the mean gap ``first - second`` has the opposite sign to its
        sign at the smallest size (the curves have crossed), or ``None`` if they never do."""
        gap = np.sign(self.gap(first, second).mean(axis=1))
        for size, sign in zip(self.sizes[1:], gap[1:], strict=True):
            if gap[0] != 0 and sign == -gap[0]:
                return size
        return None

    def table(self) -> str:
        """A text table: one row per size, ``mean ± std`` per model."""
        names = list(self.accuracy)
        lines = [f"{'examples':>9}" + "".join(f"{name:>18}" for name in names)]
        for i, size in enumerate(self.sizes):
            cells = "".join(f"{self.mean(n)[i]:>11.3f} ± {self.std(n)[i]:.3f}" for n in names)
            lines.append(f"{size:>9}{cells}")
        return "\n".join(lines)


def _train_ensemble(
    factory: Callable[[], nn.Module],
    seeds: Sequence[int],
    subsets: list[torch.Tensor],
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    steps: int,
    batch_size: int,
    lr: float,
) -> np.ndarray:
    """Train one model per subset (``subsets[k]`` with initial seed ``seeds[k]``) together with
    vmap and Adam; return their test accuracies."""
    from torch.func import functional_call, stack_module_state, vmap

    models = []
    for seed in seeds:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            models.append(factory())
    params, buffers = stack_module_state(models)
    template = copy.deepcopy(models[0]).to("meta")

    def run(p: dict, b: dict, x: torch.Tensor) -> torch.Tensor:
        return functional_call(template, (p, b), (x,))

    count = len(models)
    sizes = torch.tensor([len(s) for s in subsets])
    padded = torch.zeros(count, int(sizes.max()), dtype=torch.long)
    for k, subset in enumerate(subsets):
        padded[k, : len(subset)] = subset
    optimizer = torch.optim.Adam(params.values(), lr=lr)
    # One stream of minibatches per (size, seed): its seed, so both models of a pair see the
    # same examples in the same order.
    generators = [torch.Generator().manual_seed(seed) for seed in seeds]
    rows = torch.arange(count)[:, None]
    for _ in range(steps):
        draws = torch.stack([torch.rand(batch_size, generator=g) for g in generators])
        index = padded[rows, (draws * sizes[:, None]).long()]  # (models, batch), with replacement
        logits = vmap(run)(params, buffers, x_train[index])
        loss = F.cross_entropy(logits.flatten(0, 1), y_train[index].flatten(), reduction="sum")
        optimizer.zero_grad(set_to_none=True)
        (loss / batch_size).backward()  # = the sum over models of each one's mean loss
        optimizer.step()
    with torch.no_grad():
        predictions = vmap(run, in_dims=(0, 0, None))(params, buffers, x_test).argmax(-1)
    return (predictions == y_test).float().mean(dim=1).numpy()


def learning_curves(
    factories: Mapping[str, Callable[[], nn.Module]],
    data: Split,
    sizes: Sequence[int],
    seeds: Sequence[int] = (0, 1, 2),
    steps: int = 150,
    batch_size: int = 32,
    lr: float = 3e-3,
) -> LearningCurves:
    """Test accuracy vs. training-set size for each model, over several seeds (chapter 03).

    For every size ``n`` and seed ``s``, each model is built by its factory after
    ``torch.manual_seed(s)`` — so factories that build a pair from the same seeded model start
    from the same function — and trained with Adam for ``steps`` minibatches of
    ``batch_size`` examples drawn with replacement from ``balanced_subset(y_train, n, s)``, in an
    order fixed by ``s``. Every model gets the same budget of steps whatever ``n``. Accuracy is
    measured on the whole test set. The global random state is left untouched.

    Args:
        factories: model name → a function with no argument returning a fresh model.
        data: the training pool and the test set (inputs batched along the first dimension).
        sizes: training-set sizes (each at most the size of the pool).
        seeds: seeds to average over.
        steps: optimizer steps per model.
        batch_size: examples per step.
        lr: Adam's learning rate.
    """
    if not factories:
        raise ValueError("factories must name at least one model")
    for name, factory in factories.items():
        if not callable(factory):
            raise TypeError(f"factories[{name!r}] must be callable, got {type(factory).__name__}")
    if not isinstance(data, Split):
        raise TypeError(f"data must be a shared_lib.data.Split, got {type(data).__name__}")
    sizes = tuple(sizes)
    seeds = tuple(seeds)
    if not sizes or not seeds:
        raise ValueError("sizes and seeds must be non-empty")
    if list(sizes) != sorted(set(sizes)):
        raise ValueError(f"sizes must be increasing and distinct, got {sizes}")
    for size in sizes:
        _check_int(size, "sizes[...]", 1)
        if size > len(data.y_train):
            raise ValueError(f"sizes: {size} exceeds the training pool ({len(data.y_train)})")
    _check_int(steps, "steps", 1)
    _check_int(batch_size, "batch_size", 1)
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")

    pairs = [(size, seed) for size in sizes for seed in seeds]
    subsets = [balanced_subset(data.y_train, size, seed) for size, seed in pairs]
    accuracy = {}
    for name, factory in factories.items():
        flat = _train_ensemble(
            factory,
            [seed for _, seed in pairs],
            subsets,
            data.x_train,
            data.y_train,
            data.x_test,
            data.y_test,
            steps,
            batch_size,
            lr,
        )
        accuracy[name] = flat.reshape(len(sizes), len(seeds))
    return LearningCurves(sizes, seeds, accuracy)


def plot_learning_curves(curves: LearningCurves, ax=None, title: str | None = None, colors=None):
    """Mean test accuracy vs. training examples (log axis), a band of ± one std over seeds."""
    import matplotlib.pyplot as plt

    from shared_lib.plotting import PALETTE, book_style

    if not isinstance(curves, LearningCurves):
        raise TypeError(f"curves must be LearningCurves, got {type(curves).__name__}")
    colors = colors or PALETTE
    with book_style():
        if ax is None:
            _, ax = plt.subplots()
        for color, name in zip(colors, curves.accuracy, strict=False):
            mean, std = curves.mean(name), curves.std(name)
            ax.plot(curves.sizes, mean, marker="o", color=color, label=name)
            ax.fill_between(curves.sizes, mean - std, mean + std, color=color, alpha=0.2)
        ax.set_xscale("log")
        ax.set_xticks(curves.sizes, [str(s) for s in curves.sizes])
        ax.minorticks_off()
        ax.set_xlabel("training examples")
        ax.set_ylabel("test accuracy")
        ax.legend()
        if title:
            ax.set_title(title)
    return ax
