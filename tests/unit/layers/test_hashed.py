"""Tests of shared_lib.layers.hashed: the hash is deterministic and spread out, HashedLinear
applies the virtual matrix it reports, and autograd sums gradients into shared real weights."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from shared_lib.counting import count_parameters
from shared_lib.layers.hashed import HashedLinear, hash_indices


def test_hash_is_deterministic_seeded_and_in_range():
    first, again = hash_indices(1000, 37, seed=3), hash_indices(1000, 37, seed=3)
    assert torch.equal(first, again)
    assert first.dtype == torch.int64 and first.min() >= 0 and first.max() < 37
    assert not torch.equal(first, hash_indices(1000, 37, seed=4))


def test_hash_spreads_evenly_over_buckets():
    counts = torch.bincount(hash_indices(64_000, 64, seed=0), minlength=64).float()
    # Poisson-like: every bucket used, none far from the mean of 1,000.
    assert counts.min() > 850 and counts.max() < 1150


def test_shape_count_and_compression_factor():
    layer = HashedLinear(64, 32, n_real=256)
    assert layer(torch.randn(5, 64)).shape == (5, 32)
    assert layer(torch.randn(2, 3, 64)).shape == (2, 3, 32)
    assert count_parameters(layer) == 256 + 32
    assert layer.compression_factor == 256 / (64 * 32)
    assert "n_real=256" in repr(layer)


def test_forward_equals_linear_with_the_virtual_matrix():
    layer = HashedLinear(10, 7, n_real=9, seed=5)
    x = torch.randn(4, 10)
    matrix = torch.empty(7, 10)
    for i in range(7):
        for j in range(10):
            matrix[i, j] = layer.weight[layer.index[i, j]] * layer.sign[i, j]
    torch.testing.assert_close(layer(x), F.linear(x, matrix, layer.bias))
    assert set(layer.sign.unique().tolist()) == {-1.0, 1.0}


def test_gradient_of_a_real_weight_is_the_sum_over_its_virtual_uses():
    torch.manual_seed(0)
    layer = HashedLinear(12, 6, n_real=5, bias=False)
    x = torch.randn(8, 12)
    layer(x).pow(2).sum().backward()
    virtual = layer.virtual_weight().detach().requires_grad_(True)
    F.linear(x, virtual).pow(2).sum().backward()
    expected = torch.zeros(5).index_add_(
        0, layer.index.reshape(-1), (virtual.grad * layer.sign).reshape(-1)
    )
    torch.testing.assert_close(layer.weight.grad, expected)


def test_gradient_matches_finite_differences():
    torch.manual_seed(1)
    layer = HashedLinear(4, 3, n_real=4, sign_hash=False).double()
    x = torch.randn(2, 4, dtype=torch.double)
    assert torch.autograd.gradcheck(lambda w: F.linear(x, w[layer.index]), (layer.weight,))


def test_same_seed_same_layer_and_state_dict_holds_only_real_weights():
    a, b = HashedLinear(8, 8, 10, seed=2), HashedLinear(8, 8, 10, seed=2)
    assert torch.equal(a.index, b.index) and torch.equal(a.sign, b.sign)
    assert set(a.state_dict()) == {"weight", "bias"}
    no_sign = HashedLinear(8, 8, 10, sign_hash=False, bias=False)
    assert no_sign.sign is None and no_sign.bias is None
    torch.testing.assert_close(no_sign.virtual_weight(), no_sign.weight[no_sign.index])


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"n_real": 0}, ValueError, "n_real"),
        ({"n_real": 1000}, ValueError, "n_real"),
        ({"n_real": 2.5}, TypeError, "n_real"),
        ({"in_features": 0}, ValueError, "in_features"),
        ({"out_features": "3"}, TypeError, "out_features"),
        ({"seed": -1}, ValueError, "seed"),
        ({"sign_hash": 1}, TypeError, "sign_hash"),
    ],
)
def test_bad_arguments_name_themselves(kwargs, error, name):
    arguments = {"in_features": 8, "out_features": 4, "n_real": 8} | kwargs
    with pytest.raises(error, match=name):
        HashedLinear(**arguments)


def test_wrong_input_size_is_reported():
    with pytest.raises(ValueError, match="in_features=8"):
        HashedLinear(8, 4, 8)(torch.zeros(2, 9))
