"""Parameter sharing against the other ways to make a network small (chapter 07).

Post-training compression (Deep Compression's pruning and k-means weight sharing, low-rank
factorisation), soft weight sharing (Nowlan & Hinton's mixture-of-Gaussians penalty), honest
and honest byte counts for each representation. :mod:`shared_lib.comparison` trains every
technique with one recipe.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import prune

from shared_lib._validation import check_int

__all__ = [
    "CodebookLinear",
    "LowRankLinear",
    "SoftWeightSharing",
    "finish_pruning",
    "index_bits",
    "kmeans_1d",
    "kmeans_share",
    "linear_weights",
    "low_rank",
    "magnitude_prune",
    "pca_projection",
    "snap_to_prior",
    "storage_bytes",
    "stored_numbers",
]

FLOAT_BYTES = 4  # float32


def _check_fraction(value: float, argument: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{argument} must be a number, got {type(value).__name__}")
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{argument} must be in [0, 1), got {value}")
    return float(value)


def _replace_linears(model: nn.Module, make: Callable[[nn.Linear], nn.Module]) -> nn.Module:
    """Replace every ``nn.Linear`` inside ``model`` (in place) by ``make(linear)``."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    targets = [(name, m) for name, m in model.named_modules() if type(m) is nn.Linear]
    if not targets:
        raise ValueError("model holds no nn.Linear layer to compress")
    for name, linear in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, make(linear))
    return model


# ---------------------------------------------------------------------------------------------
# k-means weight sharing (Deep Compression)
# ---------------------------------------------------------------------------------------------


def index_bits(k: int) -> int:
    """Bits of one index into a codebook of ``k`` values: ``ceil(log2 k)``, at least 1."""
    check_int(k, "k", minimum=1)
    return max(1, math.ceil(math.log2(k)))


def kmeans_1d(
    values: torch.Tensor, k: int, iterations: int = 30
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cluster the entries of ``values`` into at most ``k`` centroids (chapter 07).

    Lloyd's algorithm from centroids spread linearly between the smallest and largest value
    (the initialisation Deep Compression found best: it keeps the rare large weights).

    Returns:
        ``(codebook, assignment)``: ``k`` centroids and, for every entry, the index of its
        centroid (same shape as ``values``). ``codebook[assignment]`` is the shared tensor.
    """
    if not isinstance(values, torch.Tensor):
        raise TypeError(f"values must be a tensor, got {type(values).__name__}")
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
        """Share ``linear``'s weights among ``k`` values found by :func:`kmeans_1d`."""
        codebook, assignment = kmeans_1d(linear.weight, k, iterations)
        return cls(codebook, assignment, linear.bias)

    @property
    def weight(self) -> torch.Tensor:
        """The ``out × in`` matrix the layer applies."""
        return self.codebook[self.assignment]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"k={self.codebook.numel()}, bias={self.bias is not None}"
        )


def kmeans_share(model: nn.Module, k: int, iterations: int = 30) -> nn.Module:
    """Replace every ``nn.Linear`` of ``model`` (in place) by a :class:`CodebookLinear` with at
    most ``k`` distinct weight values per layer; returns ``model`` (chapter 07)."""
    check_int(k, "k", minimum=1)
    return _replace_linears(model, lambda linear: CodebookLinear.from_linear(linear, k, iterations))


# ---------------------------------------------------------------------------------------------
# Magnitude pruning and low-rank factorisation
# ---------------------------------------------------------------------------------------------


def magnitude_prune(model: nn.Module, sparsity: float) -> nn.Module:
    """Zero the ``sparsity`` fraction of smallest-magnitude weights of every ``nn.Linear`` and
    ``nn.Conv2d`` (layer by layer), keeping the zeros through fine-tuning (chapter 07).

    Uses ``torch.nn.utils.prune`` (a mask re-applied before every forward pass); call
    ``torch.nn.utils.prune.remove(module, "weight")`` or :func:`finish_pruning` to make it
    permanent. Biases are kept dense.
    """
    sparsity = _check_fraction(sparsity, "sparsity")
    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    if not layers:
        raise ValueError("model holds no nn.Linear or nn.Conv2d layer to prune")
    for layer in layers:
        keep = max(1, round(layer.weight.numel() * (1 - sparsity)))  # never empty a layer
        prune.l1_unstructured(layer, "weight", amount=layer.weight.numel() - keep)
    return model


def finish_pruning(model: nn.Module) -> nn.Module:
    """Make the masks of :func:`magnitude_prune` permanent (zeros stay in ``weight``)."""
    for module in model.modules():
        if prune.is_pruned(module) and hasattr(module, "weight_mask"):
            prune.remove(module, "weight")
    return model


class LowRankLinear(nn.Module):
    """``x ↦ U (V x) + b`` with ``V: rank × in`` and ``U: out × rank`` (chapter 07).

    Stores ``rank · (in + out)`` weights instead of ``in · out``.
    """

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool = True) -> None:
        super().__init__()
        check_int(in_features, "in_features", minimum=1)
        check_int(out_features, "out_features", minimum=1)
        check_int(rank, "rank", minimum=1)
        if rank > min(in_features, out_features):
            raise ValueError(
                f"rank must be <= min(in_features, out_features) = "
                f"{min(in_features, out_features)}, got {rank}"
            )
        self.down = nn.Linear(in_features, rank, bias=False)
        self.up = nn.Linear(rank, out_features, bias=bias)

    @classmethod
    def from_linear(cls, linear: nn.Linear, rank: int) -> LowRankLinear:
        """The best rank-``rank`` approximation of ``linear``'s weight (truncated SVD)."""
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
        return self.up(self.down(x))


