"""Cross-layer strategies (Takase & Kiyono, 2021) and the shared stack."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import shared_lib as sl
from shared_lib import SharedStack, layer_assignment


def letters(assignment: list[int]) -> str:
    return "".join(chr(65 + i) for i in assignment)


@pytest.mark.parametrize(
    ("strategy", "expected"), [("sequence", "AABBCC"), ("cycle", "ABCABC"), ("cycle_rev", "ABCCBA")]
)
def test_paper_example_m3_n6(strategy, expected):
    assert letters(layer_assignment(6, 3, strategy)) == expected


def test_paper_definitions_for_many_sizes():
    """Check every strategy against the paper's 1-based formulas for N up to 18."""
    for n in range(1, 19):
        for m in range(1, n + 1):
            cycle = layer_assignment(n, m, "cycle")
            assert cycle == [((i - 1) % m + 1) - 1 for i in range(1, n + 1)]
            rev = layer_assignment(n, m, "cycle_rev")
            assert rev[: n - m] == cycle[: n - m]
            assert rev[n - m :] == list(range(m - 1, -1, -1))
            if n % m == 0:
                seq = layer_assignment(n, m, "sequence")
                assert seq == [(i - 1) // (n // m) for i in range(1, n + 1)]
            for strategy in ("cycle", "cycle_rev") + (("sequence",) if n % m == 0 else ()):
                assignment = layer_assignment(n, m, strategy)
                assert len(assignment) == n and set(assignment) == set(range(m))


def test_edge_cases_one_set_and_no_sharing():
    assert layer_assignment(4, 1, "cycle") == [0, 0, 0, 0]
    assert layer_assignment(4, 4, "sequence") == [0, 1, 2, 3]
    assert layer_assignment(4, 4, "cycle") == [0, 1, 2, 3]


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        ((6, 4, "sequence"), ValueError, "divisible"),
        ((6, 3, "random"), ValueError, "strategy"),
        ((6, 7, "cycle"), ValueError, "n_unique"),
        ((6, 0, "cycle"), ValueError, "n_unique"),
        ((0, 1, "cycle"), ValueError, "n_layers"),
        ((6.0, 3, "cycle"), TypeError, "n_layers"),
        ((6, True, "cycle"), TypeError, "n_unique"),
        ((6, 3, None), TypeError, "strategy"),
    ],
)
def test_bad_arguments(args, error, message):
    with pytest.raises(error, match=message):
        layer_assignment(*args)


def test_shared_stack_registers_one_block_per_set():
    stack = SharedStack.build(lambda: nn.Linear(8, 8), n_layers=6, n_unique=2, strategy="cycle")
    assert stack.assignment == [0, 1, 0, 1, 0, 1]
    assert stack.layers[0] is stack.layers[2] is stack.layers[4]
    assert stack.layers[0] is not stack.layers[1]
    assert sl.count_parameters(stack) == 2 * 72
    assert sl.count_parameters(stack, unique=False) == 6 * 72
    assert len(sl.shared_groups(stack)) == 4  # weight and bias of each of the two blocks
    out = stack(torch.randn(3, 8))
    out.sum().backward()
    assert stack.layers[0].weight.grad is not None
    assert "assignment=[0, 1, 0, 1, 0, 1]" in repr(stack)


@pytest.mark.parametrize(
    ("blocks", "assignment", "message"),
    [
        ([], [0], "blocks"),
        ([nn.Linear(2, 2)], [], "assignment"),
        ([nn.Linear(2, 2)], [1], "out of range"),
        ([nn.Linear(2, 2), nn.Linear(2, 2)], [0, 0], "never uses"),
    ],
)
def test_shared_stack_bad_input(blocks, assignment, message):
    with pytest.raises(ValueError, match=message):
        SharedStack(blocks, assignment)


@pytest.mark.parametrize(
    ("blocks", "assignment", "message"),
    [([object()], [0], r"blocks\[0\]"), ([nn.Linear(2, 2)], [0.0], r"assignment\[0\]")],
)
def test_shared_stack_wrong_types(blocks, assignment, message):
    with pytest.raises(TypeError, match=message):
        SharedStack(blocks, assignment)
