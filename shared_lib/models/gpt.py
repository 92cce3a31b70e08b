"""A GPT-2 decoder in nanoGPT's layout, with input/output weight tying (chapter 04).

Follows Karpathy's nanoGPT ``model.py``: token and position embeddings (``wte``, ``wpe``), pre-LN
blocks of causal self-attention (one fused ``c_attn`` for Q, K, V, then ``c_proj``) and a 4×
MLP, a final LayerNorm ``ln_f`` and an ``lm_head`` without bias. With ``tie_embeddings`` the
output layer *is* the token embedding (Press & Wolf, 2017; Inan et al., 2017): one tensor,
two uses, 50,257 × 768 = 38.6M parameters saved in GPT-2 small.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from shared_lib._validation import check_bool, check_float, check_int
from shared_lib.models.transformer import INIT_STD

__all__ = [
    "GPT",
    "GPT_PRESETS",
    "GPT_PUBLISHED_PARAMETERS",
    "MLP",
    "Block",
    "CausalSelfAttention",
    "GPTConfig",
]


@dataclass(frozen=True)
class GPTConfig:
    """Hyper-parameters of a GPT-2 style decoder; the defaults are GPT-2 small (chapter 04).

    Frozen: derive variants with :func:`dataclasses.replace`, which validates again.

    Attributes:
        vocab_size: number of BPE tokens (GPT-2: 50,257).
        block_size: context length, i.e. number of position embeddings.
        n_layer: number of blocks.
        n_head: attention heads; must divide ``n_embd``.
        n_embd: width of the residual stream.
        dropout: dropout probability (embeddings, attention weights, residual branches).
        bias: biases in the Linear layers and LayerNorms (GPT-2: True).
        tie_embeddings: use the token embedding as the output layer's weight (GPT-2: True).

    Raises:
        TypeError: a size is not an int, ``dropout`` not a real number, or a flag not a bool.
        ValueError: a size is below 1, ``n_head`` does not divide ``n_embd``, or ``dropout``
            is outside ``[0, 1)``.

    Examples:
        >>> import dataclasses
        >>> from shared_lib.models import GPTConfig
        >>> GPTConfig().n_embd, GPTConfig().tie_embeddings  # the defaults are GPT-2 small
        (768, True)
        >>> config = GPTConfig(vocab_size=64, block_size=16, n_layer=2, n_head=2, n_embd=16)
        >>> dataclasses.replace(config, n_head=3)
        Traceback (most recent call last):
        ValueError: GPTConfig.n_embd (16) must be divisible by GPTConfig.n_head (3)
    """

    vocab_size: int = 50257
    block_size: int = 1024
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True
    tie_embeddings: bool = True

    def __post_init__(self) -> None:
        owner = type(self).__name__
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            check_int(getattr(self, name), f"{owner}.{name}", minimum=1)
        if self.n_embd % self.n_head:
            raise ValueError(
                f"{owner}.n_embd ({self.n_embd}) must be divisible by "
                f"{owner}.n_head ({self.n_head})"
            )
        check_float(self.dropout, f"{owner}.dropout", 0.0, 1.0, high_inclusive=False)
        check_bool(self.bias, f"{owner}.bias")
        check_bool(self.tie_embeddings, f"{owner}.tie_embeddings")


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with one fused Q, K, V projection (``c_attn``), in
    nanoGPT's layout (chapter 04).

    Args:
        config: a :class:`GPTConfig` (``n_embd``, ``n_head``, ``dropout`` and ``bias`` are
            read).

    Shape:
        - Input: ``(batch, length, n_embd)``.
        - Output: ``(batch, length, n_embd)``; position ``t`` attends to positions ``<= t``.

    Examples:
        >>> import torch
        >>> from shared_lib.models.gpt import CausalSelfAttention, GPTConfig
        >>> config = GPTConfig(vocab_size=64, block_size=16, n_layer=1, n_head=2, n_embd=8)
        >>> attention = CausalSelfAttention(config).eval()
        >>> x = torch.randn(1, 5, 8)
        >>> changed = x.clone(); changed[0, 4] += 1.0  # only the last position changes
        >>> torch.allclose(attention(x)[0, :4], attention(changed)[0, :4])  # causal: no look-ahead
        True
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.dropout = config.dropout
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = self.c_attn(x).split(width, dim=2)
        q, k, v = (t.view(batch, length, self.n_head, -1).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True
        )
        y = y.transpose(1, 2).reshape(batch, length, width)
        return self.resid_dropout(self.c_proj(y))

    def extra_repr(self) -> str:
        return f"n_head={self.n_head}"


class MLP(nn.Module):
    """GPT-2's feed-forward sublayer: Linear C→4C, GELU (tanh approximation), Linear 4C→C.

    Not :class:`shared_lib.models.small.MLP` (the small classifier that
    ``shared_lib.models.MLP`` names); this one is the sublayer of :class:`Block`.

    Args:
        config: a :class:`GPTConfig` (``n_embd``, ``dropout`` and ``bias`` are read).

    Shape:
        - Input: ``(..., n_embd)``.
        - Output: ``(..., n_embd)``, each position on its own.

    Examples:
        >>> import torch
        >>> from shared_lib.counting import count_parameters
        >>> from shared_lib.models.gpt import MLP, GPTConfig
        >>> mlp = MLP(GPTConfig(vocab_size=64, block_size=16, n_layer=1, n_head=2, n_embd=8))
        >>> mlp(torch.randn(2, 5, 8)).shape, count_parameters(mlp)  # 8·8·4·2 + 32 + 8
        (torch.Size([2, 5, 8]), 552)
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU(approximate="tanh")
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    """Pre-LN transformer block: ``x + attn(ln_1(x))``, then ``x + mlp(ln_2(x))`` (chapter 04).

    Args:
        config: a :class:`GPTConfig` (``n_embd``, ``n_head``, ``dropout`` and ``bias`` are
            read).

    Shape:
        - Input: ``(batch, length, n_embd)``.
        - Output: ``(batch, length, n_embd)``; position ``t`` depends on positions ``<= t`` only.

    Examples:
        >>> import torch
        >>> from shared_lib.counting import count_parameters
        >>> from shared_lib.models import Block, GPTConfig
        >>> block = Block(GPTConfig(vocab_size=64, block_size=16, n_layer=2, n_head=2, n_embd=16))
        >>> block(torch.randn(2, 5, 16)).shape, count_parameters(block)  # 12·16² + 13·16
        (torch.Size([2, 5, 16]), 3280)
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The two residual sublayers, each after its LayerNorm."""
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """GPT-2 language model; ``tie_embeddings`` makes ``lm_head.weight`` the token embedding.

    Used in chapter 04 to count GPT-2 with and without the tie. Builds on the meta device, so
    that the presets can be counted without memory (see below).

    Args:
        config: a :class:`GPTConfig`.

    Raises:
        TypeError: ``config`` is not a :class:`GPTConfig`.

    Shape:
        - Input: ``idx`` of shape ``(batch, length)`` with ``length <= block_size``; optional
          ``targets`` of the same shape.
        - Output: ``(logits, loss)``: logits ``(batch, length, vocab_size)``, loss a scalar
          ``()`` (``None`` without targets).

    Examples:
        The tie is one tensor under two names; it is stored once and used twice.

        >>> import dataclasses
        >>> import torch
        >>> from shared_lib.counting import count_parameters
        >>> from shared_lib.models import GPT, PRESETS, GPTConfig
        >>> from shared_lib.tying import shared_groups
        >>> model = GPT(GPTConfig(vocab_size=64, block_size=16, n_layer=2, n_head=2, n_embd=16))
        >>> shared_groups(model)
        [['transformer.wte.weight', 'lm_head.weight']]
        >>> count_parameters(model), count_parameters(model, unique=False)  # 64·16 saved
        (7872, 8896)
        >>> logits, loss = model(torch.randint(0, 64, (2, 8)), torch.randint(0, 64, (2, 8)))
        >>> logits.shape, loss.shape
        (torch.Size([2, 8, 64]), torch.Size([]))

        GPT-2 small on the meta device, with and without the tie:

        >>> small = PRESETS["gpt2-small"]
        >>> with torch.device("meta"):
        ...     tied, untied = GPT(small), GPT(dataclasses.replace(small, tie_embeddings=False))
        >>> count_parameters(tied), count_parameters(untied)
        (124439808, 163037184)
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise TypeError(f"config must be a GPTConfig, got {type(config).__name__}")
        self.config = config
        self.transformer = nn.ModuleDict(
            {
                "wte": nn.Embedding(config.vocab_size, config.n_embd),
                "wpe": nn.Embedding(config.block_size, config.n_embd),
                "drop": nn.Dropout(config.dropout),
                "h": nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
                "ln_f": nn.LayerNorm(config.n_embd, bias=config.bias),
            }
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_embeddings:
            # Weight tying: the output layer reuses the token embedding, one (V, C) tensor for
            # both; its gradient is the sum of both uses' gradients.
            self.lm_head.weight = self.transformer.wte.weight
        self.reset_parameters()

    def get_input_embeddings(self) -> nn.Embedding:
        """The token embedding ``transformer.wte`` (the Hugging Face name, for
        :func:`shared_lib.tie_embeddings`)."""
        return self.transformer.wte

    def get_output_embeddings(self) -> nn.Linear:
        """The output layer ``lm_head``, whose weight is the token embedding when tied."""
        return self.lm_head

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """GPT-2's initialisation: N(0, 0.02²) weights, zero biases, and the residual
        projections (``c_proj``) scaled by 1/sqrt(2·n_layer), as in nanoGPT."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=INIT_STD)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        residual_std = INIT_STD / math.sqrt(2 * self.config.n_layer)
        for name, param in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(param, mean=0.0, std=residual_std)

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Next-token logits and, given ``targets``, the mean cross-entropy.

        Args:
            idx: (B, T) token ids, T <= ``block_size``.
            targets: (B, T) next-token ids; positions set to -1 are ignored.

        Returns:
            ``(logits, loss)``: logits (B, T, vocab_size); loss a scalar, or ``None``.

        Raises:
            ValueError: ``idx`` is not 2-D or longer than ``block_size``, or ``targets`` has
                another shape.
        """
        if idx.dim() != 2:
            raise ValueError(f"idx must have shape (batch, length), got {tuple(idx.shape)}")
        length = idx.shape[1]
        if length > self.config.block_size:
            raise ValueError(f"idx: length {length} exceeds block_size {self.config.block_size}")
        positions = torch.arange(length, device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(positions))
        for block in self.transformer.h:
            x = block(x)
        logits = self.lm_head(self.transformer.ln_f(x))
        loss = None
        if targets is not None:
            if targets.shape != idx.shape:
                raise ValueError(
                    f"targets must have the shape of idx {tuple(idx.shape)}, "
                    f"got {tuple(targets.shape)}"
                )
            loss = F.cross_entropy(
                logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1
            )
        return logits, loss

    def extra_repr(self) -> str:
        return f"n_layer={self.config.n_layer}, tie_embeddings={self.config.tie_embeddings}"


#: The four GPT-2 sizes (Radford et al., 2019), as released.
GPT_PRESETS: dict[str, GPTConfig] = {
    "gpt2-small": GPTConfig(),
    "gpt2-medium": GPTConfig(n_layer=24, n_head=16, n_embd=1024),
    "gpt2-large": GPTConfig(n_layer=36, n_head=20, n_embd=1280),
    "gpt2-xl": GPTConfig(n_layer=48, n_head=25, n_embd=1600),
}

_GPT2_README = "openai/gpt-2 README (corrected count; the GPT-2 paper said {}M)"

#: Published parameter counts in millions and their sources. OpenAI's repository notes that the
#: paper's counts "were wrong due to an error" and gives the corrected ones used here.
GPT_PUBLISHED_PARAMETERS: dict[str, tuple[float, str]] = {
    "gpt2-small": (124.0, _GPT2_README.format(117)),
    "gpt2-medium": (355.0, _GPT2_README.format(345)),
    "gpt2-large": (774.0, _GPT2_README.format(762)),
    "gpt2-xl": (1558.0, _GPT2_README.format(1542)),
}
