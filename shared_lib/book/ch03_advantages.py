"""Chapter 03, *Advantages*: learning curves of shared vs. unshared models, and the step-cost
figure.

Chapter 03 asks whether a model that shares its weights needs fewer examples. It compares pairs
of models that start as **the same function** and differ only in whether a weight is one tensor
used everywhere or one copy per use: a convolution vs. the locally connected layer made from it,
and a recurrent cell shared across time vs. one cell per step
(:class:`~shared_lib.models.small.StepRNN`, untied with :func:`shared_lib.untie`).
:func:`learning_curves` trains every (model, training-set size, seed) on the same examples in the
same order and tests it on a held-out set; the seeds of one model are trained together,
vectorised with :func:`torch.func.vmap`, which gives the same updates as training them one by
one (Adam works element by element) at a fraction of the cost.
"""

from __future__ import annotations

import copy
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from shared_lib._validation import check_int
from shared_lib.data import Split
from shared_lib.data.splits import balanced_subset
from shared_lib.training import train_steps

__all__ = [
    "LearningCurves",
    "learning_curves",
    "plot_learning_curves",
    "plot_step_costs",
]

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

    def minibatches():
        for _ in range(steps):
            draws = torch.stack([torch.rand(batch_size, generator=g) for g in generators])
            yield padded[rows, (draws * sizes[:, None]).long()]  # (models, batch), with replacement

    def summed_loss(index: torch.Tensor) -> torch.Tensor:
        logits = vmap(run)(params, buffers, x_train[index])
        loss = F.cross_entropy(logits.flatten(0, 1), y_train[index].flatten(), reduction="sum")
        return loss / batch_size  # = the sum over models of each one's mean loss

    train_steps(optimizer, minibatches(), summed_loss)
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
        check_int(size, "sizes[...]", 1)
        if size > len(data.y_train):
            raise ValueError(f"sizes: {size} exceeds the training pool ({len(data.y_train)})")
    check_int(steps, "steps", 1)
    check_int(batch_size, "batch_size", 1)
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


# ---------------------------------------------------------------------------------------------
# Drawing.


def plot_step_costs(
    costs: Mapping[tuple[int, str], Mapping[str, float]],
    layers: int,
    share: str,
):
    """Grouped bars of every cost of the ``(layers, share)`` model beside its twin (chapter 03).

    ``costs[(layers, share)]`` maps a cost's label (with its unit) to its value; the twin is the
    model of the same depth with the other sharing setting, drawn hatched. Each cost is drawn
    as a fraction of its largest value over all of ``costs`` (so the scale stays put while a
    slider moves) and labelled with its value.

    Returns:
        The matplotlib figure.
    """
    import matplotlib.pyplot as plt

    from shared_lib.plotting import PALETTE, book_style

    if (layers, share) not in costs:
        raise ValueError(f"no costs for (layers, share) = {(layers, share)!r}; have {list(costs)}")
    twins = [s for (depth, s) in costs if depth == layers and s != share]
    names = [share, *twins]
    labels = list(costs[(layers, share)])
    shares = sorted({s for _, s in costs})
    colour = {s: PALETTE[i % len(PALETTE)] for i, s in enumerate(shares)}
    width = 0.8 / len(names)
    with book_style():
        figure, ax = plt.subplots(figsize=(8.0, 3.4))
        for i, name in enumerate(names):
            values = [costs[(layers, name)][label] for label in labels]
            tops = [max(v[label] for v in costs.values()) or 1.0 for label in labels]
            xs = np.arange(len(labels)) + (i - (len(names) - 1) / 2) * width
            bars = ax.bar(
                xs,
                [v / top for v, top in zip(values, tops, strict=True)],
                width,
                color=colour[name],
                alpha=1.0 if i == 0 else 0.45,
                hatch=None if i == 0 else "//",
                label=f"share={name}" + ("" if i == 0 else " (twin)"),
            )
            for bar, value in zip(bars, values, strict=True):
                ax.text(
                    bar.get_x() + bar.get_width() / 2,
                    bar.get_height(),
                    f"{value:.3g}",
                    ha="center",
                    va="bottom",
                    fontsize=8,
                )
        ax.set_xticks(range(len(labels)), [textwrap.fill(label, 15) for label in labels])
        ax.set_ylim(0, 1.35)
        ax.set_ylabel("fraction of the largest\nvalue in the sweep")
        ax.set_title(f"{layers} layers, share={share!r}")
        ax.legend(loc="upper center", ncol=len(names), fontsize=8)
        figure.subplots_adjust(left=0.1, right=0.98, top=0.9, bottom=0.22)  # no tight bbox here
    return figure
