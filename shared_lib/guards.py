"""Guards against the engineering pitfalls of shared parameters (chapter 05).

A tensor used in several places is one object to autograd, but many everyday tools walk lists
of parameters or names and so can see it twice, or replace it in one place only:

* an optimizer given the same tensor twice updates it twice per step (pytorch issue #40967):
  :func:`check_optimizer` refuses such an optimizer, :func:`unique_parameters` builds a clean list;
* gradient-norm clipping over a list that holds a tensor twice counts its gradient twice, so the
  norm it reports (and clips to) is too large: :func:`unique_parameters` again;
* pruning or quantizing one alias of a tied weight changes what that alias computes with and
  leaves the other alone: :func:`check_tied_uses` notices;
* task conflict on a shared trunk is measured with :func:`task_gradient_cosine`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import nn

from shared_lib._validation import check_instance, check_module, describe
from shared_lib.tying import BrokenTiesError, validate_groups

__all__ = [
    "check_optimizer",
    "check_tied_uses",
    "optimizer_parameters",
    "task_gradient_cosine",
    "unique_parameters",
]


def unique_parameters(parameters: Iterable[torch.Tensor]) -> list[torch.Tensor]:
    """The tensors of ``parameters`` with repeats removed (by identity), in first-seen order.

    Use it wherever a parameter list is assembled by hand (``list(a.parameters()) +
    list(b.parameters())`` for two modules that share a tensor) before it reaches an optimizer
    or :func:`torch.nn.utils.clip_grad_norm_`.

    Args:
        parameters: an iterable of tensors (not a single tensor), e.g. ``model.parameters()``.

    Returns:
        Each tensor once, in the order it first appears.

    Raises:
        TypeError: ``parameters`` is a single tensor, or holds something that is not a tensor.

    Examples:
        >>> from torch import nn
        >>> from shared_lib.guards import unique_parameters
        >>> lin = nn.Linear(2, 2)
        >>> len(unique_parameters([lin.weight, lin.bias, lin.weight]))
        2
    """
    if isinstance(parameters, torch.Tensor):
        raise TypeError("parameters must be an iterable of tensors, not a single tensor")
    seen: set[int] = set()
    unique: list[torch.Tensor] = []
    for index, param in enumerate(parameters):
        check_instance(param, f"parameters[{index}]", torch.Tensor, "torch.Tensor")
        if id(param) not in seen:
            seen.add(id(param))
            unique.append(param)
    return unique


def optimizer_parameters(optimizer: torch.optim.Optimizer) -> list[list[torch.Tensor]]:
    """The optimizer's parameters group by group, refusing a tensor held twice (pytorch #40967).

    A tensor repeated in an optimizer is updated twice per step. PyTorch refuses a tensor in two
    parameter groups but only warns (once) about a tensor repeated inside one group; this
    refuses both. :func:`check_optimizer` and :mod:`shared_lib.checkpoint` (which records
    optimizer state by parameter name) rely on it.

    Args:
        optimizer: any :class:`torch.optim.Optimizer`.

    Returns:
        One list of tensors per parameter group, in the optimizer's order.

    Raises:
        TypeError: ``optimizer`` is not a :class:`torch.optim.Optimizer`.
        ValueError: a tensor appears twice (the message names its shape and the groups).

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from shared_lib.guards import optimizer_parameters
        >>> layer = nn.Linear(3, 3); net = nn.Sequential(layer, layer)  # one layer used twice
        >>> optimizer = torch.optim.SGD(net.parameters(), lr=0.1)  # parameters() lists it once
        >>> [[tuple(p.shape) for p in group] for group in optimizer_parameters(optimizer)]
        [[(3, 3), (3,)]]
    """
    check_instance(optimizer, "optimizer", torch.optim.Optimizer, "torch.optim.Optimizer")
    seen: dict[int, int] = {}
    groups = []
    for index, group in enumerate(optimizer.param_groups):
        for param in group["params"]:
            if id(param) in seen:
                where = "twice in group" if seen[id(param)] == index else "in groups"
                groups_text = (
                    f"{index}" if seen[id(param)] == index else f"{seen[id(param)]} and {index}"
                )
                raise ValueError(
                    f"optimizer holds a parameter of shape {tuple(param.shape)} {where} "
                    f"{groups_text}; a shared parameter must appear once in an optimizer, or it "
                    "is updated twice per step (see pytorch issue #40967)"
                )
            seen[id(param)] = index
        groups.append(list(group["params"]))
    return groups


def check_optimizer(optimizer: torch.optim.Optimizer) -> None:
    """Raise ``ValueError`` if ``optimizer`` holds any tensor twice (it would update it twice).

    PyTorch itself refuses a tensor in two parameter groups but only warns (once) about a
    tensor repeated inside one group; this check refuses both (see
    :func:`optimizer_parameters`).

    Args:
        optimizer: the optimizer to check.

    Raises:
        TypeError: ``optimizer`` is not a :class:`torch.optim.Optimizer`.
        ValueError: a tensor appears twice.

    Examples:
        >>> import warnings
        >>> import torch
        >>> from torch import nn
        >>> from shared_lib.guards import check_optimizer
        >>> embed, head = nn.Embedding(10, 4), nn.Linear(4, 10, bias=False)
        >>> head.weight = embed.weight  # tied
        >>> by_hand = list(embed.parameters()) + list(head.parameters())  # the tensor twice
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")  # torch only warns about the repeat
        ...     optimizer = torch.optim.SGD(by_hand, lr=0.1)
        >>> check_optimizer(optimizer)
        Traceback (most recent call last):
        ...
        ValueError: optimizer holds a parameter of shape (10, 4) twice in group 0; ...
    """
    optimizer_parameters(optimizer)


def _used_tensor(module: nn.Module, name: str) -> tuple[object, str]:
    """What the forward pass uses for ``name``, and why it may differ from the parameter."""
    owner_name, _, attr = name.rpartition(".")
    try:
        owner = module.get_submodule(owner_name) if owner_name else module
    except AttributeError as error:
        raise ValueError(f"groups: no submodule {owner_name!r} for name {name!r}") from error
    used = getattr(owner, attr, None)
    if not isinstance(used, torch.Tensor):
        return None, f"{type(owner).__module__}.{type(owner).__name__} holds no tensor {attr!r}"
    if attr not in owner._parameters:
        if attr + "_orig" in owner._parameters:
            return used, f"computed from {attr}_orig by a torch.nn.utils.prune mask"
        return used, "no longer a registered parameter"
    return used, ""


def check_tied_uses(module: nn.Module, groups: Sequence[Sequence[str]]) -> None:
    """Raise :class:`~shared_lib.tying.BrokenTiesError` unless every group's names give the
    forward pass one tensor.

    Complements :func:`shared_lib.check_ties`, which compares registered parameters (and
    reports a name that is no longer one): this looks at the tensor each module actually reads
    in ``forward``, so it also explains a
    pruning mask applied to one alias (the parameter is still shared as ``weight_orig``, but
    one alias now computes with a masked copy) and a module replaced by a quantized one.

    Args:
        module: the model.
        groups: the ties it should have, e.g. ``shared_groups(model)`` recorded beforehand.

    Raises:
        TypeError: ``module`` is not an ``nn.Module`` or ``groups`` is malformed (see
            :func:`shared_lib.tying.validate_groups`).
        ValueError: a group has fewer than two names, or a name's submodule does not exist.
        BrokenTiesError: a group's names give the forward pass different tensors (the message
            says why for each name: a pruning mask, a quantized module, ...).

    Examples:
        >>> from torch import nn
        >>> from torch.nn.utils import prune
        >>> import shared_lib as sl
        >>> from shared_lib.guards import check_tied_uses
        >>> pair = nn.ModuleDict({"a": nn.Linear(4, 4), "b": nn.Linear(4, 4)})
        >>> _ = sl.tie(pair["b"], pair["a"]); groups = sl.shared_groups(pair)
        >>> _ = prune.l1_unstructured(pair["a"], "weight", amount=0.5)  # prunes one alias
        >>> check_tied_uses(pair, groups)
        Traceback (most recent call last):
        ...
        shared_lib.tying.BrokenTiesError: 1 tie(s) ...: [a.weight (computed from ...), b.weight]
    """
    check_module(module, "module")
    validate_groups(groups)
    problems = []
    for group in groups:
        used = [_used_tensor(module, name) for name in group]
        if all(tensor is not None for tensor, _ in used) and len({id(t) for t, _ in used}) == 1:
            continue
        details = [
            f"{name} ({why})" if why else name for name, (_, why) in zip(group, used, strict=True)
        ]
        problems.append("[" + ", ".join(details) + "]")
    if problems:
        raise BrokenTiesError(
            f"{len(problems)} tie(s) no longer one tensor in the forward pass: "
            + "; ".join(problems)
        )


def task_gradient_cosine(
    losses: Sequence[torch.Tensor], parameters: Iterable[torch.Tensor]
) -> float:
    """Cosine similarity of two tasks' gradients on the shared ``parameters`` (chapter 05).

    +1: the tasks pull the shared tensors the same way; 0: unrelated directions; below 0: one
    task's step undoes the other's (gradient conflict). The graphs are kept
    (``retain_graph=True``) so the caller can still call ``backward`` on the losses.

    Args:
        losses: exactly two scalar losses, one per task.
        parameters: the shared tensors (e.g. ``model.trunk.parameters()``); repeats are ignored.

    Returns:
        The cosine, in [-1, 1].

    Raises:
        TypeError: ``losses`` is not a sequence of tensors, or ``parameters`` not an iterable
            of tensors.
        ValueError: not two losses, a loss that is not a scalar, no parameters, or a task with
            a zero gradient.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from shared_lib.guards import task_gradient_cosine
        >>> w = nn.Parameter(torch.tensor([1.0, 2.0]))  # the shared tensor
        >>> round(task_gradient_cosine([w.sum(), -w.sum()], [w]), 3)  # conflict
        -1.0
        >>> round(task_gradient_cosine([w[0], w[1]], [w]), 3)  # unrelated directions
        0.0
    """
    if isinstance(losses, torch.Tensor) or not isinstance(losses, Sequence):
        raise TypeError(
            f"losses must be a sequence of exactly two scalar losses, got {describe(losses)}"
        )
    if len(losses) != 2:
        raise ValueError("losses must be a sequence of exactly two scalar losses")
    for index, loss in enumerate(losses):
        check_instance(loss, f"losses[{index}]", torch.Tensor, "torch.Tensor")
        if loss.dim() != 0:
            raise ValueError(f"losses[{index}] must be a scalar tensor")
    params = unique_parameters(parameters)
    if not params:
        raise ValueError("parameters must hold at least one tensor")
    flat = []
    for index, loss in enumerate(losses):
        grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        vector = torch.cat(
            [
                (g if g is not None else torch.zeros_like(p)).reshape(-1)
                for g, p in zip(grads, params, strict=True)
            ]
        )
        if not torch.any(vector != 0):
            raise ValueError(f"losses[{index}] has a zero gradient on the shared parameters")
        flat.append(vector)
    return torch.nn.functional.cosine_similarity(flat[0], flat[1], dim=0).item()
