"""Layers that store fewer numbers than a dense layer: a k-means codebook, a low-rank product,
and the soft weight-sharing prior (chapter 07).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from shared_lib._validation import check_bool, check_float, check_int, describe

__all__ = [
    "CodebookLinear",
    "LowRankLinear",
    "SoftWeightSharing",
    "kmeans_1d",
]


def kmeans_1d(
    values: torch.Tensor, k: int, iterations: int = 30
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cluster the entries of ``values`` into at most ``k`` centroids (chapter 07).

    Lloyd's algorithm from centroids spread linearly between the smallest and largest value
    (the initialisation Deep Compression found best: it keeps the rare large weights).

    Args:
        values: the tensor whose entries are clustered (any shape; read as float32).
        k: number of centroids; a centroid left without entries keeps its place.
        iterations: most Lloyd steps; stops early when the centroids no longer move.

    Returns:
        ``(codebook, assignment)``: ``k`` centroids and, for every entry, the index of its
        centroid (same shape as ``values``). ``codebook[assignment]`` is the shared tensor.

    Raises:
        TypeError: ``values`` is not a tensor, or ``k`` or ``iterations`` is not an int.
        ValueError: ``k`` or ``iterations`` is below 1, or ``values`` is empty.

    Examples:
        >>> import torch
        >>> from shared_lib.layers.compressed import kmeans_1d
        >>> codebook, assignment = kmeans_1d(torch.tensor([0.1, 0.12, 0.5, 0.52, 0.9, 0.95]), 3)
        >>> codebook, assignment  # six weights, three shared values
        (tensor([0.1100, 0.5100, 0.9250]), tensor([0, 0, 1, 1, 2, 2]))
    """
    if not isinstance(values, torch.Tensor):
        raise TypeError(f"values must be a tensor, got {describe(values)}")
    check_int(k, "k", minimum=1)
    check_int(iterations, "iterations", minimum=1)
    flat = values.detach().reshape(-1).float()
    if flat.numel() == 0:
        raise ValueError("values must not be empty")
    codebook = torch.linspace(flat.min().item(), flat.max().item(), k)
    for _ in range(iterations):
        assignment = (flat[:, None] - codebook[None, :]).abs().argmin(dim=1)
        sums = torch.zeros(k).index_add_(0, assignment, flat)
        counts = torch.bincount(assignment, minlength=k).float()
        updated = torch.where(counts > 0, sums / counts.clamp(min=1), codebook)
        if torch.equal(updated, codebook):
            break
        codebook = updated
    assignment = (flat[:, None] - codebook[None, :]).abs().argmin(dim=1)
    return codebook, assignment.reshape(values.shape)


