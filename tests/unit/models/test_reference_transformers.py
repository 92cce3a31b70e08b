"""shared_lib's BERT, ALBERT and GPT-2 against Hugging Face ``transformers`` as the reference.

Three kinds of check:

1. **Outputs.** Tiny Hugging Face models are built from config objects (random weights, nothing
   downloaded: ``HF_HUB_OFFLINE=1`` and never ``from_pretrained``), in float64 and eval mode;
   their weights are mapped into shared_lib's :class:`GPT` / :class:`TransformerEncoder` built
   from the equivalent config, and the outputs must agree to ``ATOL`` (1e-10; float64 round-off
   is ~1e-15): hidden states and pooled output for the encoders, with and without a padding
   mask; logits and loss for GPT-2, whose ``wte`` / ``lm_head`` tie must survive the mapping.
2. **Parameter counts.** Every preset in ``PRESETS`` is compared with the same model built by
   ``transformers`` from the same hyper-parameters on the meta device (no memory), counting
   unique tensors. What each side includes is spelled out in ``hf_counterpart``.
3. **Known differences**, found and pinned rather than skipped: ALBERT's tanh GELU, ALBERT's
   E -> H projection when E = H, the float32 loss of transformers' GPT-2, GPT without an
   attention mask, and rows that are all padding (see section 3 and the GPT-2 tests).

The name mappings (one per architecture) are the ``*_NAME_MAP`` tables below, read as
``shared_lib name <- Hugging Face name``.
"""

from __future__ import annotations

import os

# Before transformers / huggingface_hub are imported: they read it once, at import time.
os.environ["HF_HUB_OFFLINE"] = "1"

import dataclasses
import functools

import pytest
import torch
import transformers
from torch import nn
from transformers import (
    AlbertConfig,
    AlbertModel,
    BertConfig,
    BertModel,
    GPT2Config,
    GPT2LMHeadModel,
)
from transformers.pytorch_utils import Conv1D

from shared_lib.counting import count_parameters
from shared_lib.models import (
    GPT,
    PRESETS,
    GPTConfig,
    TransformerConfig,
    TransformerEncoder,
    albert_ablation_config,
)
from shared_lib.tying import shared_groups

#: Agreement required in float64 (what is measured is ~1e-15).
ATOL = 1e-10

#: Attention back-ends of transformers compared: the plain one and PyTorch's fused SDPA.
ATTENTION_IMPLEMENTATIONS = ("eager", "sdpa")


# --------------------------------------------------------------------------------------------
# Configs: shared_lib config -> the equivalent transformers config (used for outputs and counts)
# --------------------------------------------------------------------------------------------


def bert_config(config: TransformerConfig, attn: str = "eager") -> BertConfig:
    """BertConfig of a shared_lib config with E = H and nothing shared (BERT)."""
    assert config.share == "none" and config.embedding_width == config.hidden_size
    return BertConfig(
        vocab_size=config.vocab_size,
        hidden_size=config.hidden_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        intermediate_size=config.intermediate_size,
        max_position_embeddings=config.max_position,
        type_vocab_size=config.type_vocab_size,
        hidden_act="gelu",  # exact (erf) GELU, as shared_lib's FeedForward and BERT
        hidden_dropout_prob=config.dropout,
        attention_probs_dropout_prob=config.dropout,
        layer_norm_eps=config.layer_norm_eps,
        pad_token_id=0,
        attn_implementation=attn,
    )


