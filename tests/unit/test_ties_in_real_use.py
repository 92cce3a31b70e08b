"""Ties under real use (issue 14): loads into meta-device models, refused re-ties, to_empty,
Hugging Face's tie conventions, untying one group in place, and the messages that point to the
fix. Each test names the case; the Hugging Face models are built from small configs (no
downloads)."""

from __future__ import annotations

import tempfile

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

import shared_lib as sl
from shared_lib.models import GPT, GPTConfig

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()


def hf_gpt2(tie: bool = True) -> nn.Module:
    config = transformers.GPT2Config(
        n_layer=1, n_embd=16, n_head=2, vocab_size=50, n_positions=8, tie_word_embeddings=tie
    )
    return transformers.GPT2LMHeadModel(config)


def hf_bert(tie: bool = True) -> nn.Module:
    config = transformers.BertConfig(
        num_hidden_layers=1,
        hidden_size=16,
        num_attention_heads=2,
        intermediate_size=32,
        vocab_size=50,
        max_position_embeddings=8,
        tie_word_embeddings=tie,
    )
    return transformers.BertForMaskedLM(config)


def tiny_lm() -> nn.ModuleDict:
    return nn.ModuleDict({"embed": nn.Embedding(5, 3), "head": nn.Linear(3, 5, bias=False)})


def round_trip(model: nn.Module) -> tuple[nn.Module, dict]:
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        return type(model).from_pretrained(folder, output_loading_info=True)


def assert_clean_load(info: dict) -> None:
    assert not info["missing_keys"] and not info["unexpected_keys"], info


# ------------------------------------------------------------------ loads, refusals, to_empty


def test_a_load_into_a_meta_model_keeps_the_loaded_matrix_whichever_name_holds_it():
    # Before: re-tied to the first name (still on meta) and dropped the loaded lm_head.
    with torch.device("meta"):
        model = hf_gpt2()
    state = {"lm_head.weight": torch.randn(50, 16)}
    with sl.preserve_ties(model):
        model.load_state_dict(state, strict=False, assign=True)
    wte = model.transformer.wte.weight
    assert wte is model.lm_head.weight and not wte.is_meta
    assert torch.equal(wte, state["lm_head.weight"])


def test_a_refused_retie_changes_nothing_and_says_so():
    net = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2), nn.Linear(2, 2))
    before = [p for p in net.parameters()]
    groups = [["0.bias", "2.bias"], ["0.weight", "1.weight"]]
    with torch.no_grad():
        net[2].bias.copy_(net[0].bias)  # this group could be re-tied, the other cannot
    with pytest.raises(sl.BrokenTiesError, match=r"Nothing was changed.*check_values=False"):
        sl.retie(net, groups)
    assert [p for p in net.parameters()] == before and sl.shared_groups(net) == []


def test_a_refused_tie_in_preserve_ties_restores_the_others_and_states_the_model():
    lm = nn.ModuleDict({"a": tiny_lm(), "b": tiny_lm()})
    sl.tie(lm["a"]["head"], lm["a"]["embed"])
    sl.tie(lm["b"]["head"], lm["b"]["embed"])
    state = {name: tensor.clone() for name, tensor in lm.state_dict().items()}
    state["a.head.weight"] += 1.0  # the file disagrees with the tie of a, not of b
    with pytest.raises(sl.BrokenTiesError) as caught, sl.preserve_ties(lm):
        lm.load_state_dict(state, assign=True)
    message = str(caught.value)
    assert "1 of 2 ties restored" in message and "['a.embed.weight', 'a.head.weight']" in message
    assert "model built without the tie" in message and "check_values=False" in message
    assert sl.shared_groups(lm) == [["b.embed.weight", "b.head.weight"]]  # the state it names
    assert torch.equal(lm["a"]["head"].weight, state["a.head.weight"])  # nothing lost


def test_a_meta_tie_given_two_values_points_to_materialize_which_keeps_the_ties():
    # Before: around to_empty the default check_values=True refused, and nothing said what to
    # do. to_empty's two tensors hold uninitialised memory, which may or may not differ; two
    # different values assigned to a tie that was on the meta device stand in for it here.
    with torch.device("meta"):
        lm = tiny_lm()
    sl.tie(lm["head"], lm["embed"])
    different = {"embed.weight": torch.zeros(5, 3), "head.weight": torch.ones(5, 3)}
    refused = pytest.raises(sl.BrokenTiesError, match=r"to_empty.*shared_lib\.materialize")
    with refused, sl.preserve_ties(lm):
        lm.load_state_dict(different, assign=True)
    with torch.device("meta"):
        model = hf_gpt2()
    groups = sl.shared_groups(model)
    assert sl.materialize(model, "cpu") is model
    assert sl.shared_groups(model) == groups
    assert not any(t.is_meta for t in [*model.parameters(), *model.buffers()])


