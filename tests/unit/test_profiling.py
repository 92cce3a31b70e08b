"""The cost of a training step (shared_lib.profiling) and the sample-efficiency helpers
(shared_lib.book.ch03_advantages) of chapter 03, checked against counts made by hand."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import shared_lib as sl
from shared_lib.data.sequences import make_motif_task
from shared_lib.data.splits import balanced_subset
from shared_lib.models import TransformerConfig, TransformerEncoder
from shared_lib.models.small import StepRNN
from shared_lib.profiling import (
    MemoryReport,
    activation_bytes,
    compare_step_times,
    format_bytes,
    format_reports,
    memory_report,
    optimizer_state_bytes,
    step_flops,
    step_time,
)

FLOAT = 4  # bytes per float32 element


@pytest.fixture(autouse=True, scope="module")
def module_on_one_thread():
    """These tiny models run fastest on one thread, and then a busy machine cannot stall them
    in thread synchronisation."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def sum_of_squares(output: torch.Tensor) -> torch.Tensor:
    return output.pow(2).sum()


def mlp(widths=(4, 8, 3)) -> nn.Sequential:
    torch.manual_seed(0)
    return sl.models.MLP(*widths)


# ---------------------------------------------------------------------------------------------
# Memory: parameter side.


def test_weights_gradients_and_adam_state_of_a_linear_stack_are_exact():
    model = mlp((4, 8, 3))
    elements = 4 * 8 + 8 + 8 * 3 + 3  # weights and biases of both layers
    report = memory_report(model, torch.randn(5, 4), sum_of_squares)
    assert report.weights == elements * FLOAT
    assert report.gradients == elements * FLOAT
    assert report.optimizer_state == 2 * elements * FLOAT  # Adam: exp_avg and exp_avg_sq
    assert report.parameter_side == 4 * elements * FLOAT
    assert report.total == report.parameter_side + report.activations
    sgd = memory_report(model, torch.randn(5, 4), sum_of_squares, optimizer="sgd")
    assert sgd.optimizer_state == 0


def test_predicted_adam_state_matches_what_adam_really_allocates():
    model = mlp((6, 16, 16, 2))
    optimizer = torch.optim.Adam(model.parameters())
    assert optimizer_state_bytes(optimizer) == 0  # Adam allocates lazily, at the first step
    F.cross_entropy(model(torch.randn(3, 6)), torch.tensor([0, 1, 0])).backward()
    optimizer.step()
    assert optimizer_state_bytes(optimizer) == sl.parameter_memory(model).optimizer_state
    plain = torch.optim.SGD(model.parameters(), lr=0.1)
    plain.step()
    assert optimizer_state_bytes(plain) == 0
    with pytest.raises(TypeError, match="optimizer"):
        optimizer_state_bytes("adam")


# ---------------------------------------------------------------------------------------------
# Memory: activations.


def test_activations_of_a_small_mlp_equal_the_saved_tensors_counted_by_hand():
    batch = 5
    model = mlp((4, 8, 3))
    # Saved for the backward pass: the input x (for the first weight's gradient), the ReLU
    # output h (ReLU's backward needs it; the second Linear saves the same tensor, counted
    # once), and the output y (pow(2) needs its input). Weights are parameters, not activations.
    expected = batch * (4 + 8 + 3) * FLOAT
    assert activation_bytes(model, torch.randn(batch, 4), sum_of_squares) == expected
    # An input that requires grad adds nothing new: the first weight is saved, but it is a
    # parameter.
    x = torch.randn(batch, 4, requires_grad=True)
    assert activation_bytes(model, x, sum_of_squares) == expected
    # Activations grow with the batch; the parameter side does not.
    double = memory_report(model, torch.randn(2 * batch, 4), sum_of_squares)
    assert double.activations == 2 * expected
    assert double.weights == memory_report(model, torch.randn(batch, 4), sum_of_squares).weights


