"""Mixture-of-Recursions and the hypernetwork layer (chapter 08)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import shared_lib as sl
from shared_lib.data.sequences import iterated_map_task
from shared_lib.layers.hyper import HyperLinear
from shared_lib.layers.recursion import MixtureOfRecursions


def make_mor(start_depth=None, width=4, recursions=3):
    torch.manual_seed(0)
    block = nn.Sequential(nn.Linear(width, width), nn.Tanh())
    return MixtureOfRecursions(block, recursions, width, start_depth=start_depth)


def test_soft_forward_is_the_router_weighted_mix_of_depths():
    mor = make_mor()
    x = torch.randn(5, 4)
    out = mor(x)
    p = mor.depth_probabilities(x)
    h1 = mor.block(x)
    h2 = mor.block(h1)
    h3 = mor.block(h2)
    torch.testing.assert_close(out, p[:, :1] * h1 + p[:, 1:2] * h2 + p[:, 2:] * h3)
    torch.testing.assert_close(mor.expected_depth, (p * torch.tensor([1.0, 2, 3])).sum(1).mean())
    assert mor.block_calls == 15


def test_hard_forward_runs_each_token_its_own_number_of_passes():
    mor = make_mor().eval()
    with torch.no_grad():
        mor.router.weight.zero_()
        mor.router.bias.zero_()
    x = torch.randn(6, 4)
    # route by the sign of the first feature: negative -> 1 pass, positive -> 3 passes
    router_input = torch.stack([(x[:, 0] < 0).float(), torch.zeros(6), (x[:, 0] >= 0).float()], 1)
    mor.router = nn.Linear(3, 3)
    with torch.no_grad():
        mor.router.weight.copy_(torch.eye(3) * 10)
        mor.router.bias.zero_()
        out = mor(x, router_input)
    for n in range(6):
        depth = 1 if x[n, 0] < 0 else 3
        expected = x[n : n + 1]
        for _ in range(depth):
            expected = mor.block(expected)
        torch.testing.assert_close(out[n : n + 1], expected)
    assert mor.last_depths.tolist() == [1 if v < 0 else 3 for v in x[:, 0].tolist()]
    assert mor.block_calls == int(mor.last_depths.sum())


def test_start_depth_biases_the_router_and_parameters_are_shared():
    mor = make_mor(start_depth=1)
    assert mor.router.bias.tolist() == [4.0, 0.0, 0.0]
    unshared = sum(p.numel() for p in mor.block.parameters())
    assert sl.count_parameters(mor) == unshared + sl.count_parameters(mor.router)


def test_mor_bad_arguments():
    with pytest.raises(TypeError, match="block"):
        MixtureOfRecursions(lambda x: x, 2, 4)
    with pytest.raises(ValueError, match="max_recursions"):
        MixtureOfRecursions(nn.Identity(), 0, 4)
    with pytest.raises(ValueError, match="start_depth"):
        MixtureOfRecursions(nn.Identity(), 2, 4, start_depth=3)
    with pytest.raises(ValueError, match="x must be"):
        make_mor()(torch.randn(2, 3, 4))
    with pytest.raises(ValueError, match="router_input"):
        make_mor()(torch.randn(2, 4), torch.randn(3, 4))


def test_iterated_map_task():
    x, k, y = iterated_map_task(50, width=5, max_depth=3, seed=1)
    assert x.shape == y.shape == (50, 5) and k.min() >= 1 and k.max() <= 3
    _, k2, y2 = iterated_map_task(50, width=5, max_depth=3, seed=1)
    assert torch.equal(y, y2) and torch.equal(k, k2)
    # the map: the one-pass tokens and the two-pass tokens agree through f
    generator = torch.Generator().manual_seed(1)
    matrix = torch.randn(5, 5, generator=generator) * (2.0 / 5**0.5)
    f = lambda h: torch.tanh(h @ matrix.T)  # noqa: E731
    torch.testing.assert_close(y[k == 1], f(x[k == 1]))
    torch.testing.assert_close(y[k == 2], f(f(x[k == 2])))
    with pytest.raises(ValueError, match="gain"):
        iterated_map_task(5, gain=0)


def test_hyper_linear_counts_and_weights():
    layer = HyperLinear(6, 5, n_layers=3, embedding_dim=2)
    assert sl.count_parameters(layer) == layer.expected_parameters() == 3 * 6 + 3 * 5 * 3
    assert layer.generated_parameters() == 3 * (5 * 6 + 5)
    x = torch.randn(4, 6)
    for i in range(3):
        expected = x @ layer.weight(i).T + layer.bias[i]
        torch.testing.assert_close(layer(x, i), expected)
        assert torch.linalg.matrix_rank(layer.weight(i)) <= 3
    assert not torch.allclose(layer.weight(0), layer.weight(1))


def test_hyper_linear_gradients_reach_the_shared_generator_from_every_layer():
    layer = HyperLinear(4, 4, n_layers=2, embedding_dim=3)
    with torch.no_grad():
        layer.bias.normal_()
    layer(torch.randn(2, 4), 1).sum().backward()
    assert layer.generator.weight.grad.abs().sum() > 0
    assert layer.embeddings.grad[0].abs().sum() == 0 and layer.embeddings.grad[1].abs().sum() > 0


def test_hyper_linear_bad_arguments():
    layer = HyperLinear(4, 4, n_layers=2, embedding_dim=3)
    with pytest.raises(ValueError, match="layer"):
        layer.weight(2)
    with pytest.raises(ValueError, match="in_features"):
        layer(torch.randn(2, 5), 0)
    with pytest.raises(TypeError, match="embedding_dim"):
        HyperLinear(4, 4, 2, 1.5)
