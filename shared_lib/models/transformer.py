"""BERT / ALBERT encoder with cross-layer sharing (chapters 04 and 05).

The layout is the original BERT one (Devlin et al., 2019): word + position + token-type
embeddings, a LayerNorm, post-LN encoder layers and a pooler. ALBERT (Lan et al., 2020) adds two
things, both here: a factorised embedding (size E, then a Linear E→H when E ≠ H) and cross-layer
sharing. Sharing is done the plainest way PyTorch allows: the *same module object* is registered
at every layer that uses it, so ``state_dict()`` lists every layer, ``parameters()`` lists each
tensor once, and :func:`shared_lib.count_parameters` tells the stored count (``unique=True``)
from the per-use one (``unique=False``).

The published figures the chapters compare against (ALBERT Tables 1, 3 and 4) live here too, as
data, beside :func:`albert_ablation_config` which rebuilds the configurations they describe.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from shared_lib._validation import check_bool, check_choice, check_float, check_int
from shared_lib.sharing import STRATEGIES, layer_assignment

__all__ = [
    "ALBERT_TABLE3",
    "ALBERT_TABLE4",
    "ENCODER_PRESETS",
    "ENCODER_PUBLISHED_PARAMETERS",
    "SHARE_MODES",
    "AblationRow",
    "EncoderLayer",
    "FeedForward",
    "Pooler",
    "SelfAttention",
    "TransformerConfig",
    "TransformerEncoder",
    "albert_ablation_config",
    "albert_config",
]

#: What ``TransformerConfig.share`` may say is shared across layers.
SHARE_MODES = ("none", "all", "attention", "ffn")

#: Standard deviation of BERT's truncated-normal initialiser (we use a plain normal, like
#: Hugging Face's port; the difference does not matter for anything the book measures).
INIT_STD = 0.02


@dataclass(frozen=True)
class TransformerConfig:
    """Hyper-parameters of a BERT / ALBERT encoder (chapter 04 counts them, chapter 05 ablates).

    Frozen: derive variants with :func:`dataclasses.replace`, which validates again.

    Attributes:
        vocab_size: number of word-piece tokens (ALBERT and its BERT baselines: 30,000).
        hidden_size: width H of the encoder layers.
        num_layers: depth N.
        num_heads: attention heads; must divide ``hidden_size``.
        intermediate_size: inner width of the feed-forward sublayer (4 × H in BERT and ALBERT).
        embedding_size: width E of the embeddings; ``None`` means E = H (BERT). With E ≠ H a
            Linear E→H follows the embeddings (ALBERT's factorisation, O(V·E + E·H)).
        max_position: number of learned position embeddings.
        type_vocab_size: number of token types (segments A/B).
        share: what is shared across layers: ``"none"`` (BERT), ``"all"`` (whole layers, ALBERT),
            ``"attention"`` (the attention sublayer only) or ``"ffn"`` (the feed-forward only).
        n_unique: number M of parameter sets of the shared part; ``None`` means 1 when something
            is shared and ``num_layers`` when nothing is.
        strategy: how the M sets are laid over the N layers (see
            :func:`shared_lib.layer_assignment`): ``"sequence"``, ``"cycle"`` or ``"cycle_rev"``.
        pooler: add BERT's pooler (Linear H→H + tanh on the first token).
        dropout: dropout probability of embeddings, attention weights and residual branches.
        layer_norm_eps: epsilon of every LayerNorm (BERT: 1e-12).

    Raises:
        TypeError: a size is not an int, ``share`` or ``strategy`` not a string, ``pooler`` not
            a bool, or ``dropout`` or ``layer_norm_eps`` not a real number.
        ValueError: a size is below 1; ``num_heads`` does not divide ``hidden_size``; ``share``
            or ``strategy`` is unknown; ``n_unique`` exceeds ``num_layers`` (or differs from it
            with ``share="none"``) or does not fit the strategy; ``dropout`` is outside
            ``[0, 1)``; ``layer_norm_eps`` is not positive.

    Examples:
        Six layers from two parameter sets, laid out by the strategy.

        >>> import dataclasses
        >>> from shared_lib.models import TransformerConfig
        >>> config = TransformerConfig(
        ...     vocab_size=100, hidden_size=16, num_layers=6, num_heads=2, intermediate_size=32,
        ...     share="all", n_unique=2)
        >>> config.unique_layers, config.assignment
        (2, [0, 1, 0, 1, 0, 1])
        >>> dataclasses.replace(config, strategy="sequence").assignment
        [0, 0, 0, 1, 1, 1]
    """

    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    embedding_size: int | None = None
    max_position: int = 512
    type_vocab_size: int = 2
    share: str = "none"
    n_unique: int | None = None
    strategy: str = "cycle"
    pooler: bool = True
    dropout: float = 0.0
    layer_norm_eps: float = 1e-12

    def __post_init__(self) -> None:
        owner = type(self).__name__
        for name in ("vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size"):
            check_int(getattr(self, name), f"{owner}.{name}", minimum=1)
        check_int(self.max_position, f"{owner}.max_position", minimum=1)
        check_int(self.type_vocab_size, f"{owner}.type_vocab_size", minimum=1)
        if self.embedding_size is not None:
            check_int(self.embedding_size, f"{owner}.embedding_size", minimum=1)
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"{owner}.hidden_size ({self.hidden_size}) must be divisible by "
                f"{owner}.num_heads ({self.num_heads})"
            )
        check_choice(self.share, f"{owner}.share", SHARE_MODES)
        check_choice(self.strategy, f"{owner}.strategy", STRATEGIES)
        if self.n_unique is not None:
            check_int(self.n_unique, f"{owner}.n_unique", minimum=1)
            if self.n_unique > self.num_layers:
                raise ValueError(
                    f"{owner}.n_unique must be <= num_layers ({self.num_layers}), "
                    f"got {self.n_unique}"
                )
            if self.share == "none" and self.n_unique != self.num_layers:
                raise ValueError(
                    f"{owner}.n_unique ({self.n_unique}) must be None or num_layers "
                    f"({self.num_layers}) when share='none'; set share to share layers"
                )
        check_bool(self.pooler, f"{owner}.pooler")
        check_float(self.dropout, f"{owner}.dropout", 0.0, 1.0, high_inclusive=False)
        check_float(self.layer_norm_eps, f"{owner}.layer_norm_eps", low=0.0, low_inclusive=False)
        try:  # reuse layer_assignment's checks (e.g. 'sequence' needs N divisible by M)
            layer_assignment(self.num_layers, self.unique_layers, self.strategy)
        except ValueError as error:
            raise ValueError(
                f"{owner}(num_layers={self.num_layers}, n_unique={self.unique_layers}, "
                f"strategy={self.strategy!r}): {error}"
            ) from error

    @property
    def embedding_width(self) -> int:
        """Embedding width E (``embedding_size``, or ``hidden_size`` when that is ``None``)."""
        return self.hidden_size if self.embedding_size is None else self.embedding_size

    @property
    def unique_layers(self) -> int:
        """The number M of parameter sets of the shared part (``n_unique`` resolved)."""
        if self.n_unique is not None:
            return self.n_unique
        return self.num_layers if self.share == "none" else 1

    @property
    def assignment(self) -> list[int]:
        """0-based parameter set of each layer's shared part (``list(range(N))`` when unshared)."""
        if self.share == "none":  # every layer its own set, whatever the strategy says
            return list(range(self.num_layers))
        return layer_assignment(self.num_layers, self.unique_layers, self.strategy)


class SelfAttention(nn.Module):
    """BERT's attention sublayer: Q, K, V, output projections, residual and post-LayerNorm.

    The whole sublayer (projections *and* its LayerNorm) is the unit that
    ``share="attention"`` shares (chapters 04, 05).

    Args:
        config: a :class:`TransformerConfig` (``hidden_size``, ``num_heads``, ``dropout`` and
            ``layer_norm_eps`` are read).

    Shape:
        - Input: ``x`` of shape ``(batch, length, hidden_size)``; ``attention_mask`` (optional),
          bool, broadcastable to ``(batch, num_heads, length, length)``, True where a query
          may attend to a key.
        - Output: ``(batch, length, hidden_size)``.

    Examples:
        With ``share="attention"`` one sublayer object serves every layer.

        >>> import torch
        >>> from shared_lib.models import SelfAttention, TransformerConfig, TransformerEncoder
        >>> config = TransformerConfig(
        ...     vocab_size=100, hidden_size=16, num_layers=4, num_heads=2, intermediate_size=32,
        ...     share="attention")
        >>> SelfAttention(config)(torch.randn(2, 5, 16)).shape
        torch.Size([2, 5, 16])
        >>> model = TransformerEncoder(config)
        >>> model.layers[0].attention is model.layers[3].attention
        True
        >>> model.layers[0].feed_forward is model.layers[3].feed_forward
        False
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        hidden = config.hidden_size
        self.num_heads = config.num_heads
        self.dropout = config.dropout
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        self.output = nn.Linear(hidden, hidden)
        self.output_dropout = nn.Dropout(config.dropout)
        self.layer_norm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x``: (B, T, H); ``attention_mask``: bool, broadcastable to (B, heads, T, T).

        Returns ``LayerNorm(x + output(attention(x)))``, shape (B, T, H).
        """
        batch, length, hidden = x.shape

        def heads(projection: nn.Linear) -> torch.Tensor:  # (B, T, H) -> (B, heads, T, H/heads)
            return projection(x).view(batch, length, self.num_heads, -1).transpose(1, 2)

        context = F.scaled_dot_product_attention(
            heads(self.query),
            heads(self.key),
            heads(self.value),
            attn_mask=attention_mask,
            dropout_p=self.dropout if self.training else 0.0,
        )
        context = context.transpose(1, 2).reshape(batch, length, hidden)
        return self.layer_norm(x + self.output_dropout(self.output(context)))

    def extra_repr(self) -> str:
        return f"num_heads={self.num_heads}"


class FeedForward(nn.Module):
    """BERT's feed-forward sublayer: Linear H→I, GELU, Linear I→H, residual and post-LayerNorm.

    Uses the exact (erf) GELU of BERT; ALBERT's code uses the tanh approximation, which has the
    same parameters. The whole sublayer is the unit shared by ``share="ffn"`` (chapters 04, 05).

    Args:
        config: a :class:`TransformerConfig` (``hidden_size``, ``intermediate_size``,
            ``dropout`` and ``layer_norm_eps`` are read).

    Shape:
        - Input: ``(batch, length, hidden_size)``.
        - Output: ``(batch, length, hidden_size)``.

    Examples:
        >>> import torch
        >>> from shared_lib.counting import count_parameters
        >>> from shared_lib.models import FeedForward, TransformerConfig
        >>> config = TransformerConfig(
        ...     vocab_size=100, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=64)
        >>> ffn = FeedForward(config)
        >>> ffn(torch.randn(2, 5, 16)).shape, count_parameters(ffn)  # 16·64 + 64 + 64·16 + 16 + 32
        (torch.Size([2, 5, 16]), 2160)
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.intermediate = nn.Linear(config.hidden_size, config.intermediate_size)
        self.activation = nn.GELU()
        self.output = nn.Linear(config.intermediate_size, config.hidden_size)
        self.output_dropout = nn.Dropout(config.dropout)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``LayerNorm(x + output(GELU(intermediate(x))))``."""
        inner = self.activation(self.intermediate(x))
        return self.layer_norm(x + self.output_dropout(self.output(inner)))


class EncoderLayer(nn.Module):
    """One post-LN encoder layer: an attention sublayer, then a feed-forward sublayer.

    Holds no parameters of its own, so sharing a sublayer is just passing the same object to
    several layers (chapters 04, 05).

    Args:
        attention: the attention sublayer (possibly shared with other layers).
        feed_forward: the feed-forward sublayer (possibly shared with other layers).

    Shape:
        - Input: ``x`` of shape ``(batch, length, hidden_size)`` and an optional
          ``attention_mask`` as for :class:`SelfAttention`.
        - Output: ``(batch, length, hidden_size)``.

    Examples:
        Two layers built on one attention sublayer store it once.

        >>> import torch
        >>> from torch import nn
        >>> from shared_lib.counting import count_parameters
        >>> from shared_lib.models import EncoderLayer, FeedForward, SelfAttention
        >>> from shared_lib.models import TransformerConfig
        >>> config = TransformerConfig(
        ...     vocab_size=100, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32)
        >>> attention = SelfAttention(config)
        >>> layers = nn.ModuleList(EncoderLayer(attention, FeedForward(config)) for _ in range(2))
        >>> count_parameters(layers) == count_parameters(layers, unique=False) - count_parameters(
        ...     attention)
        True
        >>> layers[0](torch.randn(2, 5, 16)).shape
        torch.Size([2, 5, 16])
    """

    def __init__(self, attention: SelfAttention, feed_forward: FeedForward) -> None:
        super().__init__()
        self.attention = attention
        self.feed_forward = feed_forward

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``feed_forward(attention(x, attention_mask))``."""
        return self.feed_forward(self.attention(x, attention_mask))


class Pooler(nn.Module):
    """BERT's pooler: Linear H→H and tanh on the first ([CLS]) token (chapter 04).

    Args:
        hidden_size: width H of the encoder's output.

    Shape:
        - Input: ``(batch, length, hidden_size)``.
        - Output: ``(batch, hidden_size)``, from the first position only.

    Examples:
        >>> import torch
        >>> from shared_lib.models import Pooler
        >>> Pooler(16)(torch.randn(2, 5, 16)).shape
        torch.Size([2, 16])
    """

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)

    def forward(self, sequence_output: torch.Tensor) -> torch.Tensor:
        """``tanh(dense(sequence_output[:, 0]))``."""
        return torch.tanh(self.dense(sequence_output[:, 0]))


class TransformerEncoder(nn.Module):
    """BERT / ALBERT encoder in the original BERT layout, with cross-layer sharing (ch. 04, 05).

    ``layers[i]`` is layer i. What is shared is registered as one object at every layer that
    uses it, following ``config.assignment``:

    - ``share="all"``: ``layers[i] is layers[j]`` when both use the same set (ALBERT);
    - ``share="attention"``: ``layers[i].attention`` objects are shared, every layer has its own
      ``feed_forward``; ``share="ffn"``: the reverse; ``share="none"``: BERT.

    Build huge configurations on the meta device to count them without memory (see below).

    Args:
        config: a :class:`TransformerConfig`.

    Raises:
        TypeError: ``config`` is not a :class:`TransformerConfig`.

    Shape:
        - Input: ``input_ids`` of shape ``(batch, length)`` with ``length <= max_position``;
          optional ``token_type_ids`` and ``attention_mask`` of the same shape.
        - Output: ``(sequence_output, pooled_output)`` of shapes
          ``(batch, length, hidden_size)`` and ``(batch, hidden_size)`` (``None`` without a
          pooler).

    Examples:
        ``share="all"``: twelve layers, one layer's parameters.

        >>> import torch
        >>> from shared_lib.counting import count_parameters
        >>> from shared_lib.models import PRESETS, TransformerConfig, TransformerEncoder
        >>> config = TransformerConfig(
        ...     vocab_size=100, hidden_size=16, num_layers=12, num_heads=2, intermediate_size=32,
        ...     share="all")
        >>> model = TransformerEncoder(config)
        >>> model.layers[0] is model.layers[11]
        True
        >>> stored, per_use = count_parameters(model), count_parameters(model, unique=False)
        >>> per_use - stored == 11 * count_parameters(model.layers[0])
        True
        >>> sequence, pooled = model(torch.randint(0, 100, (2, 7)))
        >>> sequence.shape, pooled.shape
        (torch.Size([2, 7, 16]), torch.Size([2, 16]))

        ALBERT-xxlarge, counted on the meta device (no memory):

        >>> with torch.device("meta"):
        ...     albert = TransformerEncoder(PRESETS["albert-xxlarge"])
        >>> count_parameters(albert), count_parameters(albert, unique=False)
        (222595584, 2437773824)
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        if not isinstance(config, TransformerConfig):
            raise TypeError(f"config must be a TransformerConfig, got {type(config).__name__}")
        self.config = config
        width = config.embedding_width
        self.word_embeddings = nn.Embedding(config.vocab_size, width)
        self.position_embeddings = nn.Embedding(config.max_position, width)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, width)
        self.embedding_layer_norm = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.embedding_dropout = nn.Dropout(config.dropout)
        # ALBERT's factorised embedding: vocabulary -> E, then E -> H (absent in BERT, where E = H).
        self.embedding_projection = (
            nn.Linear(width, config.hidden_size) if width != config.hidden_size else None
        )
        self.layers = nn.ModuleList(self._build_layers(config))
        self.pooler = Pooler(config.hidden_size) if config.pooler else None
        self.reset_parameters()

    @staticmethod
    def _build_layers(config: TransformerConfig) -> list[EncoderLayer]:
        assignment = config.assignment
        sets = range(config.unique_layers)
        if config.share == "all":  # whole layers: the same EncoderLayer object at several depths
            blocks = [EncoderLayer(SelfAttention(config), FeedForward(config)) for _ in sets]
            return [blocks[index] for index in assignment]
        if config.share == "attention":
            attentions = [SelfAttention(config) for _ in sets]
            return [EncoderLayer(attentions[i], FeedForward(config)) for i in assignment]
        if config.share == "ffn":
            feed_forwards = [FeedForward(config) for _ in sets]
            return [EncoderLayer(SelfAttention(config), feed_forwards[i]) for i in assignment]
        return [EncoderLayer(SelfAttention(config), FeedForward(config)) for _ in assignment]

    @property
    def assignment(self) -> list[int]:
        """0-based parameter set of each layer's shared part (see :func:`layer_assignment`)."""
        return self.config.assignment

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """BERT's initialisation: weights ~ N(0, 0.02²), biases 0, LayerNorm weight 1 / bias 0.

        ``modules()`` visits every shared module once, so sharing does not change the result
        of re-initialising.
        """
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, mean=0.0, std=INIT_STD)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, mean=0.0, std=INIT_STD)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(
        self,
        input_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Encode a batch of token ids.

        Args:
            input_ids: (B, T) integer token ids, T <= ``max_position``.
            token_type_ids: (B, T) segment ids; zeros when ``None``.
            attention_mask: (B, T), 1 (or True) for real tokens and 0 for padding; ``None``
                attends everywhere.

        Returns:
            ``(sequence_output, pooled_output)``: (B, T, H) and (B, H), the latter ``None``
            when the config has no pooler.

        Raises:
            ValueError: ``input_ids`` is not 2-D or longer than ``max_position``, or
                ``token_type_ids`` or ``attention_mask`` has another shape.
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
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        elif token_type_ids.shape != input_ids.shape:
            raise ValueError(
                f"token_type_ids must have the shape of input_ids {tuple(input_ids.shape)}, "
                f"got {tuple(token_type_ids.shape)}"
            )
        mask = None
        if attention_mask is not None:
            if attention_mask.shape != input_ids.shape:
                raise ValueError(
                    f"attention_mask must have the shape of input_ids {tuple(input_ids.shape)}, "
                    f"got {tuple(attention_mask.shape)}"
                )
            mask = attention_mask.bool()[:, None, None, :]  # True = may attend to this key

        positions = torch.arange(length, device=input_ids.device)
        x = (
            self.word_embeddings(input_ids)
            + self.position_embeddings(positions)
            + self.token_type_embeddings(token_type_ids)
        )
        x = self.embedding_dropout(self.embedding_layer_norm(x))
        if self.embedding_projection is not None:
            x = self.embedding_projection(x)
        for layer in self.layers:
            x = layer(x, mask)
        pooled = self.pooler(x) if self.pooler is not None else None
        return x, pooled

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"share={c.share!r}, n_unique={c.unique_layers}, strategy={c.strategy!r}, "
            f"assignment={self.assignment}"
        )


