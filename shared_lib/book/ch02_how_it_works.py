"""Chapter 02, *How it works*: convolution, locally connected and dense models on digits placed
on a canvas, trained and drawn.

:func:`position_model` builds the four contenders (convolution, the same convolution with a
flatten head, locally connected, MLP), :func:`train_position_model` trains one on a task of
:mod:`shared_lib.data.canvas` and measures it, :func:`with_validation` sets held-out digits apart
for choosing, :func:`run_position_experiment` sweeps the learning rate and keeps the best run on
validation data, and :func:`plot_filters`, :func:`plot_sharing_explorer` and
:func:`plot_conv_as_dense` draw the chapter's figures.

Sharing across the elements of a set: :func:`set_task` generates sets of numbers with an
order-free label (``"count"``) or an order-dependent one (``"order"``), :func:`set_model` builds
Deep Sets, its position-tagged control and an MLP, :func:`run_set_experiment` trains one at the
best of its learning rates on validation data, :func:`set_invariance_error` measures how much a
model's answer moves when the elements are reordered, and :func:`plot_set_results` draws them.
"""

from __future__ import annotations

import string
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import nn
from torch.nn import functional as F

from shared_lib._validation import check_choice, check_int
from shared_lib.counting import count_parameters
from shared_lib.data.canvas import CanvasTask, unseen_position_task, where_task
from shared_lib.layers.local import LocallyConnected2d
from shared_lib.layers.sets import AppendPosition, DeepSets
from shared_lib.models.small import MLP
from shared_lib.plotting import PALETTE, book_style
from shared_lib.training import train_steps

__all__ = [
    "KINDS",
    "LEARNING_RATES",
    "SET_KINDS",
    "SET_TASKS",
    "PositionResult",
    "SetResult",
    "SetTask",
    "plot_conv_as_dense",
    "plot_filters",
    "plot_set_results",
    "plot_sharing_explorer",
    "position_model",
    "run_position_experiment",
    "run_set_experiment",
    "set_invariance_error",
    "set_model",
    "set_task",
    "train_position_model",
    "train_set_model",
    "with_validation",
]

#: The contenders of chapter 02. ``"conv"`` shares its filters across positions and pools
#: globally, ``"conv-flat"`` is the same convolution with a flatten head instead of the global
#: pooling (sharing kept, position readable), ``"local"`` is the first network with one filter
#: per position (a locally connected layer), ``"mlp"`` is fully connected.
KINDS = ("conv", "conv-flat", "local", "mlp")
#: The learning rates each contender is swept over (Adam); the best on validation data is kept.
#: The grid reaches 0.1 because three of the four contenders picked its top, 0.03, when it
#: stopped there: a best recipe must lie inside the grid, not at its edge.
LEARNING_RATES = (3e-3, 1e-2, 3e-2, 1e-1)


