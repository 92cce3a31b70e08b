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
import dataclasses
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
    "materialize",
    "preserve_ties",
    "retie",
    "shared_groups",
    "tie",
    "tie_embeddings",
    "untie",
    "untie_embeddings",
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


_WRAPPER_SEGMENTS = ("_orig_mod", "module")  # torch.compile's and DDP's wrapper attributes


def _inner_model(module: nn.Module) -> nn.Module:
    """The model inside ``torch.compile``'s ``OptimizedModule`` and DDP wrappers (if any)."""
    while True:
        if isinstance(getattr(module, "_orig_mod", None), nn.Module):
            module = module._orig_mod
        elif isinstance(module, nn.parallel.DistributedDataParallel):
            module = module.module
        else:
            return module


def _without_wrapper_prefix(name: str) -> str:
    """``name`` without leading ``_orig_mod.`` / ``module.`` segments (a wrapper's names)."""
    head, _, rest = name.partition(".")
    while rest and head in _WRAPPER_SEGMENTS:
        name = rest
        head, _, rest = name.partition(".")
    return name


def _lookup(module: nn.Module, name: str) -> tuple[nn.Module, str] | None:
    """(owner, attribute) of the parameter ``name`` in ``module``; ``None`` if there is none.

    A parametrized name (``decoder.weight`` of a transposed tie) resolves to the one tensor its
    parametrization computes from (``decoder.parametrizations.weight.original``)."""
    owner_name, _, attr = name.rpartition(".")
    try:
        owner = module.get_submodule(owner_name) if owner_name else module
    except AttributeError:
        return None
    if owner._parameters.get(attr) is not None:
        return owner, attr
    if parametrize.is_parametrized(owner, attr):
        parametrization = owner.parametrizations[attr]
        if parametrization._parameters.get("original") is not None:
            return parametrization, "original"
    return None


def _locate(module: nn.Module, name: str) -> tuple[nn.Module, str]:
    """(owner, attribute) of the parameter ``name``, as spelled for ``module`` or for the same
    model with or without its ``torch.compile``/DDP wrapper; a clear ValueError otherwise."""
    found = _lookup(module, name)
    if found is None:
        found = _lookup(_inner_model(module), _without_wrapper_prefix(name))
    if found is not None:
        return found
    owner_name, _, attr = name.rpartition(".")
    try:
        owner = module.get_submodule(owner_name) if owner_name else module
    except AttributeError as error:
        raise ValueError(
            f"name {name!r}: no submodule {owner_name!r} in {type(module).__name__}"
        ) from error
    if parametrize.is_parametrized(owner, attr):
        originals = list(owner.parametrizations[attr]._parameters)
        raise ValueError(
            f"name {name!r} is computed by a parametrization from several tensors {originals}: "
            f"name one of them, e.g. {owner_name + '.' if owner_name else ''}parametrizations."
            f"{attr}.{originals[0]}"
        )
    raise ValueError(f"name {name!r}: {type(owner).__name__} has no parameter {attr!r}")


def get_parameter(module: nn.Module, name: str) -> nn.Parameter:
    """The parameter at a dotted ``name`` (e.g. ``"encoder.0.weight"``), with a clear error.

    Names may be spelled with or without the ``_orig_mod.`` prefix of ``torch.compile`` and the
    ``module.`` prefix of DDP, so that groups recorded on a wrapped model work on the plain one
    and back. The name of a transposed use (``decoder.weight`` after ``tie(decoder, encoder,
    transpose=True)``) gives the shared tensor it is computed from.

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
        >>> get_parameter(net, "_orig_mod.2.weight") is layer.weight  # a compiled model's name
        True
    """
    check_module(module, "module")
    check_instance(name, "name", str)
    owner, attr = _locate(module, name)
    return owner._parameters[attr]


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
    # The target's name first: a typo there must not be blamed on source_name.
    if parametrize.is_parametrized(target, name):
        raise ValueError(
            f"name {name!r} on target is already computed by a parametrization (a transposed "
            f"tie?); untie it first: shared_lib.untie(model, '<path to target>.{name}', "
            f"inplace=True), or torch.nn.utils.parametrize.remove_parametrizations(target, "
            f"{name!r})"
        )
    current = target._parameters.get(name)
    if current is None:
        known = list(target._parameters)
        raise ValueError(
            f"name {name!r}: {type(target).__name__} (target) has no parameter of that name; "
            f"it has {known}"
        )
    if isinstance(source, nn.Parameter):
        shared = source
        source_desc = "source parameter"
    else:
        argument = "name" if source_name is None else "source_name"
        source_name = (
            name if source_name is None else check_instance(source_name, "source_name", str)
        )
        shared = getattr(source, source_name, None)
        if not isinstance(shared, nn.Parameter):
            raise ValueError(
                f"{argument} {source_name!r}: {type(source).__name__} (source) has no parameter "
                f"of that name; it has {list(source._parameters)}"
                + ("" if argument == "source_name" else "; pass source_name=... for its name")
            )
        source_desc = f"source.{source_name}"

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
    owner, attr = _locate(module, name)
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
        if owner is not None and parametrize.is_parametrized(owner, attr):
            raise  # several originals: the message says which name to give
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


