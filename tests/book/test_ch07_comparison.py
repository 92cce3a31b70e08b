"""Chapter 07's techniques: byte counts, k-means and uniform codebooks, one-shot and iterative
pruning, low rank, PCA, soft sharing, the early-stopped recipe and the Pareto helpers."""

from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch
from torch import nn

from shared_lib.book.ch07_comparison import (
    Recipe,
    Result,
    Summary,
    finish_pruning,
    format_table,
    hold_out,
    index_bits,
    kmeans_share,
    l1_penalty,
    linear_weights,
    low_rank,
    magnitude_prune,
    pareto_front,
    pca_projection,
    pick,
    pruning_schedule,
    run_technique,
    snap_to_prior,
    storage_bytes,
    stored_numbers,
    summarize,
    uniform_quantize,
    winner,
)
from shared_lib.data.splits import Split
from shared_lib.layers.compressed import CodebookLinear, LowRankLinear, SoftWeightSharing, kmeans_1d
from shared_lib.layers.hashed import HashedLinear

RESULT = Result("dense", "", 0, 1, 4, 0.5, 0.0)


def mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 4))


def toy_split() -> Split:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(120, 16, generator=g)
    y = (x[:, 0] > 0).long() + 2 * (x[:, 1] > 0).long()
    return Split(x[:80], y[:80], x[80:], y[80:])


def test_index_bits():
    assert [index_bits(k) for k in (1, 2, 3, 4, 5, 16, 17, 256)] == [1, 1, 2, 2, 3, 4, 5, 8]
    with pytest.raises(ValueError, match="k"):
        index_bits(0)


def test_kmeans_share_replaces_linears_and_trains_only_the_codebook():
    model = kmeans_share(mlp(), k=4)
    layers = [m for m in model.modules() if isinstance(m, CodebookLinear)]
    assert len(layers) == 2 and all(layer.weight.unique().numel() <= 4 for layer in layers)
    model(torch.randn(3, 16)).sum().backward()
    assert layers[0].codebook.grad.shape == (4,)
    # gradient of a shared value = sum of the gradients of the weights that use it
    weight = layers[0].weight.detach().requires_grad_(True)
    x = torch.randn(3, 16)
    layers[0].codebook.grad = None
    layers[0](x).sum().backward()
    nn.functional.linear(x, weight, layers[0].bias).sum().backward()
    expected = torch.zeros(4).index_add_(
        0, layers[0].assignment.reshape(-1), weight.grad.reshape(-1)
    )
    torch.testing.assert_close(layers[0].codebook.grad, expected)
    assert stored_numbers(model) == 4 + 12 + 4 + 4
    bits = index_bits(4) * (16 * 12 + 12 * 4)
    assert storage_bytes(model) == 4 * (4 + 12 + 4 + 4) + math.ceil(bits / 8)


def test_kmeans_errors_name_arguments():
    with pytest.raises(TypeError, match="values"):
        kmeans_1d([1.0, 2.0], 2)
    with pytest.raises(ValueError, match="k"):
        kmeans_1d(torch.ones(3), 0)
    with pytest.raises(ValueError, match=r"nn\.Linear"):
        kmeans_share(nn.Sequential(nn.ReLU()), 2)
    with pytest.raises(TypeError, match="model"):
        kmeans_share("not a model", 2)


@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9])
def test_magnitude_prune_zeros_the_smallest_and_keeps_them_through_training(sparsity):
    model = mlp()
    magnitudes = [m.weight.detach().abs().clone() for m in model if isinstance(m, nn.Linear)]
    magnitude_prune(model, sparsity)
    for layer, before in zip(
        [m for m in model if isinstance(m, nn.Linear)], magnitudes, strict=True
    ):
        kept = layer.weight != 0
        assert kept.sum() == max(1, round(before.numel() * (1 - sparsity)))
        if (~kept).any():
            assert before[kept].min() >= before[~kept].max()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model(torch.randn(4, 16)).pow(2).sum().backward()
    optimizer.step()
    zeros = sum(int((m.weight == 0).sum()) for m in model if isinstance(m, nn.Linear))
    finish_pruning(model)
    assert zeros == sum(int((m.weight == 0).sum()) for m in model if isinstance(m, nn.Linear))
    assert not any(hasattr(m, "weight_mask") for m in model.modules())


