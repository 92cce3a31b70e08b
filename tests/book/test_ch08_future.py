"""Chapter 08's experiment helpers and models: shapes, errors, and what the chapter relies on."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytest
import torch
from scipy.stats import kendalltau
from torch import nn

import shared_lib as sl
from shared_lib.book.ch08_future import (
    kendall_tau,
    render_relaxed,
    train_hyper_mlp,
    train_moe,
    train_recursion,
    train_standalone,
    train_supernet,
)
from shared_lib.data import Split
from shared_lib.data.sequences import iterated_map_task
from shared_lib.layers.hyper import HyperLinear, HyperMLP
from shared_lib.layers.recursion import MixtureOfRecursions
from shared_lib.models.moe import MoEClassifier, MoEConfig
from shared_lib.models.supernet import SupernetMLP


def tiny_split(n_train: int = 120, n_test: int = 60, features: int = 6, classes: int = 3) -> Split:
    """Linearly separable blobs, so a few dozen steps learn them."""
    generator = torch.Generator().manual_seed(0)
    centres = 3 * torch.randn(classes, features, generator=generator)

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(n) % classes
        return centres[y] + 0.3 * torch.randn(n, features, generator=generator), y

    (x_train, y_train), (x_test, y_test) = draw(n_train), draw(n_test)
    return Split(x_train, y_train, x_test, y_test)


def test_moe_classifier_shapes_counts_and_aux_loss():
    config = MoEConfig(8, 8, n_routed=4, top_k=1, n_shared=1, gated=False)
    net = MoEClassifier(config, in_features=6, classes=3)
    out = net(torch.randn(5, 6))
    assert out.shape == (5, 3) and net.moe.aux_loss is not None
    expected = (6 * 8 + 8) + config.total_parameters() + (8 * 3 + 3)
    assert sl.count_parameters(net) == expected
    with pytest.raises(TypeError, match="config"):
        MoEClassifier({"hidden_size": 8})
    with pytest.raises(ValueError, match="classes"):
        MoEClassifier(config, classes=0)


def test_train_moe_learns_and_is_reproducible():
    data = tiny_split()
    config = MoEConfig(8, 8, n_routed=4, top_k=2, gated=False)
    accuracy = train_moe(config, data, seed=0, steps=60, lr=0.02, batch_size=16)
    assert accuracy > 0.9  # chance: 1/3
    assert train_moe(config, data, seed=0, steps=60, lr=0.02, batch_size=16) == accuracy
    with pytest.raises(TypeError, match="data"):
        train_moe(config, (data.x_train, data.y_train), seed=0)
    with pytest.raises(ValueError, match="steps"):
        train_moe(config, data, seed=0, steps=0)
    with pytest.raises(ValueError, match="aux_weight"):
        train_moe(config, data, seed=0, aux_weight=-1.0)


@pytest.mark.parametrize("embedding_dim", [3, None])
def test_hyper_mlp_structure(embedding_dim):
    net = HyperMLP(embedding_dim, in_features=6, hidden=5, n_hidden=2, out_features=3)
    assert net(torch.randn(4, 6)).shape == (4, 3)
    if embedding_dim is None:
        assert isinstance(net.hidden_layers, nn.ModuleList) and len(net.hidden_layers) == 2
        hidden = 2 * (5 * 5 + 5)
    else:
        assert isinstance(net.hidden_layers, HyperLinear)
        hidden = net.hidden_layers.expected_parameters()
    assert sl.count_parameters(net) == (6 * 5 + 5) + (5 * 3 + 3) + hidden


def test_hyper_mlp_bad_arguments():
    with pytest.raises(TypeError, match="embedding_dim"):
        HyperMLP(2.5)
    with pytest.raises(ValueError, match="n_hidden"):
        HyperMLP(2, n_hidden=0)


def test_train_hyper_mlp_learns_and_is_reproducible():
    data = tiny_split()
    accuracy, net = train_hyper_mlp(2, data, seed=1, steps=60, lr=0.02, batch_size=16)
    assert isinstance(net, HyperMLP) and net.hyper
    assert accuracy > 0.9
    again, _ = train_hyper_mlp(2, data, seed=1, steps=60, lr=0.02, batch_size=16)
    assert again == accuracy
    with pytest.raises(TypeError, match="data"):
        train_hyper_mlp(2, "digits", seed=0)


def test_train_recursion_router_and_fixed_depth():
    train = iterated_map_task(256, width=4, max_depth=2, seed=0, data_seed=1)
    test = iterated_map_task(200, width=4, max_depth=2, seed=0, data_seed=2)
    results, model = train_recursion(train, test, max_depth=2, seed=0)
    assert isinstance(model, MixtureOfRecursions)
    assert set(results) == {
        "mse", "mean depth", "calls", "agreement", "depth by k", "restart mse", "restart train loss"
    }  # fmt: skip
    assert results["calls"] == int(model.last_depths.sum()) < 2 * 200
    assert results["agreement"] > 0.9  # the router learns to give each token k passes
    fixed, block = train_recursion(train, test, max_depth=2, seed=0, depth=2)
    assert isinstance(block, nn.Sequential)
    assert fixed["calls"] == 400 and fixed["mean depth"] == 2.0 and fixed["depth by k"] == [2, 2]
    k_test = test[1]
    assert fixed["agreement"] == pytest.approx((k_test == 2).float().mean().item())
    assert fixed["mse"] > results["mse"]  # one depth for all cannot fit both difficulties


def test_train_recursion_keeps_the_start_with_the_lowest_training_loss():
    train = iterated_map_task(128, width=3, max_depth=2, seed=1, data_seed=1)
    test = iterated_map_task(64, width=3, max_depth=2, seed=1, data_seed=2)
    results, _ = train_recursion(train, test, max_depth=2, seed=0, steps=30, restarts=3)
    losses, errors = results["restart train loss"], results["restart mse"]
    assert len(losses) == len(errors) == 3
    best = min(range(3), key=losses.__getitem__)
    assert results["mse"] == pytest.approx(errors[best])
    single, _ = train_recursion(train, test, max_depth=2, seed=0, steps=30)
    assert single["restart mse"] == pytest.approx(errors[:1])  # restart 0 is the seed's own run


def test_restarts_cycle_through_the_start_depths():
    train = iterated_map_task(64, width=3, max_depth=3, seed=0, data_seed=1)
    _, model = train_recursion(train, train, 3, seed=0, steps=1, restarts=2, start_depths=(2, 3))
    # one step barely moves the router: the kept start still prefers its own starting depth
    assert int(model.router.bias.argmax()) + 1 in (2, 3)
    again, _ = train_recursion(train, train, 3, seed=1, steps=1, start_depths=(3,))
    assert again["mean depth"] == 3.0  # seed + 1 with depth 3 is the second restart above


def test_tag_aware_fixed_depth_block_reads_the_tag():
    train = iterated_map_task(64, width=3, max_depth=2, seed=0, data_seed=1)
    results, block = train_recursion(train, train, 2, seed=0, depth=2, tag_aware=True, steps=5)
    assert block[0].in_features == 3 + 2  # the state and the one-hot tag
    assert results["mean depth"] == 2.0 and results["calls"] == 2 * 64
    with pytest.raises(TypeError, match="tag_aware"):
        train_recursion(train, train, 2, seed=0, depth=2, tag_aware=1)


def test_train_recursion_bad_arguments():
    task = iterated_map_task(10, width=3, max_depth=2)
    with pytest.raises(TypeError, match="train"):
        train_recursion(task[:2], task, 2, 0)
    with pytest.raises(ValueError, match="depth"):
        train_recursion(task, task, 2, 0, depth=0)
    with pytest.raises(ValueError, match="max_depth"):
        train_recursion(task, task, 0, 0)
    with pytest.raises(ValueError, match="restarts"):
        train_recursion(task, task, 2, 0, restarts=0)
    with pytest.raises(ValueError, match="start_depths"):
        train_recursion(task, task, 2, 0, start_depths=(3,))  # deeper than max_depth
    with pytest.raises(TypeError, match="start_depths"):
        train_recursion(task, task, 2, 0, start_depths=1)


def test_render_relaxed_draws_and_checks_its_inputs():
    params = {0: 80, 1: 150, 2: 220, "unshared": 300}
    accuracy = {0: 0.7, 1: 0.75, 2: 0.8, "unshared": 0.82}
    fig = render_relaxed(1, params, accuracy)
    try:
        left, right = fig.axes
        assert [p.get_height() for p in left.patches] == [80, 150, 300]
        assert right.get_legend().get_texts()[0].get_text() == "relaxed, ranks 0-2"
    finally:
        plt.close(fig)
    with pytest.raises(ValueError, match="rank"):
        render_relaxed(3, params, accuracy)
    with pytest.raises(ValueError, match="missing"):
        render_relaxed(1, params, {0: 0.7, 1: 0.75, 2: 0.8})


def test_training_improves_accuracy(one_thread):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(200, 4, generator=generator)
    y = (x[:, 0] > 0).long()
    net = SupernetMLP(4, 2, widths=(4, 8), n_layers=1)
    train_supernet(net, x, y, steps=100, lr=0.05, batch_size=64, seed=0)
    assert net.accuracy(x, y, ((8, "relu"),)) > 0.9
    model = train_standalone(net.standalone(((4, "tanh"),)), x, y, steps=100, lr=0.05, seed=0)
    assert (model(x).argmax(1) == y).float().mean() > 0.9


def test_kendall_tau_matches_scipy_with_and_without_ties():
    generator = torch.Generator().manual_seed(1)
    for _ in range(5):
        a = torch.randint(0, 5, (12,), generator=generator).tolist()
        b = torch.randint(0, 5, (12,), generator=generator).tolist()
        assert kendall_tau(a, b) == pytest.approx(kendalltau(a, b)[0])
    assert kendall_tau([1, 2, 3], [10, 20, 30]) == 1.0
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == -1.0


def test_bad_arguments():
    with pytest.raises(ValueError, match="activations"):
        SupernetMLP(4, 2, activations=("gelu",))
    with pytest.raises(ValueError, match="widths"):
        SupernetMLP(4, 2, widths=())
    net = SupernetMLP(4, 2, widths=(2, 4), n_layers=1)
    with pytest.raises(ValueError, match="arch"):
        net(torch.randn(2, 4), ((3, "relu"),))
    with pytest.raises(ValueError, match="same length"):
        kendall_tau([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="constant"):
        kendall_tau([1, 1, 1], [1, 2, 3])
