"""Chapter 05, *Challenges*: what sharing costs in capacity (stacks and Transformers whose
layers must differ) and between tasks (a shared trunk against separate networks), each model
trained at the learning rate its own validation data picks, and the figure of the relatedness
explorer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure
from torch import nn
from torch.nn import functional as F

from shared_lib._validation import check_callable, check_choice, check_float, check_int
from shared_lib.book.ch04_applications import multitask_accuracy, train_multitask
from shared_lib.counting import count_parameters
from shared_lib.data.conflict import TASKS, TaskPair, related_tasks
from shared_lib.data.sequences import offset_copies
from shared_lib.guards import task_gradient_cosine
from shared_lib.layers.relaxed import RelaxedSharedStack
from shared_lib.models.small import MLP, MultiTaskNet
from shared_lib.models.transformer import TransformerConfig, TransformerEncoder
from shared_lib.plotting import PALETTE, book_style
from shared_lib.training import derive_seed, train_steps

__all__ = [
    "CONFLICT_KINDS",
    "Tuned",
    "conflict_model",
    "fit_student",
    "render_conflict",
    "train_conflict_model",
    "train_offset_copier",
    "train_task_pair",
    "trunk_gradient_cosine",
    "tune_learning_rate",
    "tuned_conflict_model",
]


@dataclass(frozen=True)
class Tuned:
    """The run a learning-rate sweep kept (:func:`tune_learning_rate`).

    Attributes:
        lr: the learning rate with the best validation score.
        validation: that score.
        result: what the run returned at that learning rate (test scores, counts, ...).
        validation_by_lr: the validation score of every learning rate tried.
    """

    lr: float
    validation: float
    result: Any
    validation_by_lr: dict[float, float] = field(default_factory=dict)


def tune_learning_rate(
    run: Callable[[float], tuple[float, Any]], learning_rates: Sequence[float]
) -> Tuned:
    """Run ``run(lr) -> (validation score, result)`` at every learning rate; keep the best.

    A shared weight receives the sum of its uses' gradients, so a shared model and an unshared
    one need not have the same best learning rate: chapter 05 gives each model the one its own
    validation data picks (higher is better; a tie keeps the first listed), and scores the kept
    run on test data only.

    Examples:
        >>> from shared_lib.book.ch05_challenges import tune_learning_rate
        >>> tuned = tune_learning_rate(lambda lr: (-abs(lr - 0.1), f"run at {lr}"), [0.01, 0.1, 1])
        >>> tuned.lr, tuned.result
        (0.1, 'run at 0.1')
    """
    check_callable(run, "run")
    if not learning_rates:
        raise ValueError("learning_rates must hold at least one learning rate")
    best: Tuned | None = None
    scores: dict[float, float] = {}
    for lr in learning_rates:
        check_float(lr, "learning_rates", 0.0, low_inclusive=False)
        score, result = run(lr)
        scores[lr] = float(score)
        if best is None or score > best.validation:
            best = Tuned(lr, float(score), result)
    assert best is not None
    return Tuned(best.lr, best.validation, best.result, scores)


def fit_student(
    make_stack: Callable[[], nn.Module],
    train: tuple[torch.Tensor, torch.Tensor],
    evaluations: Sequence[tuple[torch.Tensor, torch.Tensor]],
    seed: int,
    epochs: int = 300,
    lr: float = 0.05,
) -> tuple[list[float], int]:
    """Fit ``make_stack()`` plus a linear read-out to a teacher's outputs; score it on each set.

    Training is full-batch Adam on the mean squared error to the teacher's logits (the recipe of
    chapter 06's ``student_accuracy``), ``epochs`` steps at learning rate ``lr``; ``seed`` fixes
    the initialisation (without touching the global random state). ``train`` and every item of
    ``evaluations`` are ``(inputs, teacher logits)``.

    Returns:
        ``(agreements, unique_parameters)``: for every evaluation set, the fraction of inputs
        where the student's argmax agrees with the teacher's; the student's stored parameters.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from shared_lib.book.ch05_challenges import fit_student
        >>> x = torch.randn(64, 3)
        >>> z = x @ torch.randn(3, 2)
        >>> (agreement,), params = fit_student(nn.Identity, (x, z), [(x, z)], seed=0, epochs=200)
        >>> agreement > 0.9, params  # a linear teacher: the read-out alone (3·2 + 2) fits it
        (True, 8)
    """
    check_int(seed, "seed", 0)
    check_int(epochs, "epochs", 1)
    check_float(lr, "lr", 0.0, low_inclusive=False)
    x_train, z_train = train
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        student = nn.Sequential(make_stack(), nn.Linear(x_train.shape[1], z_train.shape[1]))
    optimizer = torch.optim.Adam(student.parameters(), lr=lr)
    student.train()
    train_steps(optimizer, range(epochs), lambda _: F.mse_loss(student(x_train), z_train))
    student.eval()
    with torch.no_grad():
        agreements = [
            (student(x).argmax(1) == z.argmax(1)).float().mean().item() for x, z in evaluations
        ]
    return agreements, count_parameters(student)


def trunk_gradient_cosine(
    model: nn.Module, data: TaskPair, shared: nn.Module, n_probe: int = 512
) -> float:
    """Cosine of the two tasks' loss gradients on ``shared``'s parameters, on held-out inputs.

    Both losses are taken on the same ``n_probe`` inputs of ``data.x_test`` (each with its own
    task's labels), so the cosine reflects the tasks, not two different samples: +1 when they
    pull the trunk the same way, negative when one task's step undoes the other's.
    """
    check_int(n_probe, "n_probe", 1)
    x = data.x_test[:n_probe]
    losses = [F.cross_entropy(model(x, task), data.y_test[task][:n_probe]) for task in TASKS]
    return task_gradient_cosine(losses, shared.parameters())


def train_task_pair(
    model: nn.Module,
    data: TaskPair,
    steps: int = 300,
    lr: float = 1e-2,
    batch_size: int = 64,
    seed: int = 0,
    shared: nn.Module | None = None,
    measure_every: int = 10,
    probe: TaskPair | None = None,
) -> list[float]:
    """Train ``model(x, task)`` on both tasks at once (summed losses, Adam) with
    :func:`shared_lib.book.ch04_applications.train_multitask`; return the trunk gradient cosines.

    Every ``measure_every`` steps, when ``shared`` (the shared trunk) is given, the cosine of
    the two tasks' gradients on its parameters is recorded (:func:`trunk_gradient_cosine`) on
    the held-out inputs of ``probe`` (default ``data``). For a model made of two separate
    networks the summed loss trains each exactly as alone.
    """
    check_int(steps, "steps", 1)
    check_int(batch_size, "batch_size", 1)
    check_int(measure_every, "measure_every", 1)
    if shared is not None and not isinstance(shared, nn.Module):
        raise TypeError(f"shared must be an nn.Module or None, got {type(shared).__name__}")
    probe = data if probe is None else probe
    cosines: list[float] = []

    def measure(step: int) -> None:  # after both tasks' losses, before the backward pass
        if shared is not None and step % measure_every == 0:
            cosines.append(trunk_gradient_cosine(model, probe, shared))

    train_multitask(model, data, steps, lr, batch_size, seed, on_step=measure)
    return cosines


#: The kinds of two-task network :func:`conflict_model` builds.
CONFLICT_KINDS = ("shared", "separate", "adapters", "frozen")


def conflict_model(
    kind: str,
    hidden: int = 8,
    inputs: int = 16,
    n_classes: int = 4,
    seed: int = 0,
    rank: int = 2,
) -> tuple[MultiTaskNet, nn.Module | None]:
    """A two-task network and its shared trunk (``None`` when nothing is shared).

    ``kind="shared"``: a trunk ``Linear(inputs, hidden) + ReLU`` with a ``Linear(hidden,
    n_classes)`` head per task (hard parameter sharing); ``kind="separate"``: one ``inputs →
    hidden → n_classes`` network per task. ``kind="adapters"``: the same trunk, which every
    task runs with its own low-rank correction ``W + B_t A_t`` of rank ``rank`` on the trunk's
    weight (LoRA, Hu et al. 2022; a one-layer
    :class:`~shared_lib.layers.relaxed.RelaxedSharedStack` per task around the one trunk,
    ``B_t = 0`` at the start), then its head. ``kind="frozen"``: task ``a`` runs the plain trunk
    and its head, task ``b`` the trunk with an adapter and its head (the layout of
    :func:`train_conflict_model`'s frozen-trunk recipe). ``seed`` fixes the initialisation.

    Unique parameters, with ``T = hidden · (inputs + 1)`` (the trunk), ``H = n_classes ·
    (hidden + 1)`` (a head) and ``L = rank · (inputs + hidden)`` (an adapter): shared ``T + 2H``,
    separate ``2(T + H)``, adapters ``T + 2(H + L)``, frozen ``T + 2H + L``.

    Examples:
        >>> from shared_lib.book.ch05_challenges import conflict_model
        >>> from shared_lib.counting import count_parameters
        >>> shared, trunk = conflict_model("shared", hidden=8)
        >>> separate, none = conflict_model("separate", hidden=8)
        >>> count_parameters(shared), count_parameters(separate), none is None
        (208, 344, True)
        >>> adapters, trunk = conflict_model("adapters", hidden=8, rank=2)
        >>> count_parameters(adapters)  # 136 + 2 · (36 + 2 · (16 + 8)): the trunk stored once
        304
    """
    check_choice(kind, "kind", CONFLICT_KINDS)
    check_int(hidden, "hidden", 1)
    check_int(seed, "seed", 0)
    check_int(rank, "rank", 1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if kind == "separate":
            networks = {task: MLP(inputs, hidden, n_classes) for task in TASKS}
            return MultiTaskNet(nn.Identity(), networks), None
        trunk = nn.Sequential(nn.Linear(inputs, hidden), nn.ReLU())
        if kind == "shared":
            heads = {task: nn.Linear(hidden, n_classes) for task in TASKS}
            return MultiTaskNet(trunk, heads), trunk
        adapted = TASKS if kind == "adapters" else TASKS[1:]
        towers = {  # every tower holds the same trunk module: one tensor, several uses
            task: nn.Sequential(
                RelaxedSharedStack(trunk, 1, rank=rank) if task in adapted else trunk,
                nn.Linear(hidden, n_classes),
            )
            for task in TASKS
        }
        return MultiTaskNet(nn.Identity(), towers), trunk


def _one_task(data: TaskPair, task: str) -> TaskPair:
    """``data`` with only ``task``'s training set (for training one task alone)."""
    return TaskPair({task: data.train[task]}, data.x_test, data.y_test, data.relatedness)


def train_conflict_model(
    kind: str,
    data: TaskPair,
    validation: TaskPair,
    hidden: int = 8,
    lr: float = 1e-2,
    seed: int = 0,
    steps: int = 400,
    batch_size: int = 100,
    rank: int = 2,
) -> tuple[float, dict]:
    """Train :func:`conflict_model` on ``data``'s two tasks; score it on validation and test.

    ``"shared"``, ``"separate"`` and ``"adapters"`` train both tasks at once
    (:func:`train_task_pair`): the adapters and the trunk learn together. ``"frozen"`` is the
    other way adapters are used: the trunk and task ``a``'s head are trained on task ``a``
    alone, then the trunk is frozen and only task ``b``'s adapter (of rank ``rank``) and head
    are trained on task ``b``, ``steps`` steps each at learning rate ``lr``.

    Returns:
        ``(validation accuracy, result)``: the mean over both tasks of the accuracy on
        ``validation.x_test``, and a dict with ``"test"`` (test accuracy per task, on
        ``data.x_test``), ``"cosine"`` (the trunk gradient cosine on validation inputs, averaged
        over training; ``None`` for separate networks and the frozen trunk) and ``"params"``
        (unique parameters).
    """
    model, trunk = conflict_model(kind, hidden, data.x_test.shape[1], seed=seed, rank=rank)
    if kind == "frozen":
        first, second = TASKS
        train_multitask(model, _one_task(data, first), steps, lr, batch_size, seed)
        trunk.requires_grad_(False)  # Adam skips tensors without gradients
        train_multitask(
            model, _one_task(data, second), steps, lr, batch_size, derive_seed(second, base=seed)
        )
        trunk.requires_grad_(True)
        cosines: list[float] = []
    else:
        cosines = train_task_pair(
            model, data, steps, lr, batch_size, seed, shared=trunk, probe=validation
        )
    on_validation = multitask_accuracy(model, validation)
    result = {
        "test": multitask_accuracy(model, data),
        "cosine": sum(cosines) / len(cosines) if cosines else None,
        "params": count_parameters(model),
    }
    return sum(on_validation.values()) / len(on_validation), result


def tuned_conflict_model(
    kind: str,
    relatedness: float,
    seed: int,
    hidden: int = 8,
    learning_rates: Sequence[float] = (3e-3, 1e-2, 3e-2),
    n_train: int = 200,
    n_validation: int = 1000,
    steps: int = 400,
    batch_size: int = 100,
    rank: int = 2,
) -> Tuned:
    """:func:`train_conflict_model` at each learning rate, the best on validation kept.

    The task pair is :func:`~shared_lib.data.conflict.related_tasks` of ``relatedness``: its
    teachers, training and test inputs are fixed by ``seed``, and ``n_validation`` further
    inputs labelled by the same teachers pick the learning rate. Every model trained on the
    same ``seed`` sees the same data, batches and (for its shape) initialisation. ``kind`` and
    ``rank`` are those of :func:`conflict_model`.
    """
    check_int(seed, "seed", 0)
    data = related_tasks(n_train, relatedness, seed=seed, data_seed=derive_seed("data", base=seed))
    validation = related_tasks(
        1, relatedness, n_test=n_validation, seed=seed, data_seed=derive_seed("val", base=seed)
    )

    def run(lr: float) -> tuple[float, dict]:
        return train_conflict_model(
            kind, data, validation, hidden, lr, seed, steps, batch_size, rank
        )

    return tune_learning_rate(run, learning_rates)


def train_offset_copier(
    config: TransformerConfig,
    offsets: list[int],
    steps: int = 130,
    batch_size: int = 128,
    lr: float = 1e-2,
    seed: int = 0,
    n_test: int = 2000,
) -> tuple[float, float, int]:
    """Train ``TransformerEncoder(config)`` and a linear read-out on offset copying (chapter 05).

    The task is :func:`shared_lib.data.sequences.offset_copies` with sequences of
    ``config.max_position`` tokens from ``config.vocab_size``: at every position, predict the
    tokens ``offsets`` places back (one softmax per offset). Training is Adam on the summed
    cross-entropy, ``steps`` batches of ``batch_size`` fresh sequences; ``seed`` fixes the
    initialisation, the training, validation and test sequences.

    Returns:
        ``(validation_accuracy, test_accuracy, unique_parameters)``: the fraction of targets
        right on ``n_test`` fresh validation sequences and on ``n_test`` fresh test sequences,
        and the stored parameters of encoder and read-out.
    """
    if not isinstance(config, TransformerConfig):
        raise TypeError(f"config must be a TransformerConfig, got {type(config).__name__}")
    check_int(steps, "steps", 1)
    check_int(batch_size, "batch_size", 1)
    check_int(seed, "seed", 0)
    check_int(n_test, "n_test", 1)
    check_float(lr, "lr", 0.0, low_inclusive=False)
    length, vocab = config.max_position, config.vocab_size

    def sequences(n: int, part: str) -> tuple[torch.Tensor, torch.Tensor]:
        return offset_copies(n, length, offsets, vocab, seed=derive_seed(part, base=seed))

    tokens, targets = sequences(steps * batch_size, "train")
    held_out = {part: sequences(n_test, part) for part in ("validation", "test")}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = TransformerEncoder(config)
        readout = nn.Linear(config.hidden_size, len(offsets) * vocab)
    model = nn.ModuleList([encoder, readout])

    def logits(x: torch.Tensor) -> torch.Tensor:  # (B, T, offsets, vocab)
        return readout(encoder(x)[0]).unflatten(-1, (len(offsets), vocab))

    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    batches = zip(tokens.split(batch_size), targets.split(batch_size), strict=True)
    train_steps(
        optimizer,
        batches,
        lambda batch: F.cross_entropy(logits(batch[0]).flatten(0, 2), batch[1].flatten()),
    )
    model.eval()
    with torch.no_grad():
        validation, test = (
            (logits(x).argmax(-1) == y).float().mean().item() for x, y in held_out.values()
        )
    return validation, test, count_parameters(model)


def render_conflict(
    relatedness: float,
    accuracy: Mapping[float, Mapping[str, Mapping[str, float]]],
    cosine: Mapping[float, float],
) -> Figure:
    """The relatedness explorer's frame: per-task accuracy of shared vs. separate models at
    ``relatedness`` (``accuracy[r]["shared" | "separate"][task]``), and the trunk gradient cosine
    at every relatedness in ``cosine`` with the chosen one highlighted."""
    if relatedness not in accuracy or relatedness not in cosine:
        raise ValueError(f"relatedness must be one of {sorted(cosine)}, got {relatedness!r}")
    chosen = accuracy[relatedness]
    gain = sum(chosen["shared"][t] - chosen["separate"][t] for t in TASKS) / len(TASKS)
    with book_style():
        fig, (bars, line) = plt.subplots(
            1, 2, figsize=(7.5, 3.2), gridspec_kw={"width_ratios": [1.4, 1]}
        )
        for i, task in enumerate(TASKS):
            for j, (key, color) in enumerate((("shared", PALETTE[0]), ("separate", PALETTE[5]))):
                value, x = chosen[key][task], i + 0.38 * (j - 0.5)
                bars.bar(x, value, width=0.36, color=color, label=key if i == 0 else None)
                bars.text(x, value + 0.01, f"{value:.3f}", ha="center", fontsize=10)
        bars.set_xticks(range(len(TASKS)), [f"task {task}" for task in TASKS])
        bars.set_ylim(0.5, 0.9)  # chance is 0.25; the axis starts at 0.5
        bars.set_ylabel("test accuracy")
        bars.set_title(f"r = {relatedness}: sharing gains {gain:+.3f}")
        bars.legend(loc="upper right", fontsize=10, frameon=True, edgecolor="0.3")
        values: Sequence[float] = sorted(cosine)
        line.plot(values, [cosine[r] for r in values], "o-", color="0.6")
        line.plot(relatedness, cosine[relatedness], "o", color=PALETTE[0], markersize=10)
        line.axhline(0, color="0.5", linewidth=0.8)
        line.set_xlabel("relatedness r")
        line.set_ylabel("trunk gradient cosine")
        fig.subplots_adjust(left=0.1, right=0.98, bottom=0.17, top=0.88, wspace=0.38)
    return fig