class CodebookLinear(nn.Module):
    """A linear layer whose weights take at most ``k`` values: ``weight = codebook[assignment]``.

    Only the codebook (and the bias) are parameters, so fine-tuning updates each shared value
    with the sum of the gradients of the weights that use it, as Deep Compression fine-tunes
    its centroids (chapter 07). Build one from a trained layer with :meth:`from_linear`.

    Args:
        codebook: the shared values, a 1-D tensor (copied, as float32, into a parameter).
        assignment: ``(out_features, in_features)`` indices into ``codebook`` (copied).
        bias: the bias (copied into a parameter), or ``None``.

    Raises:
        ValueError: ``assignment`` is not 2-D or holds an index outside the codebook.

    Shape:
        - Input: ``(*, in_features)``.
        - Output: ``(*, out_features)``.

    Examples:
        A 16 → 8 layer's 128 weights shared among 4 values: 4 + 8 parameters instead of 136.

        >>> import torch
        >>> from torch import nn
        >>> from shared_lib.counting import count_parameters
        >>> from shared_lib.layers.compressed import CodebookLinear
        >>> _ = torch.manual_seed(0)
        >>> linear = nn.Linear(16, 8)
        >>> shared = CodebookLinear.from_linear(linear, k=4)
        >>> count_parameters(linear), count_parameters(shared), shared.weight.unique().numel()
        (136, 12, 4)
        >>> shared(torch.randn(2, 16)).shape
        torch.Size([2, 8])
    """

    def __init__(
        self, codebook: torch.Tensor, assignment: torch.Tensor, bias: torch.Tensor | None
    ) -> None:
        super().__init__()
        if assignment.dim() != 2:
            raise ValueError(f"assignment must be 2-D (out, in), got {tuple(assignment.shape)}")
        if int(assignment.max()) >= codebook.numel() or int(assignment.min()) < 0:
            raise ValueError("assignment holds indices outside the codebook")
        self.out_features, self.in_features = assignment.shape
        self.codebook = nn.Parameter(codebook.detach().clone().float())
        self.register_buffer("assignment", assignment.detach().clone().long())
        self.bias = nn.Parameter(bias.detach().clone()) if bias is not None else None

    @classmethod
    def from_linear(cls, linear: nn.Linear, k: int, iterations: int = 30) -> CodebookLinear:
        """Share ``linear``'s weights among ``k`` values found by :func:`kmeans_1d`.

        Args:
            linear: the trained layer (left unchanged).
            k: number of shared values.
            iterations: most k-means steps.

        Returns:
            A new layer, its codebook the centroids and its bias a copy of ``linear``'s.
        """
        codebook, assignment = kmeans_1d(linear.weight, k, iterations)
        return cls(codebook, assignment, linear.bias)

    @property
    def weight(self) -> torch.Tensor:
        """The ``out × in`` matrix the layer applies."""
        return self.codebook[self.assignment]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x @ codebook[assignment].T + bias``."""
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"k={self.codebook.numel()}, bias={self.bias is not None}"
        )


class LowRankLinear(nn.Module):
    """``x ↦ U (V x) + b`` with ``V: rank × in`` and ``U: out × rank`` (chapter 07).

    Stores ``rank · (in + out)`` weights instead of ``in · out``.

    Args:
        in_features: size of each input sample.
        out_features: size of each output sample.
        rank: inner dimension, at most ``min(in_features, out_features)``.
        bias: add a learned bias (on ``U``).

    Raises:
        TypeError: a size is not an int, or ``bias`` is not a bool.
        ValueError: a size is below 1, or ``rank`` exceeds ``min(in_features, out_features)``.

    Shape:
        - Input: ``(*, in_features)``.
        - Output: ``(*, out_features)``.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from shared_lib.counting import count_parameters
        >>> from shared_lib.layers.compressed import LowRankLinear
        >>> linear = nn.Linear(16, 8)
        >>> count_parameters(linear), count_parameters(LowRankLinear.from_linear(linear, rank=2))
        (136, 56)
        >>> full = LowRankLinear.from_linear(linear, rank=8)  # full rank: the same function
        >>> x = torch.randn(3, 16)
        >>> torch.allclose(full(x), linear(x), atol=1e-5)
        True
    """

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool = True) -> None:
        super().__init__()
        check_int(in_features, "in_features", minimum=1)
        check_int(out_features, "out_features", minimum=1)
        check_int(rank, "rank", minimum=1)
        check_bool(bias, "bias")
        if rank > min(in_features, out_features):
            raise ValueError(
                f"rank must be <= min(in_features, out_features) = "
                f"{min(in_features, out_features)}, got {rank}"
            )
        self.down = nn.Linear(in_features, rank, bias=False)
        self.up = nn.Linear(rank, out_features, bias=bias)

    @classmethod
    def from_linear(cls, linear: nn.Linear, rank: int) -> LowRankLinear:
        """The best rank-``rank`` approximation of ``linear``'s weight (truncated SVD).

        Args:
            linear: the layer to factorise (left unchanged).
            rank: inner dimension of the factorisation.

        Returns:
            A new layer with ``U = U_r √S_r``, ``V = √S_r V_r^T`` and ``linear``'s bias.
        """
        layer = cls(linear.in_features, linear.out_features, rank, linear.bias is not None)
        u, s, vh = torch.linalg.svd(linear.weight.detach(), full_matrices=False)
        root = s[:rank].sqrt()
        with torch.no_grad():
            layer.up.weight.copy_(u[:, :rank] * root)
            layer.down.weight.copy_(root[:, None] * vh[:rank])
            if linear.bias is not None:
                layer.up.bias.copy_(linear.bias)
        return layer

    @property
    def rank(self) -> int:
        """Inner dimension of the factorisation."""
        return self.down.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``up(down(x))``."""
        return self.up(self.down(x))


# ---------------------------------------------------------------------------------------------
# Soft weight sharing (Nowlan & Hinton, 1992)
# ---------------------------------------------------------------------------------------------