def albert_config(
    config: TransformerConfig, attn: str = "eager", hidden_act: str = "gelu"
) -> AlbertConfig:
    """AlbertConfig of a shared_lib config whose layers are wholly shared or not at all.

    ALBERT's ``num_hidden_groups`` G are shared_lib's M parameter sets; transformers gives layer
    i the group ``int(i / (N / G))``, i.e. consecutive layers share: shared_lib's ``"sequence"``
    strategy (or anything when G is 1 or N). ``inner_group_num`` (several distinct layers in
    one group) has no shared_lib counterpart and stays 1.

    ``hidden_act``: ALBERT's own default is ``"gelu_new"`` (tanh approximation); shared_lib's
    FeedForward uses the exact GELU, so the output comparisons use ``"gelu"``.
    """
    assert config.share in ("all", "none")
    groups = config.unique_layers
    assert groups in (1, config.num_layers) or config.strategy == "sequence"
    return AlbertConfig(
        vocab_size=config.vocab_size,
        embedding_size=config.embedding_width,
        hidden_size=config.hidden_size,
        num_hidden_layers=config.num_layers,
        num_hidden_groups=groups,
        inner_group_num=1,
        num_attention_heads=config.num_heads,
        intermediate_size=config.intermediate_size,
        max_position_embeddings=config.max_position,
        type_vocab_size=config.type_vocab_size,
        hidden_act=hidden_act,
        hidden_dropout_prob=config.dropout,
        attention_probs_dropout_prob=config.dropout,
        classifier_dropout_prob=config.dropout,
        layer_norm_eps=config.layer_norm_eps,
        pad_token_id=0,
        bos_token_id=None,
        eos_token_id=None,
        attn_implementation=attn,
    )


def gpt2_config(config: GPTConfig, attn: str = "eager") -> GPT2Config:
    """GPT2Config of a shared_lib GPTConfig (GPT-2 always has biases: ``bias=True`` only)."""
    assert config.bias, "transformers' GPT-2 has no bias-free variant"
    return GPT2Config(
        vocab_size=config.vocab_size,
        n_positions=config.block_size,
        n_embd=config.n_embd,
        n_layer=config.n_layer,
        n_head=config.n_head,
        n_inner=None,  # 4 * n_embd, as shared_lib's MLP
        activation_function="gelu_new",  # tanh GELU, as shared_lib's MLP
        resid_pdrop=config.dropout,
        embd_pdrop=config.dropout,
        attn_pdrop=config.dropout,
        layer_norm_epsilon=1e-5,  # shared_lib's LayerNorms use PyTorch's default eps, 1e-5
        tie_word_embeddings=config.tie_embeddings,
        bos_token_id=None,
        eos_token_id=None,
        attn_implementation=attn,
    )


# --------------------------------------------------------------------------------------------
# Name mappings: shared_lib state_dict key <- transformers state_dict key
# --------------------------------------------------------------------------------------------

#: BERT: embeddings, then per layer (``{i}``) the attention and feed-forward sublayers, pooler.
BERT_NAME_MAP = {
    "word_embeddings": "embeddings.word_embeddings",
    "position_embeddings": "embeddings.position_embeddings",
    "token_type_embeddings": "embeddings.token_type_embeddings",
    "embedding_layer_norm": "embeddings.LayerNorm",
    "layers.{i}.attention.query": "encoder.layer.{i}.attention.self.query",
    "layers.{i}.attention.key": "encoder.layer.{i}.attention.self.key",
    "layers.{i}.attention.value": "encoder.layer.{i}.attention.self.value",
    "layers.{i}.attention.output": "encoder.layer.{i}.attention.output.dense",
    "layers.{i}.attention.layer_norm": "encoder.layer.{i}.attention.output.LayerNorm",
    "layers.{i}.feed_forward.intermediate": "encoder.layer.{i}.intermediate.dense",
    "layers.{i}.feed_forward.output": "encoder.layer.{i}.output.dense",
    "layers.{i}.feed_forward.layer_norm": "encoder.layer.{i}.output.LayerNorm",
    "pooler.dense": "pooler.dense",
}

#: The one layer of ALBERT's group ``{g}`` (``inner_group_num`` = 1).
_ALBERT_LAYER = "encoder.albert_layer_groups.{g}.albert_layers.0"

