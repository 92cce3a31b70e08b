"""shared_lib checkpoints and Hugging Face files, both ways, on GPT-2 and BERT from small configs.

``save_pretrained`` -> ``load_checkpoint`` into a freshly built model, and ``save_checkpoint`` ->
``from_pretrained``: values exact, ties kept, no missing or unexpected keys. Nothing is
downloaded: the models are built from config objects and the hub is offline.
"""

from __future__ import annotations

import logging
import os

# Before transformers / huggingface_hub are imported: they read it once, at import time.
os.environ["HF_HUB_OFFLINE"] = "1"

import pytest
import torch

transformers = pytest.importorskip("transformers")
from safetensors.torch import load_model  # noqa: E402
from transformers import (  # noqa: E402
    BertConfig,
    BertForMaskedLM,
    GPT2Config,
    GPT2LMHeadModel,
)

from shared_lib import load_checkpoint, save_checkpoint, shared_groups  # noqa: E402


def gpt2_config(**changes) -> GPT2Config:
    return GPT2Config(
        n_layer=2, n_embd=32, n_head=2, vocab_size=100, n_positions=16, bos_token_id=0,
        eos_token_id=0, **changes,
    )  # fmt: skip


def bert_config() -> BertConfig:
    return BertConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        vocab_size=100,
        max_position_embeddings=16,
    )


def gpt2(seed: int, **changes) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    return GPT2LMHeadModel(gpt2_config(**changes)).eval()


def bert(seed: int) -> BertForMaskedLM:
    torch.manual_seed(seed)
    return BertForMaskedLM(bert_config()).eval()


BUILDERS = {"gpt2": gpt2, "bert": bert}
TIES = {
    "gpt2": [["transformer.wte.weight", "lm_head.weight"]],
    "bert": [
        ["bert.embeddings.word_embeddings.weight", "cls.predictions.decoder.weight"],
        ["cls.predictions.bias", "cls.predictions.decoder.bias"],
    ],
}


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    state_a, state_b = a.state_dict(), b.state_dict()
    assert list(state_a) == list(state_b)
    for name, tensor in state_a.items():
        assert tensor.dtype == state_b[name].dtype and torch.equal(tensor, state_b[name]), name


def trained_with_adamw(kind: str) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    model = BUILDERS[kind](0).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    ids = torch.randint(0, 100, (2, 8), generator=torch.Generator().manual_seed(1))
    model(ids, labels=ids).loss.backward()
    optimizer.step()
    return model.eval(), optimizer


@pytest.mark.parametrize("kind", ["gpt2", "bert"])
def test_save_pretrained_loads_into_a_fresh_model_with_its_ties(tmp_path, kind):
    source = BUILDERS[kind](0)
    source.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    fresh = BUILDERS[kind](1)
    result = load_checkpoint(fresh, tmp_path)
    assert result == {} and result.missing_keys == [] and result.unexpected_keys == []
    assert_same_weights(source, fresh)
    assert sorted(map(sorted, shared_groups(fresh))) == sorted(map(sorted, TIES[kind]))


def test_a_sharded_save_pretrained_folder_loads_too(tmp_path):
    source = gpt2(0)
    source.save_pretrained(tmp_path, max_shard_size="20KB")
    assert (tmp_path / "model.safetensors.index.json").exists()
    assert not (tmp_path / "model.safetensors").exists()
    fresh = gpt2(1)
    load_checkpoint(fresh, tmp_path)
    assert_same_weights(source, fresh)
    assert fresh.lm_head.weight is fresh.transformer.wte.weight


@pytest.mark.parametrize("kind", ["gpt2", "bert"])
def test_from_pretrained_reads_save_checkpoint_with_an_optimizer(tmp_path, kind):
    model, optimizer = trained_with_adamw(kind)
    model.config.save_pretrained(tmp_path)
    save_checkpoint(model, tmp_path / "model.safetensors", optimizer, metadata={"step": "1"})
    assert (tmp_path / "model.optimizer.safetensors").exists()

    messages: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    hf_logger = transformers.logging.get_logger()
    hf_logger.addHandler(handler)
    try:
        loaded, info = type(model).from_pretrained(tmp_path, output_loading_info=True)
    finally:
        hf_logger.removeHandler(handler)
    assert info["missing_keys"] == set() and info["unexpected_keys"] == set()
    assert info["mismatched_keys"] == set() and info["error_msgs"] == []
    assert not [m for m in messages if "missing" in m.lower() or "unexpected" in m.lower()]
    assert_same_weights(model, loaded)
    assert sorted(map(sorted, shared_groups(loaded))) == sorted(map(sorted, TIES[kind]))

    fresh = BUILDERS[kind](2)  # safetensors' own loader reads it as well
    missing, unexpected = load_model(fresh, tmp_path / "model.safetensors")
    assert missing == set() and unexpected == []
    assert_same_weights(model, fresh)


def test_an_untied_model_is_told_how_to_tie_its_output_layer(tmp_path):
    gpt2(0).save_pretrained(tmp_path)  # stores lm_head.weight only as the embedding
    untied = gpt2(1, tie_word_embeddings=False)
    assert untied.lm_head.weight is not untied.transformer.wte.weight
    with pytest.raises(ValueError) as error:
        load_checkpoint(untied, tmp_path)
    message = str(error.value)
    assert "missing from the file: lm_head.weight" in message
    assert "'transformer.wte.weight'" in message and "shared_lib.tie_embeddings(model)" in message
    result = load_checkpoint(untied, tmp_path, strict=False)
    assert result.missing_keys == ["lm_head.weight"] and result.unexpected_keys == []
