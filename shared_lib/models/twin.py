"""Pair models: one encoder for both inputs (Siamese) or two (the untied twin) (chapter 04).

:class:`TwinNet` scores whether two inputs belong together by comparing their encodings. Give
it **one** encoder and it is a Siamese network (Bromley et al., 1993; Koch et al., 2015): the
same module, the same weights, applied to both inputs. Give it **two** encoders of the same
architecture and it is the untied control: as many uses, twice the parameters, and no guarantee
that ``f(a, b) == f(b, a)``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["SCORES", "TwinNet"]

#: How :class:`TwinNet` compares two encodings.
SCORES = ("cosine", "l1")


class TwinNet(nn.Module):
    """Logit that inputs ``a`` and ``b`` match, from ``encoder_a(a)`` and ``encoder_b(b)``.

    Args:
        encoder_a: encoder of the first input.
        encoder_b: encoder of the second input; ``None`` (default) reuses ``encoder_a`` — the
            Siamese network, whose encoder is registered under both names and stored once.
        score: ``"cosine"``: ``scale · cos(f_a, f_b) + bias`` with a learned scale and bias;
            ``"l1"``: a learned linear map of ``|f_a − f_b|`` (needs ``embedding_size``; with
            one encoder this is :class:`shared_lib.models.small.SiameseNet`).
        embedding_size: width of the encodings, for ``score="l1"``.

    Both scores are symmetric functions of the two encodings, so a shared encoder makes
    ``forward(a, b)`` equal ``forward(b, a)`` exactly; two encoders do not.
    """

    def __init__(
        self,
        encoder_a: nn.Module,
        encoder_b: nn.Module | None = None,
        score: str = "cosine",
        embedding_size: int | None = None,
    ) -> None:
        super().__init__()
        for name, encoder in (("encoder_a", encoder_a), ("encoder_b", encoder_b)):
            if encoder is not None and not isinstance(encoder, nn.Module):
                raise TypeError(f"{name} must be an nn.Module, got {type(encoder).__name__}")
        if encoder_a is None:
            raise TypeError("encoder_a must be an nn.Module, got None")
        if score not in SCORES:
            raise ValueError(f"score must be one of {SCORES}, got {score!r}")
        self.encoder_a = encoder_a
        self.encoder_b = encoder_a if encoder_b is None else encoder_b
        self.score_kind = score
        if score == "cosine":
            self.scale = nn.Parameter(torch.tensor(5.0))
            self.bias = nn.Parameter(torch.tensor(0.0))
        else:
            if isinstance(embedding_size, bool) or not isinstance(embedding_size, int):
                raise ValueError(
                    f"embedding_size must be a positive int for score='l1', got {embedding_size!r}"
                )
            if embedding_size < 1:
                raise ValueError(f"embedding_size must be >= 1, got {embedding_size}")
            self.score = nn.Linear(embedding_size, 1)

    @property
    def shared(self) -> bool:
        """True when both inputs go through the same encoder (a Siamese network)."""
        return self.encoder_a is self.encoder_b

    def embed(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The two encodings ``(encoder_a(a), encoder_b(b))``."""
        return self.encoder_a(a), self.encoder_b(b)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Logits (batch,) that each pair ``(a[i], b[i])`` matches."""
        if a.shape[0] != b.shape[0]:
            raise ValueError(
                f"a and b must hold the same number of inputs, got {a.shape[0]} and {b.shape[0]}"
            )
        fa, fb = self.embed(a, b)
        if self.score_kind == "cosine":
            return self.scale * F.cosine_similarity(fa, fb, dim=-1) + self.bias
        return self.score((fa - fb).abs()).squeeze(-1)

    def extra_repr(self) -> str:
        return f"shared={self.shared}, score={self.score_kind!r}"
