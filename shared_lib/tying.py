"""Make, find and check ties: one tensor used by several modules (chapter 01).

A *tie* here is the strongest form of sharing PyTorch knows: two (or more) qualified names that
resolve to the very same :class:`torch.nn.Parameter` object. Autograd then accumulates every
use's gradient into one ``.grad``, the optimizer updates the tensor once, and
``module.parameters()`` lists it once while ``module.state_dict()`` lists every name.

Some operations silently replace parameters with fresh objects and so break ties
(``load_state_dict(..., assign=True)``, ``to_empty`` after meta-device init, ...). Use
:func:`preserve_ties` around them, or :func:`check_ties` to find out.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn.utils import parametrize

from shared_lib._validation import check_bool, check_instance, check_module

__all__ = [
    "BrokenTiesError",
    "check_ties",
    "get_parameter",
    "preserve_ties",
    "retie",
    "shared_groups",
    "tie",
    "untie",
    "validate_groups",
]


class BrokenTiesError(RuntimeError):
    """Raised when names that should be one tensor have become separate tensors (chapter 05).

    :func:`check_ties`, :func:`retie` and :func:`shared_lib.guards.check_tied_uses` raise it;
    the message names the groups concerned and the remedy.

    Examples:
        >>> from torch import nn
        >>> import shared_lib as sl
        >>> lm = nn.ModuleDict({"embed": nn.Embedding(5, 3), "head": nn.Linear(3, 5, bias=False)})
        >>> _ = sl.tie(lm["head"], lm["embed"])
        >>> groups = sl.shared_groups(lm)
        >>> _ = lm.load_state_dict(lm.state_dict(), assign=True)  # a fresh Parameter per name
        >>> try:
        ...     sl.check_ties(lm, groups)
        ... except sl.BrokenTiesError as error:
        ...     print(str(error).split(":")[0])
        1 tie(s) broken, these names are now separate tensors
    """


class _Transpose(nn.Module):
    """Parametrization ``weight = original.T``: a layer uses another layer's weight, transposed."""

    def forward(self, original: torch.Tensor) -> torch.Tensor:
        return original.t()


def get_parameter(module: nn.Module, name: str) -> nn.Parameter:
    """The parameter at a dotted ``name`` (e.g. ``"encoder.0.weight"``), with a clear error.

    Args:
        module: the model to look in.
        name: a qualified parameter name, as ``module.named_parameters()`` spells it.

    Returns:
        The registered :class:`torch.nn.Parameter` object (the same object for every name of a
        tie).

    Raises:
        TypeError: ``module`` is not an ``nn.Module`` or ``name`` is not a string.
        ValueError: no submodule or no parameter of that name.

    Examples:
        >>> from torch import nn
        >>> from shared_lib.tying import get_parameter
        >>> layer = nn.Linear(2, 3); net = nn.Sequential(layer, nn.ReLU(), layer)
        >>> get_parameter(net, "2.weight").shape, get_parameter(net, "2.weight") is layer.weight
        (torch.Size([3, 2]), True)
    """
    check_module(module, "module")
    check_instance(name, "name", str)
    owner_name, _, attr = name.rpartition(".")
    try:
        owner = module.get_submodule(owner_name) if owner_name else module
    except AttributeError as error:
        raise ValueError(
            f"name {name!r}: no submodule {owner_name!r} in {type(module).__name__}"
        ) from error
    param = owner._parameters.get(attr)
    if param is None:
        raise ValueError(f"name {name!r}: {type(owner).__name__} has no parameter {attr!r}")
    return param


