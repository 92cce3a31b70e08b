"""Engineering pitfalls of tied weights, one test each (chapter 05).

Each test shows the failure with plain PyTorch, then the library's prevention or detection.
Pitfalls already covered elsewhere (not repeated here):

* ``state_dict`` lists a shared tensor under every name: tests/unit/test_tying.py
  (``test_tie_makes_one_tensor_listed_once_and_named_twice``);
* ``load_state_dict(assign=True)`` and meta-device init + ``to_empty`` break ties:
  tests/unit/test_tying.py (``test_load_state_dict_assign_breaks_ties...``,
  ``test_meta_init_then_to_empty_breaks_ties...``);
* safetensors refuses shared tensors: tests/unit/test_checkpoint.py
  (``test_safetensors_alone_refuses_or_mishandles_shared_tensors``);
* ``torch.compile``'s ``_orig_mod.`` prefix: tests/unit/test_checkpoint.py
  (``test_compiled_and_plain_models_read_each_other``).
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

import shared_lib as sl
from shared_lib.guards import check_optimizer, check_tied_uses, unique_parameters


def tied_pair() -> nn.ModuleDict:
    """Two Linear layers whose weight is one tensor (a parameter-level tie)."""
    torch.manual_seed(0)
    pair = nn.ModuleDict({"a": nn.Linear(4, 4), "b": nn.Linear(4, 4)})
    sl.tie(pair["b"], pair["a"])
    return pair


def test_pruning_one_alias_leaves_the_other_unpruned_until_remove():
    pair = tied_pair()
    groups = sl.shared_groups(pair)
    assert groups == [["a.weight", "b.weight"]]
    check_tied_uses(pair, groups)

    prune.l1_unstructured(pair["a"], "weight", amount=0.5)
    # The tensor is still shared (as a.weight_orig), so shared_groups sees a tie ...
    assert sl.shared_groups(pair) == [["a.weight_orig", "b.weight"]]
    # ... but a now computes with a masked copy and b with the full tensor.
    assert int((pair["a"].weight == 0).sum()) == 8
    assert int((pair["b"].weight == 0).sum()) == 0
    x = torch.randn(3, 4)
    assert not torch.allclose(pair["a"](x) - pair["a"].bias, pair["b"](x) - pair["b"].bias)
    with pytest.raises(sl.BrokenTiesError, match=r"a\.weight \(computed from weight_orig"):
        check_tied_uses(pair, groups)

    # prune.remove writes the mask into the shared tensor: b is silently pruned too.
    prune.remove(pair["a"], "weight")
    assert pair["b"].weight is pair["a"].weight
    assert int((pair["b"].weight == 0).sum()) == 8
    check_tied_uses(pair, groups)


def test_dynamic_quantization_of_a_tied_head_unties_it():
    torch.manual_seed(0)
    lm = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 10, bias=False))
    sl.tie(lm[1], lm[0])
    groups = sl.shared_groups(lm)
    assert groups == [["0.weight", "1.weight"]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization deprecation notices
        quantized = torch.ao.quantization.quantize_dynamic(lm, {nn.Linear}, dtype=torch.qint8)
    assert sl.shared_groups(quantized) == []  # the head holds an int8 copy of its own
    assert quantized[1].weight().dtype == torch.qint8
    with pytest.raises(sl.BrokenTiesError, match="holds no tensor 'weight'"):
        check_tied_uses(quantized, groups)


def test_parameter_given_twice_to_an_optimizer_is_updated_twice():
    weight = nn.Parameter(torch.ones(2))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        optimizer = torch.optim.SGD([weight, weight], lr=0.1)  # torch only warns
    assert any("duplicate parameters" in str(w.message) for w in caught)
    weight.grad = torch.ones(2)
    optimizer.step()
    assert torch.allclose(weight.detach(), torch.full((2,), 0.8))  # two steps of 0.1, not one
    with pytest.raises(ValueError, match="twice"):
        check_optimizer(optimizer)

    fresh = nn.Parameter(torch.ones(2))
    fixed = torch.optim.SGD(unique_parameters([fresh, fresh]), lr=0.1)
    check_optimizer(fixed)
    fresh.grad = torch.ones(2)
    fixed.step()
    assert torch.allclose(fresh.detach(), torch.full((2,), 0.9))


def test_clipping_over_a_duplicated_list_reports_sqrt2_too_large():
    pair = tied_pair()
    pair["b"](pair["a"](torch.randn(5, 4))).pow(2).sum().backward()
    by_hand = list(pair["a"].parameters()) + list(pair["b"].parameters())  # weight twice
    true_norm = torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in pair.parameters()]))
    weight_only = [pair["a"].weight, pair["b"].weight]
    doubled = torch.nn.utils.clip_grad_norm_(weight_only, max_norm=float("inf"))
    assert torch.allclose(doubled, 2**0.5 * pair["a"].weight.grad.norm())
    reported = torch.nn.utils.clip_grad_norm_(unique_parameters(by_hand), float("inf"))
    assert torch.allclose(reported, true_norm)
    assert len(unique_parameters(by_hand)) == len(list(pair.parameters())) == 3