def _retie_plan(
    module: nn.Module, groups: Sequence[Sequence[str]], check_values: bool
) -> tuple[list[tuple[str, list[str]]], list[tuple[list[str], str, list[str]]]]:
    """What re-tying ``groups`` would do, without doing it.

    Returns the plan, ``(keeper name, names to point at it)`` per group that is not one tensor,
    and the refusals, ``(group, keeper name, names whose values differ)``. The keeper is the
    first name whose tensor holds data: a meta tensor is never kept over real values."""
    plan, refused = [], []
    for group in groups:
        params = [get_parameter(module, name) for name in group]
        if len({id(param) for param in params}) == 1:
            continue
        shapes = {tuple(param.shape) for param in params}
        if len(shapes) != 1:
            raise ValueError(
                f"groups: {list(group)} have shapes "
                f"{[tuple(param.shape) for param in params]} and cannot be one tensor"
            )
        holding = [index for index, param in enumerate(params) if not param.is_meta]
        keep = holding[0] if holding else 0
        keeper = params[keep]
        differ = []
        for index in holding:
            other = params[index]
            if other is keeper:
                continue
            if other.dtype != keeper.dtype:
                raise ValueError(
                    f"groups: {group[keep]!r} ({keeper.dtype}) and {group[index]!r} "
                    f"({other.dtype}) cannot be one tensor: cast the model to one dtype first"
                )
            same = torch.equal(other.detach().to(keeper.device), keeper.detach())
            if check_values and not same and group[index] not in differ:
                differ.append(group[index])
        if differ:
            refused.append((list(group), group[keep], differ))
        else:
            others = [
                name for name, param in zip(group, params, strict=True) if param is not keeper
            ]
            plan.append((group[keep], others))
    return plan, refused


def _refusal_text(refused: list[tuple[list[str], str, list[str]]]) -> str:
    _, keeper, differ = refused[0]
    text = f"cannot re-tie {differ[0]!r} to {keeper!r}: their values differ, so one would be lost"
    if len(refused) > 1 or len(differ) > 1:
        every = [[keeper, *names] for _, keeper, names in refused]
        text += f" (groups whose values differ: {every})"
    return text


def _apply_plan(module: nn.Module, plan: list[tuple[str, list[str]]]) -> None:
    for keeper_name, others in plan:
        keeper = get_parameter(module, keeper_name)
        for name in others:
            _set_parameter(module, name, keeper)


def retie(module: nn.Module, groups: Sequence[Sequence[str]], *, check_values: bool = True) -> None:
    """Make every name in each group use one tensor again (chapter 05).

    The tensor kept is the first name's, unless that one is on the meta device and another
    name's holds data: real values are never dropped for an empty placeholder. With
    ``check_values`` (default), tensors of a group that hold different values are refused,
    because one of them would be silently thrown away; a refusal changes nothing (every group
    is checked before any is re-tied).

    Args:
        module: the model, changed in place.
        groups: the ties to restore, e.g. ``shared_groups(model)`` recorded beforehand.
        check_values: refuse tensors with different values (``False``: keep the first that
            holds data).

    Raises:
        TypeError: ``module`` is not an ``nn.Module``, ``groups`` is malformed or
            ``check_values`` is not a bool.
        ValueError: a name does not exist, or the names of a group have different shapes or
            dtypes.
        BrokenTiesError: ``check_values`` is on and the tensors of a group hold different values
            (the model is left as it was).

    Examples:
        >>> import torch
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

        A name still on the meta device never wins over one that holds values:

        >>> with torch.device("meta"):
        ...     lm = nn.ModuleDict({"embed": nn.Embedding(4, 2), "head": nn.Linear(2, 4)})
        >>> lm["head"].weight = nn.Parameter(torch.ones(4, 2))  # loaded; embed still empty
        >>> sl.retie(lm, [["embed.weight", "head.weight"]])
        >>> lm["embed"].weight.is_meta, float(lm["embed"].weight.detach().sum())
        (False, 8.0)
    """
    check_module(module, "module")
    validate_groups(groups)
    check_bool(check_values, "check_values")
    plan, refused = _retie_plan(module, groups, check_values)
    if refused:
        raise BrokenTiesError(
            _refusal_text(refused) + ". Nothing was changed: these names are still separate "
            "tensors. Pass check_values=False to keep the first name's values."
        )
    _apply_plan(module, plan)


