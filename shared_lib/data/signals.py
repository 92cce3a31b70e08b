"""Generated 1-D signals with a keyword-like event anywhere in them (chapter 04).

A stand-in for keyword spotting: every signal is Gaussian noise plus one short burst. In a
*positive* signal the burst is the keyword, a rising chirp; in a *negative* one it is a
distractor, a falling chirp with the same energy, so loudness alone does not tell them apart.
Where the burst starts is drawn from a range of positions the caller chooses: training and test
ranges can be disjoint, to ask whether a model finds the keyword where it never saw it.
"""

from __future__ import annotations

import math

import torch

from shared_lib._validation import check_bool, check_float, check_int
from shared_lib.data.splits import Split

__all__ = [
    "chirp",
    "keyword_signals",
    "keyword_split",
]


def chirp(length: int = 16, rising: bool = True) -> torch.Tensor:
    """A Hann-windowed chirp of ``length`` samples sweeping 1 → 5 cycles per event (or back).

    Normalised to unit energy, so the rising keyword and the falling distractor are equally loud.

    Args:
        length: samples in the chirp, at least 1.
        rising: sweep up (the keyword) or down (the distractor).

    Returns:
        A float32 tensor of shape ``(length,)`` with unit Euclidean norm.

    Raises:
        TypeError: ``length`` is not an int, or ``rising`` is not a bool.
        ValueError: ``length`` is below 1.

    Examples:
        The distractor is the keyword played backwards and inverted, with the same energy:

        >>> import torch
        >>> from shared_lib.data.signals import chirp
        >>> up, down = chirp(16), chirp(16, rising=False)
        >>> tuple(up.shape), round(float(up.norm()), 4), bool(torch.allclose(up, -down.flip(0)))
        ((16,), 1.0, True)
    """
    check_int(length, "length", 1)
    check_bool(rising, "rising")
    t = torch.linspace(0.0, 1.0, length, dtype=torch.float64)
    f0, f1 = (1.0, 5.0) if rising else (5.0, 1.0)
    phase = 2 * math.pi * (f0 * t + 0.5 * (f1 - f0) * t**2)  # instantaneous frequency f0→f1
    wave = torch.sin(phase) * torch.hann_window(length, periodic=False, dtype=torch.float64)
    return (wave / wave.norm()).float()


def keyword_signals(
    n: int,
    length: int = 128,
    event_length: int = 16,
    positions: tuple[int, int] | None = None,
    noise: float = 0.3,
    amplitude: float = 3.0,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` signals of shape (n, 1, length) and labels (1 = keyword, 0 = distractor).

    The burst's shape, not its energy or place, tells the classes apart: a model that shares
    one filter across time can find it wherever it is (chapter 04).

    Args:
        n: number of signals (half of each class, the order shuffled).
        length: samples per signal.
        event_length: samples per burst.
        positions: ``(first, last)`` inclusive range of the burst's start sample; default
            anywhere it fits, ``(0, length - event_length)``.
        noise: standard deviation of the Gaussian background.
        amplitude: the burst's scale (its energy is ``amplitude**2``).
        seed: the draw is a deterministic function of the arguments.

    Returns:
        ``(signals, labels)``: float32 signals of shape ``(n, 1, length)`` and int64 labels of
        shape ``(n,)``, ``n // 2`` of them ones.

    Raises:
        TypeError: ``n``, ``length``, ``event_length`` or ``seed`` is not an int, or ``noise``
            or ``amplitude`` is not a real number.
        ValueError: a size is below 1, ``event_length`` exceeds ``length``, ``positions`` is
            not a range of starts that fit, ``noise`` is negative or ``amplitude`` not positive.

    Examples:
        Without noise, every burst has energy ``amplitude**2`` whatever its label, and no
        sample outside the allowed starts (10 to 12, plus the 8 samples of the burst) moves:

        >>> from shared_lib.data.signals import keyword_signals
        >>> x, y = keyword_signals(4, 32, event_length=8, positions=(10, 12), noise=0.0, seed=0)
        >>> tuple(x.shape), y.tolist()
        ((4, 1, 32), [0, 1, 1, 0])
        >>> x.square().sum(-1).flatten().round().tolist()
        [9.0, 9.0, 9.0, 9.0]
        >>> float(x[..., :10].abs().sum() + x[..., 20:].abs().sum())
        0.0
    """
    check_int(n, "n", 1)
    check_int(length, "length", 1)
    check_int(event_length, "event_length", 1)
    if event_length > length:
        raise ValueError(f"event_length ({event_length}) must be <= length ({length})")
    last_start = length - event_length
    first, last = (0, last_start) if positions is None else positions
    if not 0 <= first <= last <= last_start:
        raise ValueError(
            f"positions must satisfy 0 <= first <= last <= {last_start}, got {positions}"
        )
    check_float(noise, "noise", low=0.0)
    check_float(amplitude, "amplitude", low=0.0, low_inclusive=False)
    check_int(seed, "seed")
    generator = torch.Generator().manual_seed(seed)
    labels = (torch.arange(n) % 2)[torch.randperm(n, generator=generator)]
    signals = noise * torch.randn(n, 1, length, generator=generator)
    starts = torch.randint(first, last + 1, (n,), generator=generator)
    keyword, distractor = chirp(event_length, True), chirp(event_length, False)
    for i in range(n):
        burst = keyword if labels[i] else distractor
        signals[i, 0, starts[i] : starts[i] + event_length] += amplitude * burst
    return signals, labels


def keyword_split(
    n_train: int,
    n_test: int,
    train_positions: tuple[int, int] | None,
    test_positions: tuple[int, int] | None,
    seed: int = 0,
    **kwargs,
) -> Split:
    """Training and test signals whose bursts start in the given (possibly disjoint) ranges.

    With disjoint ranges, the test asks whether a model finds the keyword at positions it never
    saw in training (chapter 04).

    Args:
        n_train: number of training signals.
        n_test: number of test signals.
        train_positions: ``(first, last)`` range of the training bursts' start, or ``None`` for
            anywhere.
        test_positions: the same for the test bursts.
        seed: the training half uses seed ``2 * seed``, the test half ``2 * seed + 1``.
        **kwargs: further arguments of :func:`keyword_signals` (``length``, ``noise``, ...).

    Returns:
        A :class:`~shared_lib.data.splits.Split` of signals ``(n, 1, length)`` and labels.

    Raises:
        TypeError: ``seed`` is not an int (and as :func:`keyword_signals` for the others).

    Examples:
        >>> from shared_lib.data.signals import keyword_split
        >>> split = keyword_split(20, 10, (0, 20), (90, 112), seed=0, noise=0.0)
        >>> split
        Split(train=(20, 1, 128), test=(10, 1, 128), classes=2)
        >>> float(split.x_train[..., 36:].abs().sum()), float(split.x_test[..., :90].abs().sum())
        (0.0, 0.0)
    """
    check_int(seed, "seed")
    x_train, y_train = keyword_signals(n_train, positions=train_positions, seed=2 * seed, **kwargs)
    x_test, y_test = keyword_signals(n_test, positions=test_positions, seed=2 * seed + 1, **kwargs)
    return Split(x_train, y_train, x_test, y_test)
