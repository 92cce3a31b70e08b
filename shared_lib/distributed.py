"""Shared weights across processes: DDP and FSDP2 with tied and reused modules.

Used by the appendix "Sharing at scale". Data-parallel training replicates (DDP) or shards
(FSDP) a model over several processes, and both meet parameter sharing in a way that can fail:

* **FSDP shards one unit at a time.** Every ``fully_shard`` call makes the parameters it
  manages one sharded group, gathered just before the unit runs and freed after it. A tied
  parameter used by modules of two units would be gathered for one and not for the other, so
  FSDP needs every module that uses a tied parameter in the *same* unit
  (pytorch/pytorch#77724). :func:`fsdp_units` merges candidate units that share a parameter,
  :func:`check_units` refuses units that split one (naming the parameter and the units) before
  anything is sharded, and :func:`shard_model` applies FSDP2's ``fully_shard`` to the merged
  units, then to the root, and checks that every tie survived.
* **DDP and reentrant activation checkpointing.** DDP averages a parameter's gradient over the
  processes once autograd has accumulated it. Reentrant checkpointing (``use_reentrant=True``)
  runs a separate backward pass per checkpointed region, so a parameter used in two regions,
  or in one region and outside it (a layer reused at every depth, a tied output layer), has
  its gradient accumulated more than once. DDP does not support that (pytorch/pytorch#84589):
  it stops with an error, or, when it has already averaged everything else, averages only part
  of that gradient, silently. :func:`wrap_ddp` runs :func:`check_reentrant_sharing` first;
  wrap regions in :class:`Checkpointed` so that the check can see which ones are reentrant.
* **Pipeline parallelism copies a tied tensor.** The first stage holds the token embedding, the
  last the output layer: with tied embeddings each holds a copy of the one matrix and gets only
  its own share of the gradient. :func:`all_reduce_tied_grads` sums the shares over the stages
  (Megatron-LM's "embedding group"), so the copies get the same gradient and stay equal.

The checks look at the module tree (every path under which a module is registered) and, given
example inputs, at the calls one forward pass makes. A parameter used *functionally* (read as an
attribute in another module's ``forward``) is invisible to them.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from shared_lib._validation import check_bool, check_module, describe
from shared_lib.tying import check_ties, shared_groups
from shared_lib.uses import direct_parameters

__all__ = [
    "Checkpointed",
    "all_reduce_tied_grads",
    "block_candidates",
    "check_reentrant_sharing",
    "check_units",
    "fsdp_units",
    "shard_model",
    "wrap_ddp",
]

_ROOT = -1  # the owner index of modules outside every unit: FSDP's root unit
_SHOW = 4  # how many names an error message lists


# --------------------------------------------------------------------------------------------
# Activation checkpointing that the DDP check can see.


class Checkpointed(nn.Module):
    """Activation checkpointing of ``module``, reentrant or not, visible to the DDP check.

    A thin wrapper around :func:`torch.utils.checkpoint.checkpoint`: the forward pass keeps no
    activations of ``module`` and recomputes them during the backward pass. Marking the region
    as a module lets :func:`check_reentrant_sharing` see which regions run a reentrant backward.
    With gradients disabled (evaluation), ``module`` is simply called.

    Args:
        module: the module to checkpoint (e.g. a Transformer layer).
        use_reentrant: ``True`` for the older, reentrant implementation (a separate backward
            pass per region; needs a tensor input that requires grad, and keyword arguments
            cannot carry tensors that need gradients); ``False`` for the saved-tensor-hooks one
            that PyTorch recommends and that DDP supports with shared modules.

    Raises:
        TypeError: ``module`` is not an ``nn.Module`` or ``use_reentrant`` is not a bool.

    Shape:
        - Input: whatever ``module`` takes (positional and keyword arguments are passed on).
        - Output: what ``module`` returns, with the same values and gradients.

    Examples:
        >>> from torch import nn
        >>> from shared_lib.distributed import Checkpointed, check_reentrant_sharing
        >>> block = nn.Linear(4, 4)  # one block at three depths, each use checkpointed
        >>> deep = nn.Sequential(*[Checkpointed(block, use_reentrant=False)] * 3)
        >>> check_reentrant_sharing(deep)  # accepted; with use_reentrant=True it is refused
        >>> deep[0]
        Checkpointed(
          use_reentrant=False
          (module): Linear(in_features=4, out_features=4, bias=True)
        )
    """

    def __init__(self, module: nn.Module, use_reentrant: bool) -> None:
        super().__init__()
        check_module(module, "module")
        check_bool(use_reentrant, "use_reentrant")
        self.module = module
        self.use_reentrant = use_reentrant

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if not torch.is_grad_enabled():
            return self.module(*args, **kwargs)
        if self.use_reentrant:
            function = functools.partial(self.module, **kwargs) if kwargs else self.module
            return checkpoint(function, *args, use_reentrant=True)
        return checkpoint(self.module, *args, use_reentrant=False, **kwargs)

    def extra_repr(self) -> str:
        return f"use_reentrant={self.use_reentrant}"


# --------------------------------------------------------------------------------------------
# Walking the module tree by paths (a module registered twice has two paths).


def _walk(model: nn.Module) -> Iterator[tuple[str, tuple[nn.Module, ...]]]:
    """Every path of the module tree: its dotted name and the modules from the root down to it."""

    def visit(name: str, chain: tuple[nn.Module, ...]) -> Iterator:
        yield name, chain
        for child_name, child in chain[-1]._modules.items():
            if child is None or any(child is ancestor for ancestor in chain):
                continue
            yield from visit(f"{name}.{child_name}" if name else child_name, (*chain, child))

    yield from visit("", (model,))


def _parameter_names(model: nn.Module) -> dict[int, list[str]]:
    names: dict[int, list[str]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(param), []).append(name)
    return names


def _module_names(model: nn.Module) -> dict[int, list[str]]:
    names: dict[int, list[str]] = {}
    for name, chain in _walk(model):
        names.setdefault(id(chain[-1]), []).append(name or "<root>")
    return names


def _show(names: Sequence[str]) -> str:
    shown = ", ".join(repr(name) for name in names[:_SHOW])
    return shown + (f", ... ({len(names)} in all)" if len(names) > _SHOW else "")


# --------------------------------------------------------------------------------------------
# FSDP units.

Units = list[list[nn.Module]]


def _normalise(model: nn.Module, units: object, argument: str) -> Units:
    """A list of groups of distinct submodules of ``model`` (not the root), duplicates dropped."""
    if isinstance(units, nn.Module) or not isinstance(units, Sequence):
        raise TypeError(
            f"{argument} must be a list of modules or of lists of modules, got {describe(units)}"
        )
    inside = {id(module) for module in model.modules()}
    groups: Units = []
    for item in units:
        members = [item] if isinstance(item, nn.Module) else item
        if isinstance(members, (str, bytes)) or not isinstance(members, Sequence) or not members:
            raise TypeError(
                f"{argument}: each entry must be a module or a non-empty list of modules, "
                f"got {item!r}"
            )
        group: list[nn.Module] = []
        for member in members:
            if not isinstance(member, nn.Module):
                raise TypeError(f"{argument}: expected modules, got {describe(member)}")
            if member is model:
                raise ValueError(
                    f"{argument}: the model itself cannot be a unit; it is always the root unit"
                )
            if id(member) not in inside:
                raise ValueError(
                    f"{argument}: a {type(member).__name__} that is not a submodule of the model"
                )
            if all(member is not other for other in group):
                group.append(member)
        groups.append(group)
    return groups


def _owners(model: nn.Module, units: Units) -> tuple[dict[int, set[int]], dict[int, dict]]:
    """For each parameter: the units whose modules use it, and where (unit -> module paths).

    A path belongs to the unit of its deepest ancestor (or itself) that is a unit member, as
    FSDP applies ``fully_shard`` from the inside out; paths under no member belong to the root.
    """
    unit_of = {id(member): index for index, group in enumerate(units) for member in group}
    owners: dict[int, set[int]] = {}
    where: dict[int, dict[int, list[str]]] = {}
    for name, chain in _walk(model):
        owner = next(
            (unit_of[id(module)] for module in reversed(chain) if id(module) in unit_of), _ROOT
        )
        for param in direct_parameters(chain[-1]):
            owners.setdefault(id(param), set()).add(owner)
            where.setdefault(id(param), {}).setdefault(owner, []).append(name or "<root>")
    return owners, where


def _contains(outer: nn.Module, inner: nn.Module) -> bool:
    return inner is not outer and any(module is inner for module in outer.modules())


def _inside_first(units: Units) -> Units:
    """Order units so that a unit nested inside another comes first (fully_shard's order)."""
    before = {
        j: {
            i
            for i, inner in enumerate(units)
            if i != j and any(_contains(o, m) for o in units[j] for m in inner)
        }
        for j in range(len(units))
    }
    ordered: list[int] = []
    while len(ordered) < len(units):
        ready = [j for j in range(len(units)) if j not in ordered and before[j] <= set(ordered)]
        if not ready:
            raise ValueError("units: these units nest inside each other in a cycle")
        ordered.append(ready[0])
    return [units[j] for j in ordered]


def _merge(units: Units, components: list[set[int]]) -> Units:
    """Merge each component of units; a component that touches the root is absorbed by it."""
    merged_away = set().union(*components) if components else set()
    result: Units = [group for index, group in enumerate(units) if index not in merged_away]
    for component in components:
        if _ROOT in component:
            continue  # these modules share a parameter with the root: they join the root unit
        members: list[nn.Module] = []
        for index in sorted(component):
            members.extend(m for m in units[index] if all(m is not k for k in members))
        # a member nested inside another member is managed by the outer one
        members = [m for m in members if not any(_contains(o, m) for o in members)]
        result.append(members)
    return result


def _components(pairs: list[set[int]]) -> list[set[int]]:
    """Connected components of the sets of unit indices that must be one unit."""
    components: list[set[int]] = []
    for pair in pairs:
        touching = [c for c in components if c & pair]
        joined = set(pair).union(*touching)
        components = [c for c in components if not c & pair] + [joined]
    return components


def fsdp_units(model: nn.Module, candidates: Sequence[nn.Module | Sequence[nn.Module]]) -> Units:
    """FSDP units built from ``candidates``, merged so that no tied parameter is split.

    Candidates that share a parameter (directly, or through a module registered in both)
    become one unit, as FSDP requires (pytorch/pytorch#77724); a candidate that shares a
    parameter with a module outside every candidate joins the root unit (it is left out).
    Used by :func:`shard_model`; see the appendix "Sharing at scale".

    Args:
        model: the whole model (the root unit).
        candidates: submodules (or lists of submodules) you would like to shard as units, e.g.
            the Transformer blocks; duplicates (a layer registered at several depths) count once.

    Returns:
        Lists of modules, one list per ``fully_shard`` call, nested units first.

    Raises:
        TypeError: ``model`` is not an ``nn.Module`` or ``candidates`` is not a list of modules
            (or of lists of modules).
        ValueError: a candidate is the model itself or not one of its submodules, or the
            candidates nest inside each other in a cycle.

    Examples:
        Computing the units needs no process group:

        >>> from torch import nn
        >>> import shared_lib as sl
        >>> from shared_lib.distributed import fsdp_units
        >>> lm = nn.ModuleDict({"embed": nn.Embedding(10, 4), "block": nn.Linear(4, 4),
        ...                     "head": nn.Linear(4, 10, bias=False)})
        >>> _ = sl.tie(lm["head"], lm["embed"])
        >>> units = fsdp_units(lm, [lm["embed"], lm["block"], lm["head"]])
        >>> [[type(module).__name__ for module in unit] for unit in units]  # embed + head: one
        [['Linear'], ['Embedding', 'Linear']]
    """
    check_module(model, "model")
    units = _normalise(model, candidates, "candidates")
    # candidates that list the same module are one unit from the start
    shared_members = [
        {i, j}
        for i, j in itertools.combinations(range(len(units)), 2)
        if any(a is b for a in units[i] for b in units[j])
    ]
    if shared_members:
        units = _merge(units, _components(shared_members))
    while True:
        owners, _ = _owners(model, units)
        splits = [set(found) for found in owners.values() if len(found) > 1]
        if not splits:
            return _inside_first(units)
        units = _merge(units, _components(splits))


def check_units(model: nn.Module, units: Sequence[nn.Module | Sequence[nn.Module]]) -> None:
    """Raise ``ValueError`` if ``units`` would split a tied parameter between FSDP units.

    ``units`` are the arguments of the ``fully_shard`` calls (one module or a list of modules
    each); modules outside every unit form the root unit. The error names the parameter, its
    other names, and the units (with the modules in them) that use it. See :func:`fsdp_units`.
    Needs no process group.

    Args:
        model: the whole model (the root unit).
        units: the planned units: modules, or lists of modules sharded together.

    Raises:
        TypeError: ``model`` is not an ``nn.Module`` or ``units`` is not a list of modules (or
            of lists of modules).
        ValueError: two units list the same module, a unit is not a submodule of ``model``,
            or the units split a tied parameter.

    Examples:
        >>> from torch import nn
        >>> import shared_lib as sl
        >>> from shared_lib.distributed import check_units
        >>> lm = nn.ModuleDict({"embed": nn.Embedding(10, 4), "head": nn.Linear(4, 10, bias=False)})
        >>> _ = sl.tie(lm["head"], lm["embed"])
        >>> check_units(lm, [[lm["embed"], lm["head"]]])  # one unit: accepted
        >>> check_units(lm, [lm["embed"], lm["head"]])
        Traceback (most recent call last):
        ...
        ValueError: units split the tied parameter 'embed.weight' (one tensor, also named ...
    """
    check_module(model, "model")
    groups = _normalise(model, units, "units")
    for (i, a), (j, b) in itertools.combinations(enumerate(groups), 2):
        if any(x is y for x in a for y in b):
            raise ValueError(f"units: units {i} and {j} both list the same module")
    module_names = _module_names(model)
    owners, where = _owners(model, groups)
    param_names = _parameter_names(model)
    for key, found in owners.items():
        if len(found) < 2:
            continue
        names = param_names.get(key, ["<unregistered>"])
        described = []
        for owner in sorted(found, key=lambda unit: (unit == _ROOT, unit)):
            users = _show(where[key][owner])
            if owner == _ROOT:
                described.append(f"the root unit (modules outside every unit: {users})")
            else:
                members = [module_names[id(m)][0] for m in groups[owner]]
                described.append(f"unit {owner} {members} (through {users})")
        also = f" (one tensor, also named {_show(names[1:])})" if len(names) > 1 else ""
        raise ValueError(
            f"units split the tied parameter {names[0]!r}{also} between FSDP units: it is used "
            f"by {' and by '.join(described)}. FSDP gathers and frees each unit's parameters "
            "on its own, so every module that uses a tied parameter must be in the same unit "
            "(pytorch/pytorch#77724): put them in one fully_shard([...]) call; "
            "shared_lib.distributed.fsdp_units(model, candidates) merges them for you."
        )


def block_candidates(model: nn.Module) -> list[nn.Module]:
    """The usual FSDP units: the entries of every ``nn.ModuleList`` (Transformer blocks), once.

    The default ``candidates`` of :func:`shard_model`.

    Args:
        model: the model.

    Returns:
        Every module held in an ``nn.ModuleList``, in module order, each once (a block
        registered at several depths appears once).

    Raises:
        TypeError: ``model`` is not an ``nn.Module``.

    Examples:
        >>> from torch import nn
        >>> from shared_lib.distributed import block_candidates
        >>> shared = nn.Linear(4, 4)  # one block at every depth, as in ALBERT
        >>> model = nn.ModuleDict({"layers": nn.ModuleList([shared] * 3), "head": nn.Linear(4, 2)})
        >>> block_candidates(model) == [shared]
        True
    """
    check_module(model, "model")
    found: list[nn.Module] = []
    for module in model.modules():
        if isinstance(module, nn.ModuleList):
            found.extend(m for m in module if all(m is not k for k in found))
    return found


def shard_model(
    model: nn.Module,
    candidates: Sequence[nn.Module | Sequence[nn.Module]] | None = None,
    *,
    merge: bool = True,
    **fully_shard_kwargs: Any,
) -> nn.Module:
    """Shard ``model`` with FSDP2, one ``fully_shard`` per unit and then the root; ties kept.

    Needs an initialised process group (``torch.distributed.init_process_group``). The units
    are ``fsdp_units(model, candidates)``; with ``merge=False`` the candidates are used as they
    are and :func:`check_units` refuses them if they split a tied parameter (before anything is
    sharded). After sharding, every tie of the model is checked to still be one tensor.

    Args:
        model: the model, on its device (FSDP2 shards it in place).
        candidates: the units you would like (modules or lists of modules); ``None`` means
            :func:`block_candidates`, the entries of every ``nn.ModuleList``.
        merge: merge candidates that share a parameter (default) or refuse them.
        **fully_shard_kwargs: passed to every ``fully_shard`` call (``mesh``,
            ``reshard_after_forward``, ``mp_policy``, ...).

    Returns:
        The model, now an ``FSDPModule``.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``, ``merge`` is not a bool, or bad
            candidates (see :func:`fsdp_units`).
        ValueError: the units split a tied parameter (``merge=False``), or bad candidates.
        ImportError: this torch has no FSDP2 (``torch.distributed.fsdp.fully_shard``).
        shared_lib.BrokenTiesError: sharding replaced a tied parameter by separate tensors.

    Examples:
        Candidates that split a tie are refused before anything is sharded (so this runs
        without a process group); with ``merge=True`` they would become one unit.

        >>> from torch import nn
        >>> import shared_lib as sl
        >>> from shared_lib.distributed import shard_model
        >>> lm = nn.ModuleDict({"embed": nn.Embedding(10, 4), "head": nn.Linear(4, 10, bias=False)})
        >>> _ = sl.tie(lm["head"], lm["embed"])
        >>> shard_model(lm, [lm["embed"], lm["head"]], merge=False)
        Traceback (most recent call last):
        ...
        ValueError: units split the tied parameter 'embed.weight' (one tensor, also named ...
    """
    check_module(model, "model")
    check_bool(merge, "merge")
    if candidates is None:
        candidates = block_candidates(model)
    if merge:
        units = fsdp_units(model, candidates)
    else:
        units = _inside_first(_normalise(model, candidates, "candidates"))
    check_units(model, units)
    try:
        from torch.distributed.fsdp import fully_shard
    except ImportError as error:  # pragma: no cover - torch < 2.6
        raise ImportError("shard_model needs FSDP2 (torch.distributed.fsdp.fully_shard)") from error
    ties = shared_groups(model)
    for unit in units:
        fully_shard(unit if len(unit) > 1 else unit[0], **fully_shard_kwargs)
    fully_shard(model, **fully_shard_kwargs)
    if ties:
        check_ties(model, ties)
    return model


# --------------------------------------------------------------------------------------------
# DDP and reentrant checkpointing.


def _reentrant_uses_by_path(model: nn.Module) -> dict[int, set[str | None]]:
    """For each parameter: the reentrant regions (by path) its registered uses lie in."""
    regions: dict[int, set[str | None]] = {}
    for name, chain in _walk(model):
        segments = name.split(".") if name else []
        region = None
        for depth, module in enumerate(chain):  # chain[depth] is at segments[:depth]
            if isinstance(module, Checkpointed) and module.use_reentrant:
                region = ".".join(segments[:depth]) or "<root>"  # the innermost one wins
        for param in direct_parameters(chain[-1]):
            regions.setdefault(id(param), set()).add(region)
    return regions


def _reentrant_uses_by_call(
    model: nn.Module, example_inputs: Sequence[Any]
) -> dict[int, set[str | None]]:
    """For each parameter: the reentrant region calls its module calls happened in."""
    regions: dict[int, set[str | None]] = {}
    active: list[str] = []
    counter = itertools.count()
    names = _module_names(model)
    handles = []

    def enter(module: nn.Module, args: object) -> None:
        active.append(f"{names[id(module)][0]} (call {next(counter)})")

    def leave(module: nn.Module, args: object, output: object) -> None:
        active.pop()

    def use(module: nn.Module, args: object) -> None:
        for param in direct_parameters(module):
            regions.setdefault(id(param), set()).add(active[-1] if active else None)

    try:
        for module in model.modules():
            if isinstance(module, Checkpointed) and module.use_reentrant:
                handles.append(module.register_forward_pre_hook(enter))
                handles.append(module.register_forward_hook(leave))
            if direct_parameters(module):
                handles.append(module.register_forward_pre_hook(use))
        with torch.no_grad():
            model(*example_inputs)
    finally:
        for handle in handles:
            handle.remove()
    return regions


def check_reentrant_sharing(
    model: nn.Module,
    static_graph: bool = False,
    example_inputs: Sequence[Any] | None = None,
) -> None:
    """Raise ``ValueError`` if DDP would see a parameter's gradient from several backward passes.

    That happens when a parameter is used inside a reentrant :class:`Checkpointed` region and
    used again (in another region, another call of the same region, or outside): each reentrant
    region runs its own backward pass, and DDP without ``static_graph`` supports one gradient
    per parameter per step (pytorch/pytorch#84589). Registration paths are always checked; pass
    ``example_inputs`` (``model(*example_inputs)`` is run once without gradients) to also catch a
    module *called* several times. Regions checkpointed by calling
    ``torch.utils.checkpoint.checkpoint`` directly are not visible: use :class:`Checkpointed`.

    Args:
        model: the model you are about to wrap in ``DistributedDataParallel``.
        static_graph: the ``static_graph`` you will pass to DDP; ``True`` supports the pattern.
        example_inputs: optional positional inputs of one forward pass.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``, ``static_graph`` is not a bool, or
            ``example_inputs`` is not a tuple or list.
        ValueError: a parameter's gradient would come from several backward passes (the
            message names it, the regions, and both fixes).

    Examples:
        >>> from torch import nn
        >>> from shared_lib.distributed import Checkpointed, check_reentrant_sharing
        >>> block = nn.Linear(4, 4)  # one block at two depths, each checkpointed
        >>> model = nn.Sequential(*[Checkpointed(block, use_reentrant=True)] * 2)
        >>> check_reentrant_sharing(model)
        Traceback (most recent call last):
        ...
        ValueError: parameter '0.module.weight' is used in 2 reentrant activation-checkpoint ...
        >>> check_reentrant_sharing(model, static_graph=True)  # one of the two fixes
    """
    check_module(model, "model")
    check_bool(static_graph, "static_graph")
    if static_graph:
        return
    found = [_reentrant_uses_by_path(model)]
    if example_inputs is not None:
        if isinstance(example_inputs, (torch.Tensor, str)) or not isinstance(
            example_inputs, Sequence
        ):
            raise TypeError("example_inputs must be a tuple or list of positional inputs")
        found.append(_reentrant_uses_by_call(model, example_inputs))
    param_names = _parameter_names(model)
    for regions_by_param in found:
        for key, regions in regions_by_param.items():
            reentrant = sorted(r for r in regions if r is not None)
            if len(regions) < 2 or not reentrant:
                continue
            names = param_names.get(key, ["<unregistered>"])
            outside = " and outside them" if None in regions else ""
            raise ValueError(
                f"parameter {names[0]!r} is used in {len(reentrant)} reentrant activation-"
                f"checkpoint region(s) ({_show(reentrant)}){outside}, so its gradient comes from "
                f"{len(regions)} separate backward passes. DistributedDataParallel does not "
                "support that (pytorch/pytorch#84589): depending on the order of the passes it "
                "stops with 'Expected to mark a variable ready only once' or silently averages "
                "only part of the gradient. Fix: checkpoint with use_reentrant=False "
                "(Checkpointed(module, use_reentrant=False)), or, if the graph is the same "
                "every step, pass static_graph=True to DistributedDataParallel (wrap_ddp)."
            )


def wrap_ddp(
    model: nn.Module,
    *,
    static_graph: bool = False,
    example_inputs: Sequence[Any] | None = None,
    **ddp_kwargs: Any,
) -> nn.Module:
    """``DistributedDataParallel(model)`` after :func:`check_reentrant_sharing` (appendix).

    Shared modules and tied weights are fine in DDP (autograd sums every use's gradient before
    DDP averages it over processes); the one unsupported case, a shared parameter in reentrant
    checkpoint regions without ``static_graph``, raises ``ValueError`` instead of training
    wrongly. Needs an initialised process group.

    Args:
        model: the model, on its device.
        static_graph: passed to DDP (and to the check).
        example_inputs: passed to :func:`check_reentrant_sharing`.
        **ddp_kwargs: passed to ``DistributedDataParallel`` (``device_ids``, ...).

    Returns:
        The ``DistributedDataParallel`` wrapper of ``model``.

    Raises:
        TypeError: see :func:`check_reentrant_sharing`.
        ValueError: :func:`check_reentrant_sharing` refuses the model.

    Examples:
        The check runs first, so a model DDP would mistrain is refused even without a
        process group:

        >>> from torch import nn
        >>> from shared_lib.distributed import Checkpointed, wrap_ddp
        >>> block = nn.Linear(4, 4)
        >>> model = nn.Sequential(*[Checkpointed(block, use_reentrant=True)] * 2)
        >>> wrap_ddp(model)
        Traceback (most recent call last):
        ...
        ValueError: parameter '0.module.weight' is used in 2 reentrant activation-checkpoint ...
    """
    check_reentrant_sharing(model, static_graph=static_graph, example_inputs=example_inputs)
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, static_graph=static_graph, **ddp_kwargs)


