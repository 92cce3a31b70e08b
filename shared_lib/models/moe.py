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

from shared_lib._validation import check_int as _check_int

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
    """One feed-forward expert. ``gated=True``: SwiGLU, ``down(silu(gate(x)) * up(x))`` with
    three bias-free matrices, as in DeepSeekMoE; ``gated=False``: ``down(relu(up(x)))`` with
    biases (two matrices), the classic MLP."""

    def __init__(self, hidden_size: int, intermediate_size: int, gated: bool = True) -> None:
        super().__init__()
        _check_int(hidden_size, "hidden_size", 1)
        _check_int(intermediate_size, "intermediate_size", 1)
        if not isinstance(gated, bool):
            raise TypeError(f"gated must be a bool, got {type(gated).__name__}")
        self.gated = gated
        self.up = nn.Linear(hidden_size, intermediate_size, bias=not gated)
        self.down = nn.Linear(intermediate_size, hidden_size, bias=not gated)
        self.gate = nn.Linear(hidden_size, intermediate_size, bias=False) if gated else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gate is None:
            return self.down(torch.relu(self.up(x)))
        return self.down(nn.functional.silu(self.gate(x)) * self.up(x))

    @staticmethod
    def count(hidden_size: int, intermediate_size: int, gated: bool = True) -> int:
        """Parameters of one expert: ``3·h·i`` gated, ``2·h·i + i + h`` plain."""
        if gated:
            return 3 * hidden_size * intermediate_size
        return 2 * hidden_size * intermediate_size + intermediate_size + hidden_size


@dataclass(frozen=True)
class MoEConfig:
    """One MoE layer: ``n_routed`` experts of which each token uses ``top_k``, plus ``n_shared``
    experts that every token uses. Experts are :class:`Expert` of width ``expert_size``.

    ``normalize_topk``: rescale the ``top_k`` gate values to sum to one (DeepSeekMoE 16B does
    not: its gates are the softmax probabilities of the chosen experts).
    """

    hidden_size: int
    expert_size: int
    n_routed: int
    top_k: int
    n_shared: int = 0
    gated: bool = True
    normalize_topk: bool = False

    def __post_init__(self) -> None:
        _check_int(self.hidden_size, "hidden_size", 1)
        _check_int(self.expert_size, "expert_size", 1)
        _check_int(self.n_routed, "n_routed", 1)
        _check_int(self.top_k, "top_k", 1)
        _check_int(self.n_shared, "n_shared", 0)
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
    """

    def __init__(self, config: MoEConfig) -> None:
        super().__init__()
        if not isinstance(config, MoEConfig):
            raise TypeError(f"config must be a MoEConfig, got {type(config).__name__}")
        self.config = config
        h, i, gated = config.hidden_size, config.expert_size, config.gated
        self.router = nn.Linear(h, config.n_routed, bias=False)
        self.experts = nn.ModuleList(Expert(h, i, gated) for _ in range(config.n_routed))
        self.shared = nn.ModuleList(Expert(h, i, gated) for _ in range(config.n_shared))
        self.last_load: torch.Tensor | None = None
        self.aux_loss: torch.Tensor | None = None

    def route(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Gate values ``(n, top_k)``, expert indices ``(n, top_k)`` and all probabilities."""
        probabilities = self.router(tokens).softmax(dim=-1)
        gates, indices = probabilities.topk(self.config.top_k, dim=-1)
        if self.config.normalize_topk:
            gates = gates / gates.sum(dim=-1, keepdim=True)
        return gates, indices, probabilities

    def forward(self, x: torch.Tensor) -> torch.Tensor:
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
        expert, and the routed experts the router picks for it."""
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
    """

    def __init__(self, config: MoEConfig, in_features: int = 64, classes: int = 10) -> None:
        super().__init__()
        if not isinstance(config, MoEConfig):
            raise TypeError(f"config must be a MoEConfig, got {type(config).__name__}")
        _check_int(in_features, "in_features", 1)
        _check_int(classes, "classes", 1)
        self.embed = nn.Linear(in_features, config.hidden_size)
        self.moe = MoELayer(config)
        self.head = nn.Linear(config.hidden_size, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.embed(x))
        return self.head(h + self.moe(h))


@dataclass(frozen=True)
class MoETransformerConfig:
    """A decoder-only LM with MoE feed-forward blocks, described well enough to count it.

    Layout per layer: RMSNorm, bias-free attention ``q, k, v, o`` (``hidden × hidden`` each),
    RMSNorm, then a dense SwiGLU FFN of width ``dense_intermediate_size`` for the first
    ``first_dense_layers`` layers and an MoE layer (``moe``) after. Token embedding, final
    RMSNorm and an output head (tied to the embedding if ``tie_embeddings``).
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
        _check_int(self.vocab_size, "vocab_size", 1)
        _check_int(self.hidden_size, "hidden_size", 1)
        _check_int(self.num_layers, "num_layers", 1)
        _check_int(self.num_heads, "num_heads", 1)
        _check_int(self.dense_intermediate_size, "dense_intermediate_size", 1)
        _check_int(self.first_dense_layers, "first_dense_layers", 0)
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
        if not isinstance(self.moe, MoEConfig) or self.moe.hidden_size != self.hidden_size:
            raise ValueError("moe must be a MoEConfig with the same hidden_size")

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
        """Parameters one token uses (shared + ``top_k`` routed experts per MoE layer);
        ``include_embeddings=False`` leaves out the embedding table and the output head."""
        parts = self.parameter_table()
        if not include_embeddings:
            parts.pop("embedding")
            parts.pop("output head")
        return sum(active for _, active in parts.values())

    def build_skeleton(self, device: str | torch.device = "meta") -> nn.ModuleDict:
        """The model's parameter layout as modules, without a forward pass: for checking the
        closed-form counts with ``count_parameters`` (on the meta device, no memory)."""
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
