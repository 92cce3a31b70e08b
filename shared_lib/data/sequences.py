"""Generated sequence and algorithmic tasks whose size can be dialled up (chapters 03, 05, 06, 08).

Each task is defined for any length, so that a model trained on short instances can be tested
on longer ones: the point of sharing across time and depth. Every function is seeded and
returns CPU tensors.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn import functional as F

from shared_lib._validation import check_float, check_int

__all__ = [
    "OPEN",
    "SOURCE",
    "WALL",
    "chain_reachability",
    "iterated_map_task",
    "layerwise_teacher",
    "make_motif_task",
    "make_sequence_task",
    "offset_copies",
    "parity",
]

#: Cell codes of :func:`chain_reachability`.
OPEN, WALL, SOURCE = 0, 1, 2


def make_sequence_task(
    n: int, length: int, vocab: int = 8, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random token sequences labelled by whether the first token reappears later.

    A small generated task for sequence models: the answer depends on a token far from the end,
    so a model must carry information across time steps.

    Args:
        n: number of sequences, at least 1.
        length: tokens per sequence, at least 2.
        vocab: tokens are drawn uniformly from ``0 .. vocab - 1``; at least 2.
        seed: fixes the draw.

    Returns:
        ``(tokens, labels)``: int64 tokens of shape ``(n, length)`` and int64 labels of shape
        ``(n,)``, 1 where ``tokens[i, 0]`` occurs again in ``tokens[i, 1:]``.

    Raises:
        TypeError: ``n``, ``length``, ``vocab`` or ``seed`` is not an int.
        ValueError: ``n`` is below 1, ``length`` or ``vocab`` below 2.

    Examples:
        Row 0 starts with 2 and holds another 2, row 2 starts with 1 and holds none:

        >>> from shared_lib.data.sequences import make_sequence_task
        >>> tokens, labels = make_sequence_task(3, 4, vocab=3, seed=0)
        >>> tokens.tolist(), labels.tolist()
        ([[2, 0, 2, 0], [1, 0, 1, 1], [1, 0, 2, 2]], [1, 1, 0])
    """
    check_int(n, "n", 1)
    check_int(length, "length", 2)
    check_int(vocab, "vocab", 2)
    check_int(seed, "seed")
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, vocab, (n, length), generator=generator)
    labels = (tokens[:, 1:] == tokens[:, :1]).any(dim=1).long()
    return tokens, labels