#: ALBERT: embeddings of width E, the projection E -> H, and per layer the *group* ``{g}`` that
#: layer i uses (every layer of a group maps to the same transformers tensors), then the pooler.
ALBERT_NAME_MAP = {
    "word_embeddings": "embeddings.word_embeddings",
    "position_embeddings": "embeddings.position_embeddings",
    "token_type_embeddings": "embeddings.token_type_embeddings",
    "embedding_layer_norm": "embeddings.LayerNorm",
    "embedding_projection": "encoder.embedding_hidden_mapping_in",
    "layers.{i}.attention.query": _ALBERT_LAYER + ".attention.query",
    "layers.{i}.attention.key": _ALBERT_LAYER + ".attention.key",
    "layers.{i}.attention.value": _ALBERT_LAYER + ".attention.value",
    "layers.{i}.attention.output": _ALBERT_LAYER + ".attention.dense",
    "layers.{i}.attention.layer_norm": _ALBERT_LAYER + ".attention.LayerNorm",
    "layers.{i}.feed_forward.intermediate": _ALBERT_LAYER + ".ffn",
    "layers.{i}.feed_forward.output": _ALBERT_LAYER + ".ffn_output",
    "layers.{i}.feed_forward.layer_norm": _ALBERT_LAYER + ".full_layer_layer_norm",
    "pooler.dense": "pooler",
}

#: GPT-2: the names are nanoGPT's, i.e. transformers' own; what differs is that transformers'
#: ``Conv1D`` stores its weight as (in, out), transposed relative to ``nn.Linear``'s (out, in):
#: the entries marked True are transposed on the way.
GPT2_NAME_MAP = {
    "transformer.wte": ("transformer.wte", False),
    "transformer.wpe": ("transformer.wpe", False),
    "transformer.h.{i}.ln_1": ("transformer.h.{i}.ln_1", False),
    "transformer.h.{i}.attn.c_attn": ("transformer.h.{i}.attn.c_attn", True),  # Q, K, V fused
    "transformer.h.{i}.attn.c_proj": ("transformer.h.{i}.attn.c_proj", True),
    "transformer.h.{i}.ln_2": ("transformer.h.{i}.ln_2", False),
    "transformer.h.{i}.mlp.c_fc": ("transformer.h.{i}.mlp.c_fc", True),
    "transformer.h.{i}.mlp.c_proj": ("transformer.h.{i}.mlp.c_proj", True),
    "transformer.ln_f": ("transformer.ln_f", False),
    "lm_head": ("lm_head", False),  # tied: the same tensor as transformer.wte in both models
}


#: transformers' ALBERT projection E -> H, present even when E = H.
PROJECTION = ALBERT_NAME_MAP["embedding_projection"]


def _expand(module_map: dict, num_layers: int, group_of=lambda i: i) -> dict[str, str]:
    """Module-name map -> parameter-name map (``.weight`` / ``.bias``), layers unrolled."""
    names = {}
    for ours, theirs in module_map.items():
        layers = range(num_layers) if "{i}" in ours else [None]
        for i in layers:
            fill = {} if i is None else {"i": i, "g": group_of(i)}
            for suffix in ("weight", "bias"):
                names[f"{ours.format(**fill)}.{suffix}"] = f"{theirs.format(**fill)}.{suffix}"
    return names


def load_mapped(
    ours: nn.Module, theirs: nn.Module, names: dict[str, str], transpose=(), unused=()
) -> None:
    """Copy ``theirs``' weights into ``ours`` by ``names``, checking that both sides are covered.

    Every key of ``ours.state_dict()`` must be mapped (strict loading), and every tensor of
    ``theirs`` must be used but those named in ``unused``, so nothing is left at its random
    initialisation on either side. ``transpose``: keys of ``theirs`` to transpose.
    """
    source = theirs.state_dict()
    target_keys = set(ours.state_dict())
    # LayerNorm and Linear have a bias, Embedding has none: drop the ".bias" of embeddings.
    names = {key: value for key, value in names.items() if key in target_keys or value in source}
    assert set(names) == target_keys, set(names) ^ target_keys
    assert set(names.values()) | set(unused) == set(source), set(names.values()) ^ set(source)
    mapped = {
        key: source[value].t() if value in transpose else source[value]
        for key, value in names.items()
    }
    ours.load_state_dict(mapped, strict=True)