def albert_config(
    hidden_size: int, num_layers: int, embedding_size: int, share: str
) -> TransformerConfig:
    """An encoder by ALBERT's Table 1 rule: vocabulary 30,000, intermediate 4·H, heads H/64
    (BERT's sizes follow the same rule, with E = H and nothing shared; chapter 04).

    Args:
        hidden_size: width H (a multiple of 64).
        num_layers: depth N.
        embedding_size: width E of the embeddings.
        share: what is shared across layers, as ``TransformerConfig.share``.

    Returns:
        The :class:`TransformerConfig` (validated by its constructor).

    Examples:
        >>> from shared_lib.models import PRESETS, albert_config
        >>> config = albert_config(4096, 12, 128, "all")
        >>> config == PRESETS["albert-xxlarge"], config.num_heads, config.intermediate_size
        (True, 64, 16384)
    """
    return TransformerConfig(
        vocab_size=30_000,
        hidden_size=hidden_size,
        num_layers=num_layers,
        num_heads=hidden_size // 64,
        intermediate_size=4 * hidden_size,
        embedding_size=embedding_size,
        share=share,
    )


#: BERT and ALBERT as ALBERT's Table 1 describes them (vocabulary 30,000 for all, as the paper
#: states; the released BERT used 30,522).
ENCODER_PRESETS: dict[str, TransformerConfig] = {
    "bert-base": albert_config(768, 12, 768, "none"),
    "bert-large": albert_config(1024, 24, 1024, "none"),
    "albert-base": albert_config(768, 12, 128, "all"),
    "albert-large": albert_config(1024, 24, 128, "all"),
    "albert-xlarge": albert_config(2048, 24, 128, "all"),
    "albert-xxlarge": albert_config(4096, 12, 128, "all"),
}

