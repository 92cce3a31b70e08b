"""Digits on a canvas: tasks where *where* a pattern is matters or must not matter (chapter 02).

sklearn's 8×8 handwritten digits are pasted onto a larger blank canvas. Two tasks:

- :func:`unseen_position_task`: classify the digit; training digits sit only in the left part
  of the canvas, test digits in the left part (**seen** positions) and in the right part
  (**unseen** positions). A model that shares its filters across positions should not care.
- :func:`where_task`: the label is the **quadrant** that holds the digit, not the digit: the
  position is the whole answer, as in aligned data.

:func:`position_model` builds the three contenders (convolution, locally connected, MLP) and
:func:`run_position_experiment` trains one and measures it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import nn
from torch.nn import functional as F

from shared_lib.counting import count_parameters
from shared_lib.layers.local import LocallyConnected2d
from shared_lib.plotting import PALETTE, book_style

__all__ = [
    "GLYPH_SIZE",
    "KINDS",
    "CanvasTask",
    "PositionResult",
    "digit_glyphs",
    "place_glyphs",
    "plot_filters",
    "plot_sharing_explorer",
    "position_model",
    "run_position_experiment",
    "train_position_model",
    "unseen_position_task",
    "where_task",
]

GLYPH_SIZE = 8
#: The three contenders of chapter 02. ``"conv"`` shares its filters across positions,
#: ``"local"`` is the same network with one filter per position (a locally connected layer),
#: ``"mlp"`` is fully connected.
KINDS = ("conv", "local", "mlp")


@dataclass(frozen=True)
class CanvasTask:
    """Training images and labels, and named test sets ``name -> (images, labels)``."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    test: dict[str, tuple[torch.Tensor, torch.Tensor]]
    num_classes: int
    description: str

    def __repr__(self) -> str:
        tests = ", ".join(f"{k}={len(v[1])}" for k, v in self.test.items())
        return (
            f"CanvasTask(train={tuple(self.x_train.shape)}, {tests}, "
            f"classes={self.num_classes}: {self.description})"
        )