def test_pruned_bytes_follow_the_convention():
    layer = magnitude_prune(nn.Linear(64, 64, bias=False), 0.99)
    nonzeros = int(torch.count_nonzero(layer.weight))
    assert storage_bytes(layer) == 4 * nonzeros + min(4096 // 8, 2 * nonzeros)
    assert stored_numbers(layer) == nonzeros
    dense = nn.Linear(64, 64, bias=False)
    assert storage_bytes(magnitude_prune(dense, 0.0)) == 4 * 4096  # dense is cheaper
    with pytest.raises(ValueError, match="sparsity"):
        magnitude_prune(mlp(), 1.0)


def test_low_rank_is_the_truncated_svd_and_counts_less():
    linear = nn.Linear(20, 10)
    factor = LowRankLinear.from_linear(linear, 3)
    u, s, vh = torch.linalg.svd(linear.weight.detach())
    best = u[:, :3] @ torch.diag(s[:3]) @ vh[:3]
    x = torch.randn(5, 20)
    torch.testing.assert_close(factor(x), nn.functional.linear(x, best, linear.bias))
    full = LowRankLinear.from_linear(linear, 10)
    torch.testing.assert_close(full(x), linear(x), atol=1e-5, rtol=1e-5)
    assert factor.rank == 3
    model = low_rank(mlp(), 2)
    assert isinstance(model[0], LowRankLinear) and isinstance(model[2], LowRankLinear)
    assert stored_numbers(model) == 2 * (16 + 12) + 12 + 2 * (12 + 4) + 4
    kept = low_rank(mlp(), 4)  # 4·(12+4) = 64 is not < 48: the second layer stays dense
    assert isinstance(kept[2], nn.Linear)
    with pytest.raises(ValueError, match="rank"):
        LowRankLinear(4, 3, 5)


def test_pca_projection_is_frozen_and_decorrelates():
    x = torch.randn(200, 6) @ torch.randn(6, 6)
    layer = pca_projection(x, 3)
    z = layer(x)
    assert not any(p.requires_grad for p in layer.parameters())
    torch.testing.assert_close(z.mean(0), torch.zeros(3), atol=1e-4, rtol=0)
    covariance = z.T @ z / len(z)
    off_diagonal = covariance - torch.diag(torch.diag(covariance))
    assert off_diagonal.abs().max() < 1e-3 * covariance.abs().max()
    assert covariance[0, 0] >= covariance[1, 1] >= covariance[2, 2]
    with pytest.raises(ValueError, match="components"):
        pca_projection(x, 7)


def test_snap_to_prior_gives_at_most_k_values():
    prior = SoftWeightSharing(4, fix_zero=False)
    model = snap_to_prior(mlp(), prior)
    values = torch.cat([m.weight.reshape(-1) for m in model.modules() if hasattr(m, "codebook")])
    assert values.unique().numel() <= 4
    assert set(values.unique().tolist()) <= set(prior.means.tolist())
    with pytest.raises(TypeError, match="prior"):
        snap_to_prior(mlp(), nn.Linear(2, 2))
    with pytest.raises(ValueError, match="init_std"):
        SoftWeightSharing(2, init_std=0.01, min_std=0.02)
    assert linear_weights(mlp()).numel() == 16 * 12 + 12 * 4


def test_hashed_bytes_are_the_real_weights():
    model = nn.Sequential(HashedLinear(64, 64, 100), nn.ReLU(), HashedLinear(64, 10, 20))
    assert stored_numbers(model) == 100 + 64 + 20 + 10
    assert storage_bytes(model) == 4 * (100 + 64 + 20 + 10)


def test_tied_weights_are_counted_once():
    layer = nn.Linear(8, 8)
    assert storage_bytes(nn.Sequential(layer, layer)) == storage_bytes(layer) == 4 * 72


def test_run_technique_is_reproducible_and_compresses():
    split, recipe = toy_split(), Recipe(epochs=3, batch_size=32, lr=1e-2, finetune_epochs=1)
    first, model = run_technique("dense", "h=12", mlp, split, seed=3, recipe=recipe)
    again, _ = run_technique("dense", "h=12", mlp, split, seed=3, recipe=recipe)
    assert first.accuracy == again.accuracy and first.parameters == 16 * 12 + 12 + 12 * 4 + 4
    shared, _ = run_technique(
        "k-means", "k=2", lambda: copy.deepcopy(model), split, 3, recipe,
        compress=lambda m: kmeans_share(m, 2),
    )  # fmt: skip
    assert shared.bytes < first.bytes and shared.parameters == 2 + 12 + 2 + 4
    prior = SoftWeightSharing(3)
    penalised, _ = run_technique(
        "soft", "K=3", mlp, split, 3, recipe,
        penalty=lambda m: 1e-3 * prior(linear_weights(m)),
        penalty_parameters=prior.parameters(),
    )  # fmt: skip
    assert not torch.equal(prior.free_means.detach(), SoftWeightSharing(3).free_means.detach())
    rows = summarize([first, again, shared, penalised])
    assert len(rows) == 3 and rows[0].seeds == 2 and rows[0].spread == 0.0
    assert "k-means" in format_table(rows)


def test_pareto_front_and_winner():
    def s(name, size, accuracy):
        return Summary(name, "", size, size, accuracy, 0.0, 0.0, 1)

    rows = [s("a", 100, 0.5), s("b", 200, 0.4), s("c", 300, 0.9), s("d", 50, 0.45)]
    assert [r.technique for r in pareto_front(rows)] == ["d", "a", "c"]
    assert winner(rows, 250).technique == "a"
    assert winner(rows, 10) is None


def test_plot_pareto_circles_the_winner_and_keeps_the_axes():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from shared_lib.book.ch07_comparison import plot_pareto

    rows = [
        Summary("a", "x", 10, 1000, 0.5, 0.1, 0.0, 2),
        Summary("b", "y", 20, 4000, 0.9, 0.0, 0.0, 2),
    ]
    figure, ax = plt.subplots()
    plot_pareto(rows, {"a": "red", "b": "blue"}, ax=ax)
    limits = ax.get_xlim()
    figure2, ax2 = plt.subplots()
    plot_pareto(rows, {"a": "red", "b": "blue"}, budget=2000, ax=ax2)
    assert ax2.get_xlim() == limits and ax2.get_xscale() == "log"
    assert "a (x)" in ax2.get_title()
    plt.close(figure)
    plt.close(figure2)


def test_hold_out_splits_the_training_half_only():
    split = toy_split()
    part = hold_out(split, 0.25, seed=1)
    assert len(part.y_train) == 60 and len(part.y_test) == 20
    rows = torch.cat([part.x_train, part.x_test])
    assert torch.equal(rows.sort(dim=0).values, split.x_train.sort(dim=0).values)
    again = hold_out(split, 0.25, seed=1)
    assert torch.equal(part.x_test, again.x_test)
    with pytest.raises(ValueError, match="fraction"):
        hold_out(split, 1.0, seed=1)


def test_iterative_pruning_prunes_among_the_kept_weights():
    schedule = pruning_schedule(0.9, 3)
    assert schedule[-1] == pytest.approx(0.9) and schedule == sorted(schedule)
    model = mlp()
    for sparsity in schedule:
        magnitude_prune(model, sparsity)
        model(torch.randn(2, 16))
    for layer in (m for m in model if isinstance(m, nn.Linear)):
        assert int((layer.weight != 0).sum()) == max(1, round(layer.weight.numel() * 0.1))
    with pytest.raises(ValueError, match="rounds"):
        pruning_schedule(0.5, 0)


def test_uniform_quantize_keeps_an_evenly_spaced_grid_and_counts_two_numbers():
    model = uniform_quantize(mlp(), bits=2)
    layers = [m for m in model.modules() if isinstance(m, CodebookLinear)]
    assert len(layers) == 2
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(3):
        optimizer.zero_grad()
        model(torch.randn(8, 16)).pow(2).sum().backward()
        optimizer.step()
    model(torch.randn(1, 16))  # the pre-hook projects the codebook back onto a grid
    for layer in layers:
        steps = layer.codebook.detach().sort().values.diff()
        torch.testing.assert_close(steps, steps[:1].expand_as(steps), rtol=1e-4, atol=1e-6)
    weights = 16 * 12 + 12 * 4
    assert stored_numbers(model) == 2 + 12 + 2 + 4
    assert storage_bytes(model) == 4 * (2 + 12 + 2 + 4) + math.ceil(2 * weights / 8)
    kmeans = kmeans_share(mlp(), k=4)
    assert storage_bytes(kmeans) == storage_bytes(model) + 4 * 2 * 2  # 4 values, not 2, a layer
    with pytest.raises(ValueError, match="bits"):
        uniform_quantize(mlp(), 0)


def test_uniform_grid_has_less_error_than_min_max():
    torch.manual_seed(0)
    linear = nn.Linear(64, 64)
    layer = uniform_quantize(nn.Sequential(copy.deepcopy(linear)), bits=2)[0]
    w = linear.weight.detach()
    naive = torch.linspace(w.min().item(), w.max().item(), 4)
    naive_error = (w - naive[(w[..., None] - naive).abs().argmin(-1)]).pow(2).sum()
    assert (w - layer.weight.detach()).pow(2).sum() < naive_error


def test_l1_penalty_and_pick():
    model = mlp()
    expected = sum(m.weight.abs().sum() for m in model if isinstance(m, nn.Linear))
    torch.testing.assert_close(l1_penalty(model), expected)

    def result(loss):
        return dataclasses.replace(RESULT, val_loss=loss)

    assert pick({0.1: result(0.5), 0.01: result(0.2), 1.0: result(math.nan)}) == 0.01
    with pytest.raises(ValueError, match="candidates"):
        pick({})


def test_early_stopping_keeps_the_best_epoch_and_stops_before_the_cap():
    split = toy_split()
    recipe = Recipe(epochs=60, batch_size=16, lr=0.05, patience=3, decays=1)
    result, _ = run_technique("dense", "h=12", mlp, split, seed=0, recipe=recipe)
    assert result.epochs == len(result.curve) <= 60
    assert result.val_loss == pytest.approx(min(result.curve), rel=1e-5)
    best = result.curve.index(min(result.curve))
    assert result.epochs < 60 or best >= 60 - 2 * recipe.patience


def test_run_technique_applies_stages_in_turn():
    split, recipe = toy_split(), Recipe(epochs=3, batch_size=32, finetune_epochs=2, patience=5)
    _, trained = run_technique("dense", "h=12", mlp, split, seed=0, recipe=recipe)
    stages = [lambda m, s=s: magnitude_prune(m, s) for s in pruning_schedule(0.75, 3)]
    result, model = run_technique(
        "iterative pruning", "75%", lambda: copy.deepcopy(trained), split, 0, recipe,
        compress=stages, test=(split.x_train, split.y_train),
    )  # fmt: skip
    assert result.epochs == 6
    nonzeros = sum(int((m.weight != 0).sum()) for m in model if isinstance(m, nn.Linear))
    assert nonzeros == round(16 * 12 * 0.25) + round(12 * 4 * 0.25)
