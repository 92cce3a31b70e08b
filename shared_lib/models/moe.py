"""Mixture of experts with always-on shared experts, and its parameter counts (chapter 08).

A mixture-of-experts (MoE) layer keeps many feed-forward "experts" but runs only a few of them
for each token: a router scores the routed experts and the token goes through its ``top_k``
best. DeepSeekMoE (Dai et al., 2024) adds **shared experts** that every token goes through, so
knowledge common to all tokens is stored once instead of in every routed expert. Parameters are
therefore counted twice: **total** (what is stored) and **active** (what one token uses).

- :class:`MoEConfig` / :class:`MoELayer`: one layer, its counts from the config
  (:meth:`MoEConfig.total_parameters`, :meth:`MoEConfig.active_parameters`) and from the module
  (:meth:`MoELayer.active_parameters_for`, the parameters a given token actually touched).
- :class:`MoETransformerConfig`: a decoder-only language model whose feed-forward blocks are MoE
  layers (the first few dense), with closed-form counts and a parameter skeleton to check them
  by counting modules on the meta device. :data:`DEEPSEEK_MOE_16B` is DeepSeekMoE 16B's config.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from shared_lib._validation import check_bool, check_int, describe

__all__ = [
    "DEEPSEEK_MOE_16B",
    "DEEPSEEK_MOE_16B_PUBLISHED",
    "Expert",
    "MoEClassifier",
    "MoEConfig",
    "MoELayer",
    "MoETransformerConfig",
]


class Expert(nn.Module):
    """One feed-forward expert (chapter 08). ``gated=True``: SwiGLU,
    ``down(silu(gate(x)) * up(x))`` with three bias-free matrices, as in DeepSeekMoE;
    ``gated=False``: ``down(relu(up(x)))`` with biases (two matrices), the classic MLP.

    Args:
        hidden_size: width of the tokens.
        intermediate_size: inner width of the expert.
        gated: SwiGLU (``True``) or a ReLU MLP with biases (``False``).

    Raises:
        TypeError: a size is not an int, or ``gated`` is not a bool.
        ValueError: a size is below 1.

    Shape:
        - Input: ``(*, hidden_size)``.
        - Output: ``(*, hidden_size)``.

    Examples:
        >>> import torch
        >>> from shared_lib.counting import count_parameters
        >>> from shared_lib.models.moe import Expert
        >>> expert = Expert(16, 32)
        >>> expert(torch.randn(3, 16)).shape, count_parameters(expert), Expert.count(16, 32)
        (torch.Size([3, 16]), 1536, 1536)
    """

    def __init__(self, hidden_size: int, intermediate_size: int, gated: bool = True) -> None:
        super().__init__()
        check_int(hidden_size, "hidden_size", 1)
        check_int(intermediate_size, "intermediate_size", 1)
        self.gated = check_bool(gated, "gated")
        self.up = nn.Linear(hidden_size, intermediate_size, bias=not gated)
        self.down = nn.Linear(intermediate_size, hidden_size, bias=not gated)
        self.gate = nn.Linear(hidden_size, intermediate_size, bias=False) if gated else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The expert's output for every token of ``x``."""
        if self.gate is None:
            return self.down(torch.relu(self.up(x)))
        return self.down(nn.functional.silu(self.gate(x)) * self.up(x))

    @staticmethod
    def count(hidden_size: int, intermediate_size: int, gated: bool = True) -> int:
        """Parameters of one expert: ``3·h·i`` gated, ``2·h·i + i + h`` plain.

        Args:
            hidden_size: width ``h`` of the tokens.
            intermediate_size: inner width ``i``.
            gated: count the SwiGLU expert (three matrices) or the plain one.

        Raises:
            TypeError: ``gated`` is not a bool.
        """
        if check_bool(gated, "gated"):
            return 3 * hidden_size * intermediate_size
        return 2 * hidden_size * intermediate_size + intermediate_size + hidden_size


