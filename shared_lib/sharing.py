"""Cross-layer sharing: which parameter set each layer uses (chapters 05 and 06).

``layer_assignment`` implements the three strategies of Takase & Kiyono (2023), "Lessons on
Parameter Sharing across Layers in Transformers"; :class:`SharedStack` applies N layers built
from M unique blocks according to such an assignment.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from shared_lib._validation import check_callable, check_choice, check_int, check_module, describe

__all__ = ["STRATEGIES", "SharedStack", "layer_assignment"]

#: The cross-layer strategies of :func:`layer_assignment` (Takase & Kiyono, 2023).
STRATEGIES = ("sequence", "cycle", "cycle_rev")


def layer_assignment(n_layers: int, n_unique: int, strategy: str = "cycle") -> list[int]:
    """0-based index of the parameter set used by each of ``n_layers`` layers (chapter 06).

    With M = ``n_unique`` sets and N = ``n_layers`` layers (Takase & Kiyono, 2023):

    - ``"sequence"``: consecutive layers share, N/M at a time (AABBCC); N must be divisible by M.
    - ``"cycle"``: the sets repeat in order (ABCABC).
    - ``"cycle_rev"``: CYCLE for the first N - M layers, then the sets in reverse (ABCCBA).

    Args:
        n_layers: N, the depth of the network (>= 1).
        n_unique: M, the number of distinct parameter sets (1 <= M <= N).
        strategy: one of :data:`STRATEGIES`.

    Returns:
        ``N`` indices in ``range(M)``, each used at least once.

    Raises:
        TypeError: ``n_layers`` or ``n_unique`` is not an int, or ``strategy`` not a string.
        ValueError: ``n_layers`` or ``n_unique`` is below 1, ``n_unique > n_layers``, an
            unknown ``strategy``, or ``"sequence"`` with N not divisible by M.

    Examples:
        >>> from shared_lib.sharing import layer_assignment
        >>> for strategy in ("sequence", "cycle", "cycle_rev"):
        ...     print(strategy, layer_assignment(6, 3, strategy))
        sequence [0, 0, 1, 1, 2, 2]
        cycle [0, 1, 2, 0, 1, 2]
        cycle_rev [0, 1, 2, 2, 1, 0]
    """
    check_int(n_layers, "n_layers", 1)
    check_int(n_unique, "n_unique", 1)
    if n_unique > n_layers:
        raise ValueError(f"n_unique must be <= n_layers ({n_layers}), got {n_unique}")
    check_choice(strategy, "strategy", STRATEGIES)

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
    :func:`shared_lib.count_parameters` tells unique from per-use counts (chapters 05 and 06).

    Args:
        blocks: the M unique blocks (modules), e.g. Transformer layers.
        assignment: for each layer, the index of the block it runs (see
            :func:`layer_assignment`); every block must be used.

    Raises:
        TypeError: a block is not an ``nn.Module`` or an index is not an int.
        ValueError: no blocks, an empty assignment, an index out of range, or a block never
            used.

    Shape:
        - Input: whatever the first block takes, e.g. :math:`(N, L, H)`; extra positional and
          keyword arguments of ``forward`` are passed to every layer.
        - Output: what the last block returns; every block must give what the next one takes.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> import shared_lib as sl
        >>> stack = sl.SharedStack([nn.Linear(8, 8), nn.Linear(8, 8)], [0, 1, 0, 1, 0, 1])
        >>> stack(torch.randn(3, 8)).shape
        torch.Size([3, 8])
        >>> sl.count_parameters(stack), sl.count_parameters(stack, unique=False)
        (144, 432)
    """

    def __init__(self, blocks: Sequence[nn.Module], assignment: Sequence[int]) -> None:
        super().__init__()
        if not blocks:
            raise ValueError("blocks must hold at least one module")
        for position, block in enumerate(blocks):
            check_module(block, f"blocks[{position}]")
        if not assignment:
            raise ValueError("assignment must hold at least one layer index")
        for position, index in enumerate(assignment):
            check_int(index, f"assignment[{position}]")
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
        """Create ``n_unique`` blocks with ``make_block()`` and arrange them by ``strategy``.

        Args:
            make_block: called ``n_unique`` times, with no arguments, for fresh blocks.
            n_layers: depth N of the stack.
            n_unique: number M of distinct blocks.
            strategy: one of :data:`STRATEGIES` (see :func:`layer_assignment`).

        Returns:
            The stack; its ``assignment`` is ``layer_assignment(n_layers, n_unique, strategy)``.

        Examples:
            >>> from torch import nn
            >>> from shared_lib.sharing import SharedStack
            >>> SharedStack.build(lambda: nn.Linear(4, 4), 6, 3, "cycle_rev").assignment
            [0, 1, 2, 2, 1, 0]
        """
        if isinstance(make_block, nn.Module):
            raise TypeError(
                f"make_block must be a function that returns a new block, got the module "
                f"{type(make_block).__name__} itself: pass lambda: {type(make_block).__name__}"
                "(...), or SharedStack([block], [0] * n_layers) to use this one block at every "
                "layer"
            )
        check_callable(make_block, "make_block", "taking no arguments")
        assignment = layer_assignment(n_layers, n_unique, strategy)
        blocks = [make_block() for _ in range(n_unique)]
        for block in blocks:
            if not isinstance(block, nn.Module):
                raise TypeError(f"make_block() must return an nn.Module, got {describe(block)}")
        if len({id(block) for block in blocks}) != len(blocks):
            raise ValueError(
                "make_block() returned the same module twice: it must build a fresh block per "
                "call (n_unique distinct blocks)"
            )
        return cls(blocks, assignment)

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, *args, **kwargs)
        return x

    def extra_repr(self) -> str:
        n_layers = len(self.assignment)
        return f"n_layers={n_layers}, n_unique={self.n_unique}, assignment={self.assignment}"