def perturb_(model: nn.Module, seed: int) -> nn.Module:
    """Add noise to every parameter, so that LayerNorm weights are not all 1 and biases not 0
    (an init with ones and zeros would hide a swapped weight / bias in the mapping)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.1 * torch.randn(param.shape, generator=generator, dtype=param.dtype))
    return model


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


# --------------------------------------------------------------------------------------------
# Tiny models for the output comparisons
# --------------------------------------------------------------------------------------------

TINY_BERT = TransformerConfig(
    vocab_size=67, hidden_size=32, num_layers=3, num_heads=4, intermediate_size=48, max_position=16
)
TINY_ALBERT = dataclasses.replace(TINY_BERT, embedding_size=12, share="all")
#: Two ALBERT groups over four layers (AABB), shared_lib's "sequence" strategy.
TINY_ALBERT_GROUPS = dataclasses.replace(TINY_ALBERT, num_layers=4, n_unique=2, strategy="sequence")
#: ALBERT's factorised embedding without sharing (one group per layer).
TINY_ALBERT_UNSHARED = dataclasses.replace(TINY_ALBERT, share="none")
TINY_GPT = GPTConfig(vocab_size=71, block_size=16, n_layer=3, n_head=4, n_embd=32)

BATCH, LENGTH = 3, 9


def _inputs(vocab_size: int, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(0, vocab_size, (BATCH, LENGTH), generator=generator)
    token_type_ids = torch.randint(0, 2, (BATCH, LENGTH), generator=generator)
    attention_mask = torch.ones(BATCH, LENGTH, dtype=torch.long)
    attention_mask[1, -3:] = 0  # right padding
    attention_mask[2, :2] = 0  # left padding
    attention_mask[2, 5] = 0  # a hole in the middle
    return {
        "input_ids": input_ids,
        "token_type_ids": token_type_ids,
        "attention_mask": attention_mask,
    }


def _encoder_pair(config: TransformerConfig, attn: str, hidden_act: str = "gelu"):
    """(transformers model, shared_lib model with its weights), float64, eval mode."""
    torch.manual_seed(0)
    if config.share == "none" and config.embedding_width == config.hidden_size:
        theirs = BertModel(bert_config(config, attn))
        names = _expand(BERT_NAME_MAP, config.num_layers)
    else:
        theirs = AlbertModel(albert_config(config, attn, hidden_act))
        assignment = config.assignment
        names = _expand(ALBERT_NAME_MAP, config.num_layers, group_of=assignment.__getitem__)
    theirs = perturb_(theirs.to(torch.float64), seed=1).eval()
    ours = TransformerEncoder(config).to(torch.float64).eval()
    load_mapped(ours, theirs, names)
    return theirs, ours


def _compare_encoder(theirs, ours, inputs, with_mask: bool) -> tuple[float, float]:
    kwargs = (
        dict(inputs) if with_mask else {k: v for k, v in inputs.items() if k != "attention_mask"}
    )
    with torch.no_grad():
        reference = theirs(**kwargs)
        hidden, pooled = ours(**kwargs)
    return (
        max_diff(hidden, reference.last_hidden_state),
        max_diff(pooled, reference.pooler_output),
    )


# --------------------------------------------------------------------------------------------
# 0. The environment: nothing may be fetched from the hub
# --------------------------------------------------------------------------------------------


def test_hub_is_offline():
    import huggingface_hub.constants

    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert huggingface_hub.constants.HF_HUB_OFFLINE
    assert transformers.__version__  # the pinned reference (requirements.txt)


# --------------------------------------------------------------------------------------------
# 1. Outputs agree
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("attn", ATTENTION_IMPLEMENTATIONS)
@pytest.mark.parametrize("with_mask", [False, True], ids=["no-mask", "padding-mask"])
@pytest.mark.parametrize(
    "config",
    [TINY_BERT, TINY_ALBERT, TINY_ALBERT_GROUPS, TINY_ALBERT_UNSHARED],
    ids=["bert", "albert-1-group", "albert-2-groups-sequence", "albert-not-shared"],
)
def test_encoder_outputs_match_transformers(config, with_mask, attn):
    theirs, ours = _encoder_pair(config, attn)
    # The loading kept shared_lib's sharing: one layer object per group, as many as ALBERT's.
    first_of_group = {}
    for layer, group in zip(ours.layers, config.assignment, strict=True):
        assert layer is first_of_group.setdefault(group, layer)
    assert len({id(layer) for layer in ours.layers}) == config.unique_layers
    assert count_parameters(ours) == count_parameters(theirs)
    hidden_diff, pooled_diff = _compare_encoder(theirs, ours, _inputs(config.vocab_size), with_mask)
    assert hidden_diff < ATOL, hidden_diff
    assert pooled_diff < ATOL, pooled_diff


def test_encoder_mask_matters():
    """The padding mask changes the outputs (so the masked comparison above is not vacuous)."""
    _, ours = _encoder_pair(TINY_BERT, "eager")
    inputs = _inputs(TINY_BERT.vocab_size)
    with torch.no_grad():
        masked, _ = ours(**inputs)
        unmasked, _ = ours(inputs["input_ids"], inputs["token_type_ids"])
    assert max_diff(masked[1:], unmasked[1:]) > 1e-3
    assert max_diff(masked[0], unmasked[0]) == 0  # row 0 has no padding


def _gpt_pair(config: GPTConfig, attn: str):
    torch.manual_seed(0)
    theirs = perturb_(GPT2LMHeadModel(gpt2_config(config, attn)).to(torch.float64), seed=2).eval()
    theirs.loss_type = "ForCausalLM"  # its default, named to silence an 'unrecognized' warning
    ours = GPT(config).to(torch.float64).eval()
    conv1d = {f"{name}.weight" for name, m in theirs.named_modules() if isinstance(m, Conv1D)}
    map_modules = {ours_: theirs_ for ours_, (theirs_, _) in GPT2_NAME_MAP.items()}
    names = _expand(map_modules, config.n_layer)
    transposed = {
        f"{theirs_.format(i=i)}.weight"
        for theirs_, flip in GPT2_NAME_MAP.values()
        if flip
        for i in range(config.n_layer)
    }
    assert transposed == conv1d  # the map transposes exactly transformers' Conv1D weights
    load_mapped(ours, theirs, names, transpose=transposed)
    return theirs, ours


@pytest.mark.parametrize("attn", ATTENTION_IMPLEMENTATIONS)
@pytest.mark.parametrize("tie", [True, False], ids=["tied", "untied"])
def test_gpt2_logits_and_loss_match_transformers(tie, attn):
    config = dataclasses.replace(TINY_GPT, tie_embeddings=tie)
    theirs, ours = _gpt_pair(config, attn)

    # The wte / lm_head tie is the same in both models, and survived the mapping.
    hf_tied = theirs.lm_head.weight is theirs.transformer.wte.weight
    assert hf_tied is tie
    assert (ours.lm_head.weight is ours.transformer.wte.weight) is tie
    assert shared_groups(ours) == ([["transformer.wte.weight", "lm_head.weight"]] if tie else [])
    assert count_parameters(ours) == count_parameters(theirs)

    idx = _inputs(config.vocab_size)["input_ids"]
    targets = torch.cat([idx[:, 1:], torch.full((BATCH, 1), -1)], dim=1)  # shared_lib ignores -1
    with torch.no_grad():
        reference = theirs(input_ids=idx, labels=idx)  # transformers shifts the labels itself
        logits, loss = ours(idx, targets)
    assert max_diff(logits, reference.logits) < ATOL
    # transformers' ForCausalLMLoss casts the logits to float32 ("upcast", which here is a
    # downcast from float64), so its loss is float32: agreement to float32 precision only.
    assert reference.loss.dtype == torch.float32
    assert loss.item() == pytest.approx(reference.loss.item(), rel=1e-6)


def test_gpt2_right_padding_matches_masked_transformers():
    """shared_lib's GPT takes no attention mask (causal attention only). With right padding,
    causality alone makes the real tokens' logits independent of the padding, so they must
    equal transformers' logits computed with the padding mask."""
    theirs, ours = _gpt_pair(TINY_GPT, "eager")
    inputs = _inputs(TINY_GPT.vocab_size)
    idx, mask = inputs["input_ids"], torch.ones(BATCH, LENGTH, dtype=torch.long)
    mask[1, -3:] = 0
    mask[2, -5:] = 0
    with torch.no_grad():
        reference = theirs(input_ids=idx, attention_mask=mask).logits
        logits, _ = ours(idx)
    real = mask.bool()
    assert max_diff(logits[real], reference[real]) < ATOL


