"""Mixture of experts with shared experts and its parameter counts (chapter 08)."""

from __future__ import annotations

import pytest
import torch

import shared_lib as sl
from shared_lib.models.moe import (
    DEEPSEEK_MOE_16B,
    DEEPSEEK_MOE_16B_PUBLISHED,
    Expert,
    MoEConfig,
    MoELayer,
    MoETransformerConfig,
)


@pytest.mark.parametrize("gated", [True, False])
def test_expert_count_matches_modules(gated):
    assert sl.count_parameters(Expert(6, 10, gated)) == Expert.count(6, 10, gated)


@pytest.mark.parametrize("n_shared", [0, 2])
@pytest.mark.parametrize("gated", [True, False])
def test_layer_counts_total_and_active_from_modules(n_shared, gated):
    torch.manual_seed(0)
    config = MoEConfig(8, 12, n_routed=5, top_k=2, n_shared=n_shared, gated=gated)
    layer = MoELayer(config)
    assert sl.count_parameters(layer) == config.total_parameters()
    for token in torch.randn(20, 8):
        assert layer.active_parameters_for(token) == config.active_parameters()


def test_forward_matches_a_dense_reference():
    torch.manual_seed(0)
    config = MoEConfig(6, 7, n_routed=4, top_k=2, n_shared=1, gated=True)
    layer = MoELayer(config)
    x = torch.randn(3, 5, 6)
    out = layer(x)
    tokens = x.reshape(-1, 6)
    probabilities = layer.router(tokens).softmax(-1)
    gates, indices = probabilities.topk(2, dim=-1)
    expected = layer.shared[0](tokens)
    for n in range(len(tokens)):
        for slot in range(2):
            expected[n] += gates[n, slot] * layer.experts[indices[n, slot]](tokens[n])
    assert out.shape == x.shape
    torch.testing.assert_close(out.reshape(-1, 6), expected)
    assert layer.last_load.sum().item() == pytest.approx(1.0)
    assert layer.aux_loss.item() > 0


def test_normalized_gates_sum_to_one_and_gradients_reach_the_router():
    layer = MoELayer(MoEConfig(4, 4, n_routed=3, top_k=2, normalize_topk=True))
    gates, _, _ = layer.route(torch.randn(10, 4))
    torch.testing.assert_close(gates.sum(-1), torch.ones(10))
    layer(torch.randn(10, 4)).sum().backward()
    assert layer.router.weight.grad is not None and layer.router.weight.grad.abs().sum() > 0


def test_bad_arguments():
    with pytest.raises(ValueError, match="top_k"):
        MoEConfig(4, 4, n_routed=2, top_k=3)
    with pytest.raises(TypeError, match="n_shared"):
        MoEConfig(4, 4, n_routed=2, top_k=1, n_shared=1.5)
    with pytest.raises(TypeError, match="config"):
        MoELayer({"hidden_size": 4})
    layer = MoELayer(MoEConfig(4, 4, n_routed=2, top_k=1))
    with pytest.raises(ValueError, match="hidden_size"):
        layer(torch.randn(3, 5))
    with pytest.raises(ValueError, match="token"):
        layer.active_parameters_for(torch.randn(2, 4))
    with pytest.raises(ValueError, match="first_dense_layers"):
        MoETransformerConfig(10, 8, 2, 2, 16, 3, MoEConfig(8, 4, 4, 2))
    with pytest.raises(ValueError, match="moe"):
        MoETransformerConfig(10, 8, 2, 2, 16, 1, MoEConfig(6, 4, 4, 2))
    with pytest.raises(TypeError, match="moe"):
        MoETransformerConfig(10, 8, 2, 2, 16, 1, {"hidden_size": 8})
    with pytest.raises(TypeError, match="gated"):
        Expert(4, 4, gated=1)


@pytest.mark.parametrize("tie", [False, True])
def test_small_transformer_skeleton_matches_the_closed_form(tie):
    config = MoETransformerConfig(
        vocab_size=50,
        hidden_size=8,
        num_layers=3,
        num_heads=2,
        dense_intermediate_size=20,
        first_dense_layers=1,
        moe=MoEConfig(8, 6, n_routed=4, top_k=2, n_shared=1),
        tie_embeddings=tie,
    )
    skeleton = config.build_skeleton("cpu")
    assert sl.count_parameters(skeleton) == config.total_parameters()
    assert config.active_parameters() < config.total_parameters()
    embeddings = 50 * 8 * (1 if tie else 2)
    assert config.active_parameters() - config.active_parameters(False) == embeddings


def test_deepseek_moe_16b_counts():
    total = DEEPSEEK_MOE_16B.total_parameters()
    assert sl.count_parameters(DEEPSEEK_MOE_16B.build_skeleton("meta")) == total
    assert abs(total - DEEPSEEK_MOE_16B_PUBLISHED["total"]) < 0.05e9
    assert abs(DEEPSEEK_MOE_16B.active_parameters() - DEEPSEEK_MOE_16B_PUBLISHED["active"]) < 0.05e9