def position_model(
    kind: str,
    num_classes: int = 10,
    canvas_size: int = 16,
    channels: int = 8,
    padding_mode: str = "circular",
) -> nn.Sequential:
    """One of the chapter-02 contenders; ``"conv"`` and ``"local"`` differ only in sharing,
    ``"conv"`` and ``"conv-flat"`` only in the head.

    ``conv``/``local``: 5×5 layer (``channels``) → ReLU → 2×2 max-pool → 3×3 layer
    (``2·channels``) → ReLU → global max-pool → linear. ``local`` uses
    :class:`~shared_lib.layers.local.LocallyConnected2d` where ``conv`` uses ``nn.Conv2d``.
    ``conv-flat``: the ``conv`` layers, then flatten → linear instead of the global max-pool, so
    the head has one weight per position of the last feature map and can read where a feature
    is. ``mlp``: flatten → linear (``16·channels`` hidden) → ReLU → linear. Circular padding
    makes the convolution exactly equivariant to (circular) shifts, borders included.

    Examples:
        >>> import torch
        >>> from shared_lib.book.ch02_how_it_works import position_model
        >>> position_model("conv-flat")(torch.zeros(2, 1, 16, 16)).shape
        torch.Size([2, 10])
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
        if kind != "local":
            return nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, padding_mode=padding_mode)
        return LocallyConnected2d(
            c_in, c_out, size, kernel, padding=kernel // 2, padding_mode=padding_mode
        )

    features = [
        layer(1, channels, 5, canvas_size),
        nn.ReLU(),
        nn.MaxPool2d(2),
        layer(channels, 2 * channels, 3, canvas_size // 2),
        nn.ReLU(),
    ]
    if kind == "conv-flat":  # the head sees every position of the feature map
        head = [nn.Flatten(), nn.Linear(2 * channels * (canvas_size // 2) ** 2, num_classes)]
    else:  # global max-pool: the head sees only how strongly each feature fired, not where
        head = [nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(2 * channels, num_classes)]
    return nn.Sequential(*features, *head)


@dataclass
class PositionResult:
    """What one training run measured: accuracies by test set, size, first-layer filters.

    ``lr`` is the learning rate it was trained with; after a sweep
    (:func:`run_position_experiment` with several ``lrs``), ``validation`` maps every learning
    rate tried to its validation accuracy and ``seconds`` is the time of the whole sweep.
    """

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
    lr: float = 1e-2
    validation: dict[float, float] = field(default_factory=dict)


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


def _reshuffled_batches(
    n: int, batch_size: int, steps: int, generator: torch.Generator
) -> Iterator[torch.Tensor]:
    """``steps`` batches of row indices that walk through a fresh permutation of ``range(n)``
    each epoch (the last batch of an epoch may be smaller)."""
    order, cursor = torch.randperm(n, generator=generator), 0
    for _ in range(steps):
        if cursor >= n:
            order, cursor = torch.randperm(n, generator=generator), 0
        yield order[cursor : cursor + batch_size]
        cursor += batch_size


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
    check_int(steps, "steps", 1)
    check_int(batch_size, "batch_size", 1)
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
        model.train()
        batches = _reshuffled_batches(n, batch_size, steps, generator)
        train_steps(
            optimizer,
            batches,
            lambda rows: F.cross_entropy(model(x_train[rows.to(device)]), y_train[rows.to(device)]),
        )
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
        lr,
    )


def with_validation(
    task: CanvasTask, n_validation: int, seed: int = 0, source: str | None = None
) -> CanvasTask:
    """Move ``n_validation`` held-out digits from the test sets into a ``"validation"`` set.

    The validation images are those digits as the test set ``source`` shows them (default: the
    first test set, which is drawn like the training images: ``"seen"`` positions or the
    ``"where"`` task's test set). Every test set loses the same rows, so the test digits stay
    disjoint from both the training digits and the validation digits (the test sets of
    :func:`~shared_lib.data.canvas.unseen_position_task` show the same digits in the same order).

    Examples:
        >>> from shared_lib.book.ch02_how_it_works import with_validation
        >>> from shared_lib.data.canvas import unseen_position_task
        >>> with_validation(unseen_position_task(50), 200)
        CanvasTask(train=(50, 1, 16, 16), validation=200, seen=519, unseen=519, classes=10:
            digit class; trained with left edge at columns 0..3)
    """
    check_int(n_validation, "n_validation", 1)
    source = next(iter(task.test)) if source is None else source
    if source not in task.test:
        raise ValueError(f"source must be one of {list(task.test)}, got {source!r}")
    n = len(task.test[source][1])
    if any(len(y) != n for _, y in task.test.values()) or n_validation >= n:
        raise ValueError(
            f"n_validation must be below the {n} test digits (and the test sets equally long)"
        )
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    held, kept = order[:n_validation], order[n_validation:].sort().values
    x_source, y_source = task.test[source]
    test = {"validation": (x_source[held], y_source[held])}
    test.update({name: (x[kept], y[kept]) for name, (x, y) in task.test.items()})
    return CanvasTask(task.x_train, task.y_train, test, task.num_classes, task.description)


def run_position_experiment(
    kind: str,
    n_train: int,
    seed: int = 0,
    task: str = "unseen",
    lrs: tuple[float, ...] = (1e-2,),
    n_validation: int = 200,
    **train_options,
) -> PositionResult:
    """Build the task (``"unseen"``: :func:`~shared_lib.data.canvas.unseen_position_task`,
    ``"where"``: :func:`~shared_lib.data.canvas.where_task`) with ``seed``, set
    ``n_validation`` of its held-out digits apart (:func:`with_validation`), train ``kind`` on
    it with every learning rate of ``lrs`` and keep the run with the best validation accuracy
    (the smaller learning rate on a tie); test accuracies are never used to choose (chapter 02).
    """
    builders = {"unseen": unseen_position_task, "where": where_task}
    if task not in builders:
        raise ValueError(f"task must be one of {list(builders)}, got {task!r}")
    if not lrs or "lr" in train_options:
        raise ValueError(f"pass the learning rates as lrs=(...), at least one; got lrs={lrs!r}")
    data = with_validation(builders[task](n_train, seed), n_validation, seed)
    runs = [train_position_model(kind, data, seed, lr=lr, **train_options) for lr in sorted(lrs)]
    best = max(runs, key=lambda run: run.accuracy["validation"])  # max keeps the first on a tie
    best.validation = {run.lr: run.accuracy["validation"] for run in runs}
    best.seconds = sum(run.seconds for run in runs)
    return best


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
            fontsize=10,
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
            "orange: untouched by training (its window never saw ink)",
            fontsize=10,
            color=PALETTE[5],
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
        fig = plt.figure(figsize=(7.5, 7.2))
        grid_spec = fig.add_gridspec(
            2, 2, width_ratios=[1.7, 1], height_ratios=[1, 0.9], hspace=0.8, wspace=0.45
        )
        ax = fig.add_subplot(grid_spec[0, 0])
        bars = fig.add_subplot(grid_spec[0, 1])
        filters = fig.add_subplot(grid_spec[1, :])
        fig.subplots_adjust(left=0.1, right=0.98, bottom=0.08, top=0.93)
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
        ax.legend(
            fontsize=10, loc="upper center", bbox_to_anchor=(0.75, -0.25), ncol=2, frameon=False
        )
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
            pad=22,
        )
    return fig


def _entry_colours(n: int) -> list[str]:
    """``n`` distinguishable colours: the book's palette first, then a colour-blind-safe extra."""
    from shared_lib.plotting import PALETTE

    extra = ["#332288", "#88CCEE", "#882255", "#117733", "#AA4499", "#44AA99", "#DDCC77"]
    colours = [*PALETTE, *extra]
    return [colours[i % len(colours)] for i in range(n)]


def _ink(colour: str) -> str:
    """Black text on light colours, white on dark ones."""
    red, green, blue = mpl.colors.to_rgb(colour)
    return "black" if 0.299 * red + 0.587 * green + 0.114 * blue > 0.6 else "white"


def plot_conv_as_dense(
    kernel: torch.Tensor, index_map: torch.Tensor, axes: tuple[Axes, Axes] | None = None
) -> tuple[Axes, Axes]:
    """Draw a kernel and the dense matrix of its convolution, each entry coloured (and lettered)
    by the kernel weight it uses; structural zeros stay white (chapter 02)."""
    kernel = kernel.detach().cpu()
    n_weights = kernel.numel()
    if index_map.dim() != 2 or int(index_map.max()) >= n_weights:
        raise ValueError(
            f"index_map must be 2-D with entries < kernel.numel()={n_weights}, "
            f"got shape {tuple(index_map.shape)} and max {int(index_map.max())}"
        )
    colours = _entry_colours(n_weights)
    letters = string.ascii_lowercase if n_weights <= 26 else None
    cmap = mpl.colors.ListedColormap(colours)
    if axes is None:
        _, axes = plt.subplots(
            1, 2, figsize=(10, 5), gridspec_kw={"width_ratios": [1, 3.2]}, layout="constrained"
        )
    kernel_ax, matrix_ax = axes
    flat = kernel.reshape(-1)
    shape2d = kernel.reshape(-1, kernel.shape[-1]).shape
    ids = torch.arange(n_weights).reshape(shape2d).float()
    kernel_ax.imshow(ids.numpy(), cmap=cmap, vmin=-0.5, vmax=n_weights - 0.5)
    for k in range(n_weights):
        r, c = divmod(k, shape2d[1])
        label = f"{letters[k]}\n{flat[k]:+.2f}" if letters else f"{flat[k]:+.2f}"
        kernel_ax.text(
            c,
            r,
            label,
            ha="center",
            va="center",
            color=_ink(colours[k]),
            fontsize=10,
            fontweight="bold",
        )
    kernel_ax.set_title(f"kernel: {n_weights} weights")
    kernel_ax.set_xticks([])
    kernel_ax.set_yticks([])
    kernel_ax.grid(False)

    image = index_map.detach().cpu().float().masked_fill(index_map.cpu() < 0, float("nan"))
    matrix_ax.imshow(image.numpy(), cmap=cmap, vmin=-0.5, vmax=n_weights - 0.5, aspect="equal")
    if letters and index_map.numel() <= 2_500:
        for (r, c), k in zip(
            torch.nonzero(index_map >= 0).tolist(), index_map[index_map >= 0].tolist(), strict=True
        ):
            matrix_ax.text(
                c, r, letters[k], ha="center", va="center", color=_ink(colours[k]), fontsize=6
            )
    rows, cols = index_map.shape
    matrix_ax.set_xticks(torch.arange(-0.5, cols, 1).tolist(), minor=True)
    matrix_ax.set_yticks(torch.arange(-0.5, rows, 1).tolist(), minor=True)
    matrix_ax.grid(which="minor", color="0.88", linewidth=0.5)
    matrix_ax.grid(which="major", visible=False)
    matrix_ax.tick_params(which="minor", length=0)
    used = int((index_map >= 0).sum())
    matrix_ax.set_title(
        f"dense matrix {rows}×{cols}: {used} of {rows * cols} entries used, "
        f"{n_weights} distinct weights"
    )
    matrix_ax.set_xlabel("input pixel (flattened row by row)")
    matrix_ax.set_ylabel("output pixel (flattened)")
    return kernel_ax, matrix_ax


# ---------------------------------------------------------------------------------------------
# Sharing across the elements of a set: Deep Sets against an MLP.

#: ``"count"``: is at least half of the set (5 of 9) inside ``(−c, c)``, with ``c`` the median
#: of ``|N(0, 1)|`` — a label that ignores order; ``"order"``: is the first element larger than
#: the last — a label that is nothing but order.
SET_TASKS = ("count", "order")
#: ``"deepsets"``: one φ on every element, a sum, ρ; ``"deepsets+position"``, the control: the
#: same model with a one-hot position appended to every element; ``"mlp"``: the concatenated set.
SET_KINDS = ("deepsets", "deepsets+position", "mlp")
_HALF_MASS = 0.6744897501960817  # median of |N(0, 1)|: P(|x| < c) = 1/2


@dataclass
class SetTask:
    """Sets ``(n, set_size, 1)`` with binary labels, split into train, validation and test.

    The test sets of ``"order"`` come in pairs: every set and the same set with its first and
    last element swapped, whose label is the opposite.

    Attributes:
        task: ``"count"`` or ``"order"``.
        x_train: training sets; ``y_train`` their labels.
        y_train: the training labels (0 or 1).
        validation: ``(x, y)`` used to choose the learning rate.
        test: ``(x, y)`` used only to report.
    """

    task: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    validation: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]

    def __repr__(self) -> str:
        return (
            f"SetTask({self.task!r}, train={tuple(self.x_train.shape)}, "
            f"validation={len(self.validation[1])}, test={len(self.test[1])})"
        )