@contextmanager
def preserve_ties(module: nn.Module, *, check_values: bool = True) -> Iterator[list[list[str]]]:
    """Record the ties, run the block, then restore any tie the block broke (chapter 05).

    Around a load (``load_state_dict(..., assign=True)``, also into a meta-device model): a
    name the block filled wins over one it left on the meta device, and a tie whose names were
    given different values is refused, not silently resolved. To materialise a meta-device model
    use :func:`materialize`, which keeps ties by itself (``to_empty`` gives every name its own
    uninitialised tensor, which this block would refuse).

    Args:
        module: the model whose ties to keep.
        check_values: see :func:`retie`.

    Yields:
        The recorded groups, as :func:`shared_groups` gives them.

    Raises:
        TypeError: ``module`` is not an ``nn.Module`` or ``check_values`` is not a bool.
        BrokenTiesError: ``check_values`` is on and the block gave tied names different values;
            every other tie is restored, and the message names the groups left untied and how
            to fix them.

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
    check_module(module, "module")
    check_bool(check_values, "check_values")
    groups = shared_groups(module)
    on_meta = {
        index for index, group in enumerate(groups) if get_parameter(module, group[0]).is_meta
    }
    yield groups
    if not groups:
        return
    plan, refused = _retie_plan(module, groups, check_values)
    _apply_plan(module, plan)
    if refused:
        indices = [groups.index(group) for group, _, _ in refused]
        if all(index in on_meta for index in indices):
            cause = (
                "These ties were on the meta device before the block. If the block was "
                "to_empty, its tensors are uninitialised: use shared_lib.materialize(model, "
                "device), which keeps ties. If it was a load, the state dict holds different "
                "values for these names: load it into a model built without the tie, or pass "
                "check_values=False to keep the first name's values"
            )
        else:
            cause = (
                "The block (a load?) gave these names different values: load them into a model "
                "built without the tie, or pass check_values=False to keep the first name's "
                "values"
            )
        restored = len(groups) - len(refused)
        raise BrokenTiesError(
            f"{_refusal_text(refused)}. The model is as the block left it, with {restored} of "
            f"{len(groups)} ties restored; these stay separate tensors: "
            f"{[group for group, _, _ in refused]}. {cause}."
        )


def materialize(module: nn.Module, device: torch.device | str) -> nn.Module:
    """Allocate every meta-device tensor of ``module`` on ``device``, keeping ties (chapter 05).

    The tie-keeping ``to_empty``: each tensor on the meta device gets uninitialised memory on
    ``device``, once, however many names use it, so ties hold. Tensors that already hold values
    are left as they are (``to_empty`` would replace them by uninitialised memory too).
    Initialise or load the new tensors afterwards.

    Args:
        module: the model, changed in place.
        device: where to allocate, e.g. ``"cpu"`` or ``"cuda"``.

    Returns:
        ``module``.

    Raises:
        TypeError: ``module`` is not an ``nn.Module`` or ``device`` not a device or string.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> import shared_lib as sl
        >>> with torch.device("meta"):
        ...     lm = nn.ModuleDict({"embed": nn.Embedding(10, 4), "head": nn.Linear(4, 10)})
        >>> _ = sl.tie(lm["head"], lm["embed"])
        >>> _ = sl.materialize(lm, "cpu")
        >>> lm["head"].weight.device.type, lm["head"].weight is lm["embed"].weight
        ('cpu', True)
    """
    check_module(module, "module")
    check_instance(device, "device", (torch.device, str), "torch.device or str")
    device = torch.device(device)
    fresh: dict[int, torch.Tensor] = {}
    for owner in module.modules():
        for name, param in owner._parameters.items():
            if param is not None and param.is_meta:
                if id(param) not in fresh:
                    empty = torch.empty_like(param, device=device)
                    fresh[id(param)] = nn.Parameter(empty, requires_grad=param.requires_grad)
                owner._parameters[name] = fresh[id(param)]
        for name, buffer in owner._buffers.items():
            if buffer is not None and buffer.is_meta:
                if id(buffer) not in fresh:
                    fresh[id(buffer)] = torch.empty_like(buffer, device=device)
                owner._buffers[name] = fresh[id(buffer)]
    return module


def _use_counts(module: nn.Module) -> dict[int, int]:
    counts: dict[int, int] = {}
    for _, child in module.named_modules(remove_duplicate=False):
        counts[id(child)] = counts.get(id(child), 0) + 1
    return counts


def _structural_clone(child: nn.Module) -> nn.Module:
    """New module objects over the same tensors: the tensors stay shared, the module does not."""
    memo = {id(t): t for t in [*child.parameters(), *child.buffers()]}
    return copy.deepcopy(child, memo)


def _own_module_path(module: nn.Module, name: str) -> None:
    """Make every module on the path to ``name`` used at that path only (clone shared ones)."""
    parts = name.split(".")[:-1]
    parent = module
    for part in parts:
        child = parent._modules.get(part)
        if child is None:
            return  # the name is resolved through a wrapper or a parametrization
        if _use_counts(module).get(id(child), 0) > 1:
            child = _structural_clone(child)
            parent._modules[part] = child
        parent = child


def _is_transposed_tie(owner: nn.Module, attr: str) -> bool:
    if not parametrize.is_parametrized(owner, attr):
        return False
    chain = owner.parametrizations[attr]
    return len(chain) == 1 and isinstance(chain[0], _Transpose)


def _remove_transpose(owner: nn.Module, attr: str) -> None:
    """Replace a transposed tie by a parameter of its own holding the same (transposed) values."""
    original = owner.parametrizations[attr].original
    value = getattr(owner, attr).detach().clone()
    # A deep copy of a parametrized module shares its generated class, and removing a
    # parametrization deletes the class's property: give this module a class of its own first.
    cls = owner.__class__
    namespace = {k: v for k, v in cls.__dict__.items() if k not in ("__dict__", "__weakref__")}
    owner.__class__ = type(cls.__name__, cls.__bases__, namespace)
    # leave_parametrized=False: torch's True would write the values into the shared tensor.
    parametrize.remove_parametrizations(owner, attr, leave_parametrized=False)
    owner._parameters[attr] = nn.Parameter(value, requires_grad=original.requires_grad)


def _transposed_use(module: nn.Module, name: str) -> tuple[str, str] | None:
    """(path of the layer, attribute) if ``name`` is a transposed tie's use: the layer's own
    name (``decoder.weight``) or its tensor's (``decoder.parametrizations.weight.original``)."""
    path, _, attr = name.rpartition(".")
    if attr == "original" and ".parametrizations." in f".{path}":
        path, _, attr = f".{path}".rpartition(".parametrizations.")
        path = path.removeprefix(".")
    try:
        host = module.get_submodule(path) if path else module
    except AttributeError:
        return None
    return (path, attr) if _is_transposed_tie(host, attr) else None