def tie(
    target: nn.Module,
    source: nn.Module | nn.Parameter,
    name: str = "weight",
    *,
    source_name: str | None = None,
    transpose: bool = False,
) -> nn.Parameter:
    """Make ``target.<name>`` use the very tensor ``source.<source_name>`` (one tensor, two uses).

    The nanoGPT line ``self.transformer.wte.weight = self.lm_head.weight``, with its checks
    (chapter 01): after the call both names are one :class:`torch.nn.Parameter`, stored,
    counted and updated once, whose gradient sums both uses.

    Args:
        target: module whose parameter is replaced (e.g. a language model's output layer).
        source: module (or parameter) that owns the tensor to share (e.g. the token embedding).
        name: parameter name on ``target``.
        source_name: parameter name on ``source``; defaults to ``name``.
        transpose: if true, ``target.<name>`` becomes ``source.<source_name>.T`` (a tied
            autoencoder's decoder). Implemented with :mod:`torch.nn.utils.parametrize`, so the
            shared tensor is registered under ``target.parametrizations.<name>.original``.

    Returns:
        The shared parameter.

    Raises:
        TypeError: ``target`` is not a module, ``source`` neither a module nor a parameter,
            a name not a string, or ``transpose`` not a bool.
        ValueError: a name does not exist or is already parametrized, ``transpose=True`` for a
            tensor that is not 2-D, or the shapes (after transposing), dtypes or devices differ.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> import shared_lib as sl
        >>> lm = nn.ModuleDict({"embed": nn.Embedding(10, 4), "head": nn.Linear(4, 10, bias=False)})
        >>> _ = sl.tie(lm["head"], lm["embed"])  # the head computes with the embedding's tensor
        >>> lm["head"].weight is lm["embed"].weight, sl.shared_groups(lm)
        (True, [['embed.weight', 'head.weight']])
        >>> sl.count_parameters(lm), sl.count_parameters(lm, unique=False)  # stored vs per use
        (40, 80)

        A tied autoencoder, whose decoder uses the encoder's weight transposed:

        >>> encoder, decoder = nn.Linear(6, 3), nn.Linear(3, 6)
        >>> _ = sl.tie(decoder, encoder, transpose=True)
        >>> decoder.weight.shape, torch.equal(decoder.weight, encoder.weight.T)
        (torch.Size([6, 3]), True)
    """
    check_module(target, "target")
    check_instance(name, "name", str)
    check_instance(source, "source", (nn.Module, nn.Parameter), "torch.nn.Module or nn.Parameter")
    if isinstance(source, nn.Parameter):
        shared = source
        source_desc = "source parameter"
    else:
        source_name = (
            name if source_name is None else check_instance(source_name, "source_name", str)
        )
        shared = getattr(source, source_name, None)
        if not isinstance(shared, nn.Parameter):
            raise ValueError(
                f"source_name {source_name!r}: {type(source).__name__} has no parameter "
                "of that name"
            )
        source_desc = f"source.{source_name}"

    if parametrize.is_parametrized(target, name):
        raise ValueError(f"name {name!r} on target is already parametrized; untie it first")
    current = target._parameters.get(name)
    if current is None:
        raise ValueError(f"name {name!r}: {type(target).__name__} has no parameter of that name")
    check_bool(transpose, "transpose")

    if transpose:
        if shared.dim() != 2:
            raise ValueError(f"transpose=True needs a 2-D {source_desc}, got {shared.dim()}-D")
        expected = tuple(reversed(shared.shape))
    else:
        expected = tuple(shared.shape)
    if tuple(current.shape) != expected:
        what = "transposed shape" if transpose else "shape"
        raise ValueError(
            f"cannot tie target.{name} of shape {tuple(current.shape)} to {source_desc}: its "
            f"{what} is {expected}"
        )
    if current.dtype != shared.dtype or current.device != shared.device:
        raise ValueError(
            f"cannot tie target.{name} ({current.dtype}, {current.device}) to {source_desc} "
            f"({shared.dtype}, {shared.device}): move both to one dtype and device first"
        )

    if transpose:
        # unsafe=True: the original (source's tensor) has the transposed shape on purpose.
        parametrize.register_parametrization(target, name, _Transpose(), unsafe=True)
        target.parametrizations[name].original = shared
    else:
        setattr(target, name, shared)
    return shared


def shared_groups(module: nn.Module) -> list[list[str]]:
    """Qualified names that are one tensor, as groups of two or more, in registration order.

    Both kinds of structural sharing show: a parameter assigned to several modules (tied
    embeddings) and a module registered in several places (a layer reused at every depth).
    Record the groups before an operation that may break ties, to check (:func:`check_ties`)
    or restore (:func:`retie`) them afterwards (chapter 01).

    Args:
        module: the model.

    Returns:
        One list of names per shared tensor, each in ``named_parameters`` order; ``[]`` when
        nothing is shared.

    Raises:
        TypeError: ``module`` is not an ``nn.Module``.

    Examples:
        >>> from torch import nn
        >>> import shared_lib as sl
        >>> lin = nn.Linear(3, 3); net = nn.Sequential(lin, nn.ReLU(), lin)
        >>> sl.shared_groups(net)
        [['0.weight', '2.weight'], ['0.bias', '2.bias']]
    """
    check_module(module, "module")
    by_tensor: dict[int, list[str]] = {}
    for qualified_name, param in module.named_parameters(remove_duplicate=False):
        by_tensor.setdefault(id(param), []).append(qualified_name)
    return [names for names in by_tensor.values() if len(names) >= 2]


def _set_parameter(module: nn.Module, name: str, param: nn.Parameter) -> None:
    owner_name, _, attr = name.rpartition(".")
    owner = module.get_submodule(owner_name) if owner_name else module
    owner._parameters[attr] = param


