"""shared_lib's Llama-style decoders against Hugging Face ``transformers`` and the published sizes.

1. **Counts.** Every preset in ``DECODER_PRESETS`` is built on the meta device by shared_lib and
   by ``transformers`` (``LlamaForCausalLM``, ``Qwen2ForCausalLM``, ``Gemma2ForCausalLM``,
   ``MistralForCausalLM``) from the same hyper-parameters: the unique parameter counts are equal,
   and the output layer is the embedding in both exactly when the preset ties. Each count agrees
   with its published figure to that figure's rounding (and so within 1%).
2. **Outputs.** Tiny models (2 layers, hidden 32), built for real: transformers' weights are
   mapped into shared_lib's model (``*_NAME_MAP``, read ``shared_lib name <- transformers name``)
   and the logits and loss must agree. Gemma 2 with its soft-capping off: soft-capping has no
   parameters and is not modelled, which the last output test pins.
3. **The KV cache** by hand, and the argument errors.

Nothing is downloaded: configs are built from values, never ``from_pretrained``.
"""

from __future__ import annotations

import os

# Before transformers / huggingface_hub are imported: they read it once, at import time.
os.environ["HF_HUB_OFFLINE"] = "1"

import dataclasses

import pytest
import torch
from torch import nn
from transformers import (
    Gemma2Config,
    Gemma2ForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from shared_lib.counting import count_parameters
from shared_lib.models import (
    DECODER_PRESETS,
    DECODER_PUBLISHED_PARAMETERS,
    PRESETS,
    Decoder,
    DecoderConfig,
    GPTConfig,
    build_model,
    kv_cache_bytes,
    kv_cache_bytes_per_token,
)
from shared_lib.tying import shared_groups

#: Which transformers architecture each preset is (its ``config.json``'s ``architectures``).
FAMILY = {
    "llama-3.2-1b": "llama",
    "llama-3.2-3b": "llama",
    "llama-3.1-8b": "llama",
    "smollm-135m": "llama",
    "qwen2.5-0.5b": "qwen2",
    "gemma-2-2b": "gemma2",
    "mistral-7b-v0.1": "mistral",
}

#: The resolution of each published figure, in millions (1.24B is given to 10M, 135M to 1M).
RESOLUTION_M = {name: 10.0 for name in FAMILY} | {"smollm-135m": 1.0}

TIED_NAMES = [["embed_tokens.weight", "lm_head.weight"]]

#: transformers' names of the gate activations.
HF_ACTIVATION = {"silu": "silu", "gelu_tanh": "gelu_pytorch_tanh"}


def hf_model(config: DecoderConfig, family: str, attn: str = "eager", **overrides) -> nn.Module:
    """The transformers ``*ForCausalLM`` of ``config``, built on the current default device."""
    common = dict(
        vocab_size=config.vocab_size,
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.kv_heads,
        max_position_embeddings=config.max_position,
        rms_norm_eps=config.rms_norm_eps,
        tie_word_embeddings=config.tie_embeddings,
        rope_parameters={"rope_type": "default", "rope_theta": config.rope_theta},
        attention_dropout=0.0,
        pad_token_id=None,
        bos_token_id=None,
        eos_token_id=None,
        attn_implementation=attn,
    )
    if family == "qwen2":  # q/k/v biases are Qwen2's layout, not an option
        assert config.attention_bias and not config.post_norms
        return Qwen2ForCausalLM(
            Qwen2Config(hidden_act=HF_ACTIVATION[config.hidden_act], **common, **overrides)
        )
    assert not config.attention_bias  # Llama's attention_bias would add an o_proj bias too
    if family == "gemma2":
        assert config.post_norms and config.gemma_scaling and config.hidden_act == "gelu_tanh"
        gemma = Gemma2Config(
            head_dim=config.head_width,
            hidden_activation=HF_ACTIVATION[config.hidden_act],
            query_pre_attn_scalar=config.head_width,  # as in Gemma 2 2B: scale 1/sqrt(head)
            **common,
            **overrides,
        )
        return Gemma2ForCausalLM(gemma)
    assert not config.post_norms and not config.gemma_scaling and config.hidden_act == "silu"
    cls_config, cls = {
        "llama": (LlamaConfig, LlamaForCausalLM),
        "mistral": (MistralConfig, MistralForCausalLM),
    }[family]
    return cls(cls_config(head_dim=config.head_width, hidden_act="silu", **common, **overrides))


def unique_numel(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())  # parameters() yields a tied tensor once


# --------------------------------------------------------------------------------------------
# 1. Counts of every preset
# --------------------------------------------------------------------------------------------


def test_every_preset_is_compared_and_published():
    assert set(FAMILY) == set(DECODER_PRESETS) == set(DECODER_PUBLISHED_PARAMETERS)
    assert {"llama-3.2-1b", "llama-3.1-8b", "qwen2.5-0.5b", "gemma-2-2b"} <= set(FAMILY)
    assert not set(DECODER_PRESETS) & set(PRESETS)  # PRESETS stays encoders and GPT-2


@pytest.mark.parametrize("name", sorted(DECODER_PRESETS))
def test_preset_count_and_tie_match_transformers(name):
    config = DECODER_PRESETS[name]
    with torch.device("meta"):
        ours = Decoder(config)
        theirs = hf_model(config, FAMILY[name])
    assert all(p.is_meta for p in ours.parameters())
    assert count_parameters(ours) == unique_numel(ours) == unique_numel(theirs)
    hf_tied = theirs.lm_head.weight is theirs.model.embed_tokens.weight
    assert hf_tied is config.tie_embeddings
    assert (ours.lm_head.weight is ours.embed_tokens.weight) is config.tie_embeddings
    assert shared_groups(ours) == (TIED_NAMES if config.tie_embeddings else [])


@pytest.mark.parametrize("name", sorted(DECODER_PRESETS))
def test_preset_count_matches_published(name):
    published_m, source = DECODER_PUBLISHED_PARAMETERS[name]
    assert source
    computed_m = count_parameters(build_model(name, device="meta")) / 1e6
    assert abs(computed_m - published_m) <= 0.01 * published_m
    resolution = RESOLUTION_M[name]
    assert round(computed_m / resolution) * resolution == published_m, computed_m


def test_untying_a_preset_adds_one_embedding_matrix():
    config = DECODER_PRESETS["llama-3.2-1b"]
    untied = dataclasses.replace(config, tie_embeddings=False)
    with torch.device("meta"):
        counts = [count_parameters(Decoder(c)) for c in (config, untied)]
        hf_counts = [unique_numel(hf_model(c, "llama")) for c in (config, untied)]
    assert counts == hf_counts
    assert counts[1] - counts[0] == config.vocab_size * config.hidden_size


def test_gemma_2_count_against_its_report():
    """The Gemma 2 report's non-embedding count is exact; its embedding count has 128 rows more
    than the released vocabulary (256,128 against config.json's 256,000)."""
    config = DECODER_PRESETS["gemma-2-2b"]
    model = Decoder(config, device="meta")
    embedding = model.embed_tokens.weight.numel()
    assert count_parameters(model) - embedding == 2_024_517_888
    assert 590_118_912 - embedding == 128 * config.hidden_size


def test_device_and_dtype_arguments():
    config = DecoderConfig(
        vocab_size=11,
        hidden_size=8,
        num_layers=1,
        num_heads=2,
        intermediate_size=16,
        tie_embeddings=True,
    )
    model = Decoder(config, dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert all(p.is_meta for p in Decoder(config, device="meta").parameters())
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    model.to(torch.float64)  # the tie survives .to(), as with nn.Module's own parameters
    assert shared_groups(model) == TIED_NAMES


# --------------------------------------------------------------------------------------------
# 2. Outputs agree, with weights mapped
# --------------------------------------------------------------------------------------------

_LAYER = "model.layers.{i}"

#: Llama, Mistral, Qwen2, SmolLM: shared_lib name <- transformers name (modules).
LLAMA_NAME_MAP = {
    "embed_tokens": "model.embed_tokens",
    "layers.{i}.attention_norm": _LAYER + ".input_layernorm",
    "layers.{i}.attention.q_proj": _LAYER + ".self_attn.q_proj",
    "layers.{i}.attention.k_proj": _LAYER + ".self_attn.k_proj",
    "layers.{i}.attention.v_proj": _LAYER + ".self_attn.v_proj",
    "layers.{i}.attention.o_proj": _LAYER + ".self_attn.o_proj",
    "layers.{i}.feed_forward_norm": _LAYER + ".post_attention_layernorm",  # Llama's pre-FFN norm
    "layers.{i}.feed_forward.gate_proj": _LAYER + ".mlp.gate_proj",
    "layers.{i}.feed_forward.up_proj": _LAYER + ".mlp.up_proj",
    "layers.{i}.feed_forward.down_proj": _LAYER + ".mlp.down_proj",
    "norm": "model.norm",
    "lm_head": "lm_head",  # tied: the same tensor as embed_tokens in both models
}

#: Gemma 2: four norms per layer, and its "post_attention_layernorm" is a post-norm.
GEMMA2_NAME_MAP = LLAMA_NAME_MAP | {
    "layers.{i}.post_attention_norm": _LAYER + ".post_attention_layernorm",
    "layers.{i}.feed_forward_norm": _LAYER + ".pre_feedforward_layernorm",
    "layers.{i}.post_feed_forward_norm": _LAYER + ".post_feedforward_layernorm",
}

TINY_LLAMA = DecoderConfig(
    vocab_size=67,
    hidden_size=32,
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    intermediate_size=48,
    max_position=16,
)
TINY_QWEN = dataclasses.replace(
    TINY_LLAMA,
    num_kv_heads=1,
    attention_bias=True,
    tie_embeddings=True,
    rms_norm_eps=1e-6,
    rope_theta=1e6,
)
TINY_GEMMA2 = dataclasses.replace(
    TINY_LLAMA,
    head_dim=16,
    tie_embeddings=True,
    rms_norm_eps=1e-6,
    hidden_act="gelu_tanh",
    post_norms=True,
    gemma_scaling=True,
)

BATCH, LENGTH = 3, 9
#: float32 on both sides (transformers' RMSNorm computes in float32 whatever the dtype).
ATOL = 1e-5


def load_mapped(ours: nn.Module, theirs: nn.Module, module_map: dict[str, str]) -> None:
    """Copy ``theirs``' weights into ``ours``; every tensor on both sides must be covered."""
    source, target = theirs.state_dict(), set(ours.state_dict())
    names = {}
    for ours_name, theirs_name in module_map.items():
        for i in range(ours.config.num_layers) if "{i}" in ours_name else [None]:
            for suffix in ("weight", "bias"):
                key = f"{ours_name.format(i=i)}.{suffix}"
                if key in target:
                    names[key] = f"{theirs_name.format(i=i)}.{suffix}"
    assert set(names) == target, target ^ set(names)
    assert set(names.values()) == set(source), set(source) ^ set(names.values())
    ours.load_state_dict({key: source[value] for key, value in names.items()}, strict=True)


def perturb_(model: nn.Module, seed: int) -> nn.Module:
    """Noise on every parameter, so that no norm weight is 1 (or 0) and no bias 0."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.1 * torch.randn(param.shape, generator=generator))
    return model


def model_pair(config: DecoderConfig, family: str, attn: str = "eager", **overrides):
    torch.manual_seed(0)
    theirs = perturb_(hf_model(config, family, attn, **overrides), seed=1).eval()
    theirs.loss_type = "ForCausalLM"  # its default, named to silence an 'unrecognized' warning
    ours = Decoder(config).eval()
    load_mapped(ours, theirs, GEMMA2_NAME_MAP if family == "gemma2" else LLAMA_NAME_MAP)
    return theirs, ours


def compare(theirs: nn.Module, ours: nn.Module, config: DecoderConfig) -> tuple[float, float]:
    ids = torch.randint(
        0, config.vocab_size, (BATCH, LENGTH), generator=torch.Generator().manual_seed(0)
    )
    targets = torch.cat([ids[:, 1:], torch.full((BATCH, 1), -1)], dim=1)  # ours ignores -1
    with torch.no_grad():
        reference = theirs(input_ids=ids, labels=ids)  # transformers shifts the labels itself
        logits, loss = ours(ids, targets)
    return (logits - reference.logits).abs().max().item(), abs(loss.item() - reference.loss.item())


GEMMA2_NO_SOFTCAP = {"attn_logit_softcapping": None, "final_logit_softcapping": None}


@pytest.mark.parametrize(
    ("config", "family", "attn", "overrides"),
    [
        (TINY_LLAMA, "llama", "eager", {}),
        (TINY_LLAMA, "llama", "sdpa", {}),
        (dataclasses.replace(TINY_LLAMA, tie_embeddings=True), "llama", "sdpa", {}),
        (TINY_QWEN, "qwen2", "sdpa", {}),
        (TINY_GEMMA2, "gemma2", "eager", GEMMA2_NO_SOFTCAP),
    ],
    ids=["llama-gqa-eager", "llama-gqa-sdpa", "llama-tied", "qwen-bias-mqa", "gemma2"],
)
def test_logits_and_loss_match_transformers(config, family, attn, overrides):
    theirs, ours = model_pair(config, family, attn, **overrides)
    assert count_parameters(ours) == unique_numel(theirs)
    assert shared_groups(ours) == (TIED_NAMES if config.tie_embeddings else [])
    logits_diff, loss_diff = compare(theirs, ours, config)
    assert logits_diff < ATOL, logits_diff
    assert loss_diff < ATOL, loss_diff


def test_gemma2_final_softcapping_is_the_difference():
    """With transformers' final soft-capping on (30, as released), the logits differ; capping
    shared_lib's logits the same way closes the gap: nothing else differs."""
    theirs, ours = model_pair(TINY_GEMMA2, "gemma2", attn_logit_softcapping=None)
    ids = torch.randint(0, TINY_GEMMA2.vocab_size, (BATCH, LENGTH))
    with torch.no_grad():
        reference = theirs(input_ids=ids).logits
        logits, _ = ours(ids)
    cap = theirs.config.final_logit_softcapping
    assert cap == 30.0
    assert (logits - reference).abs().max() > 1e-3
    assert (cap * torch.tanh(logits / cap) - reference).abs().max() < ATOL


def test_attention_is_causal_and_kv_heads_are_shared():
    torch.manual_seed(0)
    model = Decoder(TINY_LLAMA).eval()
    ids = torch.randint(0, TINY_LLAMA.vocab_size, (2, LENGTH))
    changed = ids.clone()
    changed[:, -1] = (changed[:, -1] + 1) % TINY_LLAMA.vocab_size
    with torch.no_grad():
        before, _ = model(ids)
        after, _ = model(changed)
    assert torch.equal(before[:, :-1], after[:, :-1])
    assert not torch.equal(before[:, -1], after[:, -1])
    attention = model.layers[0].attention
    assert attention.k_proj.weight.shape == (TINY_LLAMA.kv_heads * TINY_LLAMA.head_width, 32)


def test_gradient_of_the_tie_is_the_sum_of_both_uses():
    torch.manual_seed(0)
    model = Decoder(TINY_QWEN)
    _, loss = model(torch.randint(0, 67, (2, 5)), torch.randint(0, 67, (2, 5)))
    loss.backward()
    assert model.lm_head.weight.grad is model.embed_tokens.weight.grad
    assert model.embed_tokens.weight.grad.abs().sum() > 0


# --------------------------------------------------------------------------------------------
# 3. KV cache and errors
# --------------------------------------------------------------------------------------------


def test_kv_cache_bytes_by_hand():
    # Qwen2.5-0.5B: 2 (K, V) × 24 layers × 2 kv heads × 64 × 2 bytes = 12,288 bytes per token.
    qwen = DECODER_PRESETS["qwen2.5-0.5b"]
    assert kv_cache_bytes_per_token(qwen) == 2 * 24 * 2 * 64 * 2 == 12_288
    assert kv_cache_bytes(qwen, 32_768, batch_size=3) == 12_288 * 32_768 * 3
    assert kv_cache_bytes(qwen, 10, dtype=torch.float32) == 2 * kv_cache_bytes(qwen, 10)
    # Gemma 2 2B's heads are 256 wide, not 2304 / 8 = 288.
    assert kv_cache_bytes_per_token(DECODER_PRESETS["gemma-2-2b"]) == 2 * 26 * 4 * 256 * 2
    multi_head = dataclasses.replace(qwen, num_kv_heads=None)
    assert kv_cache_bytes(multi_head, 100) == 7 * kv_cache_bytes(qwen, 100)  # 14 / 2 heads


@pytest.mark.parametrize(
    ("call", "error", "argument"),
    [
        (lambda: kv_cache_bytes(GPTConfig(), 8), TypeError, "config"),
        (lambda: kv_cache_bytes(TINY_LLAMA, 0), ValueError, "sequence_length"),
        (lambda: kv_cache_bytes(TINY_LLAMA, 8.0), TypeError, "sequence_length"),
        (lambda: kv_cache_bytes(TINY_LLAMA, 8, batch_size=0), ValueError, "batch_size"),
        (lambda: kv_cache_bytes(TINY_LLAMA, 8, dtype="bf16"), TypeError, "dtype"),
        (lambda: kv_cache_bytes_per_token(TINY_LLAMA, dtype=2), TypeError, "dtype"),
    ],
)
def test_kv_cache_errors(call, error, argument):
    with pytest.raises(error, match=argument):
        call()


@pytest.mark.parametrize(
    ("overrides", "error", "field"),
    [
        ({"num_kv_heads": 3}, ValueError, "num_kv_heads"),
        ({"num_kv_heads": 0}, ValueError, "num_kv_heads"),
        ({"num_heads": 5, "num_kv_heads": 5}, ValueError, "head_dim"),
        ({"num_heads": 5, "head_dim": 6, "num_kv_heads": 5}, None, None),
        ({"head_dim": 7}, ValueError, "even"),
        ({"hidden_size": 32.0}, TypeError, "hidden_size"),
        ({"tie_embeddings": 1}, TypeError, "tie_embeddings"),
        ({"post_norms": None}, TypeError, "post_norms"),
        ({"hidden_act": "relu"}, ValueError, "hidden_act"),
        ({"rms_norm_eps": 0.0}, ValueError, "rms_norm_eps"),
        ({"rope_theta": -1.0}, ValueError, "rope_theta"),
        ({"max_position": 0}, ValueError, "max_position"),
    ],
)
def test_bad_config(overrides, error, field):
    if error is None:
        dataclasses.replace(TINY_LLAMA, **overrides)  # head_dim makes any head count valid
        return
    with pytest.raises(error, match=field):
        dataclasses.replace(TINY_LLAMA, **overrides)


def test_bad_model_arguments():
    with pytest.raises(TypeError, match="config"):
        Decoder(GPTConfig())
    with pytest.raises(dataclasses.FrozenInstanceError):
        DECODER_PRESETS["llama-3.2-1b"].tie_embeddings = False
    model = Decoder(TINY_LLAMA)
    with pytest.raises(ValueError, match="input_ids"):
        model(torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="max_position"):
        model(torch.zeros(1, TINY_LLAMA.max_position + 1, dtype=torch.long))
    with pytest.raises(ValueError, match="targets"):
        model(torch.zeros(2, 4, dtype=torch.long), torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="preset"):
        build_model("llama-9")
