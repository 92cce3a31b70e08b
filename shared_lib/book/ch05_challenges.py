"""Chapter 05, *Challenges*: what sharing costs in capacity (a Transformer whose layers must
differ) and between tasks (a shared trunk against separate networks), and the figure of the
relatedness explorer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure
from torch import nn
from torch.nn import functional as F

from shared_lib._validation import check_float, check_int
from shared_lib.book.ch04_applications import multitask_accuracy, train_multitask
from shared_lib.counting import count_parameters
from shared_lib.data.conflict import TASKS, TaskPair, related_tasks
from shared_lib.data.sequences import offset_copies
from shared_lib.guards import task_gradient_cosine
from shared_lib.models.small import MLP, MultiTaskNet
from shared_lib.models.transformer import TransformerConfig, TransformerEncoder
from shared_lib.plotting import PALETTE, book_style
from shared_lib.training import seed_everything, train_steps

__all__ = [
    "render_conflict",
    "shared_and_separate",
    "train_offset_copier",
    "train_task_pair",
    "trunk_gradient_cosine",
]


def trunk_gradient_cosine(
    model: nn.Module, data: TaskPair, shared: nn.Module, n_probe: int = 512
) -> float:
    """Cosine of the two tasks' loss gradients on ``shared``'s parameters, on held-out inputs.

    Both losses are taken on the same ``n_probe`` test inputs (each with its own task's labels),
    so the cosine reflects the tasks, not two different samples: +1 when they pull the trunk
    the same way, negative when one task's step undoes the other's.
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
) -> list[float]:
    """Train ``model(x, task)`` on both tasks at once (summed losses, Adam) with
    :func:`shared_lib.book.ch04_applications.train_multitask`; return the trunk gradient cosines.

    Every ``measure_every`` steps, when ``shared`` (the shared trunk) is given, the cosine of
    the two tasks' gradients on its parameters is recorded (:func:`trunk_gradient_cosine`).
    For a model made of two separate networks the summed loss trains each exactly as alone.
    """
    check_int(steps, "steps", 1)
    check_int(batch_size, "batch_size", 1)
    check_int(measure_every, "measure_every", 1)
    if shared is not None and not isinstance(shared, nn.Module):
        raise TypeError(f"shared must be an nn.Module or None, got {type(shared).__name__}")
    cosines: list[float] = []

    def measure(step: int) -> None:  # after both tasks' losses, before the backward pass
        if shared is not None and step % measure_every == 0:
            cosines.append(trunk_gradient_cosine(model, data, shared))

    train_multitask(model, data, steps, lr, batch_size, seed, on_step=measure)
    return cosines


def train_offset_copier(
    config: TransformerConfig,
    offsets: list[int],
    steps: int = 130,
    batch_size: int = 128,
    lr: float = 1e-2,
    seed: int = 0,
    n_test: int = 2000,
) -> tuple[float, int]:
    """Train ``TransformerEncoder(config)`` and a linear read-out on offset copying (chapter 05).

    The task is :func:`shared_lib.data.sequences.offset_copies` with sequences of
    ``config.max_position`` tokens from ``config.vocab_size``: at every position, predict the
    tokens ``offsets`` places back (one softmax per offset). Training is Adam on the summed
    cross-entropy, ``steps`` batches of ``batch_size`` fresh sequences; ``seed`` fixes the
    initialisation, the training and the test sequences.

    Returns:
        ``(accuracy, unique_parameters)``: the fraction of targets right on ``n_test`` fresh
        sequences, and the stored parameters of encoder and read-out.
    """
    if not isinstance(config, TransformerConfig):
        raise TypeError(f"config must be a TransformerConfig, got {type(config).__name__}")
    check_int(steps, "steps", 1)
    check_int(batch_size, "batch_size", 1)
    check_int(seed, "seed", 0)
    check_int(n_test, "n_test", 1)
    check_float(lr, "lr", 0.0, low_inclusive=False)
    length, vocab = config.max_position, config.vocab_size
    tokens, targets = offset_copies(steps * batch_size, length, offsets, vocab, seed=2 * seed)
    test_tokens, test_targets = offset_copies(n_test, length, offsets, vocab, seed=2 * seed + 1)
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
        accuracy = (logits(test_tokens).argmax(-1) == test_targets).float().mean().item()
    return accuracy, count_parameters(model)


def shared_and_separate(
    relatedness: float,
    seed: int,
    n_train: int = 200,
    inputs: int = 16,
    hidden: int = 8,
    n_classes: int = 4,
    steps: int = 400,
    batch_size: int = 100,
) -> dict:
    """Train one trunk with two heads and, with the same recipe, two separate networks of the
    same shape on :func:`~shared_lib.data.conflict.related_tasks` of ``relatedness``.

    Returns a dict with ``"shared"`` and ``"separate"`` (test accuracy per task), ``"cosine"``
    (the trunk gradient cosine averaged over training) and ``"params"`` (unique parameters of
    the shared model and of the two separate networks).
    """
    check_int(seed, "seed", 0)
    data = related_tasks(n_train, relatedness, seed=seed)
    seed_everything(seed)
    trunk = nn.Sequential(nn.Linear(inputs, hidden), nn.ReLU())
    shared = MultiTaskNet(trunk, {task: nn.Linear(hidden, n_classes) for task in TASKS})
    cosines = train_task_pair(
        shared, data, steps=steps, batch_size=batch_size, seed=seed, shared=trunk
    )
    seed_everything(seed)
    separate = MultiTaskNet(nn.Identity(), {task: MLP(inputs, hidden, n_classes) for task in TASKS})
    train_task_pair(separate, data, steps=steps, batch_size=batch_size, seed=seed)
    return {
        "shared": multitask_accuracy(shared, data),
        "separate": multitask_accuracy(separate, data),
        "cosine": sum(cosines) / len(cosines),
        "params": (count_parameters(shared), count_parameters(separate)),
    }


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
            1, 2, figsize=(8, 3), gridspec_kw={"width_ratios": [1.4, 1]}
        )
        for i, task in enumerate(TASKS):
            for j, (key, color) in enumerate((("shared", PALETTE[0]), ("separate", PALETTE[5]))):
                value, x = chosen[key][task], i + 0.38 * (j - 0.5)
                bars.bar(x, value, width=0.36, color=color, label=key if i == 0 else None)
                bars.text(x, value + 0.01, f"{value:.3f}", ha="center", fontsize=8)
        bars.set_xticks(range(len(TASKS)), [f"task {task}" for task in TASKS])
        bars.set_ylim(0.5, 0.85)
        bars.set_ylabel("test accuracy")
        bars.set_title(f"r = {relatedness}: sharing gains {gain:+.3f}")
        bars.legend(loc="upper right", fontsize=8)
        values: Sequence[float] = sorted(cosine)
        line.plot(values, [cosine[r] for r in values], "o-", color="0.6")
        line.plot(relatedness, cosine[relatedness], "o", color=PALETTE[0], markersize=10)
        line.axhline(0, color="0.5", linewidth=0.8)
        line.set_xlabel("relatedness r")
        line.set_ylabel("trunk gradient cosine")
        fig.subplots_adjust(left=0.1, right=0.98, bottom=0.18, top=0.88, wspace=0.35)
    return fig
