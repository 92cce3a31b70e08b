"""Chapter 06, *Parameter sharing in deep learning models*: sharing across time (parity), depth
(a looped block, a student of a layer-wise teacher) and rotations (plain vs. p4 CNN), and the
cross-layer explorer's figure.

Each function is seeded and runs on the CPU in a few seconds; the chapter calls them and
asserts what they measure.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure
from torch import nn

from shared_lib._validation import check_bool, check_int
from shared_lib.counting import count_parameters
from shared_lib.data.sequences import SOURCE, chain_reachability, parity
from shared_lib.layers.group import P4ConvP4, P4ConvZ2, RotationPool
from shared_lib.layers.relaxed import LoopedNet
from shared_lib.models.small import ConvStep
from shared_lib.plotting import PALETTE, book_style, plot_assignment
from shared_lib.sharing import SharedStack, layer_assignment
from shared_lib.training import fit, seed_everything, train_steps

__all__ = [
    "STACK_LRS",
    "STRATEGY_NAMES",
    "STUDENT_LRS",
    "TunedStudent",
    "agreement",
    "looped_accuracy",
    "p4_cnn",
    "padded_one_hot",
    "parity_accuracy",
    "plain_cnn",
    "reach_ceiling",
    "render_assignment",
    "student_accuracy",
    "train_looped",
    "train_parity",
    "train_stack",
    "train_student",
    "tuned_stack",
    "tuned_student",
    "unshared_stack",
    "weight_bytes_moved",
]

#: Display names of :func:`shared_lib.sharing.layer_assignment`'s strategies.
STRATEGY_NAMES = {"sequence": "sequence", "cycle": "cycle", "cycle_rev": "cycle (rev)"}


Encoder = Callable[[torch.Tensor], torch.Tensor]


def padded_one_hot(bits: torch.Tensor, width: int = 10) -> torch.Tensor:
    """The fixed-size input of a network without sharing across time: ``bits`` ``(batch, time)``
    padded to ``width`` steps with a third symbol, one-hot, flattened to ``(batch, 3 * width)``.

    A string longer than ``width`` is refused (ValueError): such a network has no weights for
    the extra steps.
    """
    check_int(width, "width", 1)
    if bits.dim() != 2 or bits.shape[1] > width:
        raise ValueError(
            f"bits must have shape (batch, time <= width={width}), got {tuple(bits.shape)}"
        )
    padded = nn.functional.pad(bits, (0, width - bits.shape[1]), value=2)
    return nn.functional.one_hot(padded, 3).float().flatten(1)


def _identity(bits: torch.Tensor) -> torch.Tensor:
    return bits


def train_parity(
    model: nn.Module,
    seed: int,
    encode: Encoder = _identity,
    steps: int = 400,
    max_length: int = 10,
    lr: float = 1e-2,
    curriculum: bool = True,
) -> nn.Module:
    """Train ``model`` on parity with Adam for ``steps`` batches of 64 fresh strings, each batch of
    one random length; ``encode`` turns bits into the model's input.

    With ``curriculum`` (the default) the lengths are drawn from ``2..longest``, where
    ``longest`` starts at 2 and grows by one whenever a batch of length ``longest`` is at least
    95 % right, up to ``max_length``: parity of many bits gives almost no gradient until
    parity of few bits is learned, and without this schedule some initialisations never learn
    it at all. Without it, every batch's length is drawn from ``2..max_length``.
    """
    check_int(steps, "steps", 1)
    check_int(max_length, "max_length", 2)
    check_bool(curriculum, "curriculum")
    seed_everything(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    fractions = torch.rand(steps, generator=generator).tolist()
    longest = 2 if curriculum else max_length

    def parity_loss(step: int) -> torch.Tensor:
        nonlocal longest
        length = 2 + int(fractions[step] * (longest - 1))
        bits, labels = parity(64, length, seed=seed * 10**5 + step)  # fresh strings every step
        logits = model(encode(bits))
        right = (logits.argmax(1) == labels).float().mean().item()
        if length == longest < max_length and right >= 0.95:
            longest += 1
        return nn.functional.cross_entropy(logits, labels)

    train_steps(optimizer, range(steps), parity_loss)
    return model


@torch.no_grad()
def parity_accuracy(
    model: nn.Module, length: int, encode: Encoder = _identity, n: int = 1000
) -> float:
    """Accuracy of ``model`` on ``n`` fresh parity strings of ``length`` (never trained on)."""
    bits, labels = parity(n, length, seed=10**9 + length)
    return (model(encode(bits)).argmax(1) == labels).float().mean().item()


def _reachability_loss(net: LoopedNet, cells: torch.Tensor, labels: torch.Tensor, n_iter: int):
    logits = net(cells, steps=n_iter).flatten(0, 1)
    return nn.functional.cross_entropy(logits, labels.flatten())


def train_looped(
    seed: int,
    lengths: tuple[int, int] = (8, 16),
    steps: int = 200,
    width: int = 8,
    extra: int = 8,
    restarts: int = 2,
) -> LoopedNet:
    """A :class:`~shared_lib.layers.relaxed.LoopedNet` of one
    :class:`~shared_lib.models.small.ConvStep`, trained on
    :func:`~shared_lib.data.sequences.chain_reachability` lines.

    Each of the ``steps`` batches (64 fresh lines, Adam, learning rate 0.01) has one random
    length in ``lengths`` (inclusive) and ``length`` to ``length + extra`` iterations: lines of
    several lengths and more iterations than a line needs teach the step to carry the source's
    signal without decay and to hold it once it is there. ``restarts`` nets are trained from
    different initial weights and the one with the lowest loss on fresh lines of the longest
    training length, run for twice that many iterations, is kept (a run can stall or end on a
    loss spike; the held-out lines are of the training lengths, never the test lengths).
    """
    low, high = lengths
    check_int(low, "lengths[0]", 2)
    check_int(high, "lengths[1]", low)
    check_int(steps, "steps", 1)
    check_int(extra, "extra", 0)
    check_int(restarts, "restarts", 1)
    held_out = chain_reachability(256, high, seed=seed * 10**5 + 10**5 - 1)
    best, best_loss = None, float("inf")
    for restart in range(restarts):
        net = _train_looped_once(seed + restart * 7919, low, high, steps, width, extra)
        with torch.no_grad():
            loss = _reachability_loss(net, *held_out, 2 * high).item()
        if best is None or loss < best_loss:
            best, best_loss = net, loss
    return best


def _train_looped_once(
    seed: int, low: int, high: int, steps: int, width: int, extra: int
) -> LoopedNet:
    seed_everything(seed)
    net = LoopedNet(nn.Embedding(3, width), ConvStep(width), nn.Linear(width, 2), steps=high)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(seed)
    line_lengths = torch.randint(low, high + 1, (steps,), generator=generator)
    iterations = line_lengths + torch.randint(0, extra + 1, (steps,), generator=generator)

    def reachability_loss(step: int) -> torch.Tensor:
        length = int(line_lengths[step])
        cells, labels = chain_reachability(64, length, seed=seed * 10**5 + step)
        return _reachability_loss(net, cells, labels, int(iterations[step]))

    train_steps(optimizer, range(steps), reachability_loss)
    return net


@torch.no_grad()
def looped_accuracy(
    net: LoopedNet, cells: torch.Tensor, labels: torch.Tensor, iterations: Sequence[int]
) -> dict[int, float]:
    """Fraction of lines whose every cell ``net`` gets right, after each number of iterations."""
    return {
        steps: (net(cells, steps=steps).argmax(-1) == labels).all(1).float().mean().item()
        for steps in iterations
    }


def unshared_stack(depth: int, width: int = 8) -> LoopedNet:
    """The looped net's unshared counterpart: ``depth`` :class:`~shared_lib.models.small.ConvStep`
    layers with weights of their own (a :class:`~shared_lib.sharing.SharedStack` of ``depth``
    sets), the encoded input fed to each, run once. Its depth is fixed by its weights.

    Examples:
        >>> from shared_lib.counting import count_parameters
        >>> stack = unshared_stack(4)
        >>> count_parameters(stack.step), count_parameters(stack.step, unique=False)
        (800, 800)
        >>> stack(torch.zeros(2, 12, dtype=torch.long)).shape  # 2 lines of 12 cells, 2 classes
        torch.Size([2, 12, 2])
    """
    check_int(depth, "depth", 1)
    layers = SharedStack.build(lambda: ConvStep(width), depth, depth)
    return LoopedNet(nn.Embedding(3, width), layers, nn.Linear(width, 2), steps=1)


def train_stack(
    seed: int,
    depth: int,
    lengths: tuple[int, int] = (8, 16),
    steps: int = 200,
    width: int = 8,
    lr: float = 1e-2,
) -> LoopedNet:
    """An :func:`unshared_stack` of ``depth`` layers trained like :func:`train_looped`'s nets
    (``steps`` batches of 64 fresh :func:`~shared_lib.data.sequences.chain_reachability` lines,
    one random length in ``lengths`` per batch, Adam at ``lr``), one initialisation: its depth
    is its number of layers, so there are no iterations to vary."""
    low, high = lengths
    check_int(low, "lengths[0]", 2)
    check_int(high, "lengths[1]", low)
    check_int(steps, "steps", 1)
    seed_everything(seed)
    net = unshared_stack(depth, width)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    line_lengths = torch.randint(low, high + 1, (steps,), generator=generator)

    def reachability_loss(step: int) -> torch.Tensor:
        cells, labels = chain_reachability(64, int(line_lengths[step]), seed=seed * 10**5 + step)
        return _reachability_loss(net, cells, labels, 1)

    train_steps(optimizer, range(steps), reachability_loss)
    return net


#: The learning rates :func:`tuned_stack` tries (Adam).
STACK_LRS = (0.003, 0.01, 0.03)


def tuned_stack(
    seed: int,
    depth: int,
    validation: tuple[torch.Tensor, torch.Tensor],
    lrs: Sequence[float] = STACK_LRS,
    steps: int = 200,
) -> tuple[LoopedNet, float, dict[float, float]]:
    """:func:`train_stack` at every learning rate of ``lrs`` (same seed, same initial weights);
    returns the net whose fraction of fully correct ``validation`` lines (``(cells, labels)``,
    of training lengths, never the test lines) is highest, its rate, and every rate's score.

    Examples:
        >>> lines = chain_reachability(32, 8, seed=1)
        >>> net, lr, scores = tuned_stack(0, 2, lines, lrs=(0.01, 0.03), steps=3)
        >>> lr in (0.01, 0.03), sorted(scores)
        (True, [0.01, 0.03])
    """
    if not lrs:
        raise ValueError("lrs must name at least one learning rate")
    nets = {lr: train_stack(seed, depth, steps=steps, lr=lr) for lr in lrs}
    scores = {lr: looped_accuracy(net, *validation, [1])[1] for lr, net in nets.items()}
    best = max(scores, key=lambda lr: (scores[lr], -lr))  # ties: the smaller rate
    return nets[best], best, scores


def weight_bytes_moved(assignment: Sequence[int], block_bytes: int, resident: int = 1) -> int:
    """Bytes of weights read from main memory for one pass through layers that use the
    parameter sets ``assignment`` (one index per layer, as from
    :func:`~shared_lib.sharing.layer_assignment`), each set ``block_bytes`` big, when a fast
    memory (cache, on-chip SRAM) keeps the ``resident`` most recently used sets (least
    recently used evicted). A layer whose set is resident reads nothing.

    For a decoder generating one token at a time this is the weight traffic per token. An
    immediate repeat (``"sequence"``: AABB…) reads each set once; ``"cycle"`` (ABAB…) reads it
    at every use unless all its sets fit in the fast memory at once.

    Examples:
        >>> from shared_lib.sharing import layer_assignment
        >>> weight_bytes_moved(layer_assignment(4, 2, "sequence"), 100)  # A A B B
        200
        >>> weight_bytes_moved(layer_assignment(4, 2, "cycle"), 100)  # A B A B
        400
        >>> weight_bytes_moved(layer_assignment(4, 2, "cycle"), 100, resident=2)
        200
    """
    check_int(block_bytes, "block_bytes", 0)
    check_int(resident, "resident", 1)
    cache: list[int] = []  # most recently used last
    moved = 0
    for index in assignment:
        if index in cache:
            cache.remove(index)
        else:
            moved += block_bytes
            if len(cache) == resident:
                cache.pop(0)
        cache.append(index)
    return moved


def reach_ceiling(
    cells: torch.Tensor, labels: torch.Tensor, iterations: Sequence[int]
) -> dict[int, float]:
    """The best any net can do with ``T`` iterations of a width-3 step: the fraction of lines
    whose farthest reachable cell is at most ``T - 1`` cells from the source."""
    source = (cells == SOURCE).long().argmax(1, keepdim=True)
    distance = ((torch.arange(cells.shape[1]) - source).abs() * labels).amax(1)
    return {steps: (distance <= steps - 1).float().mean().item() for steps in iterations}


def train_student(
    make_stack: Callable[[], nn.Module],
    train: tuple[torch.Tensor, torch.Tensor],
    seed: int,
    epochs: int = 150,
    lr: float = 0.02,
) -> nn.Sequential:
    """``make_stack()`` plus a linear read-out, fitted to a teacher's soft targets ``train`` =
    ``(inputs, teacher outputs)`` (full batch, Adam, mean squared error, ``epochs`` steps)."""
    check_int(epochs, "epochs", 1)
    x_train, z_train = train
    seed_everything(seed)
    stack = make_stack()
    student = nn.Sequential(stack, nn.Linear(x_train.shape[1], z_train.shape[1]))
    optimizer = torch.optim.Adam(student.parameters(), lr=lr)
    fit(student, [(x_train, z_train)], optimizer, nn.functional.mse_loss, epochs=epochs,
        device=torch.device("cpu"))  # fmt: skip
    return student


@torch.no_grad()
def agreement(student: nn.Module, data: tuple[torch.Tensor, torch.Tensor]) -> float:
    """How often ``student``'s class (argmax) is the teacher's on ``data`` = ``(inputs, teacher
    outputs)``."""
    inputs, teacher = data
    return (student(inputs).argmax(1) == teacher.argmax(1)).float().mean().item()


def student_accuracy(
    make_stack: Callable[[], nn.Module],
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    seed: int,
    epochs: int = 150,
    lr: float = 0.02,
) -> tuple[float, int]:
    """Fit ``make_stack()`` plus a linear read-out to a teacher's soft targets (full batch, Adam,
    mean squared error) and return (agreement with the teacher's class on ``test``, unique
    parameters of the student). ``train``/``test`` are ``(inputs, teacher outputs)``."""
    student = train_student(make_stack, train, seed, epochs=epochs, lr=lr)
    return agreement(student, test), count_parameters(student)


#: The learning rates :func:`tuned_student` tries (Adam, full batch).
STUDENT_LRS = (0.005, 0.01, 0.02, 0.05)


@dataclass(frozen=True)
class TunedStudent:
    """A student trained at each learning rate of a sweep, scored at the one that did best on
    validation data (never on test data).

    Attributes:
        accuracy: agreement with the teacher on the test data, at the chosen learning rate.
        parameters: unique parameters of the student (stack and read-out).
        lr: the chosen learning rate.
        validation: agreement on the validation data, learning rate -> agreement.
    """

    accuracy: float
    parameters: int
    lr: float
    validation: dict[float, float]


def tuned_student(
    make_stack: Callable[[], nn.Module],
    train: tuple[torch.Tensor, torch.Tensor],
    validation: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    seed: int,
    lrs: Sequence[float] = STUDENT_LRS,
    epochs: int = 150,
) -> TunedStudent:
    """:func:`train_student` at every learning rate of ``lrs`` (the same seed, so the same
    initial weights), the one with the best agreement on ``validation`` kept, scored on ``test``.

    A shared weight receives the sum of the gradients of all its uses, so the best learning
    rate of a shared stack need not be an unshared one's: each model gets its own.

    Examples:
        >>> from torch import nn
        >>> from shared_lib.data.sequences import layerwise_teacher
        >>> from shared_lib.sharing import SharedStack
        >>> data = [layerwise_teacher(64, 4, 2, 3, seed=0, data_seed=s) for s in (1, 2, 3)]
        >>> result = tuned_student(lambda: SharedStack.build(lambda: nn.Linear(4, 4), 2, 1),
        ...                        *data, seed=0, lrs=(0.01, 0.05), epochs=5)
        >>> result.lr in (0.01, 0.05), sorted(result.validation), result.parameters
        (True, [0.01, 0.05], 35)
    """
    if not lrs:
        raise ValueError("lrs must name at least one learning rate")
    students = {lr: train_student(make_stack, train, seed, epochs=epochs, lr=lr) for lr in lrs}
    scores = {lr: agreement(student, validation) for lr, student in students.items()}
    best = max(scores, key=lambda lr: (scores[lr], -lr))  # ties: the smaller rate
    student = students[best]
    return TunedStudent(agreement(student, test), count_parameters(student), best, scores)


def plain_cnn(width: int = 16) -> nn.Sequential:
    """Two 3×3 convolutions with batch norm, global max pooling and a 10-class linear read-out."""
    check_int(width, "width", 1)
    return nn.Sequential(
        nn.Conv2d(1, width, 3), nn.BatchNorm2d(width), nn.ReLU(),
        nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
        nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(width, 10),
    )  # fmt: skip


def p4_cnn(width: int = 8) -> nn.Sequential:
    """:func:`plain_cnn` with each filter shared across the four 90° rotations (a p4 lifting and a
    p4 group convolution), pooled over positions and rotations: rotation-invariant output."""
    check_int(width, "width", 1)
    return nn.Sequential(
        P4ConvZ2(1, width, 3), nn.BatchNorm3d(width), nn.ReLU(),
        P4ConvP4(width, width, 3, padding=1), nn.BatchNorm3d(width), nn.ReLU(),
        nn.AdaptiveMaxPool3d((4, 1, 1)), RotationPool("max"), nn.Flatten(), nn.Linear(width, 10),
    )  # fmt: skip


def render_assignment(
    n_layers: int,
    n_unique: int,
    strategy: str,
    accuracy: Mapping[tuple[int, ...], float],
    unique_choices: Sequence[int],
    layer_size: int,
) -> Figure:
    """The cross-layer explorer's frame: the layer→set map of ``strategy`` and, beside it, the
    measured ``accuracy`` (keyed by assignment tuple) for each number of sets in
    ``unique_choices``, with stored and used parameter counts (``layer_size`` per set)."""
    if n_unique not in unique_choices:
        raise ValueError(f"n_unique must be one of {list(unique_choices)}, got {n_unique!r}")
    with book_style():
        fig, axes = plt.subplots(1, 2, figsize=(7.5, 3), gridspec_kw={"width_ratios": [1, 1.4]})
        name = STRATEGY_NAMES.get(strategy, strategy)
        plot_assignment(layer_assignment(n_layers, n_unique, strategy), ax=axes[0],
                        title=f"{name}: N={n_layers}, M={n_unique}")  # fmt: skip
        accs = [accuracy[tuple(layer_assignment(n_layers, m, strategy))] for m in unique_choices]
        colors = [PALETTE[0] if m == n_unique else "0.8" for m in unique_choices]
        axes[1].bar([f"M={m}" for m in unique_choices], accs, color=colors)
        for i, (m, acc) in enumerate(zip(unique_choices, accs, strict=True)):
            label = f"{acc:.2f}\n{m * layer_size} stored\n{n_layers * layer_size} used"
            axes[1].text(i, acc + 0.01, label, ha="center", va="bottom", fontsize=10)
        axes[1].set_ylim(0.5, 1.25)
        axes[1].set_yticks([0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
        axes[1].set_ylabel("agreement with the teacher")
        axes[1].set_title(f"{name}, N={n_layers}: accuracy and parameters")
        axes[1].set_xlabel("unique sets (parameters of the tanh layers)")
        fig.subplots_adjust(left=0.13, right=0.98, bottom=0.2, top=0.88, wspace=0.4)
    return fig