# --------------------------------------------------------------------------------------------
# 2. Parameter counts of every preset
# --------------------------------------------------------------------------------------------


@functools.cache
def hf_counterpart(config: TransformerConfig | GPTConfig) -> tuple[nn.Module, int] | None:
    """The transformers model of ``config``, built on the meta device, and the number of
    parameters it has that shared_lib's model does not; ``None`` when there is no counterpart.

    Both sides count unique tensors (``model.parameters()``), buffers excluded.

    - BERT (``share="none"``, E = H): ``BertModel`` with its pooler, as shared_lib's encoder
      with ``pooler=True``. Neither has an MLM or NSP head.
    - ALBERT (``share="all"`` with M groups, or ``"none"`` with E != H): ``AlbertModel`` with its
      pooler, no MLM or SOP head. transformers always has ``embedding_hidden_mapping_in``
      (Linear E -> H), shared_lib only when E != H: with E = H transformers has H·H + H more.
    - GPT-2: ``GPT2LMHeadModel``, i.e. with the LM head; tied (as released) its weight is
      ``wte`` in both, so it adds nothing to the unique count; untied both add V·C.
    - ``share="attention"`` / ``"ffn"``, or GPT without biases: no counterpart.
    """
    with torch.device("meta"):
        if isinstance(config, GPTConfig):
            return (GPT2LMHeadModel(gpt2_config(config)), 0) if config.bias else None
        if config.share == "none" and config.embedding_width == config.hidden_size:
            return BertModel(bert_config(config), add_pooling_layer=config.pooler), 0
        albert_like = config.share == "all" or (
            config.share == "none" and config.embedding_width != config.hidden_size
        )
        if not albert_like or not (
            config.unique_layers in (1, config.num_layers) or config.strategy == "sequence"
        ):
            return None
        model = AlbertModel(albert_config(config), add_pooling_layer=config.pooler)
        hidden = config.hidden_size
        extra = hidden * hidden + hidden if config.embedding_width == hidden else 0
        return model, extra


