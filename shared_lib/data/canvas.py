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

from shared_lib._validation import require_extra

__all__ = [
    "GLYPH_SIZE",
    "CanvasTask",
    "digit_glyphs",
    "place_glyphs",
    "unseen_position_task",
    "where_task",
]

GLYPH_SIZE = 8


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
    load_digits = require_extra("sklearn.datasets", "The digits data").load_digits

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
    train_test_split = require_extra("sklearn.model_selection", "The digits data").train_test_split

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
