"""Tests of shared_lib.models.twin: one encoder (Siamese) vs two (the untied twin)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from shared_lib.counting import count_parameters
from shared_lib.models.small import MLP, SiameseNet
from shared_lib.models.twin import TwinNet
from shared_lib.tying import shared_groups


def encoder() -> nn.Module:
    return MLP(6, 5, 4)


@pytest.mark.parametrize("score", ["cosine", "l1"])
def test_one_encoder_is_stored_once_and_symmetric(score):
    torch.manual_seed(0)
    siamese = TwinNet(encoder(), score=score, embedding_size=4)
    assert siamese.shared and siamese.encoder_a is siamese.encoder_b
    groups = shared_groups(siamese)
    assert groups and all(len(g) == 2 for g in groups)
    assert count_parameters(siamese, unique=False) - count_parameters(siamese) == (
        count_parameters(siamese.encoder_a)
    )
    a, b = torch.randn(9, 6), torch.randn(9, 6)
    assert torch.equal(siamese(a, b), siamese(b, a))  # exactly, not approximately


@pytest.mark.parametrize("score", ["cosine", "l1"])
def test_two_encoders_double_the_encoder_and_break_symmetry(score):
    torch.manual_seed(0)
    shared = TwinNet(encoder(), score=score, embedding_size=4)
    twin = TwinNet(encoder(), encoder(), score=score, embedding_size=4)
    assert not twin.shared and shared_groups(twin) == []
    assert count_parameters(twin) == count_parameters(shared) + count_parameters(shared.encoder_a)
    a, b = torch.randn(9, 6), torch.randn(9, 6)
    assert (twin(a, b) - twin(b, a)).abs().max() > 1e-3


def test_l1_score_matches_siamesenet():
    torch.manual_seed(0)
    reference = SiameseNet(encoder(), embedding_size=4)
    twin = TwinNet(reference.encoder, score="l1", embedding_size=4)
    twin.score.load_state_dict(reference.score.state_dict())
    a, b = torch.randn(5, 6), torch.randn(5, 6)
    torch.testing.assert_close(twin(a, b), reference(a, b))


def test_cosine_score_is_bounded_by_the_scale():
    torch.manual_seed(0)
    model = TwinNet(encoder())
    a = torch.randn(7, 6)
    logits = model(a, a)
    torch.testing.assert_close(logits, torch.full((7,), 5.0))  # cos(x, x) = 1, scale 5, bias 0


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="score"):
        TwinNet(encoder(), score="dot")
    with pytest.raises(TypeError, match="embedding_size"):
        TwinNet(encoder(), score="l1")
    with pytest.raises(ValueError, match="embedding_size"):
        TwinNet(encoder(), score="l1", embedding_size=0)
    with pytest.raises(TypeError, match="encoder_a"):
        TwinNet(None)
    with pytest.raises(TypeError, match="encoder_b"):
        TwinNet(encoder(), encoder_b="nope")
    with pytest.raises(ValueError, match="same number"):
        TwinNet(encoder())(torch.randn(3, 6), torch.randn(4, 6))
