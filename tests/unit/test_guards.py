"""shared_lib.guards: de-duplicated parameter lists, optimizer checks, tie-use checks, cosines."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import shared_lib as sl
from shared_lib.guards import (
    check_optimizer,
    check_tied_uses,
    optimizer_parameters,
    task_gradient_cosine,
    unique_parameters,
)


def test_unique_parameters_keeps_first_seen_order():
    a, b = nn.Parameter(torch.ones(1)), nn.Parameter(torch.ones(1))
    assert unique_parameters([b, a, b, a]) == [b, a]
    assert unique_parameters(iter([a])) == [a]
    assert unique_parameters([]) == []


def test_unique_parameters_rejects_bad_input():
    with pytest.raises(TypeError, match="single tensor"):
        unique_parameters(torch.ones(2))
    with pytest.raises(TypeError, match=r"parameters\[1\]"):
        unique_parameters([torch.ones(1), "weight"])


def test_check_optimizer_accepts_model_parameters_of_a_tied_model():
    layer = nn.Linear(3, 3)
    net = nn.Sequential(layer, nn.ReLU(), layer)
    check_optimizer(torch.optim.Adam(net.parameters()))  # parameters() lists each tensor once
    with pytest.raises(TypeError, match="optimizer"):
        check_optimizer(net)


def test_check_optimizer_refuses_a_repeated_tensor():
    weight = nn.Parameter(torch.ones(2))
    with pytest.warns(UserWarning, match="duplicate"):
        optimizer = torch.optim.SGD([weight, weight], lr=0.1)
    with pytest.raises(ValueError, match=r"shape \(2,\) twice in group 0"):
        check_optimizer(optimizer)


def test_optimizer_parameters_lists_each_group_and_refuses_repeats():
    layer = nn.Linear(3, 3)
    optimizer = torch.optim.SGD([{"params": [layer.weight]}, {"params": [layer.bias]}], lr=0.1)
    assert optimizer_parameters(optimizer) == [[layer.weight], [layer.bias]]
    with pytest.warns(UserWarning, match="duplicate"):
        twice = torch.optim.SGD([layer.weight, layer.weight], lr=0.1)
    with pytest.raises(ValueError, match="twice in group 0"):
        optimizer_parameters(twice)
    with pytest.raises(TypeError, match="optimizer must be"):
        optimizer_parameters([layer.weight])


def test_check_tied_uses_passes_intact_ties_and_names_the_broken_one():
    layer = nn.Linear(2, 2)
    net = nn.Sequential(layer, nn.ReLU(), layer)
    groups = sl.shared_groups(net)
    check_tied_uses(net, groups)
    net[2] = nn.Linear(2, 2)  # a replaced module: a separate tensor with the same name
    with pytest.raises(sl.BrokenTiesError, match=r"2 tie\(s\).*0\.weight, 2\.weight"):
        check_tied_uses(net, groups)


def test_check_tied_uses_rejects_bad_arguments():
    net = nn.Sequential(nn.Linear(2, 2))
    with pytest.raises(TypeError, match="module"):
        check_tied_uses("net", [["0.weight", "0.bias"]])
    with pytest.raises(ValueError, match="at least two names"):
        check_tied_uses(net, [["0.weight"]])
    with pytest.raises(ValueError, match="no submodule"):
        check_tied_uses(net, [["0.weight", "missing.weight"]])


def test_task_gradient_cosine_signs():
    w = nn.Parameter(torch.tensor([1.0, 2.0]))
    same = task_gradient_cosine([(w * w).sum(), (3 * w * w).sum()], [w])
    opposite = task_gradient_cosine([w.sum(), -w.sum()], [w])
    orthogonal = task_gradient_cosine([w[0], w[1]], [w, w])  # a repeat is ignored
    assert same == pytest.approx(1.0)
    assert opposite == pytest.approx(-1.0)
    assert orthogonal == pytest.approx(0.0)


def test_task_gradient_cosine_keeps_the_graph_and_matches_autograd():
    torch.manual_seed(0)
    trunk, head_a, head_b = nn.Linear(3, 4), nn.Linear(4, 1), nn.Linear(4, 1)
    x = torch.randn(8, 3)
    losses = [head_a(trunk(x)).pow(2).mean(), head_b(trunk(x)).abs().mean()]
    cosine = task_gradient_cosine(losses, trunk.parameters())
    grads = [
        torch.autograd.grad(loss, list(trunk.parameters()), retain_graph=True) for loss in losses
    ]
    flat = [torch.cat([g.flatten() for g in gs]) for gs in grads]
    assert cosine == pytest.approx(nn.functional.cosine_similarity(*flat, dim=0).item(), abs=1e-6)
    (losses[0] + losses[1]).backward()  # the graph is still there
    assert trunk.weight.grad is not None


def test_task_gradient_cosine_errors():
    w = nn.Parameter(torch.ones(2))
    with pytest.raises(ValueError, match="exactly two"):
        task_gradient_cosine([w.sum()], [w])
    with pytest.raises(ValueError, match=r"losses\[1\] must be a scalar"):
        task_gradient_cosine([w.sum(), w * 2], [w])
    with pytest.raises(ValueError, match="at least one tensor"):
        task_gradient_cosine([w.sum(), w.sum()], [])
    with pytest.raises(ValueError, match=r"losses\[1\] has a zero gradient"):
        task_gradient_cosine([w.sum(), (w * 0).sum()], [w])
    with pytest.raises(TypeError, match="losses must be a sequence"):
        task_gradient_cosine(w.sum(), [w])
    with pytest.raises(TypeError, match=r"losses\[0\] must be a torch\.Tensor"):
        task_gradient_cosine([1.0, w.sum()], [w])