def validate_groups(groups: Sequence[Sequence[str]]) -> Sequence[Sequence[str]]:
    """``groups`` if it has the form :func:`shared_groups` returns: groups of two or more names.

    The argument check of every function that takes recorded ties (:func:`check_ties`,
    :func:`retie`, :func:`shared_lib.guards.check_tied_uses`). It checks the form only; whether
    the names exist is up to the caller.

    Args:
        groups: a list of lists of qualified parameter names.

    Returns:
        ``groups``, unchanged.

    Raises:
        TypeError: ``groups`` is a string or not a sequence, a group is not a sequence, or a
            name is not a string.
        ValueError: a group holds fewer than two names.

    Examples:
        >>> from shared_lib.tying import validate_groups
        >>> validate_groups([["embed.weight", "head.weight"]])
        [['embed.weight', 'head.weight']]
        >>> validate_groups([["embed.weight"]])
        Traceback (most recent call last):
        ...
        ValueError: groups: each group needs at least two names, got ['embed.weight']
    """
    if isinstance(groups, str) or not isinstance(groups, Sequence):
        raise TypeError("groups must be a list of lists of parameter names (see shared_groups)")
    for index, group in enumerate(groups):
        if isinstance(group, str) or not isinstance(group, Sequence):
            raise TypeError(f"groups: each group must be a list of parameter names, got {group!r}")
        if len(group) < 2:
            raise ValueError(f"groups: each group needs at least two names, got {group!r}")
        for position, name in enumerate(group):
            check_instance(name, f"groups[{index}][{position}]", str)
    return groups


def _still_a_parameter(module: nn.Module, name: str) -> nn.Parameter | None:
    """The parameter at ``name``; ``None`` if the name still exists but is no longer a registered
    parameter (pruning turns it into a masked tensor, quantization into a packed one). A name
    that does not exist at all is an error in the caller's groups: ValueError."""
    try:
        return get_parameter(module, name)
    except ValueError:
        owner_name, _, attr = name.rpartition(".")
        try:
            owner = module.get_submodule(owner_name) if owner_name else module
        except AttributeError:
            owner = None
        if owner is not None and hasattr(owner, attr):
            return None
        raise


def check_ties(module: nn.Module, groups: Sequence[Sequence[str]]) -> None:
    """Raise :class:`BrokenTiesError` if any group of names no longer resolves to one tensor,
    or one of its names is no longer a parameter at all (after pruning or quantization).

    Call it after an operation known to replace parameters (chapter 05), with the groups
    :func:`shared_groups` gave before it.

    Args:
        module: the model.
        groups: the ties it should have, e.g. ``shared_groups(model)`` recorded beforehand.

    Raises:
        TypeError: ``module`` is not an ``nn.Module`` or ``groups`` is malformed
            (see :func:`validate_groups`).
        ValueError: a group has fewer than two names, or a name does not exist in ``module``.
        BrokenTiesError: a group is now several tensors, or a name is no longer a parameter.

    Examples:
        >>> from torch import nn
        >>> import shared_lib as sl
        >>> lm = nn.ModuleDict({"embed": nn.Embedding(5, 3), "head": nn.Linear(3, 5, bias=False)})
        >>> _ = sl.tie(lm["head"], lm["embed"])
        >>> groups = sl.shared_groups(lm)
        >>> sl.check_ties(lm, groups)  # intact: nothing happens
        >>> lm["head"].weight = nn.Parameter(lm["embed"].weight.detach().clone())
        >>> sl.check_ties(lm, groups)
        Traceback (most recent call last):
        ...
        shared_lib.tying.BrokenTiesError: 1 tie(s) broken, ... [['embed.weight', 'head.weight']]...
    """
    check_module(module, "module")
    validate_groups(groups)
    broken, replaced = [], []
    for group in groups:
        params = [_still_a_parameter(module, name) for name in group]
        replaced += [name for name, param in zip(group, params, strict=True) if param is None]
        if any(param is None for param in params) or len({id(p) for p in params}) != 1:
            broken.append(list(group))
    if broken:
        remedy = (
            f"; no longer parameters at all (pruned or quantized?): {replaced}, which retie "
            "cannot restore: undo that operation, or apply it to the shared tensor once"
            if replaced
            else ". Call shared_lib.retie(module, groups) to restore them"
        )
        raise BrokenTiesError(
            f"{len(broken)} tie(s) broken, these names are now separate tensors: {broken}{remedy}."
        )