#: Presets with no transformers counterpart (none today; a new one must be added here on purpose).
NO_COUNTERPART: tuple[str, ...] = ()


def test_every_preset_is_compared():
    missing = tuple(name for name, config in PRESETS.items() if hf_counterpart(config) is None)
    assert missing == NO_COUNTERPART
    assert {"bert-base", "albert-base", "gpt2-small"} <= set(PRESETS)


@pytest.mark.parametrize("name", sorted(set(PRESETS) - set(NO_COUNTERPART)))
def test_preset_count_matches_transformers(name):
    config = PRESETS[name]
    with torch.device("meta"):
        ours = GPT(config) if isinstance(config, GPTConfig) else TransformerEncoder(config)
    theirs, extra = hf_counterpart(config)
    assert all(p.is_meta for p in theirs.parameters())
    assert extra == 0  # every preset is exactly apples to apples
    assert (
        count_parameters(ours)
        == count_parameters(theirs)
        == sum(p.numel() for p in {id(p): p for p in theirs.parameters()}.values())
    )


def test_untied_gpt2_small_count_matches_transformers():
    config = dataclasses.replace(PRESETS["gpt2-small"], tie_embeddings=False)
    with torch.device("meta"):
        ours = GPT(config)
    theirs, _ = hf_counterpart(config)
    assert count_parameters(ours) == count_parameters(theirs)
    tied = count_parameters(hf_counterpart(PRESETS["gpt2-small"])[0])
    assert count_parameters(theirs) - tied == config.vocab_size * config.n_embd


