"""shared_lib.distributed: FSDP units that keep ties whole, the DDP reentrant-checkpoint check,
and the two-process run of the appendix "Sharing at scale" (gloo on the CPU)."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from shared_lib.distributed import (
    Checkpointed,
    all_reduce_tied_grads,
    block_candidates,
    check_reentrant_sharing,
    check_units,
    fsdp_units,
    shard_model,
    wrap_ddp,
)
from shared_lib.models import GPT, GPTConfig, TransformerConfig, TransformerEncoder
from shared_lib.tying import tie

ROOT = Path(__file__).resolve().parents[2]


SCRIPT = ROOT / "scripts" / "train_tied_distributed.py"


def tiny_gpt(tie_embeddings: bool = True) -> GPT:
    config = GPTConfig(
        vocab_size=32, block_size=8, n_layer=2, n_head=2, n_embd=16, tie_embeddings=tie_embeddings
    )
    return GPT(config)


def tiny_encoder(share: str, num_layers: int = 4) -> TransformerEncoder:
    config = TransformerConfig(
        vocab_size=32,
        hidden_size=16,
        num_layers=num_layers,
        num_heads=2,
        intermediate_size=32,
        max_position=8,
        share=share,
        pooler=False,
    )
    return TransformerEncoder(config)


def names(model: nn.Module, units: list[list[nn.Module]]) -> list[list[str]]:
    by_id = {id(module): name for name, module in model.named_modules()}
    return [[by_id[id(module)] for module in unit] for unit in units]


# ------------------------------------------------------------------------------ fsdp_units


def test_tied_embedding_and_head_are_merged_into_one_unit():
    model = tiny_gpt()
    t = model.transformer
    units = fsdp_units(model, [*t.h, t.wte, model.lm_head])
    assert names(model, units) == [
        ["transformer.h.0"],
        ["transformer.h.1"],
        ["transformer.wte", "lm_head"],
    ]


def test_untied_candidates_stay_separate():
    model = tiny_gpt(tie_embeddings=False)
    t = model.transformer
    units = fsdp_units(model, [*t.h, t.wte, model.lm_head])
    assert names(model, units) == [
        ["transformer.h.0"],
        ["transformer.h.1"],
        ["transformer.wte"],
        ["lm_head"],
    ]


def test_a_candidate_tied_to_the_root_joins_the_root():
    model = tiny_gpt()  # wte is not a candidate, so it lives in the root unit
    units = fsdp_units(model, [*model.transformer.h, model.lm_head])
    assert names(model, units) == [["transformer.h.0"], ["transformer.h.1"]]
    check_units(model, units)  # the merged units are accepted


def test_a_layer_registered_at_every_depth_is_one_unit():
    model = tiny_encoder("all")
    units = fsdp_units(model, list(model.layers))
    assert len(units) == 1 and units[0] == [model.layers[0]]
    assert block_candidates(model) == [model.layers[0]]


def test_layers_sharing_a_sublayer_are_merged():
    model = tiny_encoder("attention")
    assert len(fsdp_units(model, list(model.layers))) == 1  # one attention, four layers
    feed_forwards = [layer.feed_forward for layer in model.layers]
    assert len(fsdp_units(model, feed_forwards)) == 4  # unshared sublayers stay apart


def test_a_transposed_tie_counts_as_sharing():
    model = nn.Sequential(nn.Linear(6, 3), nn.ReLU(), nn.Linear(3, 6))
    tie(model[2], model[0], transpose=True)  # a tied autoencoder
    assert len(fsdp_units(model, [model[0], model[2]])) == 1
    with pytest.raises(ValueError, match=r"0\.weight"):
        check_units(model, [model[0], model[2]])


def test_nested_units_come_first():
    model = tiny_gpt(tie_embeddings=False)
    block = model.transformer.h[0]
    units = fsdp_units(model, [block, block.attn])
    assert units == [[block.attn], [block]]


def test_a_unit_called_from_two_parents_needs_no_merge():
    model = tiny_gpt(tie_embeddings=False)
    block = model.transformer.h[0]
    model.transformer.h[1].attn = block.attn  # both blocks call one attention unit
    units = fsdp_units(model, [block.attn, model.transformer.h[1]])
    assert units == [[block.attn], [model.transformer.h[1]]]


def test_merging_absorbs_a_nested_member():
    inner = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
    inner[1].weight = inner[0].weight
    model = nn.Sequential(inner, nn.ReLU())
    assert fsdp_units(model, [inner, inner[0]]) == [[inner]]


def test_check_units_names_the_parameter_and_the_units():
    model = tiny_gpt()
    t = model.transformer
    with pytest.raises(ValueError) as error:
        check_units(model, [[t.wte, *t.h], model.lm_head])
    message = str(error.value)
    assert "'transformer.wte.weight'" in message and "'lm_head.weight'" in message
    assert "unit 0" in message and "unit 1 ['lm_head']" in message
    assert "77724" in message and "fsdp_units" in message


def test_check_units_names_the_root_unit():
    model = tiny_gpt()
    with pytest.raises(ValueError, match="root unit"):
        check_units(model, [model.lm_head])


def test_shard_model_refuses_a_split_before_sharding_anything():
    model = tiny_gpt()  # no process group: the refusal must come first
    with pytest.raises(ValueError, match="split the tied parameter"):
        shard_model(model, [model.transformer.wte, model.lm_head], merge=False)
    with pytest.raises(TypeError, match="merge must be True or False"):
        shard_model(model, merge="no")
    assert type(model) is GPT


@pytest.mark.parametrize(
    ("candidates", "error", "match"),
    [
        (nn.Linear(2, 2), TypeError, "candidates must be a list"),
        ([nn.Linear(2, 2)], ValueError, "not a submodule"),
        (["lm_head"], TypeError, "each entry"),
        ([[]], TypeError, "each entry"),
    ],
)
def test_bad_candidates(candidates, error, match):
    with pytest.raises(error, match=match):
        fsdp_units(tiny_gpt(), candidates)


def test_the_model_itself_is_not_a_unit():
    model = tiny_gpt()
    with pytest.raises(ValueError, match="always the root unit"):
        fsdp_units(model, [model])
    with pytest.raises(ValueError, match="same module"):
        check_units(model, [model.lm_head, [model.lm_head, model.transformer.wte]])


# ------------------------------------------------------------ DDP and reentrant checkpointing


def checkpointed_encoder(use_reentrant: bool) -> TransformerEncoder:
    model = tiny_encoder("all")
    wrapped = Checkpointed(model.layers[0], use_reentrant=use_reentrant)
    model.layers = nn.ModuleList([wrapped] * 4)
    return model


def test_reentrant_region_at_every_depth_is_refused_with_both_fixes():
    with pytest.raises(ValueError) as error:
        check_reentrant_sharing(checkpointed_encoder(use_reentrant=True))
    message = str(error.value)
    assert "use_reentrant=False" in message and "static_graph=True" in message
    assert "84589" in message and "4 reentrant" in message and "'layers.3'" in message


def test_the_fixes_pass_the_check():
    check_reentrant_sharing(checkpointed_encoder(use_reentrant=False))
    check_reentrant_sharing(checkpointed_encoder(use_reentrant=True), static_graph=True)
    check_reentrant_sharing(tiny_encoder("all"))  # sharing without checkpointing is fine


class TiedLM(nn.Module):
    """Embedding outside any region, output layer (tied to it) in a reentrant region."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(10, 4)
        head = nn.Linear(4, 10)
        head.weight = self.embedding.weight
        self.head = Checkpointed(head, use_reentrant=True)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.embedding(ids))