def digit_glyphs() -> tuple[torch.Tensor, torch.Tensor]:
    """sklearn's 1,797 bundled digits as ``(n, 8, 8)`` float images in [0, 1], and labels."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.from_numpy((bunch.images / 16.0).astype(np.float32))
    return images, torch.from_numpy(bunch.target.astype(np.int64))


def place_glyphs(
    glyphs: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, canvas_size: int = 16
) -> torch.Tensor:
    """Paste glyph ``i`` with its top-left corner at ``(rows[i], cols[i])`` on a blank canvas.

    Returns ``(n, 1, canvas_size, canvas_size)`` images. Glyphs must fit inside the canvas.
    """
    if glyphs.dim() != 3:
        raise ValueError(f"glyphs must be (n, height, width), got {tuple(glyphs.shape)}")
    n, gh, gw = glyphs.shape
    if rows.shape != (n,) or cols.shape != (n,):
        raise ValueError(
            f"rows and cols must have shape ({n},), got {tuple(rows.shape)} and {tuple(cols.shape)}"
        )
    if n and (
        rows.min() < 0
        or cols.min() < 0
        or rows.max() + gh > canvas_size
        or cols.max() + gw > canvas_size
    ):
        raise ValueError(
            f"a {gh}×{gw} glyph placed at rows {int(rows.min())}..{int(rows.max())}, cols "
            f"{int(cols.min())}..{int(cols.max())} does not fit a {canvas_size}×{canvas_size} "
            "canvas"
        )
    canvas = glyphs.new_zeros(n, 1, canvas_size, canvas_size)
    r = rows[:, None, None] + torch.arange(gh)[None, :, None]  # (n, gh, 1)
    c = cols[:, None, None] + torch.arange(gw)[None, None, :]  # (n, 1, gw)
    canvas[torch.arange(n)[:, None, None], 0, r, c] = glyphs
    return canvas


def _split_glyphs(seed: int, test_fraction: float) -> tuple[torch.Tensor, ...]:
    """Disjoint train / test digits (different handwriting samples), stratified by class."""
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    images, labels = digit_glyphs()
    train, test = train_test_split(
        np.arange(len(labels)), test_size=test_fraction, random_state=seed, stratify=labels
    )
    train, test = torch.from_numpy(train), torch.from_numpy(test)
    return images[train], labels[train], images[test], labels[test]


def _check_n_train(n_train: int) -> None:
    if isinstance(n_train, bool) or not isinstance(n_train, int) or n_train < 1:
        raise ValueError(f"n_train must be a positive int, got {n_train!r}")


def unseen_position_task(
    n_train: int,
    seed: int = 0,
    canvas_size: int = 16,
    train_columns: tuple[int, int] = (0, 3),
    unseen_columns: tuple[int, int] = (5, 8),
    test_fraction: float = 0.4,
) -> CanvasTask:
    """Digits on a canvas; training digits only at columns ``train_columns`` (inclusive range of
    the glyph's left edge), any row (chapter 02).

    Test sets, both built from held-out digits: ``"seen"`` (left edge in ``train_columns``) and
    ``"unseen"`` (left edge in ``unseen_columns``, positions no training image used). Training
    digits are drawn with replacement from the training pool, each at a random position.
    """
    _check_n_train(n_train)
    last = canvas_size - GLYPH_SIZE
    for argument, (low, high) in (
        ("train_columns", train_columns),
        ("unseen_columns", unseen_columns),
    ):
        if not 0 <= low <= high <= last:
            raise ValueError(
                f"{argument} must satisfy 0 <= low <= high <= {last}, got {(low, high)}"
            )
    if not (train_columns[1] < unseen_columns[0] or unseen_columns[1] < train_columns[0]):
        raise ValueError(
            f"train_columns {train_columns} and unseen_columns {unseen_columns} must not overlap"
        )
    x_pool, y_pool, x_test, y_test = _split_glyphs(seed, test_fraction)
    generator = torch.Generator().manual_seed(seed)

    def place_at(glyphs: torch.Tensor, columns: tuple[int, int]) -> torch.Tensor:
        n = len(glyphs)
        rows = torch.randint(0, last + 1, (n,), generator=generator)
        cols = torch.randint(columns[0], columns[1] + 1, (n,), generator=generator)
        return place_glyphs(glyphs, rows, cols, canvas_size)

    pick = torch.randint(0, len(y_pool), (n_train,), generator=generator)
    x_train = place_at(x_pool[pick], train_columns)
    test = {
        "seen": (place_at(x_test, train_columns), y_test),
        "unseen": (place_at(x_test, unseen_columns), y_test),
    }
    return CanvasTask(
        x_train,
        y_pool[pick],
        test,
        10,
        f"digit class; trained with left edge at columns {train_columns[0]}..{train_columns[1]}",
    )


def where_task(
    n_train: int, seed: int = 0, canvas_size: int = 16, test_fraction: float = 0.4
) -> CanvasTask:
    """The label is the quadrant (0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right) that
    holds a digit; the digit itself is irrelevant (chapter 02). Test set ``"test"``."""
    _check_n_train(n_train)
    last = canvas_size - GLYPH_SIZE
    if last < 2:
        raise ValueError(f"canvas_size must be >= {GLYPH_SIZE + 2}, got {canvas_size}")
    half = last // 2  # positions 0..half-1 are "top"/"left", last-half+1..last "bottom"/"right"
    x_pool, _, x_test, _ = _split_glyphs(seed, test_fraction)
    generator = torch.Generator().manual_seed(seed)

    def place_in_quadrants(glyphs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(glyphs)
        quadrant = torch.randint(0, 4, (n,), generator=generator)
        rows = torch.randint(0, half, (n,), generator=generator) + (quadrant // 2) * (
            last - half + 1
        )
        cols = torch.randint(0, half, (n,), generator=generator) + (quadrant % 2) * (
            last - half + 1
        )
        return place_glyphs(glyphs, rows, cols, canvas_size), quadrant

    pick = torch.randint(0, len(x_pool), (n_train,), generator=generator)
    x_train, y_train = place_in_quadrants(x_pool[pick])
    test = {"test": place_in_quadrants(x_test)}
    return CanvasTask(x_train, y_train, test, 4, "which quadrant holds the digit")


def position_model(
    kind: str,
    num_classes: int = 10,
    canvas_size: int = 16,
    channels: int = 8,
    padding_mode: str = "circular",
) -> nn.Sequential:
    """One of the chapter-02 contenders; ``"conv"`` and ``"local"`` differ only in sharing.

    ``conv``/``local``: 5×5 layer (``channels``) → ReLU → 2×2 max-pool → 3×3 layer
    (``2·channels``) → ReLU → global max-pool → linear. ``local`` uses
    :class:`~shared_lib.layers.local.LocallyConnected2d` where ``conv`` uses ``nn.Conv2d``.
    ``mlp``: flatten → linear (``16·channels`` hidden) → ReLU → linear. Circular padding makes
    the convolution exactly equivariant to (circular) shifts, borders included.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if canvas_size % 2:
        raise ValueError(f"canvas_size must be even (2×2 pooling), got {canvas_size}")
    if kind == "mlp":
        hidden = 16 * channels
        return nn.Sequential(
            nn.Flatten(),
            nn.Linear(canvas_size**2, hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )

    def layer(c_in: int, c_out: int, kernel: int, size: int) -> nn.Module:
        if kind == "conv":
            return nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, padding_mode=padding_mode)
        return LocallyConnected2d(
            c_in, c_out, size, kernel, padding=kernel // 2, padding_mode=padding_mode
        )

    return nn.Sequential(
        layer(1, channels, 5, canvas_size),
        nn.ReLU(),
        nn.MaxPool2d(2),
        layer(channels, 2 * channels, 3, canvas_size // 2),
        nn.ReLU(),
        nn.AdaptiveMaxPool2d(1),
        nn.Flatten(),
        nn.Linear(2 * channels, num_classes),
    )


@dataclass
class PositionResult:
    """What one training run measured: accuracies by test set, size, first-layer filters."""

    kind: str
    n_train: int
    seed: int
    accuracy: dict[str, float]
    train_accuracy: float
    parameters: int
    first_layer: torch.Tensor = field(repr=False)
    first_layer_initial: torch.Tensor = field(repr=False)
    seconds: float = 0.0
    model: nn.Module | None = field(default=None, repr=False)


@contextmanager
def _threads(n: int | None):
    """Run tiny models on ``n`` CPU threads (one is fastest for them, and it keeps a shared
    machine responsive); restores the previous setting."""
    previous = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> float:
    with torch.no_grad():
        predictions = torch.cat(
            [model(chunk.to(device)).argmax(-1).cpu() for chunk in x.split(1024)]
        )
    return (predictions == y).float().mean().item()


def train_position_model(
    kind: str,
    task: CanvasTask,
    seed: int = 0,
    steps: int = 100,
    batch_size: int = 50,
    lr: float = 1e-2,
    channels: int = 8,
    padding_mode: str = "circular",
    device: torch.device | str = "cpu",
    threads: int | None = 1,
) -> PositionResult:
    """Train a :func:`position_model` with Adam for ``steps`` mini-batches and measure it.

    The same number of steps for every training-set size keeps the comparison fair; batches
    are drawn by reshuffling the training set every epoch (seeded).
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = torch.device(device)
    canvas_size = task.x_train.shape[-1]
    with _threads(threads if device.type == "cpu" else None):
        start = time.perf_counter()
        torch.manual_seed(seed)
        model = position_model(kind, task.num_classes, canvas_size, channels, padding_mode)
        first = model[1] if kind == "mlp" else model[0]
        initial = first.weight.detach().cpu().clone()
        model.to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        generator = torch.Generator().manual_seed(seed)
        x_train, y_train = task.x_train.to(device), task.y_train.to(device)
        n = len(y_train)
        order, cursor = torch.randperm(n, generator=generator), 0
        model.train()
        for _ in range(steps):
            if cursor >= n:
                order, cursor = torch.randperm(n, generator=generator), 0
            batch = order[cursor : cursor + batch_size].to(device)
            cursor += batch_size
            loss = F.cross_entropy(model(x_train[batch]), y_train[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        model.eval()
        accuracy = {name: _accuracy(model, x, y, device) for name, (x, y) in task.test.items()}
        train_accuracy = _accuracy(model, task.x_train, task.y_train, device)
        seconds = time.perf_counter() - start
    return PositionResult(
        kind,
        n,
        seed,
        accuracy,
        train_accuracy,
        count_parameters(model),
        first.weight.detach().cpu().clone(),
        initial,
        seconds,
        model,
    )


def run_position_experiment(
    kind: str, n_train: int, seed: int = 0, task: str = "unseen", **train_options
) -> PositionResult:
    """Build the task (``"unseen"``: :func:`unseen_position_task`, ``"where"``:
    :func:`where_task`) with ``seed`` and train ``kind`` on it (chapter 02)."""
    builders = {"unseen": unseen_position_task, "where": where_task}
    if task not in builders:
        raise ValueError(f"task must be one of {list(builders)}, got {task!r}")
    return train_position_model(kind, builders[task](n_train, seed), seed, **train_options)


def plot_filters(result: PositionResult, ax: Axes | None = None, columns: int = 4) -> Axes:
    """Draw 8 first-layer filters as one mosaic (``columns`` per row): a convolution's filters
    (each used at every position), or filter 0 of a locally connected layer at 8 positions along
    the middle row. Each tile has its own colour scale; a filter that training never changed (its
    window never saw ink) is labelled "untouched" (chapter 02)."""
    weight, initial = result.first_layer, result.first_layer_initial
    if result.kind == "mlp":
        raise ValueError("an MLP has no filters to draw; pass a 'conv' or 'local' result")
    count = 8
    if result.kind == "conv":
        picks = [(weight[i, 0], initial[i, 0]) for i in range(min(count, weight.shape[0]))]
        labels = [f"filter {i}" for i in range(len(picks))]
    else:
        height, width = weight.shape[:2]
        positions = np.linspace(0, width - 1, count).round().astype(int)
        picks = [(weight[height // 2, j, 0, 0], initial[height // 2, j, 0, 0]) for j in positions]
        labels = [f"col {j}" for j in positions]
    kh, kw = picks[0][0].shape
    rows = -(-len(picks) // columns)
    mosaic = np.full((rows * (kh + 1) - 1, columns * (kw + 1) - 1), np.nan)
    if ax is None:
        _, ax = plt.subplots(figsize=(0.9 * columns, 1.1 * rows))
    any_untouched = False
    for i, ((kernel, start), label) in enumerate(zip(picks, labels, strict=True)):
        r, c = divmod(i, columns)
        tile = kernel.numpy() / (float(kernel.abs().max()) or 1.0)  # each tile scaled to ±1
        mosaic[r * (kh + 1) : r * (kh + 1) + kh, c * (kw + 1) : c * (kw + 1) + kw] = tile
        untouched = torch.equal(kernel, start)
        any_untouched = any_untouched or untouched
        ax.text(
            c * (kw + 1) + (kw - 1) / 2,
            r * (kh + 1) - 0.6,
            label,
            ha="center",
            va="bottom",
            fontsize=7,
            color=PALETTE[5] if untouched else "black",
        )
    ax.imshow(mosaic, cmap="PuOr", vmin=-1, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)
    if any_untouched:
        ax.set_xlabel(
            "orange: untouched by training (its window never saw ink)", fontsize=8, color=PALETTE[5]
        )
    return ax


def plot_sharing_explorer(
    grid: Mapping[tuple[str, int], PositionResult], share: str, n_train: int
) -> Figure:
    """The chapter-02 explorer frame: accuracy vs. training size for sharing ``"yes"`` (conv)
    and ``"no"`` (locally connected), their parameter counts, and some first-layer filters of
    the chosen run. ``grid`` maps ``(share, n_train)`` to a :class:`PositionResult`."""
    sizes = sorted({n for _, n in grid})
    if (share, n_train) not in grid:
        raise ValueError(f"no result for share={share!r}, n_train={n_train} in grid")
    chosen = grid[share, n_train]
    options = [("yes", PALETTE[0]), ("no", PALETTE[5])]
    with book_style():
        fig, (ax, bars, filters) = plt.subplots(
            1, 3, figsize=(11, 3.3), gridspec_kw={"width_ratios": [1.3, 0.6, 1.3]}
        )
        fig.subplots_adjust(left=0.06, right=0.99, bottom=0.16, top=0.84, wspace=0.35)
        for option, colour in options:
            width = 2.5 if option == share else 1.0
            for test, style in (("seen", "--"), ("unseen", "-")):
                ax.plot(
                    sizes,
                    [grid[option, n].accuracy[test] for n in sizes],
                    style,
                    color=colour,
                    linewidth=width,
                    marker="o",
                    markersize=3 * width,
                    label=f"share={option}, {test}",
                )
        for test, marker in (("seen", "s"), ("unseen", "D")):
            ax.plot(
                n_train,
                chosen.accuracy[test],
                marker,
                color="black",
                markersize=9,
                fillstyle="none",
            )
        ax.set_xscale("log")
        ax.set_xticks(sizes, [str(n) for n in sizes])
        ax.minorticks_off()
        ax.set_ylim(0, 1)
        ax.set_xlabel("training images")
        ax.set_ylabel("test accuracy")
        ax.legend(fontsize=7, loc="center right")
        ax.set_title(f"seen {chosen.accuracy['seen']:.2f} · unseen {chosen.accuracy['unseen']:.2f}")
        bars.bar(
            [o for o, _ in options],
            [grid[o, n_train].parameters for o, _ in options],
            color=[c if o == share else "0.8" for o, c in options],
        )
        bars.set_yscale("log")
        bars.set_ylim(100, None)
        bars.set_xlabel("share across positions")
        bars.set_ylabel("parameters (log scale)")
        bars.set_title(f"{chosen.parameters:,} parameters")
        plot_filters(chosen, filters)
        filters.set_title(
            "its 8 first-layer filters, each used everywhere"
            if chosen.kind == "conv"
            else "filter 0 at 8 positions of the middle row",
            pad=14,
        )
    return fig