# --------------------------------------------------------------------------------------------
# Pipeline parallelism: one tied tensor, a copy on every stage that uses it.


def all_reduce_tied_grads(copies: Sequence[torch.Tensor], group: Any = None) -> None:
    """Sum the gradients of a tied tensor's copies over the stages that hold one (appendix).

    In a pipeline the first stage holds the token embedding and the last stage the output
    layer. With tied embeddings each stage holds its own *copy* of the one matrix, and the
    backward pass gives each copy only its stage's share of the gradient. Megatron-LM's
    "embedding group" all-reduces (sums) the copies' gradients after the backward pass, so
    that every copy gets the whole gradient and the optimizer steps keep the copies equal.
    Call it on every process of ``group``, after the backward pass and before the optimizer
    step, with the copies in the same order everywhere. A copy without a gradient (its stage
    did not use it) takes part with zeros.

    Args:
        copies: this process's copies, one ``nn.Parameter`` per tied tensor.
        group: the process group of the stages holding a copy (``None``: every process).

    Raises:
        TypeError: ``copies`` is not a list or tuple of tensors that require grad.
        RuntimeError: no process group is initialised (``torch.distributed``).

    Examples:
        A one-process group (no network), whose sum leaves the gradient as it is:

        >>> import torch
        >>> import torch.distributed as dist
        >>> from shared_lib.distributed import all_reduce_tied_grads
        >>> dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
        >>> embedding = torch.nn.Parameter(torch.ones(3, 2))  # this stage's copy
        >>> embedding.sum().backward()
        >>> all_reduce_tied_grads([embedding])  # on every stage that holds a copy
        >>> embedding.grad.sum().item()
        6.0
        >>> dist.destroy_process_group()
    """
    if not isinstance(copies, (list, tuple)) or not all(
        isinstance(copy, torch.Tensor) and copy.requires_grad for copy in copies
    ):
        raise TypeError(
            f"copies must be a list or tuple of tensors that require grad, got {describe(copies)}"
        )
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError(
            "all_reduce_tied_grads needs an initialised process group "
            "(torch.distributed.init_process_group)"
        )
    for copy in copies:
        if copy.grad is None:
            copy.grad = torch.zeros_like(copy)
        dist.all_reduce(copy.grad, op=dist.ReduceOp.SUM, group=group)
