"""One recipe for every technique of chapter 07: train (or compress) a model on a split, count
what it stores, and compare the results on an accuracy-vs-bytes Pareto front.
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch
from matplotlib.axes import Axes
from torch import nn
from torch.nn import functional as F

from shared_lib._validation import check_int
from shared_lib.compression import storage_bytes, stored_numbers
from shared_lib.data import Split
from shared_lib.training import evaluate, fit, seed_everything

__all__ = [
    "Batches",
    "Recipe",
    "Result",
    "Summary",
    "format_table",
    "pareto_front",
    "plot_pareto",
    "run_technique",
    "summarize",
    "winner",
]


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


@dataclass(frozen=True)
class Recipe:
    """The training recipe every technique shares: Adam, epochs, batch size, learning rate."""

    epochs: int = 20
    batch_size: int = 128
    lr: float = 1e-2
    finetune_epochs: int = 5


@dataclass(frozen=True)
class Result:
    """One trained model: technique, its size setting, what it stores, how well it does."""

    technique: str
    setting: str
    seed: int
    parameters: int
    bytes: int
    accuracy: float
    seconds: float


def _train(
    model: nn.Module,
    split: Split,
    recipe: Recipe,
    seed: int,
    epochs: int,
    weight_decay: float,
    penalty: Callable[[], torch.Tensor] | None,
    extra: list[nn.Parameter],
) -> float:
    params = [p for p in model.parameters() if p.requires_grad] + list(extra)
    optimizer = torch.optim.Adam(params, lr=recipe.lr, weight_decay=weight_decay)

    def loss_fn(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        loss = F.cross_entropy(outputs, targets)
        return loss + penalty() if penalty is not None else loss

    batches = Batches(split.x_train, split.y_train, recipe.batch_size, seed)
    history = fit(model, batches, optimizer, loss_fn, epochs=epochs, device="cpu", amp=False)
    return sum(history.epoch_seconds)


def run_technique(
    technique: str,
    setting: str,
    build: Callable[[], nn.Module],
    split: Split,
    seed: int,
    recipe: Recipe = Recipe(),
    weight_decay: float = 0.0,
    compress: Callable[[nn.Module], nn.Module] | None = None,
    penalty: Callable[[nn.Module], torch.Tensor] | None = None,
    penalty_parameters: Iterable[nn.Parameter] = (),
) -> tuple[Result, nn.Module]:
    """Train ``build()`` with the common recipe and measure it (chapter 07).

    Seeds everything with ``seed`` before building, so every technique sees the same data
    order and the same initial draws. Adam with ``weight_decay`` (L2) if given.

    Args:
        compress: a post-training technique: ``build()`` then returns an already trained model
            (a copy), ``compress(model) -> model`` shrinks it, and the result is fine-tuned for
            ``recipe.finetune_epochs`` (0: not at all) instead of trained for ``recipe.epochs``.
        penalty: ``penalty(model)`` is added to the loss at every step (e.g. soft weight
            sharing); ``penalty_parameters`` (its own parameters) are trained with the model.

    Returns:
        The :class:`Result` (seconds = training or fine-tuning time only) and the model.
    """
    seed_everything(seed)
    model = build()
    extra = list(penalty_parameters)
    term = (lambda: penalty(model)) if penalty is not None else None
    if compress is None:
        seconds = _train(model, split, recipe, seed, recipe.epochs, weight_decay, term, extra)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = compress(model)
        seconds = 0.0
        if recipe.finetune_epochs:
            seconds = _train(
                model, split, recipe, seed, recipe.finetune_epochs, weight_decay, term, extra
            )
    _, accuracy = evaluate(model, [(split.x_test, split.y_test)], F.cross_entropy, "cpu", False)
    result = Result(
        technique, setting, seed, stored_numbers(model), storage_bytes(model), accuracy, seconds
    )
    return result, model


@dataclass(frozen=True)
class Summary:
    """Mean and spread over seeds of the :class:`Result` records of one technique and setting."""

    technique: str
    setting: str
    parameters: int
    bytes: int
    accuracy: float
    spread: float
    seconds: float
    seeds: int


def summarize(results: list[Result]) -> list[Summary]:
    """Group results by (technique, setting); accuracy mean and standard deviation over seeds."""
    groups: dict[tuple[str, str], list[Result]] = {}
    for result in results:
        groups.setdefault((result.technique, result.setting), []).append(result)
    summaries = []
    for (technique, setting), rows in groups.items():
        accuracies = [r.accuracy for r in rows]
        summaries.append(
            Summary(
                technique,
                setting,
                round(statistics.mean(r.parameters for r in rows)),
                round(statistics.mean(r.bytes for r in rows)),
                statistics.mean(accuracies),
                statistics.stdev(accuracies) if len(rows) > 1 else 0.0,
                statistics.mean(r.seconds for r in rows),
                len(rows),
            )
        )
    return summaries


def format_table(summaries: list[Summary]) -> str:
    """A plain-text table: technique, setting, unique numbers, bytes, accuracy ± spread, time."""
    lines = [
        f"{'technique':<16} {'setting':<14} {'numbers':>8} {'bytes':>7} "
        f"{'accuracy':>15} {'train s':>8}"
    ]
    for s in sorted(summaries, key=lambda s: (s.technique, s.bytes)):
        lines.append(
            f"{s.technique:<16} {s.setting:<14} {s.parameters:>8,} {s.bytes:>7,} "
            f"{s.accuracy:>8.3f} ± {s.spread:.3f} {s.seconds:>8.2f}"
        )
    return "\n".join(lines)


def pareto_front(summaries: list[Summary]) -> list[Summary]:
    """The summaries no other one beats on both size (fewer bytes) and accuracy, by size."""
    front, best = [], -math.inf
    for s in sorted(summaries, key=lambda s: (s.bytes, -s.accuracy)):
        if s.accuracy > best:
            front.append(s)
            best = s.accuracy
    return front


def winner(summaries: list[Summary], budget: int) -> Summary | None:
    """The most accurate summary (mean over seeds) that fits in ``budget`` bytes, if any."""
    fitting = [s for s in summaries if s.bytes <= budget]
    return max(fitting, key=lambda s: s.accuracy) if fitting else None


def plot_pareto(
    summaries: list[Summary],
    colours: dict[str, str],
    budget: int | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Accuracy against bytes (log scale), one colour per technique, the Pareto front drawn;
    with ``budget``, the region beyond it greyed and the winner inside it circled (ch. 07)."""
    import matplotlib.pyplot as plt

    ax = ax if ax is not None else plt.gca()
    markers = "osD^vP*Xhd<>"
    for i, technique in enumerate(dict.fromkeys(s.technique for s in summaries)):
        rows = sorted((s for s in summaries if s.technique == technique), key=lambda s: s.bytes)
        ax.errorbar(
            [s.bytes for s in rows],
            [s.accuracy for s in rows],
            yerr=[s.spread for s in rows],
            color=colours[technique],
            marker=markers[i % len(markers)],
            ms=5,
            lw=1,
            capsize=2,
            label=technique,
        )
    front = pareto_front(summaries)
    ax.step(
        [s.bytes for s in front],
        [s.accuracy for s in front],
        where="post",
        color="black",
        lw=1,
        ls=":",
        label="Pareto front",
    )
    ax.set_xscale("log")
    if budget is not None:
        left, right = ax.get_xlim()
        ax.axvspan(budget, max(right, budget), color="0.85", zorder=0)
        ax.set_xlim(left, right)
        best = winner(summaries, budget)
        if best is not None:
            ax.scatter(
                [best.bytes],
                [best.accuracy],
                s=260,
                facecolors="none",
                edgecolors="black",
                lw=2,
                zorder=5,
            )
            ax.set_title(f"≤ {budget:,} bytes: best is {best.technique} ({best.setting})")
    ax.set(xlabel="stored weights (bytes, log scale)", ylabel="test accuracy")
    return ax
