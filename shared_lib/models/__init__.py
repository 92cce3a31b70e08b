"""The models the chapters count and train (chapters 01, 03, 04, 05 and 08).

- :class:`~shared_lib.models.transformer.TransformerEncoder` /
  :class:`~shared_lib.models.transformer.TransformerConfig`: BERT and ALBERT, with cross-layer
  sharing of whole layers, attention only or feed-forward only.
- :class:`~shared_lib.models.gpt.GPT` / :class:`~shared_lib.models.gpt.GPTConfig`: GPT-2 with
  (or without) input/output weight tying.
- :class:`~shared_lib.models.llama.Decoder` / :class:`~shared_lib.models.llama.DecoderConfig`:
  Llama-style decoders (Llama 3.x, Qwen 2.5, Gemma 2, Mistral, SmolLM) with grouped-query
  attention and optional tying, their presets
  :data:`~shared_lib.models.llama.DECODER_PRESETS` and published sizes
  :data:`~shared_lib.models.llama.DECODER_PUBLISHED_PARAMETERS`, and
  :func:`~shared_lib.models.llama.kv_cache_bytes`.
- :class:`~shared_lib.models.small.MLP`, :class:`~shared_lib.models.small.SmallConvNet`,
  :class:`~shared_lib.models.small.ElmanRNN`, :class:`~shared_lib.models.small.SiameseNet`,
  :class:`~shared_lib.models.small.MultiTaskNet`: the small models of the families of sharing
  (chapter 01).
- :class:`~shared_lib.models.moe.MoELayer` / :class:`~shared_lib.models.moe.MoEConfig` /
  :class:`~shared_lib.models.moe.MoETransformerConfig`: mixtures of experts with shared
  experts, and DeepSeekMoE 16B counted from its config (chapter 08).
- :data:`PRESETS`: the famous encoder and GPT-2 configurations by name (the decoders have
  their own :data:`~shared_lib.models.llama.DECODER_PRESETS`), :data:`PUBLISHED_PARAMETERS`
  their published sizes, :data:`~shared_lib.models.transformer.ALBERT_TABLE3` /
  :data:`~shared_lib.models.transformer.ALBERT_TABLE4` ALBERT's ablations.

The classes are importable from here too (``from shared_lib.models import GPT``).
"""

from __future__ import annotations

import torch
from torch import nn

from shared_lib.models.gpt import (
    GPT,
    GPT_PRESETS,
    GPT_PUBLISHED_PARAMETERS,
    Block,
    GPTConfig,
)
from shared_lib.models.llama import (
    DECODER_PRESETS,
    DECODER_PUBLISHED_PARAMETERS,
    CrossLayerKVDecoder,
    Decoder,
    DecoderConfig,
    DecoderLayer,
    kv_cache_bytes,
    kv_cache_bytes_per_token,
)
from shared_lib.models.moe import (
    DEEPSEEK_MOE_16B,
    DEEPSEEK_MOE_16B_PUBLISHED,
    Expert,
    MoEConfig,
    MoELayer,
    MoETransformerConfig,
)
from shared_lib.models.small import MLP, ElmanRNN, MultiTaskNet, SiameseNet, SmallConvNet
from shared_lib.models.transformer import (
    ALBERT_TABLE3,
    ALBERT_TABLE4,
    ENCODER_PRESETS,
    ENCODER_PUBLISHED_PARAMETERS,
    SHARE_MODES,
    AblationRow,
    EncoderLayer,
    FeedForward,
    Pooler,
    SelfAttention,
    TransformerConfig,
    TransformerEncoder,
    albert_ablation_config,
    albert_config,
)

#: Every named configuration, BERT / ALBERT (ALBERT's Table 1) and the GPT-2 sizes; the
#: Llama-style decoders are in :data:`~shared_lib.models.llama.DECODER_PRESETS`.
PRESETS: dict[str, TransformerConfig | GPTConfig] = {**ENCODER_PRESETS, **GPT_PRESETS}

#: Published parameter count (millions) and its source, for every preset.
PUBLISHED_PARAMETERS: dict[str, tuple[float, str]] = {
    **ENCODER_PUBLISHED_PARAMETERS,
    **GPT_PUBLISHED_PARAMETERS,
}


def build_model(
    config: str | TransformerConfig | GPTConfig | DecoderConfig,
    device: str | torch.device | None = None,
) -> nn.Module:
    """The model for a preset name or a config; ``device="meta"`` builds it without memory.

    Args:
        config: a name in :data:`PRESETS` or
            :data:`~shared_lib.models.llama.DECODER_PRESETS`, a
            :class:`~shared_lib.models.transformer.TransformerConfig`, a
            :class:`~shared_lib.models.gpt.GPTConfig` or a
            :class:`~shared_lib.models.llama.DecoderConfig`.
        device: where to build the parameters; ``None`` uses the current default device.

    Returns:
        A :class:`~shared_lib.models.transformer.TransformerEncoder`, a
        :class:`~shared_lib.models.gpt.GPT` or a :class:`~shared_lib.models.llama.Decoder`.

    Raises:
        ValueError: ``config`` is a name that is not a preset.
        TypeError: ``config`` is neither a name nor one of the three config types.

    Examples:
        >>> from shared_lib.counting import count_parameters
        >>> from shared_lib.models import build_model
        >>> count_parameters(build_model("albert-xxlarge", device="meta"))
        222595584
        >>> count_parameters(build_model("mistral-7b-v0.1", device="meta"))
        7241732096
    """
    if isinstance(config, str):
        presets = {**PRESETS, **DECODER_PRESETS}
        if config not in presets:
            raise ValueError(f"config: unknown preset {config!r}; choose from {sorted(presets)}")
        config = presets[config]
    if isinstance(config, TransformerConfig):
        cls = TransformerEncoder
    elif isinstance(config, GPTConfig):
        cls = GPT
    elif isinstance(config, DecoderConfig):
        cls = Decoder
    else:
        raise TypeError(
            "config must be a preset name, TransformerConfig, GPTConfig or DecoderConfig, "
            f"got {type(config).__name__}"
        )
    if device is None:
        return cls(config)
    with torch.device(device):
        return cls(config)


__all__ = [
    "ALBERT_TABLE3",
    "ALBERT_TABLE4",
    "DECODER_PRESETS",
    "DECODER_PUBLISHED_PARAMETERS",
    "DEEPSEEK_MOE_16B",
    "DEEPSEEK_MOE_16B_PUBLISHED",
    "GPT",
    "MLP",
    "PRESETS",
    "PUBLISHED_PARAMETERS",
    "SHARE_MODES",
    "AblationRow",
    "Block",
    "CrossLayerKVDecoder",
    "Decoder",
    "DecoderConfig",
    "DecoderLayer",
    "ElmanRNN",
    "EncoderLayer",
    "Expert",
    "FeedForward",
    "GPTConfig",
    "MoEConfig",
    "MoELayer",
    "MoETransformerConfig",
    "MultiTaskNet",
    "Pooler",
    "SelfAttention",
    "SiameseNet",
    "SmallConvNet",
    "TransformerConfig",
    "TransformerEncoder",
    "albert_ablation_config",
    "albert_config",
    "build_model",
    "kv_cache_bytes",
    "kv_cache_bytes_per_token",
]