def test_materialize_leaves_tensors_that_hold_values_alone():
    with torch.device("meta"):
        lm = tiny_lm()
    lm["head"].weight = nn.Parameter(torch.ones(5, 3))  # loaded already
    sl.materialize(lm, torch.device("cpu"))
    assert torch.equal(lm["head"].weight, torch.ones(5, 3)) and not lm["embed"].weight.is_meta
    with pytest.raises(TypeError, match=r"device must be a torch\.device or str"):
        sl.materialize(lm, 0.5)


# ------------------------------------------------------------------ Hugging Face conventions


@pytest.mark.parametrize("build", [hf_gpt2, hf_bert], ids=["gpt2", "bert"])
def test_tie_embeddings_survives_save_pretrained_and_from_pretrained(build):
    # Before: sl.tie on a tie_word_embeddings=False model came back with a random head.
    model = build(tie=False)
    sl.tie_embeddings(model)
    assert model.config.tie_word_embeddings is True
    output, embedding = model.get_output_embeddings(), model.get_input_embeddings()
    assert output.weight is embedding.weight
    loaded, info = round_trip(model)
    assert_clean_load(info)
    assert loaded.get_output_embeddings().weight is loaded.get_input_embeddings().weight
    assert torch.equal(loaded.get_output_embeddings().weight, output.weight)
    assert sl.shared_groups(loaded) == sl.shared_groups(model)


@pytest.mark.parametrize("build", [hf_gpt2, hf_bert], ids=["gpt2", "bert"])
def test_untie_embeddings_survives_save_pretrained_and_from_pretrained(build):
    # Before: untie left config.tie_word_embeddings=True, so the reload tied them again.
    model = sl.untie_embeddings(build(tie=True))
    assert model.config.tie_word_embeddings is False and sl.shared_groups(model) == []
    with torch.no_grad():
        model.get_output_embeddings().weight.add_(1.0)  # fine-tuned apart from the embedding
    loaded, info = round_trip(model)
    assert_clean_load(info)
    assert sl.shared_groups(loaded) == []
    for ours, theirs in zip(model.state_dict().values(), loaded.state_dict().values(), strict=True):
        assert torch.equal(ours, theirs)


def test_tie_embeddings_on_shared_libs_gpt_keeps_its_config_in_sync():
    config = GPTConfig(vocab_size=40, block_size=8, n_layer=1, n_head=2, n_embd=8)
    lm = sl.untie_embeddings(GPT(config))
    assert lm.config.tie_embeddings is False and sl.count_parameters(lm) == sl.count_parameters(
        GPT(GPTConfig(**{**config.__dict__, "tie_embeddings": False}))
    )
    sl.tie_embeddings(lm)
    assert lm.config.tie_embeddings is True and lm.lm_head.weight is lm.transformer.wte.weight


def test_tie_embeddings_errors_name_the_fix():
    with pytest.raises(TypeError, match=r"get_input_embeddings.*shared_lib\.tie\(output_layer"):
        sl.tie_embeddings(tiny_lm())
    base = transformers.GPT2Model(hf_gpt2().config)  # no language-model head
    with pytest.raises(ValueError, match="ForCausalLM"):
        sl.untie_embeddings(base)


# ------------------------------------------------------------------ untie in place


def test_untie_one_group_in_place_keeps_every_other_tie():
    shared = nn.Linear(4, 4)
    model = nn.ModuleDict({"stack": nn.Sequential(shared, shared), "other": nn.Linear(4, 4)})
    sl.tie(model["other"], shared)
    assert sl.untie(model, "stack.1.weight", inplace=True) is model
    assert sl.shared_groups(model) == [
        ["stack.0.weight", "other.weight"],
        ["stack.0.bias", "stack.1.bias"],
    ]
    assert torch.equal(model["stack"][1].weight, shared.weight)  # same values, own tensor