def _untie_name(module: nn.Module, name: str) -> None:
    transposed = _transposed_use(module, name)
    if transposed is not None:
        path, attr = transposed
        _own_module_path(module, f"{path}.{attr}" if path else attr)
        _remove_transpose(module.get_submodule(path) if path else module, attr)
        return
    param = get_parameter(module, name)
    uses = [n for n, p in module.named_parameters(remove_duplicate=False) if p is param]
    if len(uses) < 2:
        return  # already its own tensor
    _own_module_path(module, name)
    owner, attr = _locate(module, name)
    owner._parameters[attr] = nn.Parameter(
        param.detach().clone(), requires_grad=param.requires_grad
    )


def untie(
    module: nn.Module,
    names: str | Sequence[str] | None = None,
    *,
    inplace: bool = False,
) -> nn.Module:
    """``module`` with every use of a shared tensor given its own tensor, with the same values.

    By default a deep copy in which nothing is shared: a module registered in several places
    becomes several modules, a parameter shared by several modules one clone per name, and a
    transposed tie a plain parameter holding the transposed values. The copy is the model as
    it would be without sharing: ``count_parameters(untie(m)) == count_parameters(m,
    unique=False)`` (chapter 01). With ``names``, only those uses get their own tensor and every
    other tie stays (fine-tuning an untied head from a tied checkpoint); with ``inplace``,
    ``module`` itself is changed.

    Args:
        module: the model.
        names: qualified parameter names to untie (a transposed use by its own name, e.g.
            ``"decoder.weight"``); ``None`` for all. A name that is not shared is left as it is.
        inplace: change ``module`` instead of returning an untied copy.

    Returns:
        The untied model (``module`` itself when ``inplace``).

    Raises:
        TypeError: ``module`` is not an ``nn.Module``, ``names`` not a string or a list of
            strings, or ``inplace`` not a bool.
        ValueError: a name is not a parameter of ``module``.

    Examples:
        >>> from torch import nn
        >>> import shared_lib as sl
        >>> layer = nn.Linear(4, 4); net = nn.Sequential(layer, layer)
        >>> untied = sl.untie(net)
        >>> sl.shared_groups(untied), sl.count_parameters(untied), sl.count_parameters(net)
        ([], 40, 20)

        One use untied in place, the other tie kept:

        >>> _ = sl.untie(net, "1.weight", inplace=True)
        >>> sl.shared_groups(net)
        [['0.bias', '1.bias']]
    """
    check_module(module, "module")
    check_bool(inplace, "inplace")
    if names is not None:
        if isinstance(names, str):
            names = [names]
        if not isinstance(names, Sequence):
            raise TypeError(f"names must be a parameter name or a list of them, got {names!r}")
        for position, name in enumerate(names):
            check_instance(name, f"names[{position}]", str)
        for name in names:
            get_parameter(module, name)  # every name exists, before anything changes
    untied = module if inplace else copy.deepcopy(module)
    if names is not None:
        for name in names:
            _untie_name(untied, name)
        return untied

    seen_modules: set[int] = set()

    def split_modules(parent: nn.Module) -> None:
        for child_name, child in list(parent._modules.items()):
            if child is None:
                continue
            if id(child) in seen_modules:
                child = copy.deepcopy(child)
                parent._modules[child_name] = child
            seen_modules.add(id(child))
            split_modules(child)

    split_modules(untied)
    for owner in list(untied.modules()):
        for attr in list(getattr(owner, "parametrizations", {}) or {}):
            if _is_transposed_tie(owner, attr):
                _remove_transpose(owner, attr)
    for group in shared_groups(untied):
        for name in group[1:]:
            original = get_parameter(untied, name)
            clone = nn.Parameter(original.detach().clone(), requires_grad=original.requires_grad)
            _set_parameter(untied, name, clone)
    return untied