def low_rank(model: nn.Module, rank: int) -> nn.Module:
    """Factorise every ``nn.Linear`` of ``model`` (in place) to ``rank`` by truncated SVD, where
    that stores fewer numbers; other layers stay. Returns ``model`` (chapter 07)."""
    check_int(rank, "rank", minimum=1)

    def make(linear: nn.Linear) -> nn.Module:
        saves = rank * (linear.in_features + linear.out_features) < linear.weight.numel()
        return LowRankLinear.from_linear(linear, rank) if saves else linear

    return _replace_linears(model, make)


def pca_projection(inputs: torch.Tensor, components: int) -> nn.Linear:
    """A frozen ``nn.Linear`` that centres ``inputs``' features and projects them on their
    first ``components`` principal directions (chapter 07). Its weights count as stored."""
    if not isinstance(inputs, torch.Tensor) or inputs.dim() != 2:
        raise ValueError("inputs must be a 2-D tensor (examples, features)")
    check_int(components, "components", minimum=1)
    if components > min(inputs.shape):
        raise ValueError(f"components must be <= {min(inputs.shape)}, got {components}")
    mean = inputs.mean(dim=0)
    _, _, vh = torch.linalg.svd(inputs - mean, full_matrices=False)
    layer = nn.Linear(inputs.shape[1], components)
    with torch.no_grad():
        layer.weight.copy_(vh[:components])
        layer.bias.copy_(-vh[:components] @ mean)
    return layer.requires_grad_(False)


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
        min_std: floor on the standard deviations, so that no component collapses to a spike
            of infinite density.
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
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{argument} must be a positive number, got {value!r}")
        if init_std <= min_std:
            raise ValueError(f"init_std must be > min_std={min_std}, got {init_std}")
        self.fix_zero = fix_zero
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


def linear_weights(model: nn.Module) -> torch.Tensor:
    """Every ``nn.Linear`` weight of ``model`` in one flat tensor (what a prior is applied to)."""
    weights = [m.weight.reshape(-1) for m in model.modules() if type(m) is nn.Linear]
    if not weights:
        raise ValueError("model holds no nn.Linear layer")
    return torch.cat(weights)


def snap_to_prior(model: nn.Module, prior: SoftWeightSharing) -> nn.Module:
    """Replace every ``nn.Linear`` (in place) by a :class:`CodebookLinear` whose codebook is the
    prior's means and whose assignment is each weight's most responsible component: soft
    sharing made hard, with at most ``n_components`` distinct weights (chapter 07)."""
    if not isinstance(prior, SoftWeightSharing):
        raise TypeError(f"prior must be a SoftWeightSharing, got {type(prior).__name__}")

    def make(linear: nn.Linear) -> CodebookLinear:
        return CodebookLinear(prior.means.detach(), prior.assign(linear.weight), linear.bias)

    return _replace_linears(model, make)


# ---------------------------------------------------------------------------------------------
# Counting what each representation stores
# ---------------------------------------------------------------------------------------------


def _dense_or_sparse_bytes(weight: torch.Tensor) -> int:
    """Bytes of a weight tensor stored densely, or sparsely when that is smaller.

    Sparse convention: float32 nonzeros plus their positions, either as a bitmask (1 bit per
    entry) or as one 16-bit position per nonzero, whichever is smaller.
    """
    n, nonzeros = weight.numel(), int(torch.count_nonzero(weight))
    sparse = FLOAT_BYTES * nonzeros + min(math.ceil(n / 8), 2 * nonzeros)
    return min(FLOAT_BYTES * n, sparse)


def _weights(model: nn.Module) -> Iterator[tuple[nn.Module, str, torch.Tensor]]:
    """(module, name, tensor) for every stored tensor, each counted once."""
    seen: set[int] = set()
    for module in model.modules():
        tensors = list(module.named_parameters(recurse=False))
        if prune.is_pruned(module) and hasattr(module, "weight_mask"):
            tensors = [(n, t) for n, t in tensors if n != "weight_orig"]
            tensors.append(("weight", module.weight))  # the masked weight is what is stored
        for name, tensor in tensors:
            if id(tensor) not in seen:
                seen.add(id(tensor))
                yield module, name, tensor


def storage_bytes(model: nn.Module) -> int:
    """Bytes needed to store ``model``'s weights for inference, float32 (chapter 07).

    Conventions: dense tensors 4 bytes a number; :class:`CodebookLinear` the codebook (4 bytes
    a value) plus ``index_bits(k)`` bits per weight; pruned weights (zeros in ``weight``, or a
    pruning mask) the cheaper of dense and sparse (see ``_dense_or_sparse_bytes``);
    :class:`~shared_lib.layers.hashed.HashedLinear` only its real weights (the hash is
    recomputed from the seed).
    Frozen tensors (a PCA projection) count: inference needs them.
    """
    total = 0
    for module, name, tensor in _weights(model):
        if isinstance(module, CodebookLinear) and name == "codebook":
            k = tensor.numel()
            total += FLOAT_BYTES * k + math.ceil(module.assignment.numel() * index_bits(k) / 8)
        elif name == "weight" and tensor.dim() >= 2:
            total += _dense_or_sparse_bytes(tensor)
        else:
            total += FLOAT_BYTES * tensor.numel()
    return total


def stored_numbers(model: nn.Module) -> int:
    """Unique numbers ``model`` stores: parameters counted once, a pruned tensor by its nonzeros,
    a codebook by its ``k`` values (indices are not numbers we learn); chapter 07."""
    total = 0
    for _, name, tensor in _weights(model):
        if name == "weight" and tensor.dim() >= 2:
            total += int(torch.count_nonzero(tensor))
        else:
            total += tensor.numel()
    return total
