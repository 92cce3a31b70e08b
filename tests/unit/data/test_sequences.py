"""Generated sequence and algorithmic tasks (chapters 03, 05, 06, 08)."""

from __future__ import annotations

import pytest
import torch

from shared_lib.data.sequences import (
    OPEN,
    SOURCE,
    WALL,
    chain_reachability,
    iterated_map_task,
    layerwise_teacher,
    make_motif_task,
    make_sequence_task,
    offset_copies,
    parity,
)


def test_sequence_task_labels_follow_the_rule():
    tokens, labels = make_sequence_task(200, length=6, vocab=4, seed=2)
    for row, label in zip(tokens.tolist(), labels.tolist(), strict=True):
        assert label == int(row[0] in row[1:])
    assert 0.2 < labels.float().mean() < 0.9  # both classes occur


def test_parity_labels_shapes_and_seeds():
    bits, labels = parity(200, 13, seed=4)
    assert bits.shape == (200, 13) and labels.shape == (200,)
    assert bits.dtype == labels.dtype == torch.int64
    assert set(bits.unique().tolist()) == {0, 1}
    assert torch.equal(labels, bits.sum(1) % 2)
    assert 0.3 < labels.float().mean() < 0.7  # both classes occur
    again, _ = parity(200, 13, seed=4)
    other, _ = parity(200, 13, seed=5)
    assert torch.equal(bits, again) and not torch.equal(bits, other)


def reachable_by_walking(row: list[int]) -> list[int]:
    """Reference flood fill: walk left and right from the source until a wall."""
    source = row.index(SOURCE)
    labels = [0] * len(row)
    for step in (-1, 1):
        i = source
        while 0 <= i < len(row) and row[i] != WALL:
            labels[i] = 1
            i += step
    return labels


@pytest.mark.parametrize(("length", "n_walls"), [(1, 0), (5, 0), (10, 2), (40, 2), (12, 11)])
def test_chain_reachability_matches_a_walk(length, n_walls):
    cells, labels = chain_reachability(50, length, n_walls=n_walls, seed=1)
    assert cells.shape == labels.shape == (50, length)
    assert cells.dtype == labels.dtype == torch.int64
    assert torch.equal((cells == SOURCE).sum(1), torch.ones(50, dtype=torch.int64))
    assert torch.equal((cells == WALL).sum(1), torch.full((50,), n_walls))
    assert set(cells.unique().tolist()) <= {OPEN, WALL, SOURCE}
    for row, label in zip(cells.tolist(), labels.tolist(), strict=True):
        assert label == reachable_by_walking(row)


def test_chain_reachability_needs_long_propagation_on_long_lines():
    cells, labels = chain_reachability(500, 40, seed=0)
    source = (cells == SOURCE).long().argmax(1, keepdim=True)
    farthest = ((torch.arange(40) - source).abs() * labels).amax(1)
    assert farthest.float().mean() > 10  # the answer is not local
    again, _ = chain_reachability(500, 40, seed=0)
    assert torch.equal(cells, again)


def test_layerwise_teacher_fixes_the_teacher_by_seed_and_the_inputs_by_data_seed():
    x1, z1 = layerwise_teacher(300, seed=0, data_seed=7)
    x2, z2 = layerwise_teacher(300, seed=0, data_seed=7)
    x3, z3 = layerwise_teacher(300, seed=1, data_seed=7)
    x4, _ = layerwise_teacher(300, seed=0, data_seed=8)
    assert x1.shape == (300, 8) and z1.shape == (300, 4)
    assert x1.dtype == z1.dtype == torch.float32
    assert torch.equal(x1, x2) and torch.equal(z1, z2)
    assert torch.equal(x1, x3) and not torch.allclose(z1, z3)  # same inputs, another teacher
    assert not torch.equal(x1, x4)
    # The same teacher labels a subset of inputs the same way, whatever the batch.
    _, z_small = layerwise_teacher(10, seed=0, data_seed=7)
    torch.testing.assert_close(z_small, z1[:10])


def test_layerwise_teacher_uses_every_class_and_its_depth():
    _, logits = layerwise_teacher(2000, width=8, depth=4, n_classes=4, seed=0)
    assert set(logits.argmax(1).tolist()) == {0, 1, 2, 3}
    _, shallow = layerwise_teacher(2000, width=8, depth=1, n_classes=4, seed=0)
    assert not torch.allclose(logits, shallow)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: parity(0, 5), ValueError, "n"),
        (lambda: parity(5, 0), ValueError, "length"),
        (lambda: parity(5, 3.0), TypeError, "length"),
        (lambda: parity(5, 3, seed=-1), ValueError, "seed"),
        (lambda: chain_reachability(5, 2, n_walls=2), ValueError, "length"),
        (lambda: chain_reachability(5, 8, n_walls=-1), ValueError, "n_walls"),
        (lambda: chain_reachability(5, True), TypeError, "length"),
        (lambda: layerwise_teacher(5, n_classes=1), ValueError, "n_classes"),
        (lambda: layerwise_teacher(5, gain=0.0), ValueError, "gain"),
        (lambda: layerwise_teacher(5, gain=True), TypeError, "gain"),
        (lambda: layerwise_teacher(5, gain="2"), TypeError, "gain"),
        (lambda: iterated_map_task(5, gain=-1.0), ValueError, "gain"),
        (lambda: iterated_map_task(5, gain=None), TypeError, "gain"),
        (lambda: make_sequence_task(0, 4), ValueError, "n"),
        (lambda: make_sequence_task(4, 4, vocab=1), ValueError, "vocab"),
        (lambda: make_sequence_task(4, 4.0), TypeError, "length"),
        (lambda: make_motif_task(10, motif=("a", 1)), TypeError, "motif"),
        (lambda: make_motif_task(10, vocab=4, motif=(4,)), ValueError, "motif"),
        (lambda: layerwise_teacher(5, depth=0), ValueError, "depth"),
        (lambda: layerwise_teacher(5, data_seed=-3), ValueError, "data_seed"),
    ],
)
def test_bad_arguments(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_offset_copies_reads_the_ring_backwards():
    tokens, targets = offset_copies(50, 7, [1, 3, 6], vocab_size=5, seed=2)
    assert tokens.shape == (50, 7) and targets.shape == (50, 7, 3)
    assert tokens.dtype == targets.dtype == torch.int64
    assert int(tokens.max()) <= 4 and int(tokens.min()) >= 0
    for k, offset in enumerate([1, 3, 6]):
        for t in range(7):
            assert torch.equal(targets[:, t, k], tokens[:, (t - offset) % 7])
    again, _ = offset_copies(50, 7, [1, 3, 6], vocab_size=5, seed=2)
    other, _ = offset_copies(50, 7, [1, 3, 6], vocab_size=5, seed=3)
    assert torch.equal(tokens, again) and not torch.equal(tokens, other)


@pytest.mark.parametrize(
    ("offsets", "error"),
    [
        ([], ValueError),
        (3, TypeError),
        ([1.0], TypeError),
        ([0], ValueError),
        ([7], ValueError),
        ([2, 2], ValueError),
    ],
)
def test_offset_copies_rejects_bad_offsets(offsets, error):
    with pytest.raises(error, match="offsets"):
        offset_copies(4, 7, offsets)
