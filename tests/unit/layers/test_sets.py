"""Sets and graphs: permutation-equivariant and -invariant shared layers (chapters 01, 02)."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

import shared_lib as sl
from shared_lib.layers.sets import (
    AppendPosition,
    DeepSets,
    EquivariantLinear,
    MessagePassingLayer,
    equivariant_dimension,
    orbit_sharing_pattern,
    permutation_matrix,
)
from shared_lib.uses import trace_uses


def cycle(n: int) -> list[int]:
    return [(i + 1) % n for i in range(n)]


def swap(n: int) -> list[int]:
    return [1, 0, *range(2, n)]


@pytest.mark.parametrize("pool", ["sum", "mean", "max"])
@pytest.mark.parametrize("bias", [True, False])
def test_equivariant_linear_commutes_with_every_permutation(pool, bias):
    torch.manual_seed(0)
    layer = EquivariantLinear(3, 2, pool=pool, bias=bias).double()
    x = torch.randn(4, 5, 3, dtype=torch.float64)
    for _ in range(5):
        order = torch.randperm(5)
        torch.testing.assert_close(layer(x[:, order]), layer(x)[:, order], rtol=0, atol=1e-12)
    expected = 2 * 3 * 2 + (2 if bias else 0)
    assert sl.count_parameters(layer) == expected
    assert layer(torch.randn(9, 3, dtype=torch.float64)).shape == (9, 2)  # any set size


@pytest.mark.parametrize("pool", ["sum", "mean"])
def test_dense_matrix_is_the_layer_and_lambda_i_plus_gamma(pool):
    torch.manual_seed(0)
    layer = EquivariantLinear(2, 3, pool=pool, bias=False).double()
    n = 4
    x = torch.randn(n, 2, dtype=torch.float64)
    matrix = layer.dense_matrix(n)
    assert matrix.shape == (n * 3, n * 2)
    torch.testing.assert_close(matrix @ x.flatten(), layer(x).flatten(), rtol=0, atol=1e-12)
    one = EquivariantLinear(1, 1, pool="sum", bias=False).double()
    lam, gam = one.weight.item(), one.pool_weight.item()
    expected = lam * torch.eye(n, dtype=torch.float64) + gam * torch.ones(n, n, dtype=torch.float64)
    torch.testing.assert_close(one.dense_matrix(n).detach(), expected)


def test_equivariant_linear_errors():
    with pytest.raises(ValueError, match="pool"):
        EquivariantLinear(1, 1, pool="median")
    with pytest.raises(TypeError, match="in_features"):
        EquivariantLinear(1.5, 1)
    with pytest.raises(ValueError, match="out_features"):
        EquivariantLinear(1, 0)
    with pytest.raises(TypeError, match="bias"):
        EquivariantLinear(1, 1, bias=1)
    layer = EquivariantLinear(2, 1)
    with pytest.raises(ValueError, match=r"\(\.\.\., n, 2\)"):
        layer(torch.randn(3, 4, 3))
    with pytest.raises(ValueError, match="not linear"):
        EquivariantLinear(1, 1, pool="max").dense_matrix(3)
    assert "pool='mean'" in repr(layer)


@pytest.mark.parametrize("pool", ["sum", "mean", "max"])
def test_deep_sets_is_permutation_invariant_and_shares_phi(pool):
    torch.manual_seed(0)
    model = DeepSets.mlp(2, 8, 3, pool=pool).double()
    x = torch.randn(5, 6, 2, dtype=torch.float64)
    for _ in range(5):
        order = torch.randperm(6)
        torch.testing.assert_close(model(x[:, order]), model(x), rtol=0, atol=1e-12)
    # one φ for every element: the count does not depend on the set size
    assert sl.count_parameters(model) == (2 * 8 + 8) + (8 * 8 + 8) + (8 * 8 + 8) + (8 * 3 + 3)
    assert model(torch.randn(2, 11, 2, dtype=torch.float64)).shape == (2, 3)
    uses = trace_uses(model, lambda: [model.phi(x[:, i]) for i in range(6)])
    assert len(uses) == 12  # two Linear layers of φ, six calls each


def test_deep_sets_cannot_tell_first_from_last():
    torch.manual_seed(0)
    model = DeepSets.mlp(1, 8, 1).double()
    x = torch.randn(10, 4, 1, dtype=torch.float64)
    swapped = x[:, [3, 1, 2, 0]]
    torch.testing.assert_close(model(swapped), model(x), rtol=0, atol=1e-12)


def test_deep_sets_errors():
    with pytest.raises(TypeError, match="phi"):
        DeepSets("mlp", nn.Identity())
    with pytest.raises(TypeError, match="rho"):
        DeepSets(nn.Identity(), None)
    with pytest.raises(ValueError, match="pool"):
        DeepSets(nn.Identity(), nn.Identity(), pool="prod")
    with pytest.raises(ValueError, match="hidden"):
        DeepSets.mlp(1, 0, 1)
    with pytest.raises(ValueError, match=r"\(batch, n, features\)"):
        DeepSets.mlp(1, 4, 1)(torch.randn(3, 1))


@pytest.mark.parametrize("aggregate", ["sum", "mean"])
def test_message_passing_commutes_with_relabelling(aggregate):
    torch.manual_seed(0)
    layer = MessagePassingLayer(3, 4, aggregate=aggregate).double()
    n = 6
    adjacency = (torch.rand(n, n, dtype=torch.float64) < 0.4).double()
    h = torch.randn(2, n, 3, dtype=torch.float64)
    for _ in range(5):
        order = torch.randperm(n)
        relabelled = layer(h[:, order], adjacency[order][:, order])
        torch.testing.assert_close(relabelled, layer(h, adjacency)[:, order], rtol=0, atol=1e-12)
    batched = adjacency.expand(2, n, n)
    torch.testing.assert_close(layer(h, batched), layer(h, adjacency))
    # the same two linear maps for any graph size
    assert sl.count_parameters(layer) == (3 * 4 + 4) + (7 * 4 + 4)
    assert layer(torch.randn(1, 9, 3, dtype=torch.float64), torch.eye(9)).shape == (1, 9, 4)


def test_message_passing_errors():
    layer = MessagePassingLayer(2, 2)
    with pytest.raises(ValueError, match="aggregate"):
        MessagePassingLayer(2, 2, aggregate="max")
    with pytest.raises(ValueError, match=r"h must be"):
        layer(torch.randn(4, 2), torch.eye(4))
    with pytest.raises(ValueError, match="adjacency"):
        layer(torch.randn(1, 4, 2), torch.eye(3))


@pytest.mark.parametrize("n", [2, 3, 5, 7])
def test_orbit_patterns_of_the_cyclic_and_symmetric_groups(n):
    cyclic = orbit_sharing_pattern([cycle(n)])
    assert int(cyclic.max()) + 1 == n == equivariant_dimension([cycle(n)])
    for i, j in itertools.product(range(n), repeat=2):  # circulant: depends on j - i mod n
        assert cyclic[i, j] == cyclic[0, (j - i) % n]
    symmetric = orbit_sharing_pattern([cycle(n), swap(n)])
    assert int(symmetric.max()) + 1 == 2 == equivariant_dimension([cycle(n), swap(n)])
    assert torch.equal(symmetric, 1 - torch.eye(n, dtype=torch.int64))


def test_tying_by_orbits_gives_an_equivariant_matrix():
    torch.manual_seed(0)
    n = 6
    generators = [cycle(n)]
    pattern = orbit_sharing_pattern(generators)
    values = torch.randn(int(pattern.max()) + 1, dtype=torch.float64)
    weight = values[pattern]
    for shift in range(n):
        p = permutation_matrix([(i + shift) % n for i in range(n)])
        torch.testing.assert_close(weight @ p, p @ weight, rtol=0, atol=1e-12)
    random = torch.randn(n, n, dtype=torch.float64)
    p = permutation_matrix(cycle(n))
    assert (random @ p - p @ random).abs().max() > 0.1
    assert equivariant_dimension([list(range(n))]) == n * n  # the trivial group: dense


def test_permutation_helpers_errors():
    with pytest.raises(ValueError, match="permutation"):
        permutation_matrix([0, 0, 1])
    with pytest.raises(TypeError, match="permutations"):
        orbit_sharing_pattern("012")
    with pytest.raises(ValueError, match="at least one"):
        orbit_sharing_pattern([])
    with pytest.raises(ValueError, match="one length"):
        equivariant_dimension([[0, 1], [0, 1, 2]])
    with pytest.raises(ValueError, match="at most 30"):
        equivariant_dimension([list(range(31))])
    x = torch.arange(4.0, dtype=torch.float64)
    assert torch.equal(permutation_matrix([3, 2, 1, 0]) @ x, x.flip(0))


def test_append_position_breaks_the_symmetry_on_purpose():
    torch.manual_seed(0)
    model = nn.Sequential(AppendPosition(4), DeepSets.mlp(5, 8, 1)).double()
    x = torch.randn(3, 4, 1, dtype=torch.float64)
    assert (model(x.flip(1)) - model(x)).abs().max() > 1e-6
    assert AppendPosition(4)(x).shape == (3, 4, 5)
    with pytest.raises(ValueError, match=r"\(batch, 4, features\)"):
        AppendPosition(4)(torch.randn(3, 5, 1))
    with pytest.raises(ValueError, match="set_size"):
        AppendPosition(0)