class SoftWeightSharing(nn.Module):
    """A mixture-of-Gaussians prior on weights, learned with them (Nowlan & Hinton; chapter 07).

    ``penalty(weights)`` is the negative log-likelihood of the weights under a mixture of
    ``n_components`` Gaussians whose means, standard deviations and mixing proportions are
    parameters. Added to the loss, it pulls weights toward a few shared values — a regulariser
    that ends as (soft) sharing. With ``fix_zero=True`` the first component stays at mean 0
    (the paper's choice: a group of weights that can be pruned).

    Args:
        n_components: number of Gaussians (groups of weights).
        spread: initial means are spread evenly in ``[-spread, spread]``.
        init_std: initial standard deviation of every component.
        fix_zero: keep the first component's mean at 0.
        min_std: floor on the standard deviations, so that no component collapses to a spike
            of infinite density.

    Raises:
        TypeError: ``n_components`` is not an int, a scale is not a real number, or
            ``fix_zero`` is not a bool.
        ValueError: ``n_components`` is below 1, a scale is not positive, or ``init_std`` is
            not above ``min_std``.

    Shape:
        - Input: ``weights`` of any shape ``(*)``.
        - Output: ``()``, a scalar penalty.

    Examples:
        The penalty is lower once every weight sits on a shared value (:meth:`snap`).

        >>> import torch
        >>> from shared_lib.layers.compressed import SoftWeightSharing
        >>> prior = SoftWeightSharing(n_components=3)
        >>> weights = torch.tensor([0.02, 0.45, -0.6])
        >>> prior.snap(weights)
        tensor([ 0.0000,  0.5000, -0.5000])
        >>> bool(prior(prior.snap(weights)) < prior(weights)), prior(weights).shape
        (True, torch.Size([]))
    """

    def __init__(
        self,
        n_components: int,
        spread: float = 0.5,
        init_std: float = 0.1,
        fix_zero: bool = True,
        min_std: float = 0.01,
    ) -> None:
        super().__init__()
        check_int(n_components, "n_components", minimum=1)
        for argument, value in (("spread", spread), ("init_std", init_std), ("min_std", min_std)):
            check_float(value, argument, low=0.0, low_inclusive=False)
        if init_std <= min_std:
            raise ValueError(f"init_std must be > min_std={min_std}, got {init_std}")
        self.fix_zero = check_bool(fix_zero, "fix_zero")
        self.min_std = float(min_std)
        means = torch.linspace(-spread, spread, n_components)
        if fix_zero:
            means = torch.cat([torch.zeros(1), means[means.abs().argsort()][1:]])
        self.free_means = nn.Parameter(means[1:] if fix_zero else means)
        # softplus(raw) + min_std = init_std
        raw = math.log(math.expm1(init_std - min_std))
        self.raw_std = nn.Parameter(torch.full((n_components,), raw))
        self.mixing_logits = nn.Parameter(torch.zeros(n_components))

    @property
    def means(self) -> torch.Tensor:
        """Means of the components (the first is 0 when ``fix_zero``)."""
        if self.fix_zero:
            return torch.cat([self.free_means.new_zeros(1), self.free_means])
        return self.free_means

    @property
    def stds(self) -> torch.Tensor:
        """Standard deviations, each at least ``min_std``."""
        return F.softplus(self.raw_std) + self.min_std

    def _log_joint(self, weights: torch.Tensor) -> torch.Tensor:
        w = weights.reshape(-1, 1)
        log_pi = F.log_softmax(self.mixing_logits, dim=0)
        normal = torch.distributions.Normal(self.means, self.stds)
        return log_pi + normal.log_prob(w)  # (n_weights, n_components)

    def forward(self, weights: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood of ``weights`` under the mixture (summed over weights)."""
        return -torch.logsumexp(self._log_joint(weights), dim=1).sum()

    @torch.no_grad()
    def assign(self, weights: torch.Tensor) -> torch.Tensor:
        """Index of the most responsible component for every weight (same shape)."""
        return self._log_joint(weights).argmax(dim=1).reshape(weights.shape)

    @torch.no_grad()
    def snap(self, weights: torch.Tensor) -> torch.Tensor:
        """Every weight replaced by the mean of its most responsible component (hard sharing)."""
        return self.means[self.assign(weights)]