_TABLE1 = "ALBERT (Lan et al., 2020), Table 1"

#: Published parameter counts in millions and where they come from.
ENCODER_PUBLISHED_PARAMETERS: dict[str, tuple[float, str]] = {
    "bert-base": (108.0, _TABLE1),
    "bert-large": (334.0, _TABLE1),
    "albert-base": (12.0, _TABLE1),
    "albert-large": (18.0, _TABLE1),
    "albert-xlarge": (60.0, _TABLE1),
    "albert-xxlarge": (235.0, _TABLE1 + " (the text of §3.2 says 233M)"),
}


@dataclass(frozen=True)
class AblationRow:
    """One published row of an ALBERT-base ablation (chapter 05).

    Attributes:
        embedding_size: E.
        share: the ``TransformerConfig.share`` value the row corresponds to.
        parameters_m: published parameter count, in millions.
        average: published average score over the downstream tasks, if this book records it.

    Examples:
        >>> from shared_lib.models import ALBERT_TABLE4
        >>> row = ALBERT_TABLE4[0]
        >>> row.label, row.embedding_size, row.parameters_m, row.average
        ('all-shared', 768, 31, 79.8)
    """

    embedding_size: int
    share: str
    parameters_m: float
    average: float | None = None

    @property
    def label(self) -> str:
        """The paper's name for the sharing setting."""
        return {
            "all": "all-shared",
            "attention": "shared-attention",
            "ffn": "shared-FFN",
            "none": "not-shared",
        }[self.share]