def make_motif_task(
    n: int,
    length: int = 10,
    vocab: int = 4,
    motif: Sequence[int] = (1, 2),
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random token sequences labelled by whether ``motif`` (consecutive tokens) occurs anywhere.

    Half the sequences (label 1) contain the motif at a uniformly random position; the other
    half (label 0) are random sequences in which it never occurs. The rule is the same at every
    position, which is what sharing across time assumes (chapter 03).

    Args:
        n: number of sequences (``n // 2`` positives), at least 1.
        length: tokens per sequence, at least 1.
        vocab: size of the token alphabet, at least 2.
        motif: 1 to ``length`` token ids in ``0 .. vocab - 1``, not one token repeated.
        seed: fixes the draw.

    Returns:
        ``(inputs, labels)``: one-hot inputs of shape ``(n, length, vocab)`` (float32) and
        int64 labels of shape ``(n,)``, in random order.

    Raises:
        TypeError: an integer argument or a token of ``motif`` is not an int.
        ValueError: a size is out of range, ``motif`` is empty, longer than ``length``, holds an
            id outside the alphabet or repeats a single token.

    Examples:
        >>> from shared_lib.data.sequences import make_motif_task
        >>> x, y = make_motif_task(6, length=5, seed=0)
        >>> tuple(x.shape), int(y.sum())
        ((6, 5, 4), 3)
        >>> x, y = make_motif_task(4, length=5, vocab=3, motif=(1, 2), seed=0)
        >>> x.argmax(-1).tolist(), y.tolist()  # label 1 exactly where "1, 2" occurs
        ([[2, 0, 0, 2, 0], [2, 0, 1, 2, 1], [2, 2, 0, 0, 1], [0, 1, 1, 1, 2]], [0, 1, 0, 1])
    """
    check_int(n, "n", 1)
    check_int(length, "length", 1)
    check_int(vocab, "vocab", 2)
    check_int(seed, "seed", 0)
    motif = tuple(motif)
    for index, token in enumerate(motif):
        check_int(token, f"motif[{index}]")
    if not 1 <= len(motif) <= length or not all(0 <= t < vocab for t in motif):
        raise ValueError(
            f"motif must be 1 to length={length} token ids in [0, {vocab}), got {motif!r}"
        )
    if len(set(motif)) == 1 and len(motif) > 1:
        raise ValueError(f"motif must not repeat a single token, got {motif!r}")
    generator = torch.Generator().manual_seed(seed)
    span = len(motif)
    pattern = torch.tensor(motif)

    def has_motif(tokens: torch.Tensor) -> torch.Tensor:
        windows = tokens.unfold(1, span, 1)  # (rows, length - span + 1, span)
        return (windows == pattern).all(dim=2).any(dim=1)

    positives = n // 2
    tokens = torch.randint(0, vocab, (n, length), generator=generator)
    where = torch.randint(0, length - span + 1, (positives,), generator=generator)
    for offset, token in enumerate(motif):
        tokens[torch.arange(positives), where + offset] = token
    negatives = tokens[positives:]  # a view: redrawing it redraws those rows of tokens
    bad = has_motif(negatives)
    while bool(bad.any()):  # redraw the negatives that contain the motif by chance
        negatives[bad] = torch.randint(0, vocab, (int(bad.sum()), length), generator=generator)
        bad = has_motif(negatives)
    labels = torch.zeros(n, dtype=torch.long)
    labels[:positives] = 1
    order = torch.randperm(n, generator=generator)
    return F.one_hot(tokens[order], vocab).float(), labels[order]


def parity(n: int, length: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random bit strings labelled by their parity (the number of ones, mod 2) (chapter 06).

    One recurrent cell solves it at any length with a two-state memory; a network with a
    fixed-size input cannot even be applied to a longer string.

    Args:
        n: number of strings, at least 1.
        length: bits per string, at least 1.
        seed: fixes the draw, at least 0.

    Returns:
        ``(bits, labels)``: ``bits`` of shape ``(n, length)`` (int64, values 0/1) and
        ``labels`` of shape ``(n,)`` (int64).

    Raises:
        TypeError: an argument is not an int.
        ValueError: ``n`` or ``length`` is below 1, or ``seed`` is negative.

    Examples:
        >>> from shared_lib.data.sequences import parity
        >>> bits, labels = parity(2, 4, seed=0)
        >>> bits.tolist(), labels.tolist()  # two ones, then four: both even
        ([[0, 1, 1, 0], [1, 1, 1, 1]], [0, 0])
        >>> bits, labels = parity(3, 5, seed=0)
        >>> bool((bits.sum(1) % 2 == labels).all())
        True
    """
    check_int(n, "n", 1)
    check_int(length, "length", 1)
    check_int(seed, "seed", 0)
    generator = torch.Generator().manual_seed(seed)
    bits = torch.randint(0, 2, (n, length), generator=generator)
    return bits, bits.sum(dim=1) % 2


def chain_reachability(
    n: int, length: int, n_walls: int = 2, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Flood fill on a line: which cells can the source reach without crossing a wall?

    Each row holds one :data:`SOURCE` cell and ``n_walls`` :data:`WALL` cells at random distinct
    positions; the rest are :data:`OPEN`. A cell's label is 1 when no wall lies between it and
    the source (the source itself included), else 0. A local rule applied once per step moves
    the answer a fixed number of cells, so the number of steps needed grows with the length
    (chapter 06).

    Args:
        n: number of lines, at least 1.
        length: cells per line, at least ``n_walls + 1``.
        n_walls: walls per line, at least 0.
        seed: fixes the draw, at least 0.

    Returns:
        ``(cells, labels)``: ``cells`` of shape ``(n, length)`` (int64 codes) and ``labels`` of
        shape ``(n, length)`` (int64 0/1).

    Raises:
        TypeError: an argument is not an int.
        ValueError: an argument is below its minimum.

    Examples:
        The source (2) at cell 2, walls (1) at cells 3 and 4: only cells 0 to 2 are reached.

        >>> from shared_lib.data.sequences import chain_reachability
        >>> cells, labels = chain_reachability(1, 8, n_walls=2, seed=0)
        >>> cells.tolist(), labels.tolist()
        ([[0, 0, 2, 1, 1, 0, 0, 0]], [[1, 1, 1, 0, 0, 0, 0, 0]])
    """
    check_int(n, "n", 1)
    check_int(n_walls, "n_walls", 0)
    check_int(length, "length", n_walls + 1)
    check_int(seed, "seed", 0)
    generator = torch.Generator().manual_seed(seed)
    # A random permutation per row: its first entry is the source, the next n_walls the walls.
    order = torch.rand(n, length, generator=generator).argsort(dim=1)
    cells = torch.full((n, length), OPEN, dtype=torch.int64)
    cells.scatter_(1, order[:, 1 : n_walls + 1], WALL)
    source = order[:, :1]
    cells.scatter_(1, source, SOURCE)
    # Walls crossed between the source and each cell = difference of cumulative wall counts.
    walls_before = (cells == WALL).long().cumsum(dim=1)
    crossed = walls_before - walls_before.gather(1, source)
    labels = (crossed == 0) & (cells != WALL)
    return cells, labels.long()


@torch.no_grad()
def layerwise_teacher(
    n: int,
    width: int = 8,
    depth: int = 4,
    n_classes: int = 4,
    gain: float = 2.5,
    seed: int = 0,
    data_seed: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian inputs and the outputs of a random deep network whose layers all differ.

    The teacher applies ``depth`` layers ``h ← tanh(W_i h)`` with independent random ``W_i``
    (entries of standard deviation ``gain / sqrt(width)``), then a random linear read-out to
    ``n_classes`` logits; a label is the argmax of the logits. A student that must reuse one layer
    at every depth lacks the depth-specific computation; one with per-layer weights (or per-layer
    low-rank corrections) can match it exactly (chapter 06).

    Args:
        n: number of inputs, at least 1.
        width: features per input and hidden width, at least 1.
        depth: number of distinct teacher layers, at least 1.
        n_classes: logits per input, at least 2.
        gain: scale of the teacher's weights, positive.
        seed: fixes the teacher, at least 0.
        data_seed: fixes the inputs (default ``seed + 1``), at least 0.

    Returns:
        ``(inputs, logits)``: ``inputs`` of shape ``(n, width)`` and ``logits`` of shape
        ``(n, n_classes)``, both float32.

    Raises:
        TypeError: an integer argument is not an int, or ``gain`` is not a real number.
        ValueError: an argument is below its minimum, or ``gain`` is not positive.

    Examples:
        >>> from shared_lib.data.sequences import layerwise_teacher
        >>> inputs, logits = layerwise_teacher(5, seed=0)
        >>> tuple(inputs.shape), tuple(logits.shape), logits.argmax(1).tolist()
        ((5, 8), (5, 4), [2, 0, 3, 0, 1])
        >>> x_other, logits_other = layerwise_teacher(5, seed=1, data_seed=1)  # another teacher
        >>> bool((x_other == inputs).all()), bool((logits_other == logits).all())
        (True, False)
    """
    check_int(n, "n", 1)
    check_int(width, "width", 1)
    check_int(depth, "depth", 1)
    check_int(n_classes, "n_classes", 2)
    check_float(gain, "gain", low=0.0, low_inclusive=False)
    check_int(seed, "seed", 0)
    data_seed = seed + 1 if data_seed is None else check_int(data_seed, "data_seed", 0)
    teacher = torch.Generator().manual_seed(seed)
    weights = torch.randn(depth, width, width, generator=teacher) * (gain / width**0.5)
    readout = torch.randn(width, n_classes, generator=teacher)
    inputs = torch.randn(n, width, generator=torch.Generator().manual_seed(data_seed))
    hidden = inputs
    for weight in weights:
        hidden = torch.tanh(hidden @ weight.T)
    return inputs, hidden @ readout


def offset_copies(
    n: int, length: int, offsets: list[int], vocab_size: int = 8, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random token sequences; at every position, the tokens found ``offsets`` places back.

    Target ``k`` of position ``t`` is ``tokens[(t - offsets[k]) % length]`` (the sequence read as
    a ring), so each target needs its own attention pattern: a layer with one head reads one
    offset, and a model whose layers share one parameter set repeats the same pattern at every
    depth (chapter 05, capacity).

    Args:
        n: number of sequences.
        length: tokens per sequence.
        offsets: distinct offsets, each in ``1 .. length - 1``.
        vocab_size: tokens are drawn uniformly from ``0 .. vocab_size - 1``.
        seed: fixes the tokens.

    Returns:
        ``tokens`` ``(n, length)`` and ``targets`` ``(n, length, len(offsets))``, both int64.

    Raises:
        TypeError: an integer argument or an offset is not an int, or ``offsets`` is not a list
            or tuple.
        ValueError: ``offsets`` is empty, holds an offset outside ``1 .. length - 1`` or a
            repeated one, or another argument is below its minimum.

    Examples:
        >>> from shared_lib.data.sequences import offset_copies
        >>> tokens, targets = offset_copies(1, 5, [1, 2], seed=0)
        >>> tokens.tolist(), targets[0, :, 0].tolist()  # offset 1: the ring shifted by one
        ([[4, 7, 5, 0, 3]], [3, 4, 7, 5, 0])
        >>> bool((targets[0, :, 1] == tokens[0].roll(2)).all())
        True
    """
    check_int(n, "n", 1)
    check_int(length, "length", 2)
    check_int(vocab_size, "vocab_size", 2)
    check_int(seed, "seed", 0)
    if not isinstance(offsets, (list, tuple)):
        raise TypeError(f"offsets must be a non-empty list of ints, got {offsets!r}")
    if not offsets:
        raise ValueError(f"offsets must be a non-empty list of ints, got {offsets!r}")
    for offset in offsets:
        check_int(offset, "offsets", 1)
        if offset >= length:
            raise ValueError(f"offsets must be < length ({length}), got {offset}")
    if len(set(offsets)) != len(offsets):
        raise ValueError(f"offsets must be distinct, got {offsets!r}")
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, vocab_size, (n, length), generator=generator)
    source = (torch.arange(length)[:, None] - torch.tensor(offsets)[None, :]) % length
    return tokens, tokens[:, source]


@torch.no_grad()
def iterated_map_task(
    n: int,
    width: int = 8,
    max_depth: int = 4,
    gain: float = 2.0,
    seed: int = 0,
    data_seed: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tokens whose target is one fixed map applied ``k`` times, ``k`` uniform in 1..max_depth.

    The map is ``f(h) = tanh(A h)`` with a random ``A`` (entries of standard deviation
    ``gain / sqrt(width)``). A model that reuses one block can match ``f`` exactly; it then
    needs exactly ``k`` passes for a token of difficulty ``k`` (chapter 08, adaptive depth).

    Args:
        n: number of tokens, at least 1.
        width: features per token, at least 1.
        max_depth: the largest number of applications, at least 1.
        gain: scale of ``A``, positive.
        seed: fixes the map, at least 0.
        data_seed: draws the inputs and each token's ``k`` (default ``seed + 1``), at least 0.

    Returns:
        ``(x, k, target)``: inputs ``x`` of shape ``(n, width)``, the 1-based depths ``k`` of
        shape ``(n,)`` (int64) and ``f^k(x)`` of shape ``(n, width)``.

    Raises:
        TypeError: an integer argument is not an int, or ``gain`` is not a real number.
        ValueError: an argument is below its minimum, or ``gain`` is not positive.

    Examples:
        >>> from shared_lib.data.sequences import iterated_map_task
        >>> x, k, target = iterated_map_task(6, width=3, max_depth=3, seed=0)
        >>> tuple(x.shape), k.tolist(), tuple(target.shape)
        ((6, 3), [2, 1, 3, 1, 3, 3], (6, 3))
    """
    check_int(n, "n", 1)
    check_int(width, "width", 1)
    check_int(max_depth, "max_depth", 1)
    check_float(gain, "gain", low=0.0, low_inclusive=False)
    check_int(seed, "seed", 0)
    data_seed = seed + 1 if data_seed is None else check_int(data_seed, "data_seed", 0)
    matrix = torch.randn(width, width, generator=torch.Generator().manual_seed(seed))
    matrix *= gain / width**0.5
    generator = torch.Generator().manual_seed(data_seed)
    x = torch.randn(n, width, generator=generator)
    k = torch.randint(1, max_depth + 1, (n,), generator=generator)
    target, state = torch.empty_like(x), x
    for d in range(1, max_depth + 1):
        state = torch.tanh(state @ matrix.T)
        target[k == d] = state[k == d]
    return x, k, target