@pytest.mark.parametrize("share", ["all", "none"])
@pytest.mark.parametrize("embedding_size", [64, 128, 256, 768])
def test_albert_ablation_counts_match_transformers(embedding_size, share):
    """ALBERT's Tables 3/4 configurations, all-shared and not-shared, against AlbertModel
    (not-shared with E = 768 = H is BERT-base, hence BertModel)."""
    config = albert_ablation_config(embedding_size, share)
    with torch.device("meta"):
        ours = TransformerEncoder(config)
    theirs, extra = hf_counterpart(config)
    assert count_parameters(ours) + extra == count_parameters(theirs)


# --------------------------------------------------------------------------------------------
# 3. Known differences, pinned
# --------------------------------------------------------------------------------------------


def test_albert_gelu_is_the_only_difference_from_original_albert():
    """ALBERT's own activation is the tanh GELU (``gelu_new``), shared_lib's the exact one: same
    parameters, outputs differ measurably; swapping shared_lib's activation closes the gap."""
    theirs, ours = _encoder_pair(TINY_ALBERT, "eager", hidden_act="gelu_new")
    inputs = _inputs(TINY_ALBERT.vocab_size)
    hidden_diff, _ = _compare_encoder(theirs, ours, inputs, with_mask=True)
    assert hidden_diff > 1e-6
    ours.layers[0].feed_forward.activation = nn.GELU(approximate="tanh")  # one shared layer
    hidden_diff, pooled_diff = _compare_encoder(theirs, ours, inputs, with_mask=True)
    assert max(hidden_diff, pooled_diff) < ATOL


def test_albert_equal_embedding_and_hidden_size_has_no_projection_here():
    """With E = H (ALBERT, Table 4's E = 768 rows) transformers keeps a Linear H -> H after the
    embeddings, shared_lib has none. Set to the identity, it changes nothing: same outputs."""
    config = dataclasses.replace(TINY_ALBERT, embedding_size=TINY_ALBERT.hidden_size)
    torch.manual_seed(0)
    theirs = perturb_(AlbertModel(albert_config(config)).to(torch.float64), seed=1).eval()
    projection = theirs.encoder.embedding_hidden_mapping_in
    with torch.no_grad():
        projection.weight.copy_(torch.eye(config.hidden_size, dtype=torch.float64))
        projection.bias.zero_()
    ours = TransformerEncoder(config).to(torch.float64).eval()
    assert ours.embedding_projection is None
    names = _expand(ALBERT_NAME_MAP, config.num_layers, group_of=lambda i: 0)
    del names["embedding_projection.weight"], names["embedding_projection.bias"]
    load_mapped(ours, theirs, names, unused={f"{PROJECTION}.weight", f"{PROJECTION}.bias"})
    hidden_diff, pooled_diff = _compare_encoder(
        theirs, ours, _inputs(config.vocab_size), with_mask=True
    )
    assert max(hidden_diff, pooled_diff) < ATOL
    h = config.hidden_size
    assert count_parameters(theirs) - count_parameters(ours) == h * h + h


def test_fully_padded_row_follows_sdpa_not_eager():
    """A row whose mask is all 0 (nothing to attend to) is degenerate: shared_lib passes a bool
    mask to PyTorch's SDPA, whose softmax over no key gives a zero context (finite, no NaN), as
    transformers' "sdpa" back-end; transformers' "eager" one adds a large negative constant to
    every score instead, i.e. attends uniformly to the padding. Real rows are unaffected."""
    inputs = _inputs(TINY_BERT.vocab_size)
    inputs["attention_mask"][1] = 0
    real = [0, 2]
    for attn, same_on_padded_row in (("sdpa", True), ("eager", False)):
        theirs, ours = _encoder_pair(TINY_BERT, attn)
        with torch.no_grad():
            reference = theirs(**inputs).last_hidden_state
            hidden, _ = ours(**inputs)
        assert torch.isfinite(hidden).all()
        assert max_diff(hidden[real], reference[real]) < ATOL
        assert (max_diff(hidden[1], reference[1]) < ATOL) is same_on_padded_row
