"""Digits on a canvas: tasks where *where* a pattern is matters or must not matter (chapter 02).

sklearn's 8×8 handwritten digits are pasted onto a larger blank canvas. Two tasks:

- :func:`unseen_position_task`: classify the digit; training digits sit only in the left part
  of the canvas, test digits in the left part (**seen** positions) and in the right part
  (**unseen** positions). A model that shares its filters across positions should not care.
- :func:`where_task`: the label is the **quadrant** that holds the digit, not the digit: the
  position is the whole answer, as in aligned data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from shared_lib._validation import check_float, check_int, require_extra

__all__ = [
    "GLYPH_SIZE",
    "CanvasTask",
    "digit_glyphs",
    "place_glyphs",
    "unseen_position_task",
    "where_task",
]

#: Side of sklearn's digit images, in pixels.
GLYPH_SIZE = 8


@dataclass(frozen=True)
class CanvasTask:
    """Training images and labels, and named test sets ``name -> (images, labels)``.

    Attributes:
        x_train: training canvases, ``(n_train, 1, canvas_size, canvas_size)`` float32.
        y_train: int64 labels of ``x_train``, ``(n_train,)``.
        test: test set name → ``(images, labels)``, the images shaped like ``x_train``.
        num_classes: number of classes of the labels.
        description: what the label is, in words (shown by the repr).

    Examples:
        >>> import torch
        >>> from shared_lib.data.canvas import CanvasTask
        >>> images, labels = torch.zeros(3, 1, 16, 16), torch.tensor([0, 1, 1])
        >>> CanvasTask(images, labels, {"test": (images[:2], labels[:2])}, 2, "a demo")
        CanvasTask(train=(3, 1, 16, 16), test=2, classes=2: a demo)
    """

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
    """sklearn's 1,797 bundled digits as ``(n, 8, 8)`` float images in [0, 1], and labels.

    Returns:
        ``(images, labels)``: float32 images of shape ``(1797, 8, 8)`` and int64 labels 0–9 of
        shape ``(1797,)``, in sklearn's order.

    Raises:
        ImportError: scikit-learn is not installed.

    Examples:
        >>> from shared_lib.data.canvas import digit_glyphs
        >>> images, labels = digit_glyphs()
        >>> tuple(images.shape), labels[:5].tolist(), float(images.max())
        ((1797, 8, 8), [0, 1, 2, 3, 4], 1.0)
    """
    load_digits = require_extra("sklearn.datasets", "The digits data").load_digits

    bunch = load_digits()
    images = torch.from_numpy((bunch.images / 16.0).astype(np.float32))
    return images, torch.from_numpy(bunch.target.astype(np.int64))


def place_glyphs(
    glyphs: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, canvas_size: int = 16
) -> torch.Tensor:
    """Paste glyph ``i`` with its top-left corner at ``(rows[i], cols[i])`` on a blank canvas.

    Args:
        glyphs: ``(n, height, width)`` images to paste.
        rows: ``(n,)`` integer row of each glyph's top edge.
        cols: ``(n,)`` integer column of each glyph's left edge.
        canvas_size: side of the square canvas; every glyph must fit inside it.

    Returns:
        ``(n, 1, canvas_size, canvas_size)`` images, zero outside the glyphs, of the glyphs'
        dtype.

    Raises:
        ValueError: ``glyphs`` is not 3-D, ``rows`` or ``cols`` is not of shape ``(n,)``, or a
            glyph would stick out of the canvas.

    Examples:
        >>> import torch
        >>> from shared_lib.data.canvas import place_glyphs
        >>> canvas = place_glyphs(torch.ones(1, 2, 2), torch.tensor([1]), torch.tensor([2]), 4)
        >>> canvas[0, 0].int().tolist()
        [[0, 0, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 0, 0]]
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
    train_test_split = require_extra("sklearn.model_selection", "The digits data").train_test_split

    check_float(test_fraction, "test_fraction", 0.0, 1.0, low_inclusive=False, high_inclusive=False)
    images, labels = digit_glyphs()
    train, test = train_test_split(
        np.arange(len(labels)), test_size=test_fraction, random_state=seed, stratify=labels
    )
    train, test = torch.from_numpy(train), torch.from_numpy(test)
    return images[train], labels[train], images[test], labels[test]


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

    Args:
        n_train: number of training images, at least 1.
        seed: fixes the train/test split of the digits and every position drawn.
        canvas_size: side of the square canvas.
        train_columns: ``(low, high)``, inclusive range of the training glyphs' left edge,
            within ``0 .. canvas_size - 8``.
        unseen_columns: ``(low, high)``, the same for the ``"unseen"`` test set; must not
            overlap ``train_columns``.
        test_fraction: share of the 1,797 digits held out for the two test sets.

    Returns:
        A :class:`CanvasTask` with test sets ``"seen"`` and ``"unseen"`` (the same held-out
        digits and labels, at different positions) and 10 classes.

    Raises:
        TypeError: ``n_train`` or ``seed`` is not an int, or ``test_fraction`` is not a real
            number.
        ValueError: ``n_train`` is below 1, ``seed`` is negative, a column range is outside the
            canvas or the two overlap, or ``test_fraction`` is not in (0, 1).

    Examples:
        Training ink stays left of column 11; the unseen test digits leave columns 0–4 blank.

        >>> from shared_lib.data.canvas import unseen_position_task
        >>> task = unseen_position_task(100, seed=0)
        >>> task
        CanvasTask(train=(100, 1, 16, 16), seen=719, unseen=719, classes=10: digit class;
            trained with left edge at columns 0..3)
        >>> float(task.x_train[..., 11:].sum()), float(task.test["unseen"][0][..., :5].sum())
        (0.0, 0.0)
    """
    check_int(n_train, "n_train", minimum=1)
    check_int(seed, "seed", minimum=0)  # sklearn's random_state refuses a negative seed
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
    holds a digit; the digit itself is irrelevant (chapter 02).

    Each digit lies wholly inside its quadrant's corner region, so the position is the whole
    answer, as in aligned data where a shared filter's indifference to position is no help.

    Args:
        n_train: number of training images, at least 1.
        seed: fixes the train/test split of the digits and every quadrant and position drawn.
        canvas_size: side of the square canvas, at least 10.
        test_fraction: share of the 1,797 digits held out for the test set.

    Returns:
        A :class:`CanvasTask` with one test set, ``"test"``, and 4 classes.

    Raises:
        TypeError: ``n_train``, ``seed`` or ``canvas_size`` is not an int, or ``test_fraction``
            is not a real number.
        ValueError: ``n_train`` is below 1, ``seed`` is negative, ``canvas_size`` below 10, or
            ``test_fraction`` is not in (0, 1).

    Examples:
        A digit labelled 3 (bottom-right) leaves the top five rows and left five columns blank.

        >>> from shared_lib.data.canvas import where_task
        >>> task = where_task(100, seed=0)
        >>> task
        CanvasTask(train=(100, 1, 16, 16), test=719, classes=4: which quadrant holds the digit)
        >>> bottom_right = task.x_train[task.y_train == 3]
        >>> float(bottom_right[..., :5, :].sum()), float(bottom_right[..., :, :5].sum())
        (0.0, 0.0)
    """
    check_int(n_train, "n_train", minimum=1)
    check_int(seed, "seed", minimum=0)  # sklearn's random_state refuses a negative seed
    check_int(canvas_size, "canvas_size", GLYPH_SIZE + 2)
    last = canvas_size - GLYPH_SIZE
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
