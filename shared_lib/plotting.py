"""One visual style for the book, and the sharing map: which use reads which tensor.

matplotlib is the optional extra ``shared_lib[book]``: it is imported when a figure is drawn,
never when this module is imported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np

from shared_lib._validation import require_extra
from shared_lib.uses import Use

if TYPE_CHECKING:  # matplotlib is the optional extra shared_lib[book]: imported when drawing
    from matplotlib.axes import Axes

__all__ = ["PALETTE", "book_style", "plot_assignment", "plot_sharing_map"]

#: Colour-blind-safe palette (Okabe & Ito), readable on light and dark backgrounds.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#999999"]

_STYLE = {
    "figure.figsize": (7.0, 3.2),
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "savefig.bbox": "tight",
    # A white card behind every figure keeps it legible in the site's dark mode too.
    "figure.facecolor": "white",
    "savefig.facecolor": "white",
    "axes.facecolor": "white",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "font.size": 10,
    "axes.titlesize": 11,
    "legend.frameon": False,
}


@contextmanager
def book_style() -> Iterator[None]:
    """Context manager applying the book's matplotlib style (no global change at import).

    Inside the block, figures get the book's size, a white card (legible in the site's dark
    mode), no top or right spines, a light grid and the colour cycle :data:`PALETTE`; the
    previous settings come back on exit.

    Yields:
        Nothing: the style holds for the duration of the ``with`` block.

    Raises:
        ImportError: matplotlib is not installed.

    Examples:
        >>> import matplotlib
        >>> from shared_lib.plotting import PALETTE, book_style
        >>> with book_style():
        ...     colours = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
        ...     spines = matplotlib.rcParams["axes.spines.top"]
        >>> colours == PALETTE, spines, matplotlib.rcParams["axes.spines.top"]
        (True, False, True)
    """
    mpl = _matplotlib()
    with mpl.rc_context({**_STYLE, "axes.prop_cycle": mpl.cycler(color=PALETTE)}):
        yield


def _matplotlib():
    """matplotlib with pyplot loaded, or an ImportError that says how to install it."""
    mpl = require_extra("matplotlib", "Drawing the book's figures")
    require_extra("matplotlib.pyplot", "Drawing the book's figures")
    return mpl


def _owner(name: str, depth: int | None = None) -> str:
    """Module part of a canonical parameter name: ``"layers.0.attn.weight"`` → ``"layers.0.attn"``
    (or its first ``depth`` components)."""
    parts = [p for p in name.split(".") if p not in ("parametrizations", "original")]
    module_parts = parts[:-1] if len(parts) > 1 else parts
    if depth is not None:
        module_parts = module_parts[:depth]
    return ".".join(module_parts)


def plot_sharing_map(
    uses: Sequence[Use],
    ax: Axes | None = None,
    title: str | None = None,
    max_rows: int = 24,
    column_depth: int | None = None,
    column_of: Callable[[str], str] | None = None,
) -> Axes:
    """Draw a sharing map: one row per use, one column per unique tensor owner, a filled cell
    where the use reads that tensor. A column filled in several rows is a shared tensor
    (chapter 01).

    Columns group tensors by the module that owns them under their canonical (first) name (or
    by its first ``column_depth`` name components, or by ``column_of(name)``), one colour each.

    Args:
        uses: the uses to draw, in order, e.g. from :func:`shared_lib.uses.trace_uses`.
        ax: axes to draw on; default a new figure sized to the map.
        title: title of the axes.
        max_rows: most rows shown; a longer list shows its first and last ``max_rows // 2``
            uses with a "⋮" row between them.
        column_depth: group tensors by the first ``column_depth`` components of their owner's
            name (``None``: the whole owner name).
        column_of: ``column_of(name) -> str``, the column of a tensor name; overrides
            ``column_depth``.

    Returns:
        The :class:`matplotlib.axes.Axes` drawn on.

    Raises:
        ValueError: ``uses`` is empty.
        ImportError: matplotlib is not installed.

    Examples:
        A head tied to the embedding reads the embedding's tensor: three uses, two columns.

        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> import matplotlib.pyplot as plt
        >>> from shared_lib.plotting import plot_sharing_map
        >>> from shared_lib.uses import Use
        >>> uses = [Use("embed", ("embed.weight",), 40), Use("block", ("block.weight",), 16),
        ...         Use("head", ("embed.weight",), 40)]
        >>> ax = plot_sharing_map(uses, title="tied embeddings")
        >>> [label.get_text() for label in ax.get_xticklabels()]
        ['embed', 'block']
        >>> plt.close(ax.figure)
    """
    if not uses:
        raise ValueError("uses is empty: nothing to draw")
    if len(uses) > max_rows:
        keep = max_rows // 2
        shown = [*uses[:keep], None, *uses[-keep:]]
    else:
        shown = list(uses)
    if column_of is None:

        def column_of(name: str) -> str:
            return _owner(name, column_depth)

    columns: list[str] = []
    for use in uses:
        for name in use.tensors:
            owner = column_of(name)
            if owner not in columns:
                columns.append(owner)
    grid = np.full((len(shown), len(columns)), np.nan)
    for row, use in enumerate(shown):
        if use is None:
            continue
        for name in use.tensors:
            col = columns.index(column_of(name))
            grid[row, col] = col % len(PALETTE)
    with book_style():
        if ax is None:
            height = 0.8 + 0.22 * len(shown)
            _, ax = _matplotlib().pyplot.subplots(
                figsize=(max(3.0, 1.1 * len(columns) + 2.2), height)
            )
        cmap = _matplotlib().colors.ListedColormap(PALETTE)
        ax.imshow(grid, cmap=cmap, vmin=0, vmax=len(PALETTE) - 1, aspect="auto")
        ax.set_xticks(range(len(columns)), columns, rotation=30, ha="right")
        labels = ["⋮" if use is None else use.label for use in shown]
        ax.set_yticks(range(len(shown)), labels)
        ax.set_xticks(np.arange(-0.5, len(columns)), minor=True)
        ax.set_yticks(np.arange(-0.5, len(shown)), minor=True)
        ax.grid(which="minor", color="0.85", linewidth=0.8)
        ax.grid(which="major", visible=False)
        ax.tick_params(which="minor", length=0)
        ax.set_xlabel("unique tensors (grouped by owning module)")
        ax.set_ylabel("uses (calls)")
        if title:
            ax.set_title(title)
    return ax


def plot_assignment(
    assignment: Sequence[int], ax: Axes | None = None, title: str | None = None
) -> Axes:
    """Draw a layer → parameter-set map (Takase & Kiyono's strategies): layers down, sets across.

    A sharing map (:func:`plot_sharing_map`) whose uses are the layers and whose columns are
    the parameter sets ``A``, ``B``, ... (chapter 06).

    Args:
        assignment: 0-based parameter-set index of each layer, e.g. from
            :func:`shared_lib.sharing.layer_assignment`.
        ax: axes to draw on; default a new figure.
        title: title of the axes.

    Returns:
        The :class:`matplotlib.axes.Axes` drawn on, every layer shown.

    Raises:
        ValueError: ``assignment`` is empty.
        ImportError: matplotlib is not installed.

    Examples:
        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> import matplotlib.pyplot as plt
        >>> from shared_lib.plotting import plot_assignment
        >>> ax = plot_assignment([0, 1, 2, 0, 1, 2], title="cycle")
        >>> ax.get_xlabel(), len(ax.get_yticklabels())
        ('parameter sets (3 unique)', 6)
        >>> plt.close(ax.figure)
    """
    if not assignment:
        raise ValueError("assignment is empty")
    n_sets = max(assignment) + 1
    uses = [
        Use(f"layer {i + 1}", (f"set {chr(65 + j) if j < 26 else j}.w",), 1)
        for i, j in enumerate(assignment)
    ]
    ax = plot_sharing_map(uses, ax=ax, title=title, max_rows=max(24, len(assignment)))
    ax.set_xlabel(f"parameter sets ({n_sets} unique)")
    ax.set_ylabel("layers")
    return ax
