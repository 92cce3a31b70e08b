"""A hypernetwork layer: one small shared network generates the weights of many layers
(chapter 08).

After Ha, Dai and Le (2017), "HyperNetworks" (static hypernetworks): instead of storing each
layer's weight matrix, store a short embedding per row of it and one shared generator that
turns an embedding into a row. What is shared is the *generator*; each layer keeps only its
embeddings (``embedding_dim`` numbers per row instead of ``in_features``).
"""

from __future__ import annotations

import torch
from torch import nn

from shared_lib._validation import check_int as _check_int

__all__ = ["HyperLinear"]


class HyperLinear(nn.Module):
    """``n_layers`` linear maps ``in_features → out_features`` with generated weights.

    Row ``j`` of layer ``i``'s weight is ``generator(z[i, j])``, where ``generator`` is one
    ``nn.Linear(embedding_dim, in_features)`` shared by every row of every layer and ``z[i, j]``
    a learned embedding of length ``embedding_dim``; each layer has its own bias. So layer
    ``i`` computes ``x @ W_i.T + b_i`` with ``W_i = z[i] @ G.T + 1 g.T`` (``G``, ``g``: the
    generator's weight and bias): every generated matrix has rank at most ``embedding_dim + 1``.

    Stored parameters (:meth:`expected_parameters`): ``(embedding_dim + 1) · in_features +
    n_layers · out_features · (embedding_dim + 1)``; generated (:meth:`generated_parameters`):
    ``n_layers · (out_features · in_features + out_features)``.
    """

    def __init__(
        self, in_features: int, out_features: int, n_layers: int, embedding_dim: int
    ) -> None:
        super().__init__()
        self.in_features = _check_int(in_features, "in_features", 1)
        self.out_features = _check_int(out_features, "out_features", 1)
        self.n_layers = _check_int(n_layers, "n_layers", 1)
        self.embedding_dim = _check_int(embedding_dim, "embedding_dim", 1)
        self.embeddings = nn.Parameter(torch.empty(n_layers, out_features, embedding_dim))
        self.generator = nn.Linear(embedding_dim, in_features)
        self.bias = nn.Parameter(torch.empty(n_layers, out_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Embeddings ~ N(0, 1) and generator weights ~ N(0, 1 / (embedding_dim · in)), so the
        generated entries have variance about ``1 / in_features`` (like a default layer)."""
        nn.init.normal_(self.embeddings)
        nn.init.normal_(self.generator.weight, std=(self.embedding_dim * self.in_features) ** -0.5)
        nn.init.zeros_(self.generator.bias)
        nn.init.zeros_(self.bias)

    def weight(self, layer: int) -> torch.Tensor:
        """The generated ``(out_features, in_features)`` weight of ``layer``."""
        _check_int(layer, "layer", 0)
        if layer >= self.n_layers:
            raise ValueError(f"layer must be < n_layers ({self.n_layers}), got {layer}")
        return self.generator(self.embeddings[layer])

    def forward(self, x: torch.Tensor, layer: int) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(
                f"x must end in in_features={self.in_features}, got shape {tuple(x.shape)}"
            )
        return nn.functional.linear(x, self.weight(layer), self.bias[layer])

    def expected_parameters(self) -> int:
        """Stored: generator ``(e + 1) · in`` + per layer ``out · e`` embeddings, ``out`` biases."""
        e = self.embedding_dim
        return (e + 1) * self.in_features + self.n_layers * self.out_features * (e + 1)

    def generated_parameters(self) -> int:
        """What the ``n_layers`` generated layers hold: ``n_layers · (out · in + out)``."""
        return self.n_layers * (self.out_features * self.in_features + self.out_features)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"n_layers={self.n_layers}, embedding_dim={self.embedding_dim}"
        )
