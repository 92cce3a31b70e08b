"""Chapter 06's experiments: parity over time, the looped block, students, p4 CNNs, figures."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytest
import torch
from torch import nn

from shared_lib import SharedStack, count_parameters, layer_assignment
from shared_lib.book.ch06_deep_models import (
    looped_accuracy,
    p4_cnn,
    padded_one_hot,
    parity_accuracy,
    plain_cnn,
    reach_ceiling,
    render_assignment,
    student_accuracy,
    train_looped,
    train_parity,
    tuned_student,
)
from shared_lib.data.sequences import OPEN, SOURCE, WALL, chain_reachability, layerwise_teacher
from shared_lib.layers.group import rotate
from shared_lib.models.small import MLP


def test_padded_one_hot_has_a_fixed_width_and_cannot_grow():
    bits = torch.tensor([[1, 0, 1]])
    encoded = padded_one_hot(bits, width=5)
    assert encoded.shape == (1, 15)
    # positions 3 and 4 are the pad symbol (index 2 of each one-hot triple)
    assert encoded.view(5, 3)[3:].argmax(1).tolist() == [2, 2]
    with pytest.raises(ValueError, match="width=5"):
        padded_one_hot(torch.zeros(1, 6, dtype=torch.long), width=5)


def test_train_parity_is_seeded_and_learns_short_strings():
    # same initial model, same seed: the same batches and the same trained weights
    torch.manual_seed(0)
    a = train_parity(MLP(30, 16, 2), seed=1, encode=padded_one_hot, steps=100, max_length=2)
    torch.manual_seed(0)
    b = train_parity(MLP(30, 16, 2), seed=1, encode=padded_one_hot, steps=100, max_length=2)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert parity_accuracy(a, 2, encode=padded_one_hot) > 0.7  # length 2 is learned first


def test_train_parity_curriculum_starts_at_length_two():
    # with the curriculum, a model that never gets a batch right only ever sees length 2
    seen = []

    class Recorder(nn.Module):
        def __init__(self):
            super().__init__()
            self.bias = nn.Parameter(torch.zeros(2))

        def forward(self, bits):
            seen.append(bits.shape[1])
            return self.bias.expand(bits.shape[0], 2) * 0  # always wrong half the time

    train_parity(Recorder(), seed=0, steps=5, curriculum=True)
    train_parity(Recorder(), seed=0, steps=40, curriculum=False)
    assert set(seen[:5]) == {2}
    assert max(seen[5:]) > 2
    with pytest.raises(TypeError, match="curriculum"):
        train_parity(Recorder(), seed=0, steps=1, curriculum=1)


def test_reach_ceiling_counts_the_farthest_reachable_cell():
    cells = torch.tensor([[SOURCE, OPEN, OPEN, WALL, OPEN], [OPEN, SOURCE, WALL, OPEN, OPEN]])
    labels = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 0, 0, 0]])
    # farthest reachable cells: 2 steps away and 1 step away
    assert reach_ceiling(cells, labels, [1, 2, 3]) == {1: 0.0, 2: 0.5, 3: 1.0}


def test_looped_accuracy_never_beats_the_ceiling():
    net = train_looped(seed=0, lengths=(4, 6), steps=10, restarts=2)
    cells, labels = chain_reachability(50, 20, seed=5)
    iterations = [2, 5, 20]
    accuracy, ceiling = (
        looped_accuracy(net, cells, labels, iterations),
        reach_ceiling(cells, labels, iterations),
    )
    assert all(accuracy[t] <= ceiling[t] + 1e-9 for t in iterations)
    assert count_parameters(net.step) == 8 * 8 * 3 + 8
    assert net.steps == 6  # the longest training line


def test_train_looped_checks_its_arguments():
    with pytest.raises(ValueError, match="lengths"):
        train_looped(seed=0, lengths=(6, 4), steps=1)
    with pytest.raises(ValueError, match="restarts"):
        train_looped(seed=0, steps=1, restarts=0)


def test_student_accuracy_trains_and_counts():
    width, depth, classes = 4, 2, 3
    train = layerwise_teacher(64, width, depth, classes, seed=0, data_seed=1)
    test = layerwise_teacher(64, width, depth, classes, seed=0, data_seed=2)

    def make():
        return SharedStack.build(lambda: nn.Linear(width, width), depth, 1)

    accuracy, n_params = student_accuracy(make, train, test, seed=0, epochs=3)
    assert 0.0 <= accuracy <= 1.0
    assert n_params == (width * width + width) + (width * classes + classes)
    assert student_accuracy(make, train, test, seed=0, epochs=3) == (accuracy, n_params)


def test_tuned_student_picks_the_rate_on_validation_data():
    width, depth, classes = 4, 2, 3
    train, validation, test = (
        layerwise_teacher(64, width, depth, classes, seed=0, data_seed=s) for s in (1, 2, 3)
    )

    def make():
        return SharedStack.build(lambda: nn.Linear(width, width), depth, 1)

    result = tuned_student(make, train, validation, test, seed=0, lrs=(0.001, 0.05), epochs=5)
    assert result.validation[result.lr] == max(result.validation.values())
    # the reported test accuracy is the one of the student trained at the chosen rate
    assert result.accuracy == student_accuracy(make, train, test, seed=0, epochs=5, lr=result.lr)[0]
    with pytest.raises(ValueError, match="lrs"):
        tuned_student(make, train, validation, test, seed=0, lrs=())


def test_p4_cnn_is_rotation_invariant_and_plain_cnn_is_not():
    torch.manual_seed(0)
    images = torch.randn(4, 1, 8, 8)
    p4, plain = p4_cnn(width=4).eval(), plain_cnn(width=4).eval()
    with torch.no_grad():
        assert torch.allclose(p4(rotate(images, 1)), p4(images), atol=1e-5)
        assert not torch.allclose(plain(rotate(images, 1)), plain(images), atol=1e-3)


def test_render_assignment_draws_and_checks_its_choice():
    accuracy = {tuple(layer_assignment(4, m, "cycle")): 0.5 + 0.1 * m for m in (1, 2, 4)}
    fig = render_assignment(4, 2, "cycle", accuracy, [1, 2, 4], layer_size=10)
    assert len(fig.axes) == 2
    plt.close(fig)
    with pytest.raises(ValueError, match="n_unique"):
        render_assignment(4, 3, "cycle", accuracy, [1, 2, 4], layer_size=10)