def _set_labels(task: str, x: torch.Tensor) -> torch.Tensor:
    if task == "count":
        inside = (x[..., 0].abs() < _HALF_MASS).sum(1)
        return (inside >= (x.shape[1] + 1) // 2).long()
    return (x[:, 0, 0] > x[:, -1, 0]).long()


def set_task(
    task: str,
    n_train: int,
    seed: int = 0,
    set_size: int = 9,
    n_validation: int = 500,
    n_test: int = 1000,
) -> SetTask:
    """Generate sets of ``set_size`` numbers from ``N(0, 1)`` with the label of ``task``.

    Both labels are balanced by construction (``set_size`` odd for ``"count"``: the count is
    Binomial(n, 1/2) and the threshold its median). For ``"order"`` the test set holds
    ``n_test // 2`` sets and their first/last swaps, so a model that cannot see order scores
    exactly one half on it.

    Examples:
        >>> from shared_lib.book.ch02_how_it_works import set_task
        >>> data = set_task("order", 100, seed=0)
        >>> data
        SetTask('order', train=(100, 9, 1), validation=500, test=1000)
        >>> data.test[1].float().mean().item()
        0.5
    """
    check_choice(task, "task", SET_TASKS)
    check_int(n_train, "n_train", 1)
    check_int(set_size, "set_size", 2)
    check_int(n_validation, "n_validation", 1)
    check_int(n_test, "n_test", 2)
    if task == "count" and set_size % 2 == 0:
        raise ValueError(f"set_size must be odd for the count task (balanced), got {set_size}")
    generator = torch.Generator().manual_seed(seed)

    def draw(n: int) -> torch.Tensor:
        return torch.randn(n, set_size, 1, generator=generator)

    x_train, x_validation = draw(n_train), draw(n_validation)
    if task == "order":
        half = draw(n_test // 2)
        swap = [set_size - 1, *range(1, set_size - 1), 0]
        x_test = torch.cat([half, half[:, swap]])
    else:
        x_test = draw(n_test)
    return SetTask(
        task,
        x_train,
        _set_labels(task, x_train),
        (x_validation, _set_labels(task, x_validation)),
        (x_test, _set_labels(task, x_test)),
    )


def set_model(kind: str, set_size: int = 9, hidden: int = 32) -> nn.Module:
    """One of chapter 02's set contenders, ``(batch, set_size, 1) → (batch, 2)`` logits.

    ``"deepsets"``: :meth:`DeepSets.mlp <shared_lib.layers.sets.DeepSets.mlp>` with φ and ρ two
    ReLU layers of ``hidden`` units and sum pooling. ``"deepsets+position"``: the same, with a
    one-hot position appended to each element (:class:`~shared_lib.layers.sets.AppendPosition`).
    ``"mlp"``: flatten, then ``set_size → 2·hidden → 2·hidden → 2`` — more parameters than
    Deep Sets.

    Examples:
        >>> from shared_lib.book.ch02_how_it_works import set_model
        >>> from shared_lib.counting import count_parameters
        >>> {kind: count_parameters(set_model(kind)) for kind in ("deepsets", "mlp")}
        {'deepsets': 2242, 'mlp': 4930}
    """
    check_choice(kind, "kind", SET_KINDS)
    check_int(set_size, "set_size", 2)
    check_int(hidden, "hidden", 1)
    if kind == "deepsets":
        return DeepSets.mlp(1, hidden, 2)
    if kind == "deepsets+position":
        return nn.Sequential(AppendPosition(set_size), DeepSets.mlp(1 + set_size, hidden, 2))
    return nn.Sequential(nn.Flatten(), MLP(set_size, 2 * hidden, 2 * hidden, 2))


@dataclass
class SetResult:
    """One trained set model: test and validation accuracy, its count, chosen learning rate.

    Attributes:
        kind: the contender (:data:`SET_KINDS`).
        task: the task (:data:`SET_TASKS`).
        n_train: training sets.
        seed: the seed of the data and the initialisation.
        lr: the learning rate (the best on validation data, after :func:`run_set_experiment`).
        accuracy: ``{"train", "validation", "test"}`` accuracies.
        parameters: stored parameters.
        model: the trained model (CPU).
        validation: validation accuracy of every learning rate tried.
    """

    kind: str
    task: str
    n_train: int
    seed: int
    lr: float
    accuracy: dict[str, float]
    parameters: int
    model: nn.Module
    validation: dict[float, float] = field(default_factory=dict)


def train_set_model(
    kind: str, data: SetTask, seed: int = 0, lr: float = 3e-3, steps: int = 300
) -> SetResult:
    """Train :func:`set_model` ``kind`` on ``data`` with full-batch Adam for ``steps`` steps.

    Examples:
        >>> from shared_lib.book.ch02_how_it_works import set_task, train_set_model
        >>> result = train_set_model("deepsets", set_task("count", 50), steps=5)
        >>> sorted(result.accuracy)
        ['test', 'train', 'validation']
    """
    check_int(steps, "steps", 1)
    set_size = data.x_train.shape[1]
    with _threads(1):
        torch.manual_seed(seed)
        model = set_model(kind, set_size)
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        model.train()
        train_steps(
            optimizer,
            range(steps),
            lambda _: F.cross_entropy(model(data.x_train), data.y_train),
        )
        model.eval()
        splits = {
            "train": (data.x_train, data.y_train),
            "validation": data.validation,
            "test": data.test,
        }
        accuracy = {
            name: _accuracy(model, x, y, torch.device("cpu")) for name, (x, y) in splits.items()
        }
    return SetResult(
        kind, data.task, len(data.y_train), seed, lr, accuracy, count_parameters(model), model
    )


def run_set_experiment(
    kind: str,
    task: str,
    n_train: int,
    seed: int = 0,
    lrs: tuple[float, ...] = LEARNING_RATES,
    steps: int = 300,
) -> SetResult:
    """Generate :func:`set_task` with ``seed``, train ``kind`` with every learning rate of
    ``lrs`` and keep the best run on validation data (the smaller rate on a tie).

    Examples:
        >>> from shared_lib.book.ch02_how_it_works import run_set_experiment
        >>> result = run_set_experiment("mlp", "order", 50, lrs=(1e-3, 1e-2), steps=5)
        >>> sorted(result.validation)
        [0.001, 0.01]
    """
    if not lrs:
        raise ValueError("lrs must hold at least one learning rate, got none")
    data = set_task(task, n_train, seed)
    runs = [train_set_model(kind, data, seed, lr, steps) for lr in sorted(lrs)]
    best = max(runs, key=lambda run: run.accuracy["validation"])
    best.validation = {run.lr: run.accuracy["validation"] for run in runs}
    return best


def set_invariance_error(model: nn.Module, x: torch.Tensor, seed: int = 0, tries: int = 5) -> float:
    """Largest change of ``model``'s output when the elements of every set are reordered
    (``tries`` random orders), relative to the largest output.

    Examples:
        >>> import torch
        >>> from shared_lib.book.ch02_how_it_works import set_invariance_error, set_model
        >>> x = torch.randn(20, 9, 1)
        >>> set_invariance_error(set_model("deepsets"), x) < 1e-5
        True
        >>> set_invariance_error(set_model("mlp"), x) > 1e-2
        True
    """
    check_int(tries, "tries", 1)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        reference = model(x)
        scale = reference.abs().max().clamp(min=1e-12)
        worst = 0.0
        for _ in range(tries):
            order = torch.randperm(x.shape[1], generator=generator)
            worst = max(worst, ((model(x[:, order]) - reference).abs().max() / scale).item())
    return worst


def plot_set_results(
    results: Mapping[tuple[str, str, int], SetResult], ax: Axes | None = None
) -> Axes:
    """Grouped bars: test accuracy of every contender on both set tasks, mean over the seeds
    with the range as error bars, and chance (chapter 02). ``results`` is keyed by
    ``(kind, task, seed)``."""
    seeds = sorted({seed for _, _, seed in results})
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 3.4))
    width = 0.8 / len(SET_KINDS)
    positions = np.arange(len(SET_TASKS))
    for k, kind in enumerate(SET_KINDS):
        values = [
            np.array([results[kind, task, seed].accuracy["test"] for seed in seeds])
            for task in SET_TASKS
        ]
        means = np.array([v.mean() for v in values])
        spans = np.array([[m - v.min(), v.max() - m] for m, v in zip(means, values, strict=True)]).T
        parameters = results[kind, SET_TASKS[0], seeds[0]].parameters
        ax.bar(
            positions + (k - (len(SET_KINDS) - 1) / 2) * width,
            means,
            width,
            yerr=spans,
            capsize=4,
            color=PALETTE[k],
            label=f"{kind} ({parameters:,} params)",
        )
    ax.axhline(0.5, color="0.4", linestyle=":", linewidth=1, label="chance")
    ax.set_xticks(positions, ["count in range\n(order-free)", "first > last\n(order matters)"])
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1.05)
    ax.legend(  # below the axes, at the size of the tick labels
        loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, fontsize=10, frameon=False
    )
    return ax