def retie(module: nn.Module, groups: Sequence[Sequence[str]], *, check_values: bool = True) -> None:
    """Make every name in each group use the first name's tensor again (chapter 05).

    With ``check_values`` (default), refuse to re-tie tensors whose values differ, because one of
    them would be silently thrown away. Values are compared only when both tensors hold data
    (not on the meta device).

    Args:
        module: the model, changed in place.
        groups: the ties to restore, e.g. ``shared_groups(model)`` recorded beforehand; the first
            name of each group keeps its tensor.
        check_values: refuse tensors with different values (``False``: keep the first's).

    Raises:
        TypeError: ``module`` is not an ``nn.Module``, ``groups`` is malformed or
            ``check_values`` is not a bool.
        ValueError: a name does not exist, or the names of a group have different shapes.
        BrokenTiesError: ``check_values`` is on and the tensors of a group hold different values.

    Examples:
        >>> from torch import nn
        >>> import shared_lib as sl
        >>> net = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))  # two different weights
        >>> sl.retie(net, [["0.weight", "1.weight"]])
        Traceback (most recent call last):
        ...
        shared_lib.tying.BrokenTiesError: cannot re-tie '1.weight' to '0.weight': ...
        >>> sl.retie(net, [["0.weight", "1.weight"]], check_values=False)  # keep the first
        >>> net[1].weight is net[0].weight
        True
    """
    check_module(module, "module")
    validate_groups(groups)
    check_bool(check_values, "check_values")
    for group in groups:
        keeper = get_parameter(module, group[0])
        for name in group[1:]:
            other = get_parameter(module, name)
            if other is keeper:
                continue
            if other.shape != keeper.shape:
                raise ValueError(
                    f"groups: {group[0]!r} {tuple(keeper.shape)} and {name!r} "
                    f"{tuple(other.shape)} cannot be one tensor"
                )
            # Values are compared only when both tensors hold data (not on the meta device).
            holds_data = not keeper.is_meta and not other.is_meta
            if (
                check_values
                and holds_data
                and not torch.equal(other.detach().to(keeper.device), keeper.detach())
            ):
                raise BrokenTiesError(
                    f"cannot re-tie {name!r} to {group[0]!r}: their values differ, so one "
                    "would be lost. Pass check_values=False to keep the first."
                )
            _set_parameter(module, name, keeper)


@contextmanager
def preserve_ties(module: nn.Module, *, check_values: bool = True) -> Iterator[list[list[str]]]:
    """Record the ties, run the block, then restore any tie the block broke (chapter 05).

    ``check_values`` is passed to :func:`retie`: keep it for loads (a tie whose names were given
    different values is refused, not silently resolved); turn it off for ``to_empty``, whose
    fresh tensors hold uninitialised memory.

    Args:
        module: the model whose ties to keep.
        check_values: see :func:`retie`.

    Yields:
        The recorded groups, as :func:`shared_groups` gives them.

    Raises:
        TypeError: ``module`` is not an ``nn.Module`` or ``check_values`` is not a bool.
        BrokenTiesError: ``check_values`` is on and the block gave tied names different values.

    Examples:
        >>> from torch import nn
        >>> import shared_lib as sl
        >>> lm = nn.ModuleDict({"embed": nn.Embedding(5, 3), "head": nn.Linear(3, 5, bias=False)})
        >>> _ = sl.tie(lm["head"], lm["embed"])
        >>> state = {name: tensor.clone() for name, tensor in lm.state_dict().items()}
        >>> with sl.preserve_ties(lm) as groups:
        ...     _ = lm.load_state_dict(state, assign=True)  # alone, it unties embed and head
        >>> groups, lm["head"].weight is lm["embed"].weight
        ([['embed.weight', 'head.weight']], True)
    """
    check_bool(check_values, "check_values")
    groups = shared_groups(module)
    yield groups
    if groups:
        retie(module, groups, check_values=check_values)


def untie(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` in which every use has its own tensor, with the same values.

    A module registered in several places becomes several independent modules; a parameter
    shared by several modules becomes one clone per name. The copy is the model as it would be
    without sharing: ``count_parameters(untie(m)) == count_parameters(m, unique=False)``
    (chapter 01). ``module`` itself keeps its ties.

    Args:
        module: the model.

    Returns:
        The untied copy.

    Raises:
        TypeError: ``module`` is not an ``nn.Module``.

    Examples:
        >>> from torch import nn
        >>> import shared_lib as sl
        >>> layer = nn.Linear(4, 4); net = nn.Sequential(layer, layer)
        >>> untied = sl.untie(net)
        >>> sl.shared_groups(untied), sl.count_parameters(untied), sl.count_parameters(net)
        ([], 40, 20)
    """
    check_module(module, "module")
    untied = copy.deepcopy(module)

    seen_modules: set[int] = set()

    def split_modules(parent: nn.Module) -> None:
        for name, child in list(parent._modules.items()):
            if child is None:
                continue
            if id(child) in seen_modules:
                child = copy.deepcopy(child)
                parent._modules[name] = child
            seen_modules.add(id(child))
            split_modules(child)

    split_modules(untied)
    for group in shared_groups(untied):
        for name in group[1:]:
            original = get_parameter(untied, name)
            clone = nn.Parameter(original.detach().clone(), requires_grad=original.requires_grad)
            _set_parameter(untied, name, clone)
    return untied