def test_a_tie_across_a_reentrant_region_is_refused():
    with pytest.raises(ValueError, match=r"'embedding.weight'.*'head'.*and outside them"):
        check_reentrant_sharing(TiedLM())


class Loop(nn.Module):
    """One reentrant region registered once but called three times."""

    def __init__(self) -> None:
        super().__init__()
        self.block = Checkpointed(nn.Linear(4, 4), use_reentrant=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(3):
            x = self.block(x)
        return x


def test_example_inputs_reveal_a_region_called_several_times():
    check_reentrant_sharing(Loop())  # registered once: the tree alone cannot tell
    with pytest.raises(ValueError, match=r"'block \(call 2\)'"):
        check_reentrant_sharing(Loop(), example_inputs=(torch.randn(2, 4),))


def test_wrap_ddp_checks_before_building_ddp():
    # No process group exists: DDP itself would fail, so the ValueError proves the order.
    with pytest.raises(ValueError, match="use_reentrant=False"):
        wrap_ddp(checkpointed_encoder(use_reentrant=True))
    with pytest.raises(TypeError, match="example_inputs"):
        check_reentrant_sharing(Loop(), example_inputs=torch.randn(2, 4))
    with pytest.raises(TypeError, match="static_graph must be True or False"):
        check_reentrant_sharing(Loop(), static_graph=1)


@pytest.mark.parametrize("use_reentrant", [True, False])
def test_checkpointed_gives_the_plain_gradients(use_reentrant):
    torch.manual_seed(0)
    plain = tiny_encoder("all")
    wrapped = copy.deepcopy(plain)
    wrapped.layers = nn.ModuleList([Checkpointed(wrapped.layers[0], use_reentrant)] * 4)
    ids = torch.randint(0, 32, (2, 8))
    for model in (plain, wrapped):
        model(ids)[0].square().sum().backward()
    grad = plain.layers[0].attention.query.weight.grad
    assert grad.abs().max() > 0
    assert torch.allclose(wrapped.layers[0].module.attention.query.weight.grad, grad, atol=1e-6)
    with torch.no_grad():  # evaluation calls the module directly
        assert torch.allclose(wrapped(ids)[0], plain(ids)[0], atol=1e-6)
    assert f"use_reentrant={use_reentrant}" in repr(wrapped.layers[0])
    with pytest.raises(TypeError, match="use_reentrant must be True or False"):
        Checkpointed(nn.Linear(2, 2), use_reentrant="yes")


# ----------------------------------------------------------------- pipeline: tied copies


def test_all_reduce_tied_grads_checks_its_arguments():
    with pytest.raises(TypeError, match="copies must be a list or tuple"):
        all_reduce_tied_grads(nn.Parameter(torch.ones(2)))
    with pytest.raises(TypeError, match="require grad"):
        all_reduce_tied_grads([torch.ones(2)])
    if not torch.distributed.is_initialized():
        with pytest.raises(RuntimeError, match="initialised process group"):
            all_reduce_tied_grads([nn.Parameter(torch.ones(2))])


def test_a_copy_without_a_gradient_joins_with_zeros():
    dist = torch.distributed
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        unused, used = nn.Parameter(torch.ones(2, 2)), nn.Parameter(torch.ones(3))
        (2 * used).sum().backward()
        all_reduce_tied_grads((unused, used))
        assert torch.equal(unused.grad, torch.zeros(2, 2))  # joined the sum with zeros
        assert torch.equal(used.grad, torch.full((3,), 2.0))  # one process: the sum is itself
    finally:
        dist.destroy_process_group()


# ------------------------------------------------------------------- two processes, gloo


def test_two_processes_train_like_one(tmp_path):
    """The appendix's script under torchrun: DDP and FSDP2 equal one process, ties hold."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    script = [str(SCRIPT), "--out", str(tmp_path), "--device", "cpu"]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    command += script
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["failures"] == [] and results["world_size"] == 2
    runs = {(run["model"], run["wrapper"]) for run in results["runs"]}
    assert runs == {("gpt", "ddp"), ("gpt", "fsdp2"), ("albert", "ddp"), ("albert", "fsdp2")}
    for run in results["runs"]:
        assert run["grad_max_abs_diff"] <= 1e-9 and run["weight_max_abs_diff"] <= 1e-9
        assert run["ties_hold_on_ranks"] == [True, True]
    fsdp = {run["model"]: run for run in results["runs"] if run["wrapper"] == "fsdp2"}
    assert fsdp["gpt"]["units"][-1] == ["gpt.transformer.wte", "gpt.lm_head"]
    for kind in ("gpt", "albert"):  # saved from the sharded model, loaded back exactly
        saved = fsdp[kind]["checkpoint"]
        assert saved["ties_hold"] and saved["weight_max_abs_diff"] <= 1e-9
        assert saved["sharded_reload_max_abs_diff"] == saved["optimizer_reload_max_abs_diff"] == 0
        assert (tmp_path / saved["path"]).exists() and (tmp_path / saved["optimizer_path"]).exists()
    # The tied GPT in two pipeline stages: with the embedding-group all-reduce, one process's
    # answer and equal copies; without it, copies that drift apart from the first step.
    pipeline = results["pipeline"]
    synced, unsynced = pipeline["with_all_reduce"], pipeline["without_all_reduce"]
    assert pipeline["stages"][0][0] == "transformer.wte" and pipeline["stages"][1][-1] == "lm_head"
    for key in ("grad_max_abs_diff", "loss_max_abs_diff", "weight_max_abs_diff"):
        assert synced[key] <= 1e-9, key
    assert max(synced["tied_grad_max_abs_diff_on_ranks"]) <= 1e-9
    assert max(synced["copy_spread_after_step"]) <= 1e-12 and synced["covers_every_parameter"]
    assert min(synced["share_max_abs_diff_on_ranks"]) > 1e-3  # each stage alone has a share
    assert min(unsynced["copy_spread_after_step"]) > 1e-3
    assert unsynced["weight_max_abs_diff"] > 1e-3 and unsynced["loss_max_abs_diff"] > 1e-4
    # FSDP2's all-gathers of the shared ALBERT layer: at every use (True) or once in forward.
    reshard = results["reshard"]
    runs = {run["reshard_after_forward"]: run for run in reshard["runs"]}
    true, false = runs[True]["steps"][0], runs[False]["steps"][0]
    assert true["all_gather_calls"] > false["all_gather_calls"]
    assert true["all_gather_bytes"] > false["all_gather_bytes"]
    layer = "encoder.layers.0"
    assert true["all_gathers_by_unit"]["forward"][layer] == reshard["depths"] == 4
    assert false["all_gathers_by_unit"]["forward"][layer] == 1
    assert true["unsharded_bytes_after_forward"] == 0
    assert false["unsharded_bytes_after_forward"] == runs[False]["model_bytes"]
    assert reshard["true_vs_false_weight_max_abs_diff"] <= 1e-9
    assert max(run["weight_max_abs_diff"] for run in runs.values()) <= 1e-9
