"""Chapter 06's unshared stacks against the looped block, and the weight traffic of the
strategies."""

from __future__ import annotations

import pytest
import torch

from shared_lib import count_parameters, layer_assignment, shared_groups
from shared_lib.book.ch06_deep_models import (
    looped_accuracy,
    train_stack,
    tuned_stack,
    unshared_stack,
    weight_bytes_moved,
)
from shared_lib.data.sequences import chain_reachability


def test_unshared_stack_has_a_layer_per_step_and_a_fixed_depth():
    stack = unshared_stack(3, width=4)
    one_step = count_parameters(stack.step.layers[0])
    assert count_parameters(stack.step) == 3 * one_step
    assert not shared_groups(stack)  # every layer its own weights
    # a depth-3 stack of width-3 steps sees 2 cells each way: cell 0 ignores cell 4
    cells = torch.zeros(1, 8, dtype=torch.long)
    changed = cells.clone()
    changed[0, 4] = 2
    with torch.no_grad():
        assert torch.equal(stack(cells)[0, 0], stack(changed)[0, 0])
        assert not torch.equal(stack(cells)[0, 2], stack(changed)[0, 2])
    with pytest.raises(ValueError, match="depth"):
        unshared_stack(0)


def test_train_stack_is_seeded_and_learns_short_lines():
    first, second = train_stack(0, 8, steps=30), train_stack(0, 8, steps=30)
    for a, b in zip(first.parameters(), second.parameters(), strict=True):
        assert torch.equal(a, b)
    cells, labels = chain_reachability(200, 8, seed=5)
    untrained = looped_accuracy(unshared_stack(8), cells, labels, [1])[1]
    assert looped_accuracy(first, cells, labels, [1])[1] > untrained
    with pytest.raises(ValueError, match="lengths"):
        train_stack(0, 2, lengths=(8, 4))


def test_tuned_stack_picks_the_rate_on_validation_lines():
    lines = chain_reachability(64, 8, seed=2)
    net, lr, scores = tuned_stack(0, 4, lines, lrs=(0.003, 0.03), steps=20)
    assert sorted(scores) == [0.003, 0.03] and scores[lr] == max(scores.values())
    assert looped_accuracy(net, *lines, [1])[1] == scores[lr]
    with pytest.raises(ValueError, match="lrs"):
        tuned_stack(0, 4, lines, lrs=())


@pytest.mark.parametrize(
    ("strategy", "resident", "blocks"),
    [("sequence", 1, 3), ("cycle", 1, 6), ("cycle_rev", 1, 5), ("cycle_rev", 2, 4),
     ("cycle", 2, 6), ("cycle", 3, 3), ("sequence", 3, 3)],
)  # fmt: skip
def test_weight_bytes_moved_counts_reads_through_an_lru_cache(strategy, resident, blocks):
    # N=6, M=3: sequence AABBCC, cycle ABCABC, cycle (rev) ABCCBA
    assert weight_bytes_moved(layer_assignment(6, 3, strategy), 10, resident) == 10 * blocks


def test_weight_bytes_moved_unshared_reads_every_layer_and_checks_arguments():
    assert weight_bytes_moved(range(5), 7, resident=5) == 35
    assert weight_bytes_moved([], 7) == 0
    with pytest.raises(ValueError, match="resident"):
        weight_bytes_moved([0, 0], 7, resident=0)
    with pytest.raises(ValueError, match="block_bytes"):
        weight_bytes_moved([0, 0], -1)
