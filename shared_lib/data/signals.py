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

from shared_lib._validation import check_int
from shared_lib.data import Split

__all__ = [
    "chirp",
    "keyword_signals",
    "keyword_split",
]


def chirp(length: int = 16, rising: bool = True) -> torch.Tensor:
    """A Hann-windowed chirp of ``length`` samples sweeping 1 → 5 cycles per event (or back).

    Normalised to unit energy, so the rising keyword and the falling distractor are equally loud.
    """
    check_int(length, "length", 1)
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

    Args:
        n: number of signals (half of each class, the order shuffled).
        length: samples per signal.
        event_length: samples per burst.
        positions: ``(first, last)`` inclusive range of the burst's start sample; default
            anywhere it fits, ``(0, length - event_length)``.
        noise: standard deviation of the Gaussian background.
        amplitude: the burst's scale (its energy is ``amplitude**2``).
        seed: the draw is a deterministic function of the arguments.
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
    if noise < 0 or amplitude <= 0:
        raise ValueError(f"need noise >= 0 and amplitude > 0, got {noise} and {amplitude}")
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

    ``kwargs`` go to :func:`keyword_signals`; the two halves use different seeds.
    """
    x_train, y_train = keyword_signals(n_train, positions=train_positions, seed=2 * seed, **kwargs)
    x_test, y_test = keyword_signals(n_test, positions=test_positions, seed=2 * seed + 1, **kwargs)
    return Split(x_train, y_train, x_test, y_test)