@dataclass(frozen=True)
class MoEConfig:
    """One MoE layer: ``n_routed`` experts of which each token uses ``top_k``, plus ``n_shared``
    experts that every token uses. Experts are :class:`Expert` of width ``expert_size``
    (chapter 08).

    Attributes:
        hidden_size: width of the tokens.
        expert_size: inner width of every expert.
        n_routed: number of routed experts.
        top_k: routed experts per token, at most ``n_routed``.
        n_shared: always-on shared experts.
        gated: SwiGLU experts (``True``) or ReLU MLPs with biases.
        normalize_topk: rescale the ``top_k`` gate values to sum to one (DeepSeekMoE 16B does
            not: its gates are the softmax probabilities of the chosen experts).

    Raises:
        TypeError: a size is not an int, or ``gated`` or ``normalize_topk`` is not a bool.
        ValueError: a size is below its minimum (1, or 0 for ``n_shared``), or ``top_k``
            exceeds ``n_routed``.

    Examples:
        Nine experts stored, three used per token: one shared and the top two routed.

        >>> from shared_lib.models import MoEConfig
        >>> config = MoEConfig(hidden_size=16, expert_size=32, n_routed=8, top_k=2, n_shared=1)
        >>> config.total_parameters(), config.active_parameters()  # router: 8 · 16
        (13952, 4736)
    """

    hidden_size: int
    expert_size: int
    n_routed: int
    top_k: int
    n_shared: int = 0
    gated: bool = True
    normalize_topk: bool = False

    def __post_init__(self) -> None:
        check_int(self.hidden_size, "hidden_size", 1)
        check_int(self.expert_size, "expert_size", 1)
        check_int(self.n_routed, "n_routed", 1)
        check_int(self.top_k, "top_k", 1)
        check_int(self.n_shared, "n_shared", 0)
        check_bool(self.gated, "gated")
        check_bool(self.normalize_topk, "normalize_topk")
        if self.top_k > self.n_routed:
            raise ValueError(f"top_k must be <= n_routed ({self.n_routed}), got {self.top_k}")

    def expert_parameters(self) -> int:
        """Parameters of one expert."""
        return Expert.count(self.hidden_size, self.expert_size, self.gated)

    def router_parameters(self) -> int:
        """The router: one bias-free score vector of length ``hidden_size`` per routed expert."""
        return self.n_routed * self.hidden_size

    def total_parameters(self) -> int:
        """Stored: router + (shared + routed) experts."""
        experts = (self.n_shared + self.n_routed) * self.expert_parameters()
        return self.router_parameters() + experts

    def active_parameters(self) -> int:
        """Used by one token: router + shared experts + its ``top_k`` routed experts."""
        experts = (self.n_shared + self.top_k) * self.expert_parameters()
        return self.router_parameters() + experts


