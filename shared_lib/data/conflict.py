"""Generated tasks that show what sharing costs (chapter 05).

Two tasks whose relatedness is a dial, for hard multi-task sharing. Each task
labels Gaussian inputs with its own random *teacher* network ``logits = R tanh(W x)``. The
second teacher's parameters are a mix of the first's and an independent direction,
``θ_b = r θ_a + sqrt(1 - r²) θ_⊥`` with ``θ_⊥`` orthogonal to ``θ_a`` and of the same norm, so
the cosine of the two teachers' parameter vectors is exactly the relatedness ``r``: 1 gives the
same task twice, 0 two unrelated tasks that compete for a shared trunk's capacity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from shared_lib._validation import check_int as _check_int

__all__ = [
    "TASKS",
    "TaskPair",
    "related_tasks",
    "related_teachers",
]

#: Names of the two tasks, as keys of :class:`TaskPair` and as ``MultiTaskNet`` heads.
TASKS = ("a", "b")


def _check_relatedness(relatedness: object) -> float:
    if isinstance(relatedness, bool) or not isinstance(relatedness, (int, float)):
        raise TypeError(f"relatedness must be a float, got {type(relatedness).__name__}")
    if not 0.0 <= relatedness <= 1.0:
        raise ValueError(f"relatedness must be in [0, 1], got {relatedness}")
    return float(relatedness)


def related_teachers(
    relatedness: float, width: int = 16, hidden: int = 8, n_classes: int = 4, seed: int = 0
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The two teachers ``{"a": (W, R), "b": (W, R)}``, ``W`` (hidden, width), ``R`` (n_classes,
    hidden), whose flattened parameter vectors have cosine ``relatedness`` and equal norms."""
    r = _check_relatedness(relatedness)
    _check_int(width, "width", 1)
    _check_int(hidden, "hidden", 1)
    _check_int(n_classes, "n_classes", 2)
    _check_int(seed, "seed", 0)
    generator = torch.Generator().manual_seed(seed)
    sizes = (hidden * width, n_classes * hidden)

    def draw() -> torch.Tensor:  # W entries of std 2/sqrt(width): tanh neither linear nor saturated
        w = torch.randn(sizes[0], generator=generator) * (2 / math.sqrt(width))
        return torch.cat([w, torch.randn(sizes[1], generator=generator)])

    theta_a, other = draw(), draw()
    orthogonal = other - (other @ theta_a) / (theta_a @ theta_a) * theta_a
    orthogonal = orthogonal * (theta_a.norm() / orthogonal.norm())
    theta_b = r * theta_a + math.sqrt(1.0 - r * r) * orthogonal

    def unpack(theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w, readout = theta.split(sizes)
        return w.view(hidden, width), readout.view(n_classes, hidden)

    return {"a": unpack(theta_a), "b": unpack(theta_b)}


@dataclass(frozen=True)
class TaskPair:
    """Training sets per task and one shared test set labelled by both teachers.

    Attributes:
        train: ``{"a": (x, y), "b": (x, y)}``, different inputs for each task.
        x_test: test inputs (n_test, width).
        y_test: ``{"a": labels, "b": labels}`` of ``x_test``.
        relatedness: the cosine of the two teachers' parameters.
    """

    train: dict[str, tuple[torch.Tensor, torch.Tensor]]
    x_test: torch.Tensor
    y_test: dict[str, torch.Tensor]
    relatedness: float


@torch.no_grad()
def related_tasks(
    n_train: int,
    relatedness: float,
    n_test: int = 2000,
    width: int = 16,
    hidden: int = 8,
    n_classes: int = 4,
    seed: int = 0,
    data_seed: int | None = None,
) -> TaskPair:
    """Two classification tasks of ``n_train`` examples each, teachers ``relatedness`` apart.

    ``seed`` fixes the teachers, ``data_seed`` (default ``seed + 1``) the inputs. A label is
    the argmax of the task's teacher logits.

    >>> pair = related_tasks(100, 1.0)
    >>> bool((pair.y_test["a"] == pair.y_test["b"]).all())
    True
    """
    _check_int(n_train, "n_train", 1)
    _check_int(n_test, "n_test", 1)
    teachers = related_teachers(relatedness, width, hidden, n_classes, seed)
    data_seed = seed + 1 if data_seed is None else _check_int(data_seed, "data_seed", 0)
    generator = torch.Generator().manual_seed(data_seed)

    def label(task: str, x: torch.Tensor) -> torch.Tensor:
        w, readout = teachers[task]
        return (torch.tanh(x @ w.T) @ readout.T).argmax(1)

    train = {}
    for task in TASKS:
        x = torch.randn(n_train, width, generator=generator)
        train[task] = (x, label(task, x))
    x_test = torch.randn(n_test, width, generator=generator)
    y_test = {task: label(task, x_test) for task in TASKS}
    return TaskPair(train, x_test, y_test, float(relatedness))