#: ALBERT's Table 4, the cross-layer sharing ablation of ALBERT-base (params in M, average score).
ALBERT_TABLE4: tuple[AblationRow, ...] = (
    AblationRow(768, "all", 31, 79.8),
    AblationRow(768, "attention", 83, 81.6),
    AblationRow(768, "ffn", 57, 79.5),
    AblationRow(768, "none", 108, 82.3),
    AblationRow(128, "all", 12, 80.1),
    AblationRow(128, "attention", 64, 81.7),
    AblationRow(128, "ffn", 38, 80.2),
    AblationRow(128, "none", 89, 81.6),
)

#: ALBERT's Table 3, the embedding-size sweep of ALBERT-base (params in M; scores not recorded).
ALBERT_TABLE3: tuple[AblationRow, ...] = (
    AblationRow(64, "none", 87),
    AblationRow(128, "none", 89),
    AblationRow(256, "none", 93),
    AblationRow(768, "none", 108),
    AblationRow(64, "all", 10),
    AblationRow(128, "all", 12),
    AblationRow(256, "all", 16),
    AblationRow(768, "all", 31),
)


def albert_ablation_config(embedding_size: int, share: str) -> TransformerConfig:
    """ALBERT-base (12 layers, H = 768) with embedding size E and a sharing mode (chapter 05).

    Reproduces the configurations of ALBERT's Tables 3 and 4, e.g.
    ``albert_ablation_config(128, "attention")`` is Table 4's "shared-attention, E = 128".

    Args:
        embedding_size: width E of the embeddings.
        share: ``"none"``, ``"all"``, ``"attention"`` or ``"ffn"``.

    Returns:
        The :class:`TransformerConfig` of that row.

    Raises:
        TypeError: ``embedding_size`` is not an int, or ``share`` not a string.
        ValueError: ``embedding_size`` is below 1, or ``share`` is unknown.

    Examples:
        Table 4's all-shared row at E = 128, counted on the meta device (published: 12M).

        >>> import torch
        >>> from shared_lib.counting import count_parameters
        >>> from shared_lib.models import TransformerEncoder, albert_ablation_config
        >>> config = albert_ablation_config(128, "all")
        >>> with torch.device("meta"):
        ...     model = TransformerEncoder(config)
        >>> config.hidden_size, config.num_layers, count_parameters(model)
        (768, 12, 11683584)
    """
    check_int(embedding_size, "embedding_size", minimum=1)
    check_choice(share, "share", SHARE_MODES)
    return albert_config(768, 12, embedding_size, share)
