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

from shared_lib._validation import check_float, check_int

__all__ = [
    "TASKS",
    "TaskPair",
    "related_tasks",
    "related_teachers",
]

#: Names of the two tasks, as keys of :class:`TaskPair` and as ``MultiTaskNet`` heads.
TASKS = ("a", "b")


def related_teachers(
    relatedness: float, width: int = 16, hidden: int = 8, n_classes: int = 4, seed: int = 0
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The two teachers ``{"a": (W, R), "b": (W, R)}``, ``W`` (hidden, width), ``R`` (n_classes,
    hidden), whose flattened parameter vectors have cosine ``relatedness`` and equal norms.

    Args:
        relatedness: the cosine of the two teachers' parameter vectors, in [0, 1].
        width: input features, at least 1.
        hidden: hidden units of each teacher, at least 1.
        n_classes: logits of each teacher, at least 2.
        seed: fixes both teachers, at least 0.

    Returns:
        ``{"a": (W, R), "b": (W, R)}``: float32 ``W`` of shape ``(hidden, width)`` and ``R`` of
        shape ``(n_classes, hidden)``; a teacher's logits are ``R tanh(W x)``.

    Raises:
        TypeError: ``relatedness`` is not a real number, or a size or ``seed`` is not an int.
        ValueError: ``relatedness`` is outside [0, 1], or a size or ``seed`` is below its
            minimum.

    Examples:
        >>> import torch
        >>> from shared_lib.data.conflict import related_teachers
        >>> teachers = related_teachers(0.5, width=4, hidden=3, n_classes=2, seed=0)
        >>> tuple(teachers["a"][0].shape), tuple(teachers["a"][1].shape)
        ((3, 4), (2, 3))
        >>> a, b = (torch.cat([p.flatten() for p in teachers[t]]) for t in ("a", "b"))
        >>> round(float(a @ b / (a.norm() * b.norm())), 4), round(float(a.norm() / b.norm()), 4)
        (0.5, 1.0)
    """
    r = check_float(relatedness, "relatedness", 0.0, 1.0)
    check_int(width, "width", 1)
    check_int(hidden, "hidden", 1)
    check_int(n_classes, "n_classes", 2)
    check_int(seed, "seed", 0)
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

    Examples:
        >>> import torch
        >>> from shared_lib.data.conflict import TaskPair
        >>> x, y = torch.zeros(4, 16), torch.tensor([0, 1, 2, 3])
        >>> pair = TaskPair({"a": (x, y), "b": (x, y)}, x, {"a": y, "b": y}, 1.0)
        >>> sorted(pair.train), pair.relatedness
        (['a', 'b'], 1.0)
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
    the argmax of the task's teacher logits. A trunk shared by the two tasks helps when they
    are related and makes them compete for its capacity when they are not (chapter 05).

    Args:
        n_train: training examples per task (each task has its own inputs), at least 1.
        relatedness: the cosine of the two teachers' parameters, in [0, 1].
        n_test: inputs of the shared test set, at least 1.
        width: input features, at least 1.
        hidden: hidden units of each teacher, at least 1.
        n_classes: classes of each task, at least 2.
        seed: fixes the teachers, at least 0.
        data_seed: fixes the inputs (default ``seed + 1``), at least 0.

    Returns:
        A :class:`TaskPair` of float32 inputs ``(n, width)`` and int64 labels.

    Raises:
        TypeError: ``relatedness`` is not a real number, or a size or seed is not an int.
        ValueError: ``relatedness`` is outside [0, 1], or a size or seed is below its minimum.

    Examples:
        Relatedness 1 gives the same task twice; 0 two unrelated tasks, whose labels agree on
        few test inputs (4 classes):

        >>> from shared_lib.data.conflict import related_tasks
        >>> pair = related_tasks(100, 1.0)
        >>> bool((pair.y_test["a"] == pair.y_test["b"]).all())
        True
        >>> unrelated = related_tasks(100, 0.0, n_test=500)
        >>> agree = (unrelated.y_test["a"] == unrelated.y_test["b"]).float().mean()
        >>> tuple(unrelated.x_test.shape), round(float(agree), 3)
        ((500, 16), 0.174)
    """
    check_int(n_train, "n_train", 1)
    check_int(n_test, "n_test", 1)
    check_int(seed, "seed", 0)
    teachers = related_teachers(relatedness, width, hidden, n_classes, seed)
    data_seed = seed + 1 if data_seed is None else check_int(data_seed, "data_seed", 0)
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
