"""A hypernetwork layer: one small shared network generates the weights of many layers
(chapter 08).

After Ha, Dai and Le (2017), "HyperNetworks" (static hypernetworks): instead of storing each
layer's weight matrix, store a short embedding per row of it and one shared generator that
turns an embedding into a row. What is shared is the *generator*; each layer keeps only its
embeddings (``embedding_dim`` numbers per row instead of ``in_features``). :class:`HyperMLP` is
chapter 08's digits classifier whose hidden layers are generated this way (or, for comparison,
ordinary unshared layers).
"""

from __future__ import annotations

import torch
from torch import nn

from shared_lib._validation import check_int

__all__ = ["HyperLinear", "HyperMLP"]


class HyperLinear(nn.Module):
    """``n_layers`` linear maps ``in_features → out_features`` with generated weights
    (chapter 08).

    Row ``j`` of layer ``i``'s weight is ``generator(z[i, j])``, where ``generator`` is one
    ``nn.Linear(embedding_dim, in_features)`` shared by every row of every layer and ``z[i, j]``
    a learned embedding of length ``embedding_dim``; each layer has its own bias. So layer
    ``i`` computes ``x @ W_i.T + b_i`` with ``W_i = z[i] @ G.T + 1 g.T`` (``G``, ``g``: the
    generator's weight and bias): every generated matrix has rank at most ``embedding_dim + 1``.

    Stored parameters (:meth:`expected_parameters`): ``(embedding_dim + 1) · in_features +
    n_layers · out_features · (embedding_dim + 1)``; generated (:meth:`generated_parameters`):
    ``n_layers · (out_features · in_features + out_features)``.

    Args:
        in_features: size of each input sample.
        out_features: size of each output sample (rows of each generated weight).
        n_layers: number of generated layers.
        embedding_dim: length of each row's embedding, the generator's input.

    Raises:
        TypeError: an argument is not an int.
        ValueError: an argument is below 1.

    Shape:
        - Input: ``x`` of shape ``(*, in_features)`` and an int ``layer`` in
          ``0 … n_layers-1``.
        - Output: ``(*, out_features)``.

    Examples:
        Four 16 → 16 layers (1,088 numbers) generated from 240 stored ones.

        >>> import torch
        >>> from shared_lib.counting import count_parameters
        >>> from shared_lib.layers.hyper import HyperLinear
        >>> layers = HyperLinear(16, 16, n_layers=4, embedding_dim=2)
        >>> count_parameters(layers), layers.generated_parameters()
        (240, 1088)
        >>> layers(torch.randn(3, 16), layer=2).shape, layers.weight(2).shape
        (torch.Size([3, 16]), torch.Size([16, 16]))
    """

    def __init__(
        self, in_features: int, out_features: int, n_layers: int, embedding_dim: int
    ) -> None:
        super().__init__()
        self.in_features = check_int(in_features, "in_features", 1)
        self.out_features = check_int(out_features, "out_features", 1)
        self.n_layers = check_int(n_layers, "n_layers", 1)
        self.embedding_dim = check_int(embedding_dim, "embedding_dim", 1)
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
        """The generated ``(out_features, in_features)`` weight of ``layer``.

        Args:
            layer: index of the layer, ``0 … n_layers-1``.

        Raises:
            TypeError: ``layer`` is not an int.
            ValueError: ``layer`` is negative or not below ``n_layers``.
        """
        check_int(layer, "layer", 0)
        if layer >= self.n_layers:
            raise ValueError(f"layer must be < n_layers ({self.n_layers}), got {layer}")
        return self.generator(self.embeddings[layer])

    def forward(self, x: torch.Tensor, layer: int) -> torch.Tensor:
        """Layer ``layer`` applied to ``x``: ``x @ weight(layer).T + bias[layer]``."""
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


class HyperMLP(nn.Module):
    """An MLP ``in → hidden → n_hidden × (hidden → hidden) → out``, ReLU after every hidden
    layer, whose square hidden layers are generated by one :class:`HyperLinear` (chapter 08).

    Args:
        embedding_dim: the hypernetwork's embedding length; ``None`` gives ``n_hidden``
            ordinary, unshared ``nn.Linear(hidden, hidden)`` layers instead (the baseline).
        in_features: input size.
        hidden: width of every hidden layer.
        n_hidden: number of square hidden layers.
        out_features: number of outputs.

    ``hidden_layers`` is the :class:`HyperLinear` or the ``nn.ModuleList`` of linear layers.

    Raises:
        TypeError: a size is not an int.
        ValueError: a size is below 1.

    Shape:
        - Input: ``(batch, in_features)``.
        - Output: ``(batch, out_features)``, logits.

    Examples:
        The same MLP with generated hidden layers stores half the parameters.

        >>> import torch
        >>> from shared_lib.counting import count_parameters
        >>> from shared_lib.layers.hyper import HyperMLP
        >>> count_parameters(HyperMLP(embedding_dim=2)), count_parameters(HyperMLP(None))
        (2794, 5578)
        >>> HyperMLP(embedding_dim=2)(torch.randn(5, 64)).shape
        torch.Size([5, 10])
    """

    def __init__(
        self,
        embedding_dim: int | None,
        in_features: int = 64,
        hidden: int = 32,
        n_hidden: int = 3,
        out_features: int = 10,
    ) -> None:
        super().__init__()
        check_int(in_features, "in_features", 1)
        check_int(hidden, "hidden", 1)
        self.n_hidden = check_int(n_hidden, "n_hidden", 1)
        check_int(out_features, "out_features", 1)
        if embedding_dim is not None:
            check_int(embedding_dim, "embedding_dim", 1)
        self.embed = nn.Linear(in_features, hidden)
        self.out = nn.Linear(hidden, out_features)
        self.hyper = embedding_dim is not None
        self.hidden_layers: nn.Module = (
            HyperLinear(hidden, hidden, n_hidden, embedding_dim)
            if embedding_dim is not None
            else nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(n_hidden))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of inputs."""
        h = torch.relu(self.embed(x))
        for i in range(self.n_hidden):
            layer = self.hidden_layers
            h = torch.relu(layer(h, i) if self.hyper else layer[i](h))
        return self.out(h)
