"""The looped net and the LoRA-relaxed shared stack (chapter 06)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import shared_lib as sl
from shared_lib import SharedStack
from shared_lib.layers.relaxed import LoopedNet, RelaxedSharedStack

WIDTH, LAYERS = 6, 4


def tanh_layer() -> nn.Module:
    return nn.Sequential(nn.Linear(WIDTH, WIDTH), nn.Tanh())


def randomize_lora(stack: RelaxedSharedStack) -> None:
    """Give every B a non-zero value, so that the layers really differ."""
    with torch.no_grad():
        for b in stack.lora_b.values():
            b.normal_(std=0.3)


@pytest.mark.parametrize("rank", [0, 1, 3])
@pytest.mark.parametrize("residual", [False, True])
def test_shapes(rank, residual):
    stack = RelaxedSharedStack(tanh_layer, LAYERS, rank, residual=residual)
    assert stack(torch.randn(5, WIDTH)).shape == (5, WIDTH)
    assert stack(torch.randn(2, 3, WIDTH)).shape == (2, 3, WIDTH)
    if rank:
        assert stack.lora_a["0"].shape == (LAYERS, rank, WIDTH)
        assert stack.lora_b["0"].shape == (LAYERS, WIDTH, rank)
    assert f"rank={rank}" in repr(stack)


def test_rank_zero_is_the_fully_shared_stack():
    torch.manual_seed(0)
    block = tanh_layer()
    relaxed = RelaxedSharedStack(block, LAYERS, rank=0)
    shared = SharedStack([block], [0] * LAYERS)
    x = torch.randn(7, WIDTH)
    assert torch.equal(relaxed(x), shared(x))
    assert not list(relaxed.lora_a.parameters()) and not list(relaxed.lora_b.parameters())


@pytest.mark.parametrize("residual", [False, True])
def test_zero_initialised_b_starts_at_full_sharing(residual):
    torch.manual_seed(0)
    shared = RelaxedSharedStack(tanh_layer, LAYERS, rank=0, residual=residual)
    relaxed = RelaxedSharedStack(shared.block, LAYERS, rank=3, residual=residual)
    assert all(torch.count_nonzero(b) == 0 for b in relaxed.lora_b.values())
    assert all(torch.count_nonzero(a) > 0 for a in relaxed.lora_a.values())
    x = torch.randn(7, WIDTH)
    assert torch.equal(relaxed(x), shared(x))
    randomize_lora(relaxed)
    assert not torch.allclose(relaxed(x), shared(x))


def test_same_function_as_merged_unshared_blocks():
    torch.manual_seed(1)
    stack = RelaxedSharedStack(tanh_layer, LAYERS, rank=2, residual=True).double()
    randomize_lora(stack)
    blocks = stack.unshared_blocks()
    assert len(blocks) == LAYERS and len({id(b) for b in blocks}) == LAYERS
    x = torch.randn(5, WIDTH, dtype=torch.float64)
    expected = x
    for block in blocks:
        expected = expected + block(expected)
    torch.testing.assert_close(stack(x), expected, rtol=0, atol=1e-12)
    # Layer i's merged weight is W + B_i A_i.
    w = stack.block[0].weight
    b, a = stack.lora_b["0"][2], stack.lora_a["0"][2]
    torch.testing.assert_close(blocks[2][0].weight, w + b @ a)


def test_gradients_reach_shared_and_lora_parameters():
    torch.manual_seed(2)
    stack = RelaxedSharedStack(tanh_layer, LAYERS, rank=2)
    x = torch.randn(8, WIDTH)
    stack(x).pow(2).sum().backward()
    assert stack.block[0].weight.grad.abs().sum() > 0
    assert stack.block[0].bias.grad.abs().sum() > 0
    assert all(stack.lora_b["0"].grad[i].abs().sum() > 0 for i in range(LAYERS))
    # With B = 0, A gets no gradient yet (d/dA of B A is B^T ...): LoRA's usual start.
    assert torch.count_nonzero(stack.lora_a["0"].grad) == 0
    stack.zero_grad()
    randomize_lora(stack)
    stack(x).pow(2).sum().backward()
    assert all(stack.lora_a["0"].grad[i].abs().sum() > 0 for i in range(LAYERS))


def test_shared_weight_gradient_is_the_sum_over_layers():
    torch.manual_seed(3)
    stack = RelaxedSharedStack(tanh_layer, LAYERS, rank=2).double()
    randomize_lora(stack)
    blocks = stack.unshared_blocks()  # independent copies with the same per-layer weights
    x = torch.randn(6, WIDTH, dtype=torch.float64)
    stack(x).pow(2).sum().backward()
    out = x
    for block in blocks:
        out = block(out)
    out.pow(2).sum().backward()
    summed = sum(block[0].weight.grad for block in blocks)
    torch.testing.assert_close(stack.block[0].weight.grad, summed, rtol=0, atol=1e-10)


@pytest.mark.parametrize("rank", [0, 1, 2, 5])
def test_parameter_count_formula(rank):
    block = nn.Sequential(nn.Linear(6, 10), nn.ReLU(), nn.Linear(10, 3))
    stack = RelaxedSharedStack(block, LAYERS, rank)
    per_layer = rank * ((6 + 10) + (10 + 3))
    expected = sl.count_parameters(block) + LAYERS * per_layer
    assert sl.count_parameters(stack) == expected == stack.expected_parameters()


def test_convolution_targets_and_chosen_targets():
    block = nn.Sequential(nn.Conv1d(4, 4, 3, padding=1), nn.Tanh(), nn.Conv1d(4, 4, 1))
    stack = RelaxedSharedStack(block, 3, rank=2, targets=["0"])
    assert stack.targets == ["0"]
    assert stack.lora_a["0"].shape == (3, 2, 4 * 3)  # fan-in = in_channels · kernel
    assert stack(torch.randn(2, 4, 9)).shape == (2, 4, 9)
    assert stack.delta(1, "0").shape == block[0].weight.shape
    assert sl.count_parameters(stack) == sl.count_parameters(block) + 3 * 2 * (12 + 4)


def test_a_bare_linear_block():
    stack = RelaxedSharedStack(nn.Linear(5, 5), 3, rank=1)
    assert stack.targets == [""]
    randomize_lora(stack)
    x = torch.randn(2, 5)
    blocks = stack.unshared_blocks()
    torch.testing.assert_close(stack(x), blocks[2](blocks[1](blocks[0](x))))


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"n_layers": 0}, ValueError, "n_layers"),
        ({"n_layers": 2.0}, TypeError, "n_layers"),
        ({"rank": -1}, ValueError, "rank"),
        ({"rank": True}, TypeError, "rank"),
        ({"targets": "0"}, TypeError, "targets"),
        ({"targets": ["nope"]}, ValueError, "nope"),
        ({"targets": ["1"]}, ValueError, "weight"),
        ({"targets": ["0", "0"]}, ValueError, "twice"),
        ({"residual": 1}, TypeError, "residual"),
    ],
)
def test_bad_arguments(kwargs, error, message):
    arguments = {"block": tanh_layer, "n_layers": 3, "rank": 1, **kwargs}
    with pytest.raises(error, match=message):
        RelaxedSharedStack(**arguments)


def test_bad_blocks():
    with pytest.raises(TypeError, match="block"):
        RelaxedSharedStack(42, 3)
    with pytest.raises(TypeError, match="block"):
        RelaxedSharedStack(lambda: "not a module", 3)
    with pytest.raises(ValueError, match="target"):
        RelaxedSharedStack(nn.Tanh(), 3, rank=1)
    assert RelaxedSharedStack(nn.Tanh(), 3, rank=0)(torch.zeros(2)).shape == (2,)


def test_bad_delta_arguments():
    stack = RelaxedSharedStack(tanh_layer, 3, rank=1)
    with pytest.raises(ValueError, match="layer"):
        stack.delta(3, "0")
    with pytest.raises(ValueError, match="name"):
        stack.delta(0, "1")


class AddStep(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(1.0))

    def forward(self, state, inputs):
        return state + self.scale * inputs


def test_looped_net_runs_any_number_of_steps_with_one_set_of_weights():
    net = LoopedNet(nn.Identity(), AddStep(), nn.Identity(), steps=3)
    x = torch.ones(2, 4)
    assert torch.equal(net(x), 3 * x)
    assert torch.equal(net(x, steps=10), 10 * x)
    assert sl.count_parameters(net) == 1
    net(x, steps=5).sum().backward()
    assert net.step.scale.grad.item() == pytest.approx(5 * 8)  # one use per step, summed
    assert "steps=3" in repr(net)


def test_looped_net_bad_arguments():
    with pytest.raises(TypeError, match="step"):
        LoopedNet(nn.Identity(), lambda s, x: s, nn.Identity(), steps=2)
    with pytest.raises(ValueError, match="steps"):
        LoopedNet(nn.Identity(), AddStep(), nn.Identity(), steps=0)
    net = LoopedNet(nn.Identity(), AddStep(), nn.Identity(), steps=2)
    with pytest.raises(ValueError, match="steps"):
        net(torch.ones(1), steps=0)
    with pytest.raises(TypeError, match="steps"):
        net(torch.ones(1), steps=2.5)
