"""Sharing across the elements of a set and the nodes of a graph (chapters 01 and 02).

A set has no first element: a layer that reads one should not care in which order its elements
come. Sharing gives that for free. :class:`EquivariantLinear` is the most general linear layer
that commutes with every permutation of its ``n`` elements (Zaheer et al., 2017, "Deep Sets"):
two shared matrices, ``Λ`` for an element itself and ``Γ`` for the pooled rest, whatever ``n``
is; on one feature its ``n × n`` matrix is ``λI + γ11ᵀ``. :class:`DeepSets` applies one encoder
``φ`` to every element, pools, and reads out with ``ρ`` — a permutation-invariant function.
:class:`MessagePassingLayer` shares one message function across the edges and one update
function across the nodes of a graph (Gilmer et al., 2017), so it commutes with relabelling the
nodes.

:func:`orbit_sharing_pattern` gives the view that unites them (Ravanbakhsh, Schneider & Póczos,
2017, "Equivariance Through Parameter-Sharing"): tie the entries ``(i, j)`` of a weight matrix
that a group of permutations maps onto each other, and the layer is equivariant to that group.
The cyclic shifts give a circulant matrix (a circular convolution); all permutations give
``λI + γ11ᵀ``. :func:`equivariant_dimension` counts the free parameters of such a layer
independently, as the dimension of the space of matrices that commute with the group.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from shared_lib._validation import check_bool, check_choice, check_instance, check_int, describe

__all__ = [
    "AppendPosition",
    "DeepSets",
    "EquivariantLinear",
    "MessagePassingLayer",
    "equivariant_dimension",
    "orbit_sharing_pattern",
    "permutation_matrix",
]

_POOLS = ("sum", "mean", "max")


def _pool(x: torch.Tensor, pool: str, dim: int) -> torch.Tensor:
    if pool == "sum":
        return x.sum(dim)
    if pool == "mean":
        return x.mean(dim)
    return x.amax(dim)


def _check_permutations(permutations: object, argument: str = "permutations") -> list[list[int]]:
    """A non-empty list of permutations of ``range(n)``, all of one length ``n``."""
    if isinstance(permutations, (str, bytes)) or not isinstance(permutations, Sequence):
        raise TypeError(f"{argument} must be a list of permutations, got {describe(permutations)}")
    if not permutations:
        raise ValueError(f"{argument} must hold at least one permutation, got none")
    checked = []
    for index, perm in enumerate(permutations):
        values = list(perm) if isinstance(perm, (Sequence, torch.Tensor)) else None
        values = [int(v) for v in values] if values is not None else None
        if values is None or sorted(values) != list(range(len(values))):
            raise ValueError(
                f"{argument}[{index}] must be a permutation of 0..n-1, got {describe(perm)}"
            )
        if checked and len(values) != len(checked[0]):
            raise ValueError(
                f"{argument} must all have one length, got {len(checked[0])} and {len(values)}"
            )
        checked.append(values)
    return checked


def permutation_matrix(
    permutation: Sequence[int], dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """The ``n × n`` matrix ``P`` with ``(P @ x)[i] = x[permutation[i]]`` (chapter 01).

    Args:
        permutation: a permutation of ``0..n-1``.
        dtype: the matrix's dtype.

    Returns:
        ``P``, so that ``P @ x`` equals ``x[permutation]``.

    Raises:
        TypeError: ``permutation`` is not a sequence.
        ValueError: it is not a permutation of ``0..n-1``.

    Examples:
        >>> import torch
        >>> from shared_lib.layers.sets import permutation_matrix
        >>> permutation_matrix([2, 0, 1]) @ torch.tensor([10.0, 11.0, 12.0], dtype=torch.float64)
        tensor([12., 10., 11.], dtype=torch.float64)
    """
    (values,) = _check_permutations([permutation], "permutation")
    return torch.eye(len(values), dtype=dtype)[values]


def orbit_sharing_pattern(permutations: Sequence[Sequence[int]]) -> torch.Tensor:
    """Which entries of an ``n × n`` weight matrix must be tied for the layer to commute with
    the group the ``permutations`` generate: the orbits of the index pairs ``(i, j)``.

    Ravanbakhsh et al. (2017): if ``W[g(i), g(j)] = W[i, j]`` for every ``g`` of the group, then
    ``W P_g = P_g W``, i.e. the layer is equivariant. Entries in one orbit share one parameter.

    Args:
        permutations: generators of the group, each a permutation of ``0..n-1``.

    Returns:
        An ``(n, n)`` ``int64`` map; entries with the same value share a parameter, numbered
        ``0, 1, ...`` in order of first appearance (row by row).

    Raises:
        TypeError: ``permutations`` is not a list of sequences.
        ValueError: it is empty, or holds something that is not a permutation, or permutations
            of different lengths.

    Examples:
        All permutations of 3 elements (generated by a cycle and a swap) tie the diagonal and
        the off-diagonal: two parameters, ``λI + γ11ᵀ``. The cycle alone gives a circulant.

        >>> from shared_lib.layers.sets import orbit_sharing_pattern
        >>> orbit_sharing_pattern([[1, 2, 0], [1, 0, 2]])
        tensor([[0, 1, 1],
                [1, 0, 1],
                [1, 1, 0]])
        >>> orbit_sharing_pattern([[1, 2, 0]])
        tensor([[0, 1, 2],
                [2, 0, 1],
                [1, 2, 0]])
    """
    perms = _check_permutations(permutations)
    n = len(perms[0])
    parent = list(range(n * n))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for perm in perms:
        for i in range(n):
            for j in range(n):
                a, b = find(i * n + j), find(perm[i] * n + perm[j])
                if a != b:
                    parent[max(a, b)] = min(a, b)
    labels: dict[int, int] = {}
    pattern = torch.empty(n * n, dtype=torch.int64)
    for flat in range(n * n):
        pattern[flat] = labels.setdefault(find(flat), len(labels))
    return pattern.view(n, n)


def equivariant_dimension(permutations: Sequence[Sequence[int]]) -> int:
    """The number of free parameters of a linear map ``Rⁿ → Rⁿ`` that commutes with every
    permutation of the group the ``permutations`` generate (chapter 01).

    Computed without looking at orbits: the dimension of the null space of the linear
    constraints ``P W − W P = 0``, one block per generator, by SVD in float64. It equals the
    number of orbits that :func:`orbit_sharing_pattern` finds.

    Args:
        permutations: generators of the group, each a permutation of ``0..n-1``.

    Returns:
        The dimension of the space of equivariant ``n × n`` matrices.

    Raises:
        TypeError: ``permutations`` is not a list of sequences.
        ValueError: it is empty, holds a non-permutation or permutations of different lengths,
            or ``n`` exceeds 30 (the system has ``n⁴`` entries per generator).

    Examples:
        >>> from shared_lib.layers.sets import equivariant_dimension
        >>> equivariant_dimension([[1, 2, 3, 0], [1, 0, 2, 3]])  # all permutations: λ and γ
        2
        >>> equivariant_dimension([[1, 2, 3, 0]])  # cyclic shifts: a circulant, n numbers
        4
    """
    perms = _check_permutations(permutations)
    n = len(perms[0])
    if n > 30:
        raise ValueError(f"permutations must act on at most 30 elements, got {n}")
    eye = torch.eye(n, dtype=torch.float64)
    blocks = []
    for perm in perms:
        p = eye[perm]
        # vec(P W - W P) = (I ⊗ P - Pᵀ ⊗ I) vec(W), column-major vec
        blocks.append(torch.kron(eye, p) - torch.kron(p.T.contiguous(), eye))
    singular = torch.linalg.svdvals(torch.cat(blocks))
    return int((singular <= 1e-9 * max(1.0, singular.max().item())).sum().item())


class EquivariantLinear(nn.Module):
    """A linear layer on sets that commutes with every permutation of the elements: two weight
    matrices shared by all elements (Zaheer et al., 2017; chapter 01).

    ``y_i = Λ x_i + Γ pool_j(x_j) + b`` with ``Λ = weight``, ``Γ = pool_weight``. With one
    feature and ``pool="sum"`` the ``n × n`` matrix of the layer is ``λI + γ11ᵀ``: two numbers,
    for any set size, where a dense layer on ``n`` elements needs ``n²``.

    Args:
        in_features: features per element.
        out_features: output features per element.
        pool: ``"sum"``, ``"mean"`` (default) or ``"max"``; ``"max"`` is equivariant but not
            linear, so :meth:`dense_matrix` refuses it.
        bias: add a bias ``b`` (shared by every element).

    Raises:
        TypeError: a size is not an int, or ``bias`` is not a bool.
        ValueError: a size is below 1, or ``pool`` is unknown.

    Shape:
        Input ``(..., n, in_features)``, output ``(..., n, out_features)``; ``n ≥ 1`` may change
        from call to call.

    Examples:
        >>> import torch
        >>> from shared_lib.layers.sets import EquivariantLinear
        >>> layer = EquivariantLinear(1, 1, pool="sum", bias=False)
        >>> sum(p.numel() for p in layer.parameters())
        2
        >>> x = torch.randn(2, 5, 1)
        >>> order = torch.randperm(5)
        >>> torch.allclose(layer(x[:, order]), layer(x)[:, order], atol=1e-6)
        True
    """

    def __init__(
        self, in_features: int, out_features: int, pool: str = "mean", bias: bool = True
    ) -> None:
        super().__init__()
        self.in_features = check_int(in_features, "in_features", 1)
        self.out_features = check_int(out_features, "out_features", 1)
        self.pool = check_choice(pool, "pool", _POOLS)
        check_bool(bias, "bias")
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.pool_weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.empty(out_features)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Uniform in ``±1/√(2·in_features)``: the two matrices share the fan-in."""
        bound = 1 / math.sqrt(2 * self.in_features)
        for tensor in (self.weight, self.pool_weight, self.bias):
            if tensor is not None:
                nn.init.uniform_(tensor, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 2 or x.shape[-1] != self.in_features:
            raise ValueError(f"x must be (..., n, {self.in_features}), got {tuple(x.shape)}")
        pooled = _pool(x, self.pool, -2).unsqueeze(-2)
        out = x @ self.weight.T + pooled @ self.pool_weight.T
        return out if self.bias is None else out + self.bias

    def dense_matrix(self, set_size: int) -> torch.Tensor:
        """The matrix of the equivalent ``nn.Linear`` on a flattened set of ``set_size``
        elements (element-major: entry ``i·in + a``), without the bias.

        Args:
            set_size: the number of elements ``n``.

        Returns:
            An ``(n·out_features, n·in_features)`` tensor; for one feature and ``pool="sum"``
            it is ``λI + γ11ᵀ``.

        Raises:
            TypeError: ``set_size`` is not an int.
            ValueError: ``set_size`` is below 1, or the layer pools with ``"max"``.

        Examples:
            >>> import torch
            >>> from shared_lib.layers.sets import EquivariantLinear
            >>> layer = EquivariantLinear(1, 1, pool="sum", bias=False)
            >>> with torch.no_grad():
            ...     _ = layer.weight.fill_(2.0), layer.pool_weight.fill_(0.5)
            >>> layer.dense_matrix(3)
            tensor([[2.5000, 0.5000, 0.5000],
                    [0.5000, 2.5000, 0.5000],
                    [0.5000, 0.5000, 2.5000]], grad_fn=<AddBackward0>)
        """
        n = check_int(set_size, "set_size", 1)
        if self.pool == "max":
            raise ValueError('pool="max" is not linear: the layer has no dense matrix')
        scale = 1.0 if self.pool == "sum" else 1.0 / n
        eye = torch.eye(n, dtype=self.weight.dtype, device=self.weight.device)
        ones = torch.ones(n, n, dtype=self.weight.dtype, device=self.weight.device)
        return torch.kron(eye, self.weight) + torch.kron(ones, scale * self.pool_weight)

    def extra_repr(self) -> str:
        return (
            f"{self.in_features}, {self.out_features}, pool={self.pool!r}, "
            f"bias={self.bias is not None}"
        )


class DeepSets(nn.Module):
    """``ρ(pool_i φ(x_i))``: one encoder ``φ`` shared by every element, a pooling, a head ``ρ``
    (Zaheer et al., 2017; chapters 01 and 02). The output does not depend on the order of the
    elements (up to float rounding of the sum).

    Args:
        phi: the element encoder, applied to ``(..., n, d)`` along the last dimension (an MLP).
        rho: the head, applied to the pooled ``(..., h)``.
        pool: ``"sum"`` (default), ``"mean"`` or ``"max"``.

    Raises:
        TypeError: ``phi`` or ``rho`` is not an ``nn.Module``.
        ValueError: ``pool`` is unknown.

    Shape:
        Input ``(batch, n, in_features)``, output whatever ``rho`` gives for ``(batch, h)``.

    Examples:
        >>> import torch
        >>> from shared_lib.layers.sets import DeepSets
        >>> _ = torch.manual_seed(0)
        >>> model = DeepSets.mlp(1, 16, 1)
        >>> x = torch.randn(4, 7, 1)
        >>> model(x).shape
        torch.Size([4, 1])
        >>> torch.allclose(model(x.flip(1)), model(x), atol=1e-5)  # order does not matter
        True
    """

    def __init__(self, phi: nn.Module, rho: nn.Module, pool: str = "sum") -> None:
        super().__init__()
        self.phi = check_instance(phi, "phi", nn.Module)
        self.rho = check_instance(rho, "rho", nn.Module)
        self.pool = check_choice(pool, "pool", _POOLS)

    @classmethod
    def mlp(cls, in_features: int, hidden: int, out_features: int, pool: str = "sum") -> DeepSets:
        """A Deep Sets model with two-layer ReLU MLPs for ``φ`` and ``ρ``.

        ``φ``: ``in_features → hidden → hidden``; ``ρ``: ``hidden → hidden → out_features``.

        Args:
            in_features: features per element.
            hidden: width of both MLPs (and of the pooled code).
            out_features: outputs of ``ρ``.
            pool: ``"sum"``, ``"mean"`` or ``"max"``.

        Returns:
            The model.

        Raises:
            TypeError: a size is not an int.
            ValueError: a size is below 1, or ``pool`` is unknown.

        Examples:
            >>> from shared_lib.layers.sets import DeepSets
            >>> sum(p.numel() for p in DeepSets.mlp(1, 8, 1).parameters())  # 16+72 + 72+9
            169
        """
        check_int(in_features, "in_features", 1)
        check_int(hidden, "hidden", 1)
        check_int(out_features, "out_features", 1)
        phi = nn.Sequential(
            nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU()
        )
        rho = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, out_features))
        return cls(phi, rho, pool)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled code ``pool_i φ(x_i)`` of sets ``(batch, n, d)``: ``(batch, h)``."""
        if x.dim() != 3:
            raise ValueError(f"x must be (batch, n, features), got {tuple(x.shape)}")
        return _pool(self.phi(x), self.pool, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rho(self.encode(x))

    def extra_repr(self) -> str:
        return f"pool={self.pool!r}"


class AppendPosition(nn.Module):
    """Append to every element a one-hot code of its position: ``(x_i, e_i)``. Put before a
    :class:`DeepSets`, it breaks the permutation symmetry on purpose — the same shared ``φ``,
    now told where each element sits (chapter 02's control).

    Args:
        set_size: the number of elements ``n`` (fixed, since a position needs a code).

    Raises:
        TypeError: ``set_size`` is not an int.
        ValueError: ``set_size`` is below 1.

    Shape:
        Input ``(batch, n, d)``, output ``(batch, n, d + n)``.

    Examples:
        >>> import torch
        >>> from shared_lib.layers.sets import AppendPosition
        >>> AppendPosition(3)(torch.zeros(1, 3, 1))[0]
        tensor([[0., 1., 0., 0.],
                [0., 0., 1., 0.],
                [0., 0., 0., 1.]])
    """

    def __init__(self, set_size: int) -> None:
        super().__init__()
        self.set_size = check_int(set_size, "set_size", 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[1] != self.set_size:
            raise ValueError(f"x must be (batch, {self.set_size}, features), got {tuple(x.shape)}")
        codes = torch.eye(self.set_size, dtype=x.dtype, device=x.device)
        return torch.cat([x, codes.expand(x.shape[0], -1, -1)], dim=-1)

    def extra_repr(self) -> str:
        return f"set_size={self.set_size}"


class MessagePassingLayer(nn.Module):
    """One round of message passing on a graph: one message function shared by every edge, one
    update function shared by every node (Gilmer et al., 2017; chapter 01).

    ``m_i = Σ_j A_ij · message(h_j)``, ``h_i' = update([h_i, m_i])`` with ``message`` and
    ``update`` linear maps (no activation: stack with one). Relabelling the nodes (``P h`` and
    ``P A Pᵀ``) relabels the output the same way.

    Args:
        in_features: features per node.
        out_features: output features per node.
        aggregate: ``"sum"`` (default) or ``"mean"`` over the neighbours (``"mean"`` divides by
            the degree, at least 1).

    Raises:
        TypeError: a size is not an int.
        ValueError: a size is below 1, or ``aggregate`` is unknown.

    Shape:
        ``h``: ``(batch, n, in_features)``; ``adjacency``: ``(n, n)`` or ``(batch, n, n)``,
        ``adjacency[..., i, j]`` the weight of the edge ``j → i``; output
        ``(batch, n, out_features)``.

    Examples:
        >>> import torch
        >>> from shared_lib.layers.sets import MessagePassingLayer
        >>> layer = MessagePassingLayer(3, 4)
        >>> ring = torch.roll(torch.eye(5), 1, dims=1) + torch.roll(torch.eye(5), -1, dims=1)
        >>> h = torch.randn(2, 5, 3)
        >>> order = torch.randperm(5)
        >>> relabelled = layer(h[:, order], ring[order][:, order])
        >>> torch.allclose(relabelled, layer(h, ring)[:, order], atol=1e-6)
        True
    """

    def __init__(self, in_features: int, out_features: int, aggregate: str = "sum") -> None:
        super().__init__()
        self.in_features = check_int(in_features, "in_features", 1)
        self.out_features = check_int(out_features, "out_features", 1)
        self.aggregate = check_choice(aggregate, "aggregate", ("sum", "mean"))
        self.message = nn.Linear(in_features, out_features)
        self.update = nn.Linear(in_features + out_features, out_features)

    def forward(self, h: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:
        if h.dim() != 3 or h.shape[-1] != self.in_features:
            raise ValueError(f"h must be (batch, n, {self.in_features}), got {tuple(h.shape)}")
        n = h.shape[1]
        if adjacency.dim() not in (2, 3) or adjacency.shape[-2:] != (n, n):
            raise ValueError(
                f"adjacency must be ({n}, {n}) or (batch, {n}, {n}) for {n} nodes, "
                f"got {tuple(adjacency.shape)}"
            )
        adjacency = adjacency.to(h.dtype)
        messages = adjacency @ self.message(h)
        if self.aggregate == "mean":
            messages = messages / adjacency.sum(-1, keepdim=True).clamp(min=1)
        return self.update(torch.cat([h, messages], dim=-1))

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, aggregate={self.aggregate!r}"
