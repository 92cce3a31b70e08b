"""Cross-layer sharing: which parameter set each layer uses (chapters 05 and 06).

``layer_assignment`` implements the three strategies of Takase & Kiyono (2021), "Lessons on
Parameter Sharing across Layers in Transformers"; :class:`SharedStack` applies N layers built
from M unique blocks according to such an assignment.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from shared_lib._validation import check_int as _check_int

__all__ = ["STRATEGIES", "SharedStack", "layer_assignment"]

STRATEGIES = ("sequence", "cycle", "cycle_rev")


def layer_assignment(n_layers: int, n_unique: int, strategy: str = "cycle") -> list[int]:
    """0-based index of the parameter set used by each of ``n_layers`` layers.

    With M = ``n_unique`` sets and N = ``n_layers`` layers (Takase & Kiyono, 2021):

    - ``"sequence"``: consecutive layers share, N/M at a time (AABBCC); N must be divisible by M.
    - ``"cycle"``: the sets repeat in order (ABCABC).
    - ``"cycle_rev"``: CYCLE for the first N - M layers, then the sets in reverse (ABCCBA).

    >>> layer_assignment(6, 3, "cycle_rev")
    [0, 1, 2, 2, 1, 0]
    """
    _check_int(n_layers, "n_layers", 1)
    _check_int(n_unique, "n_unique", 1)
    if n_unique > n_layers:
        raise ValueError(f"n_unique must be <= n_layers ({n_layers}), got {n_unique}")
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")

    if strategy == "sequence":
        if n_layers % n_unique:
            raise ValueError(
                f"strategy 'sequence' needs n_layers ({n_layers}) divisible by "
                f"n_unique ({n_unique})"
            )
        per_set = n_layers // n_unique
        return [i // per_set for i in range(n_layers)]
    if strategy == "cycle":
        return [i % n_unique for i in range(n_layers)]
    # cycle_rev: the paper's layers i = 1..N; for i > N - M the sets run backwards M..1.
    head = [i % n_unique for i in range(n_layers - n_unique)]
    return head + list(reversed(range(n_unique)))


class SharedStack(nn.Module):
    """N layers built from M unique blocks: layer ``i`` is ``blocks[assignment[i]]``.

    The same block object is registered at every layer that uses it, so ``state_dict()`` lists
    every layer, ``parameters()`` lists each block once, and
    :func:`shared_lib.count_parameters` tells unique from per-use counts.
    """

    def __init__(self, blocks: Sequence[nn.Module], assignment: Sequence[int]) -> None:
        super().__init__()
        if not blocks:
            raise ValueError("blocks must hold at least one module")
        if not assignment:
            raise ValueError("assignment must hold at least one layer index")
        for index in assignment:
            if isinstance(index, bool) or not isinstance(index, int):
                raise TypeError(f"assignment must hold ints, got {index!r}")
            if not 0 <= index < len(blocks):
                raise ValueError(f"assignment index {index} out of range for {len(blocks)} blocks")
        unused = sorted(set(range(len(blocks))) - set(assignment))
        if unused:
            raise ValueError(f"assignment never uses blocks {unused}: they would be dead weights")
        self.assignment = list(assignment)
        self.n_unique = len(blocks)
        self.layers = nn.ModuleList([blocks[i] for i in self.assignment])

    @classmethod
    def build(
        cls,
        make_block: Callable[[], nn.Module],
        n_layers: int,
        n_unique: int,
        strategy: str = "cycle",
    ) -> SharedStack:
        """Create ``n_unique`` blocks with ``make_block()`` and arrange them by ``strategy``."""
        assignment = layer_assignment(n_layers, n_unique, strategy)
        return cls([make_block() for _ in range(n_unique)], assignment)

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, *args, **kwargs)
        return x

    def extra_repr(self) -> str:
        n_layers = len(self.assignment)
        return f"n_layers={n_layers}, n_unique={self.n_unique}, assignment={self.assignment}"
