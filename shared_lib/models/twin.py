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

from shared_lib._validation import check_choice, check_int, check_module

__all__ = ["SCORES", "TwinNet"]

#: How :class:`TwinNet` compares two encodings.
SCORES = ("cosine", "l1")


class TwinNet(nn.Module):
    """Logit that inputs ``a`` and ``b`` match, from ``encoder_a(a)`` and ``encoder_b(b)``
    (chapter 04).

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

    Raises:
        TypeError: an encoder is not an ``nn.Module``, ``score`` is not a string, or
            ``embedding_size`` is not an int for ``score="l1"``.
        ValueError: ``score`` is unknown, or ``embedding_size`` is below 1.

    Shape:
        - Input: ``a`` and ``b``, batches ``(batch, *)`` that the encoders take; the encoders
          give ``(batch, embedding_size)``.
        - Output: ``(batch,)``, one logit per pair.

    Examples:
        The Siamese network holds one encoder under two names; the twin holds two.

        >>> import torch
        >>> from torch import nn
        >>> from shared_lib.counting import count_parameters
        >>> from shared_lib.models.twin import TwinNet
        >>> from shared_lib.tying import shared_groups
        >>> siamese = TwinNet(nn.Linear(6, 4))
        >>> twin = TwinNet(nn.Linear(6, 4), nn.Linear(6, 4))
        >>> count_parameters(siamese), count_parameters(twin)  # scale and bias: 2
        (30, 58)
        >>> shared_groups(siamese)
        [['encoder_a.weight', 'encoder_b.weight'], ['encoder_a.bias', 'encoder_b.bias']]
        >>> a, b = torch.randn(3, 6), torch.randn(3, 6)
        >>> torch.equal(siamese(a, b), siamese(b, a)), torch.equal(twin(a, b), twin(b, a))
        (True, False)
    """

    def __init__(
        self,
        encoder_a: nn.Module,
        encoder_b: nn.Module | None = None,
        score: str = "cosine",
        embedding_size: int | None = None,
    ) -> None:
        super().__init__()
        check_module(encoder_a, "encoder_a")
        if encoder_b is not None:
            check_module(encoder_b, "encoder_b")
        check_choice(score, "score", SCORES)
        self.encoder_a = encoder_a
        self.encoder_b = encoder_a if encoder_b is None else encoder_b
        self.score_kind = score
        if score == "cosine":
            self.scale = nn.Parameter(torch.tensor(5.0))
            self.bias = nn.Parameter(torch.tensor(0.0))
        else:
            check_int(embedding_size, "embedding_size (needed for score='l1')", minimum=1)
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
