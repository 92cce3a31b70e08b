"""Llama-style decoders: RMSNorm, rotary positions, SwiGLU and grouped-query attention
(chapters 03 and 04).

The layout of Llama 3 (Grattafiori et al., 2024), which Qwen 2.5, Mistral, SmolLM and Gemma 2
share with small changes: token embedding ``embed_tokens``, pre-norm layers of grouped-query
attention (``q_proj``, ``k_proj``, ``v_proj``, ``o_proj``; rotary positions on queries and keys)
and a gated feed-forward (``gate_proj``, ``up_proj``, ``down_proj``), a final RMSNorm ``norm``
and an ``lm_head`` without bias. Two kinds of sharing show here:

- **Tied embeddings** (``tie_embeddings``): the output layer *is* the token embedding, as in
  nanoGPT; in Llama 3.2 1B that one ``(128256, 2048)`` tensor is a fifth of the model.
- **Grouped-query attention** (Ainslie et al., 2023): ``num_kv_heads`` key/value heads, each
  shared by ``num_heads / num_kv_heads`` query heads. It shrinks ``k_proj``/``v_proj`` and, more
  to the point, the key/value cache (:func:`kv_cache_bytes`).

The presets (:data:`DECODER_PRESETS`) are the published ``config.json`` files, so the parameter
counts are exact; :data:`DECODER_PUBLISHED_PARAMETERS` holds the published sizes beside them.
What this module leaves out has no parameters: Llama 3's rescaled rotary frequencies
(``rope_scaling``), Mistral's and Gemma 2's sliding-window attention, Gemma 2's soft-capping of
attention and output logits (50 and 30), and Gemma 2's ``query_pre_attn_scalar`` (it equals the
head size in Gemma 2 2B, as here). Counts are unaffected; outputs equal ``transformers``' only
where those features are switched off or do not act (sequences shorter than the window).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from shared_lib._validation import (
    check_bool,
    check_choice,
    check_float,
    check_instance,
    check_int,
)
from shared_lib.models.transformer import INIT_STD

__all__ = [
    "DECODER_PRESETS",
    "DECODER_PUBLISHED_PARAMETERS",
    "HIDDEN_ACTIVATIONS",
    "CrossLayerKVDecoder",
    "Decoder",
    "DecoderConfig",
    "DecoderLayer",
    "GatedFeedForward",
    "GroupedQueryAttention",
    "RMSNorm",
    "kv_cache_bytes",
    "kv_cache_bytes_per_token",
]

#: The gate activations of the feed-forward layer, SwiGLU (Llama, Qwen, Mistral) or GeGLU with
#: the tanh approximation (Gemma, ``gelu_pytorch_tanh`` in ``transformers``).
HIDDEN_ACTIVATIONS = ("silu", "gelu_tanh")


@dataclass(frozen=True)
class DecoderConfig:
    """Hyper-parameters of a Llama-style decoder, named after ``config.json`` (chapter 04).

    Frozen: derive variants with :func:`dataclasses.replace`, which validates again.

    Attributes:
        vocab_size: number of tokens V (``vocab_size``).
        hidden_size: width of the residual stream H (``hidden_size``).
        num_layers: number of decoder layers (``num_hidden_layers``).
        num_heads: query heads (``num_attention_heads``).
        intermediate_size: inner width of the gated feed-forward (``intermediate_size``).
        num_kv_heads: key/value heads (``num_key_value_heads``), dividing ``num_heads``;
            ``None`` means ``num_heads`` (plain multi-head attention), 1 is multi-query.
        head_dim: width of one head (``head_dim``); ``None`` means ``hidden_size // num_heads``,
            which must then divide evenly. Gemma 2 2B: 256, with ``8 × 256 ≠ 2304``.
        tie_embeddings: the output layer uses the token embedding (``tie_word_embeddings``).
        attention_bias: biases on the query, key and value projections, none on the output
            projection (Qwen 2.5's layout).
        rms_norm_eps: epsilon of every RMSNorm (``rms_norm_eps``).
        rope_theta: base of the rotary frequencies (``rope_theta``).
        max_position: longest sequence accepted (``max_position_embeddings``); rotary positions
            have no parameters, so it does not change the count.
        hidden_act: ``"silu"`` (SwiGLU) or ``"gelu_tanh"`` (GeGLU, Gemma).
        post_norms: Gemma 2's extra RMSNorms on the outputs of attention and feed-forward,
            before each residual sum (four norms per layer instead of two).
        gemma_scaling: Gemma's parameter-free conventions: embeddings multiplied by
            ``sqrt(hidden_size)``, and RMSNorm scaling by ``1 + weight`` (weights start at 0).

    Raises:
        TypeError: a size is not an int, a flag not a bool, ``hidden_act`` not a string, or
            ``rms_norm_eps``/``rope_theta`` not a real number.
        ValueError: a size is below 1; ``num_kv_heads`` does not divide ``num_heads``;
            ``head_dim`` is ``None`` and ``num_heads`` does not divide ``hidden_size``; the head
            width is odd (rotary positions rotate pairs); ``hidden_act`` is unknown;
            ``rms_norm_eps`` or ``rope_theta`` is not positive.

    Examples:
        >>> import dataclasses
        >>> from shared_lib.models import DECODER_PRESETS, DecoderConfig
        >>> llama = DECODER_PRESETS["llama-3.2-1b"]
        >>> llama.kv_heads, llama.head_width, llama.num_heads // llama.kv_heads
        (8, 64, 4)
        >>> dataclasses.replace(llama, num_kv_heads=5)
        Traceback (most recent call last):
        ValueError: DecoderConfig.num_kv_heads (5) must divide DecoderConfig.num_heads (32)
    """

    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    num_kv_heads: int | None = None
    head_dim: int | None = None
    tie_embeddings: bool = False
    attention_bias: bool = False
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10_000.0
    max_position: int = 2048
    hidden_act: str = "silu"
    post_norms: bool = False
    gemma_scaling: bool = False

    def __post_init__(self) -> None:
        owner = type(self).__name__
        for name in (
            "vocab_size",
            "hidden_size",
            "num_layers",
            "num_heads",
            "intermediate_size",
            "max_position",
        ):
            check_int(getattr(self, name), f"{owner}.{name}", minimum=1)
        if self.num_kv_heads is not None:
            check_int(self.num_kv_heads, f"{owner}.num_kv_heads", minimum=1)
            if self.num_heads % self.num_kv_heads:
                raise ValueError(
                    f"{owner}.num_kv_heads ({self.num_kv_heads}) must divide "
                    f"{owner}.num_heads ({self.num_heads})"
                )
        if self.head_dim is not None:
            check_int(self.head_dim, f"{owner}.head_dim", minimum=1)
        elif self.hidden_size % self.num_heads:
            raise ValueError(
                f"{owner}.hidden_size ({self.hidden_size}) must be divisible by "
                f"{owner}.num_heads ({self.num_heads}), or give {owner}.head_dim"
            )
        if self.head_width % 2:
            raise ValueError(
                f"{owner}: the head width ({self.head_width}) must be even, since rotary "
                "positions rotate pairs of features"
            )
        check_bool(self.tie_embeddings, f"{owner}.tie_embeddings")
        check_bool(self.attention_bias, f"{owner}.attention_bias")
        check_bool(self.post_norms, f"{owner}.post_norms")
        check_bool(self.gemma_scaling, f"{owner}.gemma_scaling")
        check_float(self.rms_norm_eps, f"{owner}.rms_norm_eps", low=0.0, low_inclusive=False)
        check_float(self.rope_theta, f"{owner}.rope_theta", low=0.0, low_inclusive=False)
        check_choice(self.hidden_act, f"{owner}.hidden_act", HIDDEN_ACTIVATIONS)

    @property
    def kv_heads(self) -> int:
        """Key/value heads per layer (``num_kv_heads``, or ``num_heads`` when that is ``None``)."""
        return self.num_heads if self.num_kv_heads is None else self.num_kv_heads

    @property
    def head_width(self) -> int:
        """Width of one head (``head_dim``, or ``hidden_size // num_heads`` when ``None``)."""
        return self.hidden_size // self.num_heads if self.head_dim is None else self.head_dim


class RMSNorm(nn.Module):
    """Root-mean-square normalization with a learned scale, computed in (at least) float32
    as Llama's and Gemma's reference code do (chapter 04).

    Args:
        hidden_size: size of the last dimension.
        eps: added to the mean square before the square root.
        unit_offset: scale by ``1 + weight`` with ``weight`` starting at 0 (Gemma) instead of by
            ``weight`` starting at 1 (Llama). The same parameters either way.
        device: where to create the weight.
        dtype: its dtype.

    Raises:
        TypeError: ``hidden_size`` is not an int, ``eps`` not a real number, or ``unit_offset``
            not a bool.
        ValueError: ``hidden_size`` is below 1, or ``eps`` is not positive.

    Shape:
        - Input: ``(..., hidden_size)``.
        - Output: the same shape and dtype.

    Examples:
        >>> import torch
        >>> from shared_lib.models.llama import RMSNorm
        >>> norm = RMSNorm(4)
        >>> norm(torch.tensor([[3.0, -3.0, 3.0, -3.0]]))  # root mean square 3 -> 1
        tensor([[ 1.0000, -1.0000,  1.0000, -1.0000]], grad_fn=<MulBackward0>)
    """

    def __init__(
        self,
        hidden_size: int,
        eps: float = 1e-5,
        unit_offset: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        check_int(hidden_size, "hidden_size", minimum=1)
        self.eps = check_float(eps, "eps", low=0.0, low_inclusive=False)
        self.unit_offset = check_bool(unit_offset, "unit_offset")
        self.weight = nn.Parameter(torch.empty(hidden_size, device=device, dtype=dtype))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Scale of 1: ``weight`` = 1, or 0 with ``unit_offset``."""
        (nn.init.zeros_ if self.unit_offset else nn.init.ones_)(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        wide = x.to(torch.promote_types(x.dtype, torch.float32))
        normed = wide * torch.rsqrt(wide.pow(2).mean(-1, keepdim=True) + self.eps)
        if self.unit_offset:  # Gemma scales before casting back, Llama after
            return (normed * (1.0 + self.weight.to(normed.dtype))).type_as(x)
        return self.weight * normed.type_as(x)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}, unit_offset={self.unit_offset}"


def _rotary_angles(length: int, width: int, theta: float, like: torch.Tensor):
    """cos and sin of the rotary angles (Su et al., 2021) of positions ``0 … length - 1``,
    ``(length, width)``, computed in float32 and cast to the dtype of ``like``."""
    exponents = torch.arange(0, width, 2, device=like.device, dtype=torch.float32) / width
    inverse_frequency = 1.0 / (theta**exponents)
    positions = torch.arange(length, device=like.device, dtype=torch.float32)
    angles = positions[:, None] * inverse_frequency[None, :]
    angles = torch.cat((angles, angles), dim=-1)
    return angles.cos().to(like.dtype), angles.sin().to(like.dtype)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` (batch, heads, length, width) in the "rotate half" layout of
    ``transformers``: feature ``i`` of the first half pairs with feature ``i`` of the second."""
    first, second = x.chunk(2, dim=-1)
    return x * cos + torch.cat((-second, first), dim=-1) * sin


class GroupedQueryAttention(nn.Module):
    """Causal self-attention with ``num_kv_heads`` key/value heads shared by groups of query
    heads, and rotary positions (chapters 03 and 04).

    Args:
        config: a :class:`DecoderConfig` (sizes, ``attention_bias`` and ``rope_theta`` are read).
        device: where to create the parameters.
        dtype: their dtype.

    Shape:
        - Input: ``(batch, length, hidden_size)``, positions ``0 … length - 1``.
        - Output: ``(batch, length, hidden_size)``; position ``t`` attends to positions ``<= t``.

    Examples:
        Two key/value heads serve four query heads: ``k_proj`` is half the size of ``q_proj``.

        >>> import torch
        >>> from shared_lib.counting import count_parameters
        >>> from shared_lib.models.llama import DecoderConfig, GroupedQueryAttention
        >>> config = DecoderConfig(vocab_size=64, hidden_size=32, num_layers=1, num_heads=4,
        ...                        num_kv_heads=2, intermediate_size=64)
        >>> attention = GroupedQueryAttention(config)
        >>> count_parameters(attention.q_proj), count_parameters(attention.k_proj)
        (1024, 512)
        >>> attention(torch.randn(2, 5, 32)).shape
        torch.Size([2, 5, 32])
    """

    def __init__(
        self,
        config: DecoderConfig,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        check_instance(config, "config", DecoderConfig, "DecoderConfig")
        self.num_heads, self.kv_heads = config.num_heads, config.kv_heads
        self.head_dim, self.rope_theta = config.head_width, config.rope_theta
        hidden, bias = config.hidden_size, config.attention_bias
        factory = {"device": device, "dtype": dtype}
        self.q_proj = nn.Linear(hidden, self.num_heads * self.head_dim, bias=bias, **factory)
        self.k_proj = nn.Linear(hidden, self.kv_heads * self.head_dim, bias=bias, **factory)
        self.v_proj = nn.Linear(hidden, self.kv_heads * self.head_dim, bias=bias, **factory)
        self.o_proj = nn.Linear(self.num_heads * self.head_dim, hidden, bias=False, **factory)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape

        def heads(projection: nn.Linear, count: int) -> torch.Tensor:
            return projection(x).view(batch, length, count, self.head_dim).transpose(1, 2)

        cos, sin = _rotary_angles(length, self.head_dim, self.rope_theta, like=x)
        q = _rotate(heads(self.q_proj, self.num_heads), cos, sin)
        k = _rotate(heads(self.k_proj, self.kv_heads), cos, sin)
        v = heads(self.v_proj, self.kv_heads)
        # Grouped-query attention: key/value head j serves query heads j·g … j·g + g - 1.
        group = self.num_heads // self.kv_heads
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o_proj(y.transpose(1, 2).reshape(batch, length, -1))

    def extra_repr(self) -> str:
        return f"num_heads={self.num_heads}, kv_heads={self.kv_heads}, head_dim={self.head_dim}"


class GatedFeedForward(nn.Module):
    """The gated feed-forward ``down_proj(act(gate_proj(x)) * up_proj(x))``: SwiGLU
    (Shazeer, 2020) with ``hidden_act="silu"``, GeGLU with ``"gelu_tanh"`` (chapter 04).

    Args:
        config: a :class:`DecoderConfig` (``hidden_size``, ``intermediate_size`` and
            ``hidden_act`` are read).
        device: where to create the parameters.
        dtype: their dtype.

    Shape:
        - Input: ``(..., hidden_size)``.
        - Output: ``(..., hidden_size)``, each position on its own.

    Examples:
        >>> import torch
        >>> from shared_lib.counting import count_parameters
        >>> from shared_lib.models.llama import DecoderConfig, GatedFeedForward
        >>> config = DecoderConfig(vocab_size=64, hidden_size=8, num_layers=1, num_heads=2,
        ...                        intermediate_size=12)
        >>> ffn = GatedFeedForward(config)
        >>> ffn(torch.randn(2, 5, 8)).shape, count_parameters(ffn)  # 3 · 8 · 12
        (torch.Size([2, 5, 8]), 288)
    """

    def __init__(
        self,
        config: DecoderConfig,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        check_instance(config, "config", DecoderConfig, "DecoderConfig")
        hidden, inner = config.hidden_size, config.intermediate_size
        factory = {"device": device, "dtype": dtype, "bias": False}
        self.gate_proj = nn.Linear(hidden, inner, **factory)
        self.up_proj = nn.Linear(hidden, inner, **factory)
        self.down_proj = nn.Linear(inner, hidden, **factory)
        self.hidden_act = config.hidden_act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.gate_proj(x)
        gate = F.silu(gate) if self.hidden_act == "silu" else F.gelu(gate, approximate="tanh")
        return self.down_proj(gate * self.up_proj(x))

    def extra_repr(self) -> str:
        return f"hidden_act={self.hidden_act!r}"


class DecoderLayer(nn.Module):
    """Pre-norm decoder layer: ``x + attention(norm(x))``, then ``x + feed_forward(norm(x))``;
    with ``post_norms`` (Gemma 2) each branch's output is normalized again before the sum.

    Args:
        config: a :class:`DecoderConfig`.
        device: where to create the parameters.
        dtype: their dtype.

    Shape:
        - Input: ``(batch, length, hidden_size)``.
        - Output: ``(batch, length, hidden_size)``; position ``t`` depends on positions ``<= t``.

    Examples:
        Gemma 2's extra norms add ``2 · hidden_size`` parameters per layer.

        >>> import dataclasses
        >>> from shared_lib.counting import count_parameters
        >>> from shared_lib.models.llama import DecoderConfig, DecoderLayer
        >>> config = DecoderConfig(vocab_size=64, hidden_size=16, num_layers=1, num_heads=2,
        ...                        intermediate_size=32)
        >>> gemma_like = dataclasses.replace(config, post_norms=True)
        >>> count_parameters(DecoderLayer(gemma_like)) - count_parameters(DecoderLayer(config))
        32
    """

    def __init__(
        self,
        config: DecoderConfig,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        check_instance(config, "config", DecoderConfig, "DecoderConfig")
        factory = {"device": device, "dtype": dtype}

        def norm() -> RMSNorm:
            return RMSNorm(config.hidden_size, config.rms_norm_eps, config.gemma_scaling, **factory)

        self.attention_norm = norm()
        self.attention = GroupedQueryAttention(config, **factory)
        self.post_attention_norm = norm() if config.post_norms else None
        self.feed_forward_norm = norm()
        self.feed_forward = GatedFeedForward(config, **factory)
        self.post_feed_forward_norm = norm() if config.post_norms else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The two residual branches, each after its RMSNorm (and before one, with post_norms)."""
        branch = self.attention(self.attention_norm(x))
        if self.post_attention_norm is not None:
            branch = self.post_attention_norm(branch)
        x = x + branch
        branch = self.feed_forward(self.feed_forward_norm(x))
        if self.post_feed_forward_norm is not None:
            branch = self.post_feed_forward_norm(branch)
        return x + branch


class Decoder(nn.Module):
    """Llama-style language model; ``tie_embeddings`` makes ``lm_head.weight`` the token
    embedding (chapters 03 and 04).

    Builds on the meta device (``device="meta"`` or ``with torch.device("meta")``), so that the
    presets, up to Mistral 7B and Llama 3.1 8B, are counted without memory.

    Args:
        config: a :class:`DecoderConfig`.
        device: where to create the parameters (default: the current default device).
        dtype: their dtype (default: the current default dtype).

    Raises:
        TypeError: ``config`` is not a :class:`DecoderConfig`.

    Shape:
        - Input: ``input_ids`` of shape ``(batch, length)`` with ``length <= max_position``;
          optional ``targets`` of the same shape.
        - Output: ``(logits, loss)``: logits ``(batch, length, vocab_size)``, loss a scalar
          ``()`` (``None`` without targets).

    Examples:
        The tie is one tensor under two names, stored once:

        >>> import torch
        >>> from shared_lib.counting import count_parameters
        >>> from shared_lib.models import DECODER_PRESETS, Decoder, DecoderConfig
        >>> from shared_lib.tying import shared_groups
        >>> config = DecoderConfig(vocab_size=64, hidden_size=16, num_layers=2, num_heads=4,
        ...                        num_kv_heads=2, intermediate_size=32, tie_embeddings=True)
        >>> model = Decoder(config)
        >>> shared_groups(model)
        [['embed_tokens.weight', 'lm_head.weight']]
        >>> count_parameters(model), count_parameters(model, unique=False)  # 64·16 saved
        (5712, 6736)
        >>> logits, loss = model(torch.randint(0, 64, (2, 8)), torch.randint(0, 64, (2, 8)))
        >>> logits.shape, loss.shape
        (torch.Size([2, 8, 64]), torch.Size([]))

        Llama 3.2 1B on the meta device, and the share of its one embedding matrix:

        >>> llama = Decoder(DECODER_PRESETS["llama-3.2-1b"], device="meta")
        >>> total = count_parameters(llama)
        >>> total, round(llama.embed_tokens.weight.numel() / total, 3)
        (1235814400, 0.213)
    """

    def __init__(
        self,
        config: DecoderConfig,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        check_instance(config, "config", DecoderConfig, "DecoderConfig")
        self.config = config
        factory = {"device": device, "dtype": dtype}
        hidden = config.hidden_size
        self.embed_tokens = nn.Embedding(config.vocab_size, hidden, **factory)
        self.layers = nn.ModuleList(
            [DecoderLayer(config, **factory) for _ in range(config.num_layers)]
        )
        self.norm = RMSNorm(hidden, config.rms_norm_eps, config.gemma_scaling, **factory)
        self.lm_head = nn.Linear(hidden, config.vocab_size, bias=False, **factory)
        if config.tie_embeddings:
            # Weight tying: the output layer reuses the token embedding, one (V, H) tensor for
            # both; its gradient is the sum of both uses' gradients.
            self.lm_head.weight = self.embed_tokens.weight
        self.reset_parameters()

    def get_input_embeddings(self) -> nn.Embedding:
        """The token embedding ``embed_tokens`` (for :func:`shared_lib.tie_embeddings`)."""
        return self.embed_tokens

    def get_output_embeddings(self) -> nn.Linear:
        """The output layer ``lm_head``, whose weight is the token embedding when tied."""
        return self.lm_head

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """N(0, 0.02²) weights (``initializer_range`` of the configs), zero biases, RMSNorm
        scales of 1."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=INIT_STD)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, RMSNorm):
                module.reset_parameters()

    def forward(
        self, input_ids: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Next-token logits and, given ``targets``, the mean cross-entropy.

        Args:
            input_ids: (B, T) token ids, T <= ``max_position``.
            targets: (B, T) next-token ids; positions set to -1 are ignored.

        Returns:
            ``(logits, loss)``: logits (B, T, vocab_size); loss a scalar, or ``None``.

        Raises:
            ValueError: ``input_ids`` is not 2-D or longer than ``max_position``, or
                ``targets`` has another shape.
        """
        if input_ids.dim() != 2:
            raise ValueError(
                f"input_ids must have shape (batch, length), got {tuple(input_ids.shape)}"
            )
        length = input_ids.shape[1]
        if length > self.config.max_position:
            raise ValueError(
                f"input_ids: length {length} exceeds max_position {self.config.max_position}"
            )
        x = self.embed_tokens(input_ids)
        if self.config.gemma_scaling:
            # Gemma: the scale rounded to the activations' dtype, as in its reference code.
            x = x * torch.tensor(math.sqrt(self.config.hidden_size), dtype=x.dtype, device=x.device)
        for layer in self.layers:
            x = layer(x)
        logits = self.lm_head(self.norm(x))
        loss = None
        if targets is not None:
            if targets.shape != input_ids.shape:
                raise ValueError(
                    f"targets must have the shape of input_ids {tuple(input_ids.shape)}, "
                    f"got {tuple(targets.shape)}"
                )
            loss = F.cross_entropy(
                logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1
            )
        return logits, loss

    def extra_repr(self) -> str:
        c = self.config
        return f"num_layers={c.num_layers}, tie_embeddings={c.tie_embeddings}"


class CrossLayerKVDecoder(Decoder):
    """A :class:`Decoder` whose adjacent layers share keys and values:
    cross-layer attention (Brandon et al., 2024), measured in chapter 03.

    The layers go in groups of ``share_every``: the first layer of a group computes keys and
    values from its own input, as usual, and caches them; the other layers of the group keep
    their own queries, output projection and feed-forward but have no ``k_proj``/``v_proj``:
    they attend to the first layer's keys and values. Within a layer, ``num_kv_heads`` gives
    grouped-query (or multi-query) attention as in the Decoder. With ``share_every=1`` nothing
    is shared across layers and the model computes what a Decoder computes with the same
    weights. Attention is written out (not ``scaled_dot_product_attention``), so that many
    copies train at once under :func:`torch.func.vmap`.

    Args:
        config: a :class:`DecoderConfig`.
        share_every: layers per group that read one cache.
        device: where to create the parameters.
        dtype: their dtype.

    Shape:
        - input_ids: ``(batch, length)`` token ids, as for :class:`Decoder`.
        - logits: ``(batch, length, vocab_size)``.

    Raises:
        TypeError: ``config`` is not a DecoderConfig, or ``share_every`` not an int.
        ValueError: ``share_every`` is below 1.

    Examples:
        Four layers in two pairs: the second layer of each pair has no key/value projection,
        and the model keeps two caches, not four.

        >>> import torch
        >>> from shared_lib.models import CrossLayerKVDecoder, DecoderConfig
        >>> config = DecoderConfig(vocab_size=32, hidden_size=24, num_layers=4, num_heads=4,
        ...                        intermediate_size=48)
        >>> model = CrossLayerKVDecoder(config, share_every=2)
        >>> model.layers[1].attention.k_proj is None, model.cache_sources
        (True, [0, 0, 2, 2])
        >>> cache = model.kv_cache(torch.randint(0, 32, (1, 5)))
        >>> cache[0] is cache[1], cache[1] is cache[2]
        (True, False)
    """

    def __init__(
        self,
        config: DecoderConfig,
        share_every: int = 1,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(config, device=device, dtype=dtype)
        self.share_every = check_int(share_every, "share_every", 1)
        #: The layer whose keys and values each layer reads.
        self.cache_sources = [i - i % share_every for i in range(config.num_layers)]
        for i, layer in enumerate(self.layers):
            if self.cache_sources[i] != i:  # a reader: its keys and values come from elsewhere
                layer.attention.k_proj = None
                layer.attention.v_proj = None

    def _run(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, list]:
        """The final hidden states and, per layer, the ``(keys, values)`` it attended to."""
        batch, length = input_ids.shape
        x = self.embed_tokens(input_ids)
        if self.config.gemma_scaling:
            x = x * torch.tensor(math.sqrt(self.config.hidden_size), dtype=x.dtype, device=x.device)
        width = self.config.head_width
        cos, sin = _rotary_angles(length, width, self.config.rope_theta, like=x)
        future = torch.ones(length, length, dtype=torch.bool, device=x.device).triu(1)
        caches = []
        for i, layer in enumerate(self.layers):
            attention = layer.attention
            h = layer.attention_norm(x)

            def heads(projection: nn.Linear, count: int, h=h) -> torch.Tensor:
                return projection(h).view(batch, length, count, width).transpose(1, 2)

            if self.cache_sources[i] == i:
                keys = _rotate(heads(attention.k_proj, attention.kv_heads), cos, sin)
                caches.append((keys, heads(attention.v_proj, attention.kv_heads)))
            else:
                caches.append(caches[self.cache_sources[i]])  # the same tensors, not a copy
            keys, values = caches[i]
            group = attention.num_heads // attention.kv_heads
            # Query heads j·g … j·g + g - 1 read key/value head j (as in the Decoder).
            queries = _rotate(heads(attention.q_proj, attention.num_heads), cos, sin)
            queries = queries.view(batch, attention.kv_heads, group, length, width)
            scores = queries @ keys.unsqueeze(2).transpose(-1, -2) / math.sqrt(width)
            weights = scores.masked_fill(future, float("-inf")).softmax(dim=-1)
            mixed = (weights @ values.unsqueeze(2)).view(batch, attention.num_heads, length, width)
            branch = attention.o_proj(mixed.transpose(1, 2).reshape(batch, length, -1))
            if layer.post_attention_norm is not None:
                branch = layer.post_attention_norm(branch)
            x = x + branch
            branch = layer.feed_forward(layer.feed_forward_norm(x))
            if layer.post_feed_forward_norm is not None:
                branch = layer.post_feed_forward_norm(branch)
            x = x + branch
        return self.norm(x), caches

    def kv_cache(self, input_ids: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer, the ``(keys, values)`` it attends to, each ``(batch, kv_heads, length,
        head_dim)``; the layers of one group hold the very same tensors."""
        return self._run(input_ids)[1]

    def forward(
        self, input_ids: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Next-token logits and, given ``targets`` (-1 = ignored), the mean cross-entropy."""
        if input_ids.dim() != 2:
            raise ValueError(
                f"input_ids must have shape (batch, length), got {tuple(input_ids.shape)}"
            )
        logits = self.lm_head(self._run(input_ids)[0])
        loss = None
        if targets is not None:
            loss = F.cross_entropy(
                logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1
            )
        return logits, loss

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, share_every={self.share_every}"


def kv_cache_bytes(
    config: DecoderConfig,
    sequence_length: int,
    batch_size: int = 1,
    dtype: torch.dtype = torch.bfloat16,
) -> int:
    """Bytes of the key/value cache of a decoder holding ``sequence_length`` tokens of
    ``batch_size`` sequences: ``2 (keys, values) × layers × kv heads × head width × length ×
    batch × bytes per element`` (chapter 03).

    Weight sharing does not enter the formula: what shrinks the cache is sharing the keys and
    values themselves, across query heads (``num_kv_heads``). Every layer is counted with a full
    cache; sliding-window layers (Mistral, half of Gemma 2's) would keep at most their window.

    Args:
        config: a :class:`DecoderConfig`.
        sequence_length: tokens cached per sequence.
        batch_size: sequences decoded at once.
        dtype: dtype of the cache (bfloat16: 2 bytes per element).

    Returns:
        The size in bytes.

    Raises:
        TypeError: ``config`` is not a DecoderConfig, a size not an int, or ``dtype`` not a
            ``torch.dtype``.
        ValueError: ``sequence_length`` or ``batch_size`` is below 1.

    Examples:
        Llama 3.2 1B: 2 × 16 layers × 8 kv heads × 64 × 2 bytes = 32 KiB per token.

        >>> import torch
        >>> from shared_lib.models import DECODER_PRESETS, kv_cache_bytes
        >>> llama = DECODER_PRESETS["llama-3.2-1b"]
        >>> kv_cache_bytes(llama, 1), kv_cache_bytes(llama, 8192, batch_size=4) / 2**30  # GiB
        (32768, 1.0)
        >>> kv_cache_bytes(llama, 1, dtype=torch.float32)
        65536
    """
    check_instance(config, "config", DecoderConfig, "DecoderConfig")
    check_int(sequence_length, "sequence_length", minimum=1)
    check_int(batch_size, "batch_size", minimum=1)
    check_instance(dtype, "dtype", torch.dtype, "torch.dtype (e.g. torch.bfloat16)")
    per_token = 2 * config.num_layers * config.kv_heads * config.head_width
    return per_token * sequence_length * batch_size * dtype.itemsize


def kv_cache_bytes_per_token(config: DecoderConfig, dtype: torch.dtype = torch.bfloat16) -> int:
    """Bytes the key/value cache grows by per token of one sequence (chapter 03).

    Args:
        config: a :class:`DecoderConfig`.
        dtype: dtype of the cache.

    Returns:
        ``kv_cache_bytes(config, 1, 1, dtype)``.

    Examples:
        Grouped-query attention in Mistral 7B: 8 key/value heads for 32 query heads, a quarter
        of the cache that multi-head attention would keep.

        >>> import dataclasses
        >>> from shared_lib.models import DECODER_PRESETS, kv_cache_bytes_per_token
        >>> mistral = DECODER_PRESETS["mistral-7b-v0.1"]
        >>> multi_head = dataclasses.replace(mistral, num_kv_heads=None)
        >>> kv_cache_bytes_per_token(mistral), kv_cache_bytes_per_token(multi_head)
        (131072, 524288)
    """
    return kv_cache_bytes(config, 1, 1, dtype)


# fmt: off
# (a few fields per line, so that the presets read side by side)
#: The published configurations, each from its ``config.json`` on the Hugging Face hub (the
#: repository is named beside it). Only the fields that this module models are kept.
DECODER_PRESETS: dict[str, DecoderConfig] = {
    # meta-llama/Llama-3.2-1B (rope_scaling "llama3", factor 32: not modelled, no parameters)
    "llama-3.2-1b": DecoderConfig(
        vocab_size=128_256, hidden_size=2048, num_layers=16, intermediate_size=8192,
        num_heads=32, num_kv_heads=8, head_dim=64, tie_embeddings=True,
        rms_norm_eps=1e-5, rope_theta=500_000.0, max_position=131_072,
    ),
    # meta-llama/Llama-3.2-3B (rope_scaling "llama3", factor 32: not modelled)
    "llama-3.2-3b": DecoderConfig(
        vocab_size=128_256, hidden_size=3072, num_layers=28, intermediate_size=8192,
        num_heads=24, num_kv_heads=8, head_dim=128, tie_embeddings=True,
        rms_norm_eps=1e-5, rope_theta=500_000.0, max_position=131_072,
    ),
    # meta-llama/Llama-3.1-8B (rope_scaling "llama3", factor 8: not modelled)
    "llama-3.1-8b": DecoderConfig(
        vocab_size=128_256, hidden_size=4096, num_layers=32, intermediate_size=14_336,
        num_heads=32, num_kv_heads=8, tie_embeddings=False,
        rms_norm_eps=1e-5, rope_theta=500_000.0, max_position=131_072,
    ),
    # Qwen/Qwen2.5-0.5B (Qwen2ForCausalLM: q/k/v biases; use_sliding_window false)
    "qwen2.5-0.5b": DecoderConfig(
        vocab_size=151_936, hidden_size=896, num_layers=24, intermediate_size=4864,
        num_heads=14, num_kv_heads=2, tie_embeddings=True, attention_bias=True,
        rms_norm_eps=1e-6, rope_theta=1_000_000.0, max_position=32_768,
    ),
    # google/gemma-2-2b (hidden_activation gelu_pytorch_tanh; sliding_window 4096,
    # query_pre_attn_scalar 256, soft-capping 50 / 30: not modelled, no parameters)
    "gemma-2-2b": DecoderConfig(
        vocab_size=256_000, hidden_size=2304, num_layers=26, intermediate_size=9216,
        num_heads=8, num_kv_heads=4, head_dim=256, tie_embeddings=True,
        rms_norm_eps=1e-6, rope_theta=10_000.0, max_position=8192,
        hidden_act="gelu_tanh", post_norms=True, gemma_scaling=True,
    ),
    # mistralai/Mistral-7B-v0.1 (sliding_window 4096: not modelled, no parameters)
    "mistral-7b-v0.1": DecoderConfig(
        vocab_size=32_000, hidden_size=4096, num_layers=32, intermediate_size=14_336,
        num_heads=32, num_kv_heads=8, tie_embeddings=False,
        rms_norm_eps=1e-5, rope_theta=10_000.0, max_position=32_768,
    ),
    # HuggingFaceTB/SmolLM-135M
    "smollm-135m": DecoderConfig(
        vocab_size=49_152, hidden_size=576, num_layers=30, intermediate_size=1536,
        num_heads=9, num_kv_heads=3, tie_embeddings=True,
        rms_norm_eps=1e-5, rope_theta=10_000.0, max_position=2048,
    ),
}
# fmt: on

#: Published parameter counts in millions and where they come from. Model cards round (Meta's
#: Llama 3.2 card truncates 1.236B to 1.23B; the hub's size, 1.24B, rounds it), and the Gemma 2
#: report counts a 256,128-token embedding where the released config has 256,000 rows.
DECODER_PUBLISHED_PARAMETERS: dict[str, tuple[float, str]] = {
    "llama-3.2-1b": (
        1240.0,
        "meta-llama/Llama-3.2-1B on the Hugging Face hub, 1.24B (Meta's Llama 3.2 model card: "
        "1.23B)",
    ),
    "llama-3.2-3b": (3210.0, "Meta's Llama 3.2 model card (meta-llama/Llama-3.2-3B), 3.21B"),
    "llama-3.1-8b": (
        8030.0,
        "meta-llama/Llama-3.1-8B on the Hugging Face hub, 8.03B (the model card says 8B)",
    ),
    "qwen2.5-0.5b": (
        490.0,
        "Qwen/Qwen2.5-0.5B model card, 0.49B (0.36B non-embedding)",
    ),
    "gemma-2-2b": (
        2610.0,
        "google/gemma-2-2b on the Hugging Face hub, 2.61B; Gemma 2 report (Gemma Team, 2024): "
        "2,024,517,888 non-embedding + 590,118,912 embedding parameters (vocabulary 256,128)",
    ),
    "mistral-7b-v0.1": (
        7240.0,
        "mistralai/Mistral-7B-v0.1 on the Hugging Face hub, 7.24B (Mistral AI's announcement: "
        "7.3B)",
    ),
    "smollm-135m": (135.0, "HuggingFaceTB/SmolLM-135M model card, 135M"),
}
