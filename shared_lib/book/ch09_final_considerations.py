"""Chapter 09, *Final considerations*: the calculator of what cross-layer sharing and a small
embedding save for an encoder.

Every number comes from a model built on the meta device (no memory, no download) and counted
with :func:`shared_lib.counting.count_parameters` / :func:`~shared_lib.counting.parameter_memory`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from shared_lib._validation import check_int
from shared_lib.counting import count_parameters, parameter_memory
from shared_lib.models import build_model
from shared_lib.models.transformer import SHARE_MODES, TransformerConfig, albert_config
from shared_lib.plotting import PALETTE, book_style

__all__ = [
    "EncoderBudget",
    "encoder_budget",
    "render_budget",
]

_MB = 1e6


@dataclass(frozen=True)
class EncoderBudget:
    """Unique parameters of an encoder by part, and the bytes they cost in training with Adam.

    ``embeddings`` covers the word, position and token-type tables, their LayerNorm and the
    E→H projection; ``layers`` the Transformer layers (each shared tensor once); ``pooler`` the
    pooler; ``layers_per_use`` what the layers would hold untied.
    """

    config: TransformerConfig
    embeddings: int
    layers: int
    layers_per_use: int
    pooler: int
    training_bytes: int

    @property
    def total(self) -> int:
        """Unique parameters of the whole encoder."""
        return self.embeddings + self.layers + self.pooler


@lru_cache(maxsize=64)
def encoder_budget(
    num_layers: int, share: str, embedding_size: int | None = None, hidden_size: int = 768
) -> EncoderBudget:
    """Count an encoder built by ALBERT's rule (:func:`shared_lib.models.transformer.albert_config`:
    vocabulary 30,000, intermediate 4·H, heads H/64) on the meta device, by part.
    ``embedding_size=None`` means E = H, as in BERT. Results are cached: the calculator asks for
    the same encoders again and again."""
    check_int(num_layers, "num_layers", 1)
    check_int(hidden_size, "hidden_size", 64)
    if share not in SHARE_MODES:
        raise ValueError(f"share must be one of {SHARE_MODES}, got {share!r}")
    if hidden_size % 64:
        raise ValueError(f"hidden_size must be a multiple of 64 (heads of 64), got {hidden_size}")
    if embedding_size is not None:
        check_int(embedding_size, "embedding_size", 1)
    config = albert_config(hidden_size, num_layers, embedding_size or hidden_size, share)
    model = build_model(config, device="meta")
    layers, pooler = count_parameters(model.layers), count_parameters(model.pooler)
    return EncoderBudget(
        config=config,
        embeddings=count_parameters(model) - layers - pooler,
        layers=layers,
        layers_per_use=count_parameters(model.layers, unique=False),
        pooler=pooler,
        training_bytes=parameter_memory(model, "adam").total,
    )


def render_budget(
    num_layers: int, share: str, embedding_size: int, hidden_size: int = 768
) -> Figure:
    """The calculator's frame: unique parameters by part for the chosen encoder beside the same
    encoder unshared with E = H (BERT's layout), and the bytes of weights, gradients and Adam."""
    chosen = encoder_budget(num_layers, share, embedding_size, hidden_size)
    baseline = encoder_budget(num_layers, "none", None, hidden_size)
    rows = [(f"share={share}, E = {embedding_size}", chosen), ("unshared, E = H", baseline)]
    parts = [("embeddings", PALETTE[1]), ("layers", PALETTE[0]), ("pooler", PALETTE[7])]
    with book_style():
        fig, ax = plt.subplots(figsize=(7.5, 3.4))
        for y, (_, budget) in enumerate(rows):
            left = 0.0
            for part, color in parts:
                width = getattr(budget, part) / _MB
                ax.barh(y, width, left=left, color=color, label=part if y == 1 else None)
                left += width
            ax.text(left + baseline.total / _MB * 0.01, y,
                    f"{budget.total / _MB:.1f}M parameters\n"
                    f"{budget.training_bytes / _MB:,.0f} MB with grads + Adam", va="center",
                    fontsize=10)  # fmt: skip
        ax.set_yticks(range(len(rows)), [label for label, _ in rows])
        ax.set_xlim(0, baseline.total / _MB * 1.75)
        ax.set_xlabel("unique parameters (millions)")
        ax.set_title(f"{num_layers} layers, H = {hidden_size}: "
                     f"{baseline.total / chosen.total:.1f}× fewer parameters")  # fmt: skip
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.3), fontsize=10, ncol=3)
        fig.tight_layout()
    return fig