class SquareOfLinear(nn.Module):
    """``lin(x) * lin(x).T.T``: one activation saved three times (twice, and once as a view)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.lin(x)
        return (h * h.t().t()).sum(dim=1)


def test_each_storage_is_counted_once_views_included():
    batch = 7
    measured = activation_bytes(SquareOfLinear(), torch.randn(batch, 6), lambda y: y.sum())
    assert measured == batch * (6 + 4) * FLOAT  # x, and h once


def test_activations_in_a_targets_loss_include_what_the_loss_saves():
    batch, classes = 5, 3
    model = mlp((4, 8, classes))
    targets = torch.tensor([0, 1, 2, 0, 1])
    measured = activation_bytes(model, torch.randn(batch, 4), F.cross_entropy, targets)
    # x, h, then cross-entropy's log-softmax output and the int64 targets it keeps, and a
    # scalar for the mean.
    by_hand = batch * (4 + 8 + classes) * FLOAT + batch * 8
    assert by_hand <= measured <= by_hand + 8


# ---------------------------------------------------------------------------------------------
# FLOPs.


@pytest.mark.parametrize("input_requires_grad", [False, True])
def test_flops_of_a_linear_are_2_b_in_out_forward_and_as_much_again_per_gradient(
    input_requires_grad,
):
    batch, fan_in, fan_out = 8, 32, 16
    layer = nn.Linear(fan_in, fan_out)
    x = torch.randn(batch, fan_in, requires_grad=input_requires_grad)
    forward, backward = step_flops(layer, x, lambda y: y.sum())
    assert forward == 2 * batch * fan_in * fan_out
    # Backward: the weight's gradient always; the input's gradient only when it is needed.
    gradients = 2 if input_requires_grad else 1
    assert backward == gradients * forward
    report = memory_report(layer, x, lambda y: y.sum())
    assert report.flops == forward + backward  # ×3 of the forward with the input's gradient


def test_flops_of_a_transformer_encoder_match_the_formula_attention_included():
    batch, length, hidden, inner, layers, heads = 2, 8, 16, 32, 3, 2
    config = TransformerConfig(
        vocab_size=11,
        hidden_size=hidden,
        num_layers=layers,
        num_heads=heads,
        intermediate_size=inner,
        max_position=length,
    )
    torch.manual_seed(0)
    model = TransformerEncoder(config)
    tokens = torch.randint(0, 11, (batch, length))
    forward, backward = step_flops(model, tokens, lambda out: out[1].sum())
    tokens_count = batch * length
    linear = layers * (4 * 2 * tokens_count * hidden**2 + 2 * 2 * tokens_count * hidden * inner)
    linear += 2 * batch * hidden**2  # the pooler, on the first token
    attention = layers * 2 * (2 * batch * length * length * hidden)  # QKᵀ and (softmax)V
    assert forward == linear + attention
    # Backward: two products per Linear (input and weight gradients); attention recomputes the
    # scores and takes three more products (as PyTorch's FLOP formula for SDPA counts them).
    assert backward == 2 * linear + attention * 5 // 2


# ---------------------------------------------------------------------------------------------
# Sharing: what it changes and what it does not.


def test_shared_layers_shrink_the_parameter_side_but_not_activations_or_flops():
    torch.manual_seed(0)
    layer = nn.Linear(16, 16)
    shared = nn.Sequential(layer, nn.Tanh(), layer, nn.Tanh(), layer)
    unshared = sl.untie(shared)
    x = torch.randn(10, 16)
    a = memory_report(shared, x, sum_of_squares)
    b = memory_report(unshared, x, sum_of_squares)
    assert b.weights == 3 * a.weights
    assert b.gradients == 3 * a.gradients
    assert b.optimizer_state == 3 * a.optimizer_state
    assert a.activations == b.activations
    assert a.flops == b.flops


def test_albert_style_sharing_divides_the_layer_part_by_the_depth():
    layers = 4
    reports, counts = {}, {}
    for share in ("none", "all"):
        torch.manual_seed(0)
        config = TransformerConfig(
            vocab_size=50,
            hidden_size=16,
            num_layers=layers,
            num_heads=2,
            intermediate_size=32,
            max_position=8,
            share=share,
        )
        model = TransformerEncoder(config)
        tokens = torch.randint(0, 50, (3, 8))
        loss = lambda out: out[0].pow(2).mean()  # noqa: E731
        reports[share] = memory_report(model, tokens, loss)
        # memory_report counts activations and FLOPs in one pass: the same as separately.
        assert reports[share].activations == activation_bytes(model, tokens, loss)
        assert reports[share].flops == sum(step_flops(model, tokens, loss))
        counts[share] = sl.count_parameters(model)
        per_layer = sl.count_parameters(model.layers[0])
    assert counts["none"] - counts["all"] == (layers - 1) * per_layer
    assert reports["none"].weights - reports["all"].weights == (layers - 1) * per_layer * FLOAT
    assert reports["all"].activations == reports["none"].activations
    assert reports["all"].flops == reports["none"].flops


# ---------------------------------------------------------------------------------------------
# Behaviour: no side effects, no noise, clear errors.


def test_memory_report_leaves_grads_buffers_mode_and_random_state_alone():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Dropout(0.5), nn.Linear(8, 2))
    model.eval()
    running_mean = model[1].running_mean.clone()
    x = torch.randn(6, 4)
    state = torch.get_rng_state()
    memory_report(model, x, sum_of_squares)
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(model[1].running_mean, running_mean)
    assert not model.training
    assert torch.equal(torch.get_rng_state(), state)


def test_flop_counting_prints_nothing_and_warns_nothing(capsys):
    model = mlp((4, 8, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        memory_report(model, torch.randn(5, 4), sum_of_squares)
        step_flops(model, torch.randn(5, 4), sum_of_squares)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_bad_arguments_raise_clear_errors():
    model, x = mlp((4, 8, 3)), torch.randn(5, 4)
    with pytest.raises(TypeError, match="model"):
        memory_report("not a model", x, sum_of_squares)
    with pytest.raises(TypeError, match="inputs"):
        memory_report(model, "x", sum_of_squares)
    with pytest.raises(TypeError, match=r"inputs\[1\]"):
        memory_report(model, (x, 3), sum_of_squares)
    with pytest.raises(TypeError, match="loss_fn"):
        memory_report(model, x, "mse")
    with pytest.raises(ValueError, match="scalar"):
        memory_report(model, x, lambda y: y)
    with pytest.raises(ValueError, match="does not depend"):
        memory_report(model, x, lambda y: torch.tensor(1.0))
    with pytest.raises(ValueError, match="optimizer"):
        memory_report(model, x, sum_of_squares, optimizer="rmsprop")
    with pytest.raises(ValueError, match="method"):
        activation_bytes(model, x, sum_of_squares, method="guess")
    with pytest.raises(TypeError, match="method"):  # a wrong type is a TypeError
        activation_bytes(model, x, sum_of_squares, method=None)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            activation_bytes(model, x, sum_of_squares, method="peak")
    frozen = mlp((4, 3)).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        memory_report(frozen, x, sum_of_squares)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    targets = torch.zeros(5, dtype=torch.long)
    with pytest.raises(ValueError, match="part"):
        step_time(model, x, targets, optimizer, part="backward")
    with pytest.raises(ValueError, match="clock"):
        step_time(model, x, targets, optimizer, clock="sundial")
    with pytest.raises(TypeError, match="part"):
        step_time(model, x, targets, optimizer, part=1)
    with pytest.raises(TypeError, match="optimizer"):
        step_time(model, x, targets, "adam")
    with pytest.raises(ValueError, match="repeats"):
        step_time(model, x, targets, optimizer, repeats=0)
    with pytest.raises(ValueError, match="device"):
        step_time(model, x, targets, optimizer, device="meta")
    with pytest.raises(ValueError, match="empty"):
        format_reports({})
    report = MemoryReport(1, 1, 2, 3, 4)
    with pytest.raises(ValueError, match="baseline"):
        format_reports({"a": report}, baseline="b")
    with pytest.raises(TypeError, match=r"reports\['a'\]"):
        format_reports({"a": 3})


def test_step_time_times_each_part_and_only_the_update_parts_train():
    model = mlp((4, 8, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, targets = torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1])
    before = [p.detach().clone() for p in model.parameters()]
    seconds = step_time(model, x, targets, optimizer, part="forward_backward", warmup=0)
    assert seconds > 0
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    for part in ("step", "optimizer"):
        for clock in ("wall", "process"):
            assert step_time(model, x, targets, optimizer, part=part, clock=clock, repeats=2) >= 0
    assert not all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_compare_step_times_measures_every_model_and_part_in_turns():
    x, targets = torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1])
    small, large = mlp((4, 8, 3)), mlp((4, 256, 256, 3))
    runs = {
        name: (model, torch.optim.Adam(model.parameters()))
        for name, model in (("small", small), ("large", large))
    }
    times = compare_step_times(runs, x, targets, repeats=3, clock="process")
    assert set(times) == {(n, p) for n in runs for p in ("step", "forward_backward", "optimizer")}
    assert all(seconds >= 0 for seconds in times.values())
    wall = compare_step_times(runs, x, targets, parts=("optimizer",), warmup=0, repeats=2)
    assert set(wall) == {("small", "optimizer"), ("large", "optimizer")}
    # Runs may bring their own batch (e.g. to compare batch sizes in turns).
    own = {
        batch: (*runs["small"], torch.randn(batch, 4), torch.zeros(batch, dtype=torch.long))
        for batch in (2, 64)
    }
    assert set(compare_step_times(own, parts=("step",), repeats=2)) == {(2, "step"), (64, "step")}
    with pytest.raises(ValueError, match="no inputs"):
        compare_step_times(runs, parts=("step",))
    with pytest.raises(ValueError, match="runs"):
        compare_step_times({}, x, targets)
    with pytest.raises(TypeError, match="runs"):
        compare_step_times({"a": small}, x, targets)
    with pytest.raises(ValueError, match="part"):
        compare_step_times(runs, x, targets, parts=("update",))
    with pytest.raises(ValueError, match="repeats"):
        compare_step_times(runs, x, targets, repeats=0)
    with pytest.raises(TypeError, match="warmup"):
        compare_step_times(runs, x, targets, warmup=True)


def test_reports_format_as_tables():
    a = MemoryReport(weights=4096, gradients=4096, optimizer_state=8192, activations=2048, flops=10)
    text = str(a)
    assert "weights" in text and "4.00 KiB" in text and "activations" in text
    assert format_bytes(512) == "512 B" and format_bytes(3 * 1024**2) == "3.00 MiB"
    table = format_reports({"none": a, "all": MemoryReport(1024, 1024, 2048, 2048, 10)}, "none")
    assert "all / none" in table and "0.250" in table and "1.000" in table


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_peak_activations_cover_the_saved_tensors():
    model = mlp((64, 256, 10)).cuda()
    x = torch.randn(128, 64, device="cuda")
    saved = activation_bytes(model, x, sum_of_squares, method="saved")
    peak = activation_bytes(model, x, sum_of_squares)
    assert saved > 0 and peak >= saved


# ---------------------------------------------------------------------------------------------
# Sample efficiency: data, the StepRNN pair, learning curves.


def test_motif_task_is_balanced_and_labelled_by_the_motif():
    x, y = make_motif_task(200, length=7, vocab=5, motif=(3, 1), seed=4)
    assert x.shape == (200, 7, 5) and x.dtype == torch.float32 and y.dtype == torch.long
    assert int(y.sum()) == 100
    tokens = x.argmax(-1)
    found = ((tokens[:, :-1] == 3) & (tokens[:, 1:] == 1)).any(dim=1)
    assert torch.equal(found.long(), y)
    again, _ = make_motif_task(200, length=7, vocab=5, motif=(3, 1), seed=4)
    assert torch.equal(again, x)
    single, labels = make_motif_task(50, length=6, vocab=3, motif=(0,), seed=0)
    assert torch.equal((single.argmax(-1) == 0).any(dim=1).long(), labels)
    with pytest.raises(ValueError, match="motif"):
        make_motif_task(10, vocab=4, motif=(4,))
    with pytest.raises(ValueError, match="motif"):
        make_motif_task(10, motif=(1, 1))
    with pytest.raises(ValueError, match="length"):
        make_motif_task(10, length=0)


def test_balanced_subset_is_balanced_nested_and_seeded():
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    small, large = balanced_subset(labels, 9, seed=3), balanced_subset(labels, 40, seed=3)
    assert torch.bincount(labels[small], minlength=3).tolist() == [3, 3, 3]
    assert set(small.tolist()) <= set(large.tolist())
    assert len(set(large.tolist())) == 40
    assert torch.equal(small, balanced_subset(labels, 9, seed=3))
    with pytest.raises(ValueError, match="n must be"):
        balanced_subset(labels, 101)


def test_step_rnn_shares_one_cell_and_untie_gives_each_step_its_own():
    torch.manual_seed(0)
    model = StepRNN(length=5, input_size=3, hidden_size=4, num_classes=2)
    cell = sum(p.numel() for p in model.cells[0].parameters())
    assert sl.count_parameters(model) == cell + 4 * 2 + 2
    untied = sl.untie(model)
    assert sl.count_parameters(untied) == sl.count_parameters(model, unique=False)
    assert sl.count_parameters(untied) == 5 * cell + 4 * 2 + 2
    x = torch.randn(6, 5, 3)
    reference = torch.zeros(6, 4)
    for step in range(5):
        reference = model.cells[0](x[:, step], reference)  # torch's own RNNCell
    assert torch.allclose(model(x), model.classifier(reference), atol=1e-6)
    assert torch.allclose(untied(x), model(x))  # the same function until training starts
    with pytest.raises(ValueError, match="inputs"):
        model(torch.randn(6, 4, 3))