class MoELayer(nn.Module):
    """Routed experts with top-k routing, plus optional always-on shared experts.

    ``y = Σ_shared E_s(x) + Σ_{e ∈ top_k(x)} g_e(x) · E_e(x)``, with ``g = softmax(router(x))``.
    Inputs of any leading shape ``(..., hidden_size)``; each vector is one token. After a
    forward pass, ``last_load`` holds the fraction of routed slots each expert received and
    ``aux_loss`` the load-balancing loss ``n_routed · Σ_e load_e · mean_prob_e`` (Switch
    Transformer style; 1.0 when perfectly balanced), for a training loop that wants it.
    Chapter 08.

    Args:
        config: a :class:`MoEConfig`.

    Raises:
        TypeError: ``config`` is not a :class:`MoEConfig`.

    Shape:
        - Input: ``(*, hidden_size)``; every vector is one token.
        - Output: ``(*, hidden_size)``.

    Examples:
        What one token touches, counted on the modules, is the config's active count.

        >>> import torch
        >>> from shared_lib.counting import count_parameters
        >>> from shared_lib.models import MoEConfig, MoELayer
        >>> config = MoEConfig(hidden_size=16, expert_size=32, n_routed=8, top_k=2, n_shared=1)
        >>> layer = MoELayer(config)
        >>> x = torch.randn(4, 5, 16)
        >>> layer(x).shape, count_parameters(layer) == config.total_parameters()
        (torch.Size([4, 5, 16]), True)
        >>> layer.active_parameters_for(x[0, 0]) == config.active_parameters()
        True
    """

    def __init__(self, config: MoEConfig) -> None:
        super().__init__()
        if not isinstance(config, MoEConfig):
            raise TypeError(f"config must be a MoEConfig, got {describe(config)}")
        self.config = config
        h, i, gated = config.hidden_size, config.expert_size, config.gated
        self.router = nn.Linear(h, config.n_routed, bias=False)
        self.experts = nn.ModuleList(Expert(h, i, gated) for _ in range(config.n_routed))
        self.shared = nn.ModuleList(Expert(h, i, gated) for _ in range(config.n_shared))
        self.last_load: torch.Tensor | None = None
        self.aux_loss: torch.Tensor | None = None

    def route(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Gate values ``(n, top_k)``, expert indices ``(n, top_k)`` and all probabilities.

        Args:
            tokens: ``(n, hidden_size)``.

        Returns:
            ``(gates, indices, probabilities)``; ``probabilities`` is ``(n, n_routed)``.
        """
        probabilities = self.router(tokens).softmax(dim=-1)
        gates, indices = probabilities.topk(self.config.top_k, dim=-1)
        if self.config.normalize_topk:
            gates = gates / gates.sum(dim=-1, keepdim=True)
        return gates, indices, probabilities

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Shared experts on every token plus the gated ``top_k`` routed experts; records
        ``last_load`` and ``aux_loss``."""
        if x.shape[-1] != self.config.hidden_size:
            raise ValueError(
                f"x must end in hidden_size={self.config.hidden_size}, got shape {tuple(x.shape)}"
            )
        tokens = x.reshape(-1, x.shape[-1])
        out = torch.zeros_like(tokens)
        for expert in self.shared:  # every token, no gate
            out = out + expert(tokens)
        gates, indices, probabilities = self.route(tokens)
        for e, expert in enumerate(self.experts):  # each expert sees only the tokens routed to it
            rows, slots = (indices == e).nonzero(as_tuple=True)
            if rows.numel():
                contribution = gates[rows, slots, None] * expert(tokens[rows])
                out = out.index_add(0, rows, contribution)
        load = torch.bincount(indices.flatten(), minlength=self.config.n_routed).float()
        self.last_load = (load / load.sum()).detach()
        self.aux_loss = self.config.n_routed * (self.last_load * probabilities.mean(0)).sum()
        return out.view_as(x)

    @torch.no_grad()
    def active_parameters_for(self, token: torch.Tensor) -> int:
        """Parameters one token touches, counted on the modules: the router, every shared
        expert, and the routed experts the router picks for it.

        Args:
            token: one token, shape ``(hidden_size,)``.

        Raises:
            ValueError: ``token`` has another shape.
        """
        if token.shape != (self.config.hidden_size,):
            raise ValueError(
                f"token must have shape ({self.config.hidden_size},), got {tuple(token.shape)}"
            )
        _, indices, _ = self.route(token[None])
        used = [self.router, *self.shared, *(self.experts[e] for e in indices[0].tolist())]
        return sum(p.numel() for module in used for p in module.parameters())

    def extra_repr(self) -> str:
        c = self.config
        return f"n_routed={c.n_routed}, top_k={c.top_k}, n_shared={c.n_shared}"


class MoEClassifier(nn.Module):
    """A small classifier around one MoE layer: ``embed`` → ReLU → residual :class:`MoELayer`
    → linear ``head`` (chapter 08's shared-expert experiment on the digits).

    Args:
        config: the MoE layer; its ``hidden_size`` is the width of the embedding.
        in_features: size of an input vector.
        classes: number of output logits.

    After a forward pass ``moe.aux_loss`` holds the layer's load-balancing loss.

    Raises:
        TypeError: ``config`` is not a :class:`MoEConfig`, or a size is not an int.
        ValueError: a size is below 1.

    Shape:
        - Input: ``(batch, in_features)``.
        - Output: ``(batch, classes)``, logits.

    Examples:
        >>> import torch
        >>> from shared_lib.models.moe import MoEClassifier, MoEConfig
        >>> model = MoEClassifier(MoEConfig(16, 16, n_routed=4, top_k=1, n_shared=1))
        >>> model(torch.randn(3, 64)).shape, model.moe.aux_loss.shape
        (torch.Size([3, 10]), torch.Size([]))
    """

    def __init__(self, config: MoEConfig, in_features: int = 64, classes: int = 10) -> None:
        super().__init__()
        if not isinstance(config, MoEConfig):
            raise TypeError(f"config must be a MoEConfig, got {describe(config)}")
        check_int(in_features, "in_features", 1)
        check_int(classes, "classes", 1)
        self.embed = nn.Linear(in_features, config.hidden_size)
        self.moe = MoELayer(config)
        self.head = nn.Linear(config.hidden_size, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of inputs."""
        h = torch.relu(self.embed(x))
        return self.head(h + self.moe(h))


@dataclass(frozen=True)
class MoETransformerConfig:
    """A decoder-only LM with MoE feed-forward blocks, described well enough to count it
    (chapter 08).

    Layout per layer: RMSNorm, bias-free attention ``q, k, v, o`` (``hidden × hidden`` each),
    RMSNorm, then a dense SwiGLU FFN of width ``dense_intermediate_size`` for the first
    ``first_dense_layers`` layers and an MoE layer (``moe``) after. Token embedding, final
    RMSNorm and an output head (tied to the embedding if ``tie_embeddings``).

    Attributes:
        vocab_size: number of tokens.
        hidden_size: width of the residual stream.
        num_layers: number of layers.
        num_heads: attention heads; must divide ``hidden_size`` (they do not change the count).
        dense_intermediate_size: inner width of the dense FFN layers.
        first_dense_layers: how many of the first layers have a dense FFN instead of an MoE.
        moe: the MoE layer of the other layers; its ``hidden_size`` must be ``hidden_size``.
        tie_embeddings: the output head reuses the token embedding.

    Raises:
        TypeError: a size is not an int, ``moe`` is not a :class:`MoEConfig`, or
            ``tie_embeddings`` is not a bool.
        ValueError: a size is below its minimum, ``first_dense_layers`` exceeds ``num_layers``,
            ``num_heads`` does not divide ``hidden_size``, or ``moe`` has another hidden size.

    Examples:
        DeepSeekMoE 16B from its config, and a tiny model checked against its skeleton.

        >>> from shared_lib.counting import count_parameters
        >>> from shared_lib.models import DEEPSEEK_MOE_16B, MoEConfig, MoETransformerConfig
        >>> DEEPSEEK_MOE_16B.total_parameters(), DEEPSEEK_MOE_16B.active_parameters()
        (16375728128, 2828650496)
        >>> tiny = MoETransformerConfig(100, 16, 2, 2, 32, 1, MoEConfig(16, 8, 4, 2, n_shared=1))
        >>> tiny.total_parameters() == count_parameters(tiny.build_skeleton())
        True
    """

    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    dense_intermediate_size: int
    first_dense_layers: int
    moe: MoEConfig
    tie_embeddings: bool = False

    def __post_init__(self) -> None:
        check_int(self.vocab_size, "vocab_size", 1)
        check_int(self.hidden_size, "hidden_size", 1)
        check_int(self.num_layers, "num_layers", 1)
        check_int(self.num_heads, "num_heads", 1)
        check_int(self.dense_intermediate_size, "dense_intermediate_size", 1)
        check_int(self.first_dense_layers, "first_dense_layers", 0)
        if self.first_dense_layers > self.num_layers:
            raise ValueError(
                f"first_dense_layers must be <= num_layers ({self.num_layers}), "
                f"got {self.first_dense_layers}"
            )
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be divisible by num_heads "
                f"({self.num_heads})"
            )
        if not isinstance(self.moe, MoEConfig):
            raise TypeError(f"moe must be a MoEConfig, got {describe(self.moe)}")
        check_bool(self.tie_embeddings, "tie_embeddings")
        if self.moe.hidden_size != self.hidden_size:
            raise ValueError(
                f"moe must be a MoEConfig with the same hidden_size ({self.hidden_size}), "
                f"got moe.hidden_size={self.moe.hidden_size}"
            )

    def parameter_table(self) -> dict[str, tuple[int, int]]:
        """Part name → (total, active per token). The embedding table and output head count as
        active in full, as published "activated" counts do."""
        h = self.hidden_size
        dense = Expert.count(h, self.dense_intermediate_size, gated=True)
        n_moe = self.num_layers - self.first_dense_layers
        embedding = self.vocab_size * h
        return {
            "embedding": (embedding, embedding),
            "attention": (self.num_layers * 4 * h * h,) * 2,
            "norms": ((2 * self.num_layers + 1) * h,) * 2,
            "dense FFN": (self.first_dense_layers * dense,) * 2,
            "MoE FFN": (n_moe * self.moe.total_parameters(), n_moe * self.moe.active_parameters()),
            "output head": (0, 0) if self.tie_embeddings else (embedding, embedding),
        }

    def total_parameters(self) -> int:
        """Every stored parameter."""
        return sum(total for total, _ in self.parameter_table().values())

    def active_parameters(self, include_embeddings: bool = True) -> int:
        """Parameters one token uses (shared + ``top_k`` routed experts per MoE layer).

        Args:
            include_embeddings: count the embedding table and the output head (``False``
                leaves them out).

        Raises:
            TypeError: ``include_embeddings`` is not a bool.
        """
        check_bool(include_embeddings, "include_embeddings")
        parts = self.parameter_table()
        if not include_embeddings:
            parts.pop("embedding")
            parts.pop("output head")
        return sum(active for _, active in parts.values())

    def build_skeleton(self, device: str | torch.device = "meta") -> nn.ModuleDict:
        """The model's parameter layout as modules, without a forward pass: for checking the
        closed-form counts with ``count_parameters`` (on the meta device, no memory).

        Args:
            device: where to build the parameters (``"meta"``: no memory, no values).
        """
        h = self.hidden_size
        with torch.device(device):
            layers = nn.ModuleList()
            for index in range(self.num_layers):
                attention = nn.ModuleDict(
                    {name: nn.Linear(h, h, bias=False) for name in ("q", "k", "v", "o")}
                )
                if index < self.first_dense_layers:
                    ffn: nn.Module = Expert(h, self.dense_intermediate_size, gated=True)
                else:
                    ffn = MoELayer(self.moe)
                layers.append(
                    nn.ModuleDict(
                        {
                            "attention_norm": nn.RMSNorm(h),
                            "attention": attention,
                            "ffn_norm": nn.RMSNorm(h),
                            "ffn": ffn,
                        }
                    )
                )
            skeleton = nn.ModuleDict(
                {
                    # _weight skips the random init (slow on meta; the values are not used)
                    "embedding": nn.Embedding(
                        self.vocab_size, h, _weight=torch.empty(self.vocab_size, h)
                    ),
                    "layers": layers,
                    "final_norm": nn.RMSNorm(h),
                    "head": nn.Linear(h, self.vocab_size, bias=False),
                }
            )
            if self.tie_embeddings:
                skeleton["head"].weight = skeleton["embedding"].weight
        return skeleton


#: The configuration of DeepSeekMoE 16B, from deepseek-ai/deepseek-moe-16b-base — 28 layers,
#: hidden 2048, 16 heads, first layer dense (SwiGLU, 10944), then 2 shared + 64 routed experts
#: of 1408, top-6, vocab 102400, untied embeddings.
DEEPSEEK_MOE_16B = MoETransformerConfig(
    vocab_size=102400,
    hidden_size=2048,
    num_layers=28,
    num_heads=16,
    dense_intermediate_size=10944,
    first_dense_layers=1,
    moe=MoEConfig(hidden_size=2048, expert_size=1408, n_routed=64, top_k=6, n_shared=2),
)

#: Total and activated parameters of DeepSeekMoE 16B as the paper rounds them (Dai et al. 2024).
DEEPSEEK_MOE_16B_PUBLISHED: dict[str, float] = {"total": 16.4e9, "active": 2.8e9}