def _embedding_layers(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    """(input embedding, output layer) of a model that declares them, with clear errors."""
    check_module(model, "model")
    for method in ("get_input_embeddings", "get_output_embeddings"):
        if not callable(getattr(model, method, None)):
            raise TypeError(
                f"model: {type(model).__name__} has no {method}() (Hugging Face models and "
                "shared_lib's GPT have both); tie its layers with shared_lib.tie(output_layer, "
                "input_embedding) instead"
            )
    embedding, output = model.get_input_embeddings(), model.get_output_embeddings()
    for layer, method in ((embedding, "get_input_embeddings"), (output, "get_output_embeddings")):
        if not isinstance(layer, nn.Module) or not isinstance(
            getattr(layer, "weight", None), nn.Parameter | torch.Tensor
        ):
            raise ValueError(
                f"model: {type(model).__name__}.{method}() gave {layer!r}, not a layer with a "
                "weight (a base model without its language-model head has no output layer to "
                "tie: build the ...ForCausalLM / ...ForMaskedLM class)"
            )
    return embedding, output


def _sync_tie_config(model: nn.Module, tied: bool) -> None:
    """Make the model's config say whether the embeddings are tied, so it is saved that way."""
    config = getattr(model, "config", None)
    if config is None:
        return
    if dataclasses.is_dataclass(config) and any(
        field.name == "tie_embeddings" for field in dataclasses.fields(config)
    ):
        model.config = dataclasses.replace(config, tie_embeddings=tied)  # shared_lib's GPT
        return
    configs = [config]
    get_text_config = getattr(config, "get_text_config", None)
    if callable(get_text_config):
        text_config = get_text_config()
        if text_config is not config:
            configs.append(text_config)
    for each in configs:
        if hasattr(each, "tie_word_embeddings"):
            each.tie_word_embeddings = tied
    # transformers keeps the mapping of tied names it saves and re-ties; recompute it.
    expand = getattr(model, "get_expanded_tied_weights_keys", None)
    if hasattr(model, "all_tied_weights_keys") and callable(expand):
        model.all_tied_weights_keys = expand(all_submodels=True)


def tie_embeddings(model: nn.Module) -> nn.Module:
    """Make the output layer use the input embedding's weight, and say so in the config.

    For any model with ``get_input_embeddings()`` and ``get_output_embeddings()`` (Hugging Face
    models, :class:`~shared_lib.models.gpt.GPT`). The output layer's own weight is discarded. A
    Hugging Face config gets ``tie_word_embeddings=True``, so ``save_pretrained`` stores the
    matrix once and ``from_pretrained`` re-ties it (tying by hand without the config brings the
    head back randomly initialised), and the model's ``tie_weights()`` makes the other ties that
    switch declares (BERT's decoder bias); shared_lib's ``GPTConfig.tie_embeddings`` is kept in
    sync.

    Args:
        model: the language model, changed in place.

    Returns:
        ``model``.

    Raises:
        TypeError: ``model`` is not a module or lacks the two methods.
        ValueError: the model has no output layer, or the two weights have different shapes,
            dtypes or devices.

    Examples:
        >>> import shared_lib as sl
        >>> from shared_lib.models import GPT, GPTConfig
        >>> config = GPTConfig(vocab_size=50, block_size=8, n_layer=1, n_head=2, n_embd=8,
        ...                    tie_embeddings=False)
        >>> lm = sl.tie_embeddings(GPT(config))
        >>> sl.shared_groups(lm), lm.config.tie_embeddings
        ([['transformer.wte.weight', 'lm_head.weight']], True)
    """
    embedding, output = _embedding_layers(model)
    if output.weight is not embedding.weight:
        tie(output, embedding)
    _sync_tie_config(model, True)
    if callable(getattr(model, "get_expanded_tied_weights_keys", None)) and callable(
        getattr(model, "tie_weights", None)
    ):
        model.tie_weights()  # the rest of what the config ties (BERT: the decoder's bias too)
    return model


def untie_embeddings(model: nn.Module) -> nn.Module:
    """Give the output layer a weight of its own (a copy of the embedding), and say so in the
    config: the way to fine-tune an untied head from a tied checkpoint.

    A Hugging Face config gets ``tie_word_embeddings=False``, so ``save_pretrained`` stores both
    matrices and ``from_pretrained`` keeps them apart; every tie that switch controls is untied
    too, since ``from_pretrained`` would no longer re-make it (BERT: the decoder's bias). Every
    other tie stays, such as one module registered in several places (T5's token embedding,
    which its encoder and decoder hold and their constructors re-make).

    Args:
        model: the language model, changed in place.

    Returns:
        ``model``.

    Raises:
        TypeError: ``model`` is not a module or lacks ``get_input_embeddings`` /
            ``get_output_embeddings``.
        ValueError: the model has no output layer.

    Examples:
        >>> import shared_lib as sl
        >>> from shared_lib.models import GPT, GPTConfig
        >>> lm = GPT(GPTConfig(vocab_size=50, block_size=8, n_layer=1, n_head=2, n_embd=8))
        >>> lm = sl.untie_embeddings(lm)
        >>> sl.shared_groups(lm), lm.config.tie_embeddings, sl.count_parameters(lm.lm_head)
        ([], False, 400)
    """
    _, output = _embedding_layers(model)
    path = next(name for name, layer in model.named_modules() if layer is output)
    names = [f"{path}.weight" if path else "weight"]
    expand = getattr(model, "get_expanded_tied_weights_keys", None)
    if callable(expand):
        # Every tie the config switch controls, since from_pretrained would not re-make them;
        # but not one module registered at both names (T5's shared token embedding), which the
        # model's constructor re-makes whatever the config says.
        for target, source in expand(all_submodels=True).items():
            owners = {id(model.get_submodule(name.rpartition(".")[0])) for name in (target, source)}
            if len(owners) == 2 and target not in names:
                names.append(target)
    untie(model, names, inplace=True)
    _sync_tie_config(model, False)
    return model