def test_untie_of_a_transposed_tie_gives_a_plain_parameter_and_leaves_the_source_alone():
    # Before: untie returned a copy that was still parametrized, so tie() refused it.
    model = nn.ModuleDict({"encoder": nn.Linear(6, 3), "decoder": nn.Linear(3, 6)})
    sl.tie(model["decoder"], model["encoder"], transpose=True)
    source = model["encoder"].weight.detach().clone()
    copy = sl.untie(model)
    assert not parametrize.is_parametrized(copy["decoder"]) and sl.shared_groups(copy) == []
    assert torch.equal(copy["decoder"].weight, source.T)
    assert parametrize.is_parametrized(model["decoder"])  # the original keeps its tie
    sl.untie(model, "decoder.weight", inplace=True)
    assert torch.equal(model["encoder"].weight, source) and type(model["decoder"]) is nn.Linear
    sl.tie(model["decoder"], model["encoder"], transpose=True)  # and it can be tied again


def test_untie_names_are_checked_before_anything_changes():
    layer = nn.Linear(2, 2)
    net = nn.Sequential(layer, layer)
    with pytest.raises(ValueError, match="no parameter 'wieght'"):
        sl.untie(net, ["1.weight", "1.wieght"], inplace=True)
    assert len(sl.shared_groups(net)) == 2
    with pytest.raises(TypeError, match=r"names\[0\] must be a str"):
        sl.untie(net, [3])


# ------------------------------------------------------------------ messages


def test_check_ties_accepts_the_name_of_a_transposed_use():
    # Before: "no longer parameters at all (pruned or quantized?)".
    model = nn.ModuleDict({"encoder": nn.Linear(6, 3), "decoder": nn.Linear(3, 6)})
    sl.tie(model["decoder"], model["encoder"], transpose=True)
    sl.check_ties(model, [["encoder.weight", "decoder.weight"]])
    assert sl.get_parameter(model, "decoder.weight") is model["encoder"].weight


def test_a_parametrization_of_several_tensors_names_them():
    layer = nn.utils.parametrizations.weight_norm(nn.Linear(3, 3))
    model = nn.Sequential(layer)
    with pytest.raises(
        ValueError, match=r"several tensors.*0\.parametrizations\.weight\.original0"
    ):
        sl.check_ties(model, [["0.weight", "0.bias"]])


def test_tie_blames_the_argument_that_is_wrong():
    # Before: a wrong name on the target was reported as source_name.
    target, source = nn.Linear(2, 2), nn.Linear(2, 2)
    with pytest.raises(ValueError, match=r"name 'weights'.*\(target\).*\['weight', 'bias'\]"):
        sl.tie(target, source, name="weights")
    with pytest.raises(ValueError, match=r"source_name 'weights'.*\(source\)"):
        sl.tie(target, source, source_name="weights")


def test_shared_stack_build_refuses_a_module_for_a_factory():
    # Before: failed inside Linear.forward, called with no input.
    with pytest.raises(TypeError, match=r"make_block must be a function.*lambda: Linear"):
        sl.SharedStack.build(nn.Linear(4, 4), 4, 2)
    with pytest.raises(TypeError, match=r"must return an nn\.Module"):
        sl.SharedStack.build(lambda: "block", 4, 2)
    block = nn.Linear(4, 4)
    with pytest.raises(ValueError, match="same module twice"):
        sl.SharedStack.build(lambda: block, 4, 2)


def test_groups_of_a_compiled_or_ddp_wrapped_model_work_on_the_plain_model():
    # Before: shared_groups(compiled) gave _orig_mod. names that check_ties(plain) refused.
    layer = nn.Linear(3, 3)
    plain = nn.Sequential(layer, nn.ReLU(), layer)
    compiled = torch.compile(plain)
    groups = sl.shared_groups(compiled)
    assert groups[0][0].startswith("_orig_mod.")
    sl.check_ties(plain, groups)
    sl.check_ties(compiled, sl.shared_groups(plain))
    ddp_names = [[f"module.{name}" for name in group] for group in sl.shared_groups(plain)]
    sl.check_ties(plain, ddp_names)
    untied = sl.untie(plain)
    sl.retie(untied, groups)
    assert sl.shared_groups(untied) == sl.shared_groups(plain)


def test_parameter_memory_refuses_a_string_for_unique():
    with pytest.raises(TypeError, match="unique must be True or False, got str 'no'"):
        sl.parameter_memory(nn.Linear(2, 2), unique="no")
