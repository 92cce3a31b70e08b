"""Chapter 04's explorer helpers: traced uses, convolution position uses, the three-panel plot."""

from __future__ import annotations

import math

import matplotlib
import matplotlib.pyplot as plt
import pytest
import torch
from torch import nn

import shared_lib as sl
from shared_lib.book.ch04_applications import (
    Headline,
    asymmetry,
    best_learning_rate,
    bigram_perplexity,
    conv_sequence_uses,
    multitask_accuracy,
    one_shot_accuracy,
    perplexity,
    plot_application,
    split_test,
    traced_uses,
    train_language_model,
    train_multitask,
    train_pair_model,
    validation_split,
    verification_accuracy,
)
from shared_lib.data.pairs import PairSet, held_out_digits, multitask_digits, sample_pairs
from shared_lib.data.text import text_corpus
from shared_lib.models.small import MLP, MultiTaskNet
from shared_lib.models.twin import TwinNet
from shared_lib.uses import count_per_use


class _Uniform(nn.Module):
    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.vocab = vocab
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.dummy + torch.zeros(*ids.shape, self.vocab)


class _Oracle(nn.Module):
    """Scores a pair by whether the first coordinates (the class) agree."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.where(a[:, 0] == b[:, 0], 1.0, -1.0) + self.dummy


matplotlib.use("Agg")


def keyword_conv():
    return nn.Sequential(nn.Conv1d(1, 4, 5, padding=2), nn.ReLU(),
                         nn.AdaptiveMaxPool1d(1), nn.Flatten(), nn.Linear(4, 2))  # fmt: skip


def test_conv_sequence_uses_count_every_position_once_per_layer():
    model = keyword_conv()
    uses, column_of = conv_sequence_uses(model, 32)
    conv = sl.count_parameters(model[0])
    assert len(uses) == 32 + 1
    assert count_per_use(uses) == 32 * conv + sl.count_parameters(model[4])
    assert column_of("0.weight") == "conv 1" and column_of("4.bias") == "linear 4"
    with pytest.raises(TypeError, match="model"):
        conv_sequence_uses(nn.Linear(2, 2), 8)
    with pytest.raises(ValueError, match="length"):
        conv_sequence_uses(model, 0)


def test_traced_uses_by_unit_and_by_module():
    net = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 3))
    net[2].weight = net[0].weight
    x = torch.randn(1, 3)
    uses, column_of = traced_uses(net, lambda: net(x))
    assert column_of is not None and len(uses) == 2
    assert count_per_use(uses) == sl.count_parameters(net, unique=False)
    uses, column_of = traced_uses(net, lambda: net(x), units=False)
    assert column_of is None and len(uses) == 2


def test_plot_application_draws_three_panels_and_checks_counts():
    model = keyword_conv()
    uses, column_of = conv_sequence_uses(model, 16)
    headline = Headline("accuracy", "conv", "mlp", [0.9, 1.0], [0.5, 0.45])
    unique = sl.count_parameters(model)
    figure = plot_application("demo", uses, unique, count_per_use(uses), headline, True, column_of)
    assert len(figure.axes) == 3
    with pytest.raises(ValueError, match="unique"):
        plot_application("demo", uses, 10, 5, headline, True)
    plt.close("all")


def test_metrics_on_an_oracle_and_on_a_constant():
    y = torch.arange(30) % 3
    x = torch.stack([y.float(), torch.randn(30)], dim=1)
    pairs = sample_pairs(x, y, 100, torch.Generator().manual_seed(0))
    assert verification_accuracy(_Oracle(), pairs) == 1.0
    assert one_shot_accuracy(_Oracle(), x, y, episodes=50) == 1.0
    assert asymmetry(_Oracle(), pairs) == 0.0
    always_same = _Oracle()
    always_same.forward = lambda a, b: torch.ones(len(a))
    assert verification_accuracy(always_same, PairSet(pairs.a, pairs.b, pairs.same)) == 0.5


def test_training_a_siamese_pair_model_runs_and_is_repeatable():
    data = held_out_digits(flat=True)

    def run() -> list[float]:
        torch.manual_seed(0)
        model = TwinNet(MLP(64, 16, 8))
        return train_pair_model(model, data.x_seen, data.y_seen, 128, 2, seed=0)

    losses = run()
    assert losses == run() and len(losses) == 2


def test_train_multitask_and_accuracy():
    data = multitask_digits({"digit": 50, "parity": 100}, seed=0)
    torch.manual_seed(0)
    model = MultiTaskNet(
        nn.Sequential(MLP(64, 16, 16), nn.ReLU()),
        {"digit": nn.Linear(16, 10), "parity": nn.Linear(16, 2)},
    )
    losses = train_multitask(model, data, steps=30, seed=0)
    assert len(losses) == 30 and losses[-1] < losses[0]
    accuracy = multitask_accuracy(model, data)
    assert set(accuracy) == {"digit", "parity"} and all(0 <= a <= 1 for a in accuracy.values())


def test_perplexity_of_a_uniform_model_is_the_vocabulary_size():
    ids = torch.randint(0, 37, (500,))
    assert perplexity(_Uniform(37), ids, length=16) == pytest.approx(37.0, rel=1e-5)


def test_bigram_baseline_beats_uniform_and_validates():
    corpus = text_corpus(5_000, 1_000)
    assert 1.0 < bigram_perplexity(corpus) < len(corpus.vocab)
    with pytest.raises(ValueError, match="smoothing"):
        bigram_perplexity(corpus, smoothing=0)


def test_training_lowers_the_loss_and_is_repeatable():
    corpus = text_corpus(2_000, 500)

    def run() -> list[float]:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Embedding(len(corpus.vocab), 16), nn.Linear(16, len(corpus.vocab)))
        return train_language_model(model, corpus, steps=40, batch_size=8, length=8, seed=1)

    losses = run()
    assert losses == run()
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5
    assert losses[0] == pytest.approx(math.log(len(corpus.vocab)), rel=0.1)
    with pytest.raises(ValueError, match="steps"):
        train_language_model(nn.Linear(1, 1), corpus, steps=0)


def test_validation_split_holds_out_a_fraction_of_every_class_and_is_repeatable():
    y = torch.arange(60) % 3
    x = torch.arange(60.0)[:, None]
    (x_train, _), (x_val, y_val) = validation_split(x, y, 0.2, seed=1)
    assert len(y_val) == 12 and all(y_val.tolist().count(c) == 4 for c in range(3))
    assert set(x_train.flatten().tolist()).isdisjoint(x_val.flatten().tolist())
    assert len(x_train) + len(x_val) == 60
    again = validation_split(x, y, 0.2, seed=1)[1][0]
    assert torch.equal(again, x_val)
    assert not torch.equal(validation_split(x, y, 0.2, seed=2)[1][0], x_val)
    with pytest.raises(ValueError, match="fraction"):
        validation_split(x, y, 1.0)
    with pytest.raises(ValueError, match="too few"):
        validation_split(x[:6], y[:6], 0.2)
    with pytest.raises(ValueError, match="same length"):
        validation_split(x[:5], y, 0.2)


def test_split_test_partitions_the_test_set_and_keeps_the_training_sets():
    data = multitask_digits({"digit": 50, "parity": 100}, seed=0)
    validation, test = split_test(data, 1 / 3, seed=0)
    assert len(validation.x_test) + len(test.x_test) == len(data.x_test)
    assert validation.train is data.train and test.train is data.train
    for part in (validation, test):
        assert set(part.y_test) == {"digit", "parity"}
        assert torch.equal(part.y_test["parity"], part.y_test["digit"] % 2)
    rows = {tuple(r.tolist()) for r in data.x_test}
    assert {tuple(r.tolist()) for r in test.x_test} <= rows
    with pytest.raises(ValueError, match="fraction"):
        split_test(data, 0.0)


def test_best_learning_rate_picks_the_best_mean():
    scores = {1e-3: [0.5, 0.9], 3e-3: [0.8, 0.7], 1e-2: [0.1, 0.2]}
    assert best_learning_rate(scores) == 3e-3
    assert best_learning_rate(scores, higher_is_better=False) == 1e-2
    with pytest.raises(ValueError, match="at least one"):
        best_learning_rate({})
