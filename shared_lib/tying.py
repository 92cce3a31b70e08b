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

__all__ = [
    "BrokenTiesError",
    "check_ties",
    "get_parameter",
    "preserve_ties",
    "retie",
    "shared_groups",
    "tie",
    "untie",
]


class BrokenTiesError(RuntimeError):
    """Raised when names that should be one tensor have become separate tensors."""


class _Transpose(nn.Module):
    """Parametrization ``weight = original.T``: a layer uses another layer's weight, transposed."""

    def forward(self, original: torch.Tensor) -> torch.Tensor:
        return original.t()


def _check_module(value: object, argument: str) -> nn.Module:
    if not isinstance(value, nn.Module):
        raise TypeError(f"{argument} must be a torch.nn.Module, got {type(value).__name__}")
    return value


def get_parameter(module: nn.Module, name: str) -> nn.Parameter:
    """The parameter at a dotted ``name`` (e.g. ``"encoder.0.weight"``), with a clear error."""
    _check_module(module, "module")
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
        TypeError: if ``target``/``source`` are not modules/parameters.
        ValueError: if a name does not exist, or the shapes (after transposing) differ.
    """
    _check_module(target, "target")
    if isinstance(source, nn.Parameter):
        shared = source
        source_desc = "source parameter"
    elif isinstance(source, nn.Module):
        source_name = name if source_name is None else source_name
        shared = getattr(source, source_name, None)
        if not isinstance(shared, nn.Parameter):
            raise ValueError(
                f"source_name {source_name!r}: {type(source).__name__} has no parameter "
                "of that name"
            )
        source_desc = f"source.{source_name}"
    else:
        raise TypeError(f"source must be an nn.Module or nn.Parameter, got {type(source).__name__}")

    if parametrize.is_parametrized(target, name):
        raise ValueError(f"name {name!r} on target is already parametrized; untie it first")
    current = target._parameters.get(name)
    if current is None:
        raise ValueError(f"name {name!r}: {type(target).__name__} has no parameter of that name")
    if not isinstance(transpose, bool):
        raise TypeError(f"transpose must be a bool, got {type(transpose).__name__}")

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

    >>> lin = nn.Linear(3, 3); net = nn.Sequential(lin, nn.ReLU(), lin)
    >>> shared_groups(net)
    [['0.weight', '2.weight'], ['0.bias', '2.bias']]
    """
    _check_module(module, "module")
    by_tensor: dict[int, list[str]] = {}
    for qualified_name, param in module.named_parameters(remove_duplicate=False):
        by_tensor.setdefault(id(param), []).append(qualified_name)
    return [names for names in by_tensor.values() if len(names) >= 2]


def _set_parameter(module: nn.Module, name: str, param: nn.Parameter) -> None:
    owner_name, _, attr = name.rpartition(".")
    owner = module.get_submodule(owner_name) if owner_name else module
    owner._parameters[attr] = param


def _validate_groups(groups: Sequence[Sequence[str]]) -> None:
    if isinstance(groups, str) or not isinstance(groups, Sequence):
        raise TypeError("groups must be a list of lists of parameter names (see shared_groups)")
    for group in groups:
        if isinstance(group, str) or not isinstance(group, Sequence) or len(group) < 2:
            raise ValueError(f"groups: each group needs at least two names, got {group!r}")


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
    or one of its names is no longer a parameter at all (after pruning or quantization)."""
    _check_module(module, "module")
    _validate_groups(groups)
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
    """Make every name in each group use the first name's tensor again.

    With ``check_values`` (default), refuse to re-tie tensors whose values differ, because one of
    them would be silently thrown away.
    """
    _check_module(module, "module")
    _validate_groups(groups)
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
    """Record the ties, run the block, then restore any tie the block broke.

    ``check_values`` is passed to :func:`retie`: keep it for loads (a tie whose names were given
    different values is refused, not silently resolved); turn it off for ``to_empty``, whose
    fresh tensors hold uninitialised memory.

    >>> with preserve_ties(model, check_values=False):
    ...     model.to_empty(device="cpu")   # would otherwise untie tied weights
    """
    groups = shared_groups(module)
    yield groups
    if groups:
        retie(module, groups, check_values=check_values)


def untie(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` in which every use has its own tensor, with the same values.

    A module registered in several places becomes several independent modules; a parameter
    shared by several modules becomes one clone per name. The copy is the model as it would be
    without sharing: ``count_parameters(untie(m)) == count_parameters(m, unique=False)``.
    """
    _check_module(module, "module")
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
