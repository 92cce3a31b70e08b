"""Ties: making them, finding them, their gradients, and the operations that break them."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from torch import nn

import shared_lib as sl


def tied_lm(vocab: int = 20, width: int = 6, dtype=torch.float32) -> nn.ModuleDict:
    lm = nn.ModuleDict({"embed": nn.Embedding(vocab, width), "head": nn.Linear(width, vocab)})
    lm = lm.to(dtype)
    sl.tie(lm["head"], lm["embed"])
    return lm


def lm_loss(lm: nn.ModuleDict, tokens: torch.Tensor) -> torch.Tensor:
    logits = lm["head"](torch.tanh(lm["embed"](tokens[:, :-1])))
    return nn.functional.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten())


def test_tie_makes_one_tensor_listed_once_and_named_twice():
    lm = tied_lm()
    assert lm["head"].weight is lm["embed"].weight
    assert len(list(lm.parameters())) == 2  # embedding/head weight + head bias
    assert set(lm.state_dict()) == {"embed.weight", "head.weight", "head.bias"}
    assert sl.shared_groups(lm) == [["embed.weight", "head.weight"]]
    assert sl.count_parameters(lm) == 20 * 6 + 20
    assert sl.count_parameters(lm, unique=False) == 2 * 20 * 6 + 20


def test_module_registered_twice_is_counted_per_use():
    layer = nn.Linear(4, 4)
    net = nn.Sequential(layer, nn.ReLU(), layer)
    assert sl.count_parameters(net) == 20
    assert sl.count_parameters(net, unique=False) == 40
    assert sl.shared_groups(net) == [["0.weight", "2.weight"], ["0.bias", "2.bias"]]


def test_trainable_only_counts_requires_grad():
    net = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3))
    net[0].requires_grad_(False)
    assert sl.count_parameters(net, trainable_only=True) == 12
    assert sl.count_parameters(net) == 24


def test_transposed_tie_shares_storage_and_gradients():
    encoder, decoder = nn.Linear(6, 3), nn.Linear(3, 6)
    autoencoder = nn.Sequential(encoder, nn.Tanh(), decoder)
    sl.tie(decoder, encoder, transpose=True)
    assert decoder.weight.shape == (6, 3)
    assert torch.equal(decoder.weight, encoder.weight.t())
    assert sl.shared_groups(autoencoder) == [["0.weight", "2.parametrizations.weight.original"]]
    autoencoder(torch.randn(5, 6)).pow(2).sum().backward()
    assert encoder.weight.grad is not None and encoder.weight.grad.shape == (3, 6)
    with torch.no_grad():
        encoder.weight.add_(1.0)
    assert torch.equal(decoder.weight, encoder.weight.t())  # one tensor: the change shows in both


def test_shared_gradient_is_sum_of_per_use_gradients_and_matches_finite_differences():
    torch.manual_seed(0)
    lm = tied_lm(dtype=torch.float64)
    untied = sl.untie(lm)
    tokens = torch.randint(0, 20, (3, 9))
    lm_loss(lm, tokens).backward()
    lm_loss(untied, tokens).backward()
    summed = untied["embed"].weight.grad + untied["head"].weight.grad
    assert torch.allclose(lm["embed"].weight.grad, summed, atol=1e-12, rtol=0)
    assert not torch.allclose(lm["embed"].weight.grad, untied["head"].weight.grad)

    weight, eps = lm["embed"].weight, 1e-6
    with torch.no_grad():
        for row, col in [(0, 0), (3, 2), (7, 5), (19, 1)]:
            saved = weight[row, col].item()
            weight[row, col] = saved + eps
            up = lm_loss(lm, tokens).item()
            weight[row, col] = saved - eps
            down = lm_loss(lm, tokens).item()
            weight[row, col] = saved
            numeric = (up - down) / (2 * eps)
            assert abs(numeric - weight.grad[row, col].item()) < 1e-8


def test_untie_gives_independent_copies_with_equal_values():
    layer = nn.Linear(4, 4)
    net = nn.Sequential(layer, layer, tied_lm())
    untied = sl.untie(net)
    assert sl.shared_groups(untied) == []
    assert sl.count_parameters(untied) == sl.count_parameters(net, unique=False)
    assert untied[0] is not untied[1]
    assert torch.equal(untied[0].weight, untied[1].weight)
    assert sl.shared_groups(net)  # the original keeps its ties


def test_ties_survive_deepcopy_and_dtype_change():
    lm = tied_lm()
    copied = copy.deepcopy(lm)
    assert copied["head"].weight is copied["embed"].weight
    assert copied["embed"].weight is not lm["embed"].weight
    lm.to(torch.float64)
    assert lm["head"].weight is lm["embed"].weight and lm["embed"].weight.dtype == torch.float64
    lm.half()
    assert sl.shared_groups(lm) == [["embed.weight", "head.weight"]]


def test_load_state_dict_assign_breaks_ties_and_preserve_ties_restores_them():
    source, target = tied_lm(), tied_lm()
    groups = sl.shared_groups(target)
    target.load_state_dict(source.state_dict(), assign=True)
    # PyTorch gives each name its own Parameter: the tie is broken (pytorch #188346).
    assert target["head"].weight is not target["embed"].weight
    with pytest.raises(sl.BrokenTiesError, match=r"embed\.weight"):
        sl.check_ties(target, groups)

    fixed = tied_lm()
    with sl.preserve_ties(fixed):
        fixed.load_state_dict(source.state_dict(), assign=True)
    sl.check_ties(fixed, groups)
    assert torch.equal(fixed["embed"].weight, source["embed"].weight)


def test_meta_init_then_to_empty_breaks_ties_and_preserve_ties_restores_them():
    with torch.device("meta"):
        model = tied_lm()
    assert sl.shared_groups(model)  # ties hold on the meta device
    broken = copy.deepcopy(model).to_empty(device="cpu")
    assert sl.shared_groups(broken) == []  # to_empty made a new tensor per name

    with sl.preserve_ties(model, check_values=False):
        model.to_empty(device="cpu")
    assert model["head"].weight is model["embed"].weight
    assert model["embed"].weight.device.type == "cpu"


def test_check_ties_reports_an_alias_that_pruning_or_quantization_replaced():
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
    model[1].weight = model[0].weight
    groups = sl.shared_groups(model)
    pruned = copy.deepcopy(model)
    torch.nn.utils.prune.l1_unstructured(pruned[1], "weight", 0.5)
    with pytest.raises(sl.BrokenTiesError, match=r"no longer parameters.*'1\.weight'"):
        sl.check_ties(pruned, groups)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notice
        quantized = torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
    with pytest.raises(sl.BrokenTiesError, match="no longer parameters"):
        sl.check_ties(quantized, groups)


def test_retie_refuses_to_drop_different_values():
    lm = tied_lm()
    untied = sl.untie(lm)
    with torch.no_grad():
        untied["head"].weight.add_(1.0)
    with pytest.raises(sl.BrokenTiesError, match="values differ"):
        sl.retie(untied, [["embed.weight", "head.weight"]])
    sl.retie(untied, [["embed.weight", "head.weight"]], check_values=False)
    assert untied["head"].weight is untied["embed"].weight


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: sl.tie(nn.Linear(3, 4), nn.Linear(4, 3)), ValueError, "shape"),
        (
            lambda: sl.tie(nn.Linear(3, 4), nn.Linear(3, 4), transpose=True),
            ValueError,
            "transposed",
        ),
        (lambda: sl.tie(nn.Linear(3, 3), nn.Linear(3, 3), name="gamma"), ValueError, "name"),
        (
            lambda: sl.tie(nn.Linear(3, 3), nn.Linear(3, 3), source_name="beta"),
            ValueError,
            "source_name",
        ),
        (lambda: sl.tie("not a module", nn.Linear(3, 3)), TypeError, "target"),
        (lambda: sl.tie(nn.Linear(3, 3), 3.0), TypeError, "source"),
        (lambda: sl.tie(nn.Linear(3, 3), nn.Linear(3, 3).double()), ValueError, "dtype"),
        (lambda: sl.tie(nn.Linear(3, 3), nn.Linear(3, 3), transpose="yes"), TypeError, "transpose"),
        (lambda: sl.tie(nn.Linear(3, 3), nn.Embedding(3, 3).weight[0:1]), TypeError, "source"),
        (lambda: sl.shared_groups([1, 2]), TypeError, "module"),
        (lambda: sl.count_parameters(nn.Linear(2, 2), unique="yes"), TypeError, "unique"),
        (lambda: sl.count_parameters("model"), TypeError, "module"),
        (lambda: sl.check_ties(nn.Linear(2, 2), [["weight"]]), ValueError, "groups"),
        (lambda: sl.check_ties(nn.Linear(2, 2), "weight"), TypeError, "groups"),
        (lambda: sl.check_ties(nn.Linear(2, 2), [["weight", "nope"]]), ValueError, "nope"),
        (lambda: sl.get_parameter(nn.Linear(2, 2), "missing.weight"), ValueError, "missing"),
        (lambda: sl.parameter_memory(nn.Linear(2, 2), optimizer="lion"), ValueError, "optimizer"),
        (lambda: sl.parameter_memory(nn.Linear(2, 2), optimizer=None), TypeError, "optimizer"),
        (lambda: sl.parameter_memory(nn.Linear(2, 2), unique="no"), TypeError, "unique"),
        (lambda: sl.count_parameters(nn.Linear(2, 2), trainable_only=1), TypeError, "trainable"),
        (lambda: sl.check_ties(nn.Linear(2, 2), ["weight", "bias"]), TypeError, "groups"),
        (lambda: sl.check_ties(nn.Linear(2, 2), [["weight", 0]]), TypeError, r"groups\[0\]\[1\]"),
        (lambda: sl.get_parameter(nn.Linear(2, 2), 0), TypeError, "name"),
        (lambda: sl.tie(nn.Linear(3, 3), nn.Linear(3, 3), source_name=0), TypeError, "source_name"),
        (
            lambda: sl.retie(nn.Linear(2, 2), [["weight", "weight"]], check_values="no"),
            TypeError,
            "check_values",
        ),
    ],
)
def test_bad_input_raises_clear_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_preserve_ties_refuses_a_flag_that_is_not_a_bool():
    with (
        pytest.raises(TypeError, match="check_values"),
        sl.preserve_ties(tied_lm(), check_values=0),
    ):
        pass


def test_validate_groups_returns_the_groups_it_accepts():
    groups = [["embed.weight", "head.weight"]]
    assert sl.tying.validate_groups(groups) is groups


def test_tying_an_already_parametrized_name_is_refused_and_the_fix_it_names_works():
    model = nn.ModuleDict({"encoder": nn.Linear(6, 3), "decoder": nn.Linear(3, 6)})
    sl.tie(model["decoder"], model["encoder"], transpose=True)
    with pytest.raises(
        ValueError, match=r"already computed by a parametrization.*sl|shared_lib\.untie"
    ):
        sl.tie(model["decoder"], model["encoder"], transpose=True)
    sl.untie(model, "decoder.weight", inplace=True)  # the fix the message names
    sl.tie(model["decoder"], model["encoder"], transpose=True)
    assert sl.shared_groups(model) == [
        ["encoder.weight", "decoder.parametrizations.weight.original"]
    ]


def test_parameter_memory_matches_hand_count():
    net = nn.Sequential(nn.Linear(10, 10), nn.Linear(10, 10))  # 220 float32 elements
    memory = sl.parameter_memory(net, optimizer="adam")
    assert (memory.weights, memory.gradients, memory.optimizer_state) == (880, 880, 1760)
    assert memory.total == 3520
    shared = nn.Sequential(net[0], net[0])
    assert sl.parameter_memory(shared).weights == 440
    assert sl.parameter_memory(shared, unique=False).weights == 880
    assert sl.parameter_memory(net, optimizer="sgd").optimizer_state == 0
