"""Tests of shared_lib.models.lm: tied and untied language models, counts, causality, errors."""

from __future__ import annotations

import pytest
import torch

from shared_lib.counting import count_parameters
from shared_lib.models.lm import LSTMLanguageModel, NGramLanguageModel
from shared_lib.tying import shared_groups


@pytest.mark.parametrize("cls", [NGramLanguageModel, LSTMLanguageModel])
def test_tying_saves_one_vocab_by_width_matrix(cls):
    tied, untied = cls(50, 8, tie_embeddings=True), cls(50, 8, tie_embeddings=False)
    assert tied.output.weight is tied.embedding.weight
    assert untied.output.weight is not untied.embedding.weight
    assert count_parameters(untied) - count_parameters(tied) == 50 * 8
    assert count_parameters(tied, unique=False) == count_parameters(untied)
    assert shared_groups(tied) == [["embedding.weight", "output.weight"]]
    assert shared_groups(untied) == []
    assert "tie_embeddings=True" in repr(tied)


def test_ngram_count_closed_form():
    V, d, k = 30, 6, 3  # noqa: N806 (the paper's symbols)
    model = NGramLanguageModel(V, d, k, tie_embeddings=True)
    assert count_parameters(model) == V * d + (k * d * d + d) + V


def test_lstm_counts_match_press_and_wolf_large():
    """Press & Wolf's large PTB model: 2 layers of 1,500 units, 10,000 words: 66M → 51M."""
    with torch.device("meta"):
        untied = LSTMLanguageModel(10_000, 1_500, num_layers=2, tie_embeddings=False)
        tied = LSTMLanguageModel(10_000, 1_500, num_layers=2, tie_embeddings=True)
    assert round(count_parameters(untied) / 1e6) == 66
    assert round(count_parameters(tied) / 1e6) == 51


@pytest.mark.parametrize("cls", [NGramLanguageModel, LSTMLanguageModel])
def test_forward_shape_and_causality(cls):
    torch.manual_seed(0)
    model = cls(20, 8).eval()
    ids = torch.randint(0, 20, (3, 7))
    logits = model(ids)
    assert logits.shape == (3, 7, 20)
    changed = ids.clone()
    changed[:, 4:] = (changed[:, 4:] + 1) % 20
    torch.testing.assert_close(model(changed)[:, :4], logits[:, :4])  # no peeking ahead


def test_ngram_sees_only_its_context():
    torch.manual_seed(0)
    model = NGramLanguageModel(20, 8, context=2).eval()
    ids = torch.randint(0, 20, (2, 6))
    changed = ids.clone()
    changed[:, 0] = (changed[:, 0] + 1) % 20  # outside the window of positions >= 2
    torch.testing.assert_close(model(changed)[:, 2:], model(ids)[:, 2:])
    assert not torch.allclose(model(changed)[:, :2], model(ids)[:, :2])


def test_tied_gradient_is_the_sum_of_both_uses():
    torch.manual_seed(0)
    tied = NGramLanguageModel(15, 4, context=2).double()
    untied = NGramLanguageModel(15, 4, context=2, tie_embeddings=False).double()
    untied.load_state_dict(tied.state_dict())
    ids = torch.randint(0, 15, (2, 5))
    for model in (tied, untied):
        model(ids).logsumexp(-1).sum().backward()
    both = untied.embedding.weight.grad + untied.output.weight.grad
    torch.testing.assert_close(tied.embedding.weight.grad, both)


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="vocab_size"):
        NGramLanguageModel(0)
    with pytest.raises(ValueError, match="context"):
        NGramLanguageModel(10, context=0)
    with pytest.raises(TypeError, match="tie_embeddings"):
        LSTMLanguageModel(10, tie_embeddings="yes")
    with pytest.raises(ValueError, match="dropout"):
        LSTMLanguageModel(10, dropout=1.5)
    # A wrong type is a TypeError, a wrong value a ValueError.
    with pytest.raises(TypeError, match="vocab_size"):
        NGramLanguageModel(10.0)
    with pytest.raises(TypeError, match="width"):
        LSTMLanguageModel(10, width="8")
    with pytest.raises(TypeError, match="dropout"):
        LSTMLanguageModel(10, dropout="0.1")
    with pytest.raises(TypeError, match="tie_embeddings"):
        NGramLanguageModel(10, tie_embeddings=1)
    with pytest.raises(ValueError, match="ids"):
        NGramLanguageModel(10)(torch.zeros(4, dtype=torch.long))
