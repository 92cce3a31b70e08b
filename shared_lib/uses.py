"""Which call uses which tensor: the data behind a sharing map (chapter 01).

A parameter can be shared in two ways. *Structurally*, one tensor is registered under several
names (tied embeddings, an ALBERT layer registered at every depth), which
:func:`shared_lib.shared_groups` sees. *In use*, one module is called several times (an RNN cell
at every time step, a Siamese encoder on both inputs), which only running the model reveals.
:func:`trace_uses` records every call of every parameter-owning module while a function runs;
:func:`conv_position_uses` spells out the uses hidden inside one convolution call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from torch import nn
from torch.nn.utils import parametrize

__all__ = ["Use", "conv_position_uses", "count_per_use", "trace_uses", "unit_names", "unit_of"]


@dataclass(frozen=True)
class Use:
    """One use of some parameters: a label for the use and the canonical names it reads."""

    label: str
    tensors: tuple[str, ...]
    numel: int


def _canonical_names(model: nn.Module) -> dict[int, str]:
    names: dict[int, str] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(param), name)
    return names


def _direct_tensors(module: nn.Module) -> list[nn.Parameter]:
    """Parameters a module reads when called: its own, and the originals behind parametrizations."""
    tensors = [p for p in module._parameters.values() if p is not None]
    if parametrize.is_parametrized(module):
        for plist in module.parametrizations.values():
            tensors.extend(p for p in plist.parameters(recurse=False))
    return tensors


def _units(model: nn.Module, modules: Sequence[str] | None) -> list[tuple[str, nn.Module, list]]:
    """(label, module, tensors it reads) for every module to watch."""
    if modules is None:
        found = [(name, module, _direct_tensors(module)) for name, module in model.named_modules()]
        return [unit for unit in found if unit[2]]
    units, seen = [], set()
    for name in modules:
        try:
            module = model.get_submodule(name)
        except AttributeError as error:
            raise ValueError(f"modules: {name!r} is not a submodule of the model") from error
        if id(module) in seen:
            continue  # the same object under another name: one unit, labelled by its first name
        seen.add(id(module))
        tensors = list({id(p): p for m in module.modules() for p in _direct_tensors(m)}.values())
        units.append((name, module, tensors))
    return units


def trace_uses(
    model: nn.Module, run: Callable[[], object], modules: Sequence[str] | None = None
) -> list[Use]:
    """Run ``run()`` and return one :class:`Use` per call of a watched module.

    By default every module that owns parameters is watched; ``modules`` names coarser units
    instead (e.g. ``["embeddings", "layers.0", "pooler"]``), each counting all the tensors below
    it. Calls are labelled with the module's name, and a call number when it is called more
    than once (``"cell (call 3)"``).

    >>> cell = nn.RNNCell(2, 2); uses = trace_uses(cell, lambda: [cell(x) for x in xs])
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not callable(run):
        raise TypeError(f"run must be a callable taking no arguments, got {type(run).__name__}")
    canonical = _canonical_names(model)
    records: list[tuple[str, tuple[str, ...], int]] = []
    handles = []
    for module_name, module, tensors in _units(model, modules):
        names = tuple(canonical[id(p)] for p in tensors if id(p) in canonical)
        numel = sum(p.numel() for p in tensors)
        label = module_name or type(module).__name__

        def hook(_module, _inputs, label=label, names=names, numel=numel):
            records.append((label, names, numel))

        handles.append(module.register_forward_pre_hook(hook))
    try:
        run()
    finally:
        for handle in handles:
            handle.remove()
    totals: dict[str, int] = {}
    for label, _, _ in records:
        totals[label] = totals.get(label, 0) + 1
    seen: dict[str, int] = {}
    uses = []
    for label, names, numel in records:
        seen[label] = seen.get(label, 0) + 1
        shown = f"{label} (call {seen[label]})" if totals[label] > 1 else label
        uses.append(Use(shown, names, numel))
    return uses


def conv_position_uses(conv: nn.Conv1d | nn.Conv2d, input_size: tuple[int, ...]) -> list[Use]:
    """One :class:`Use` per output position of ``conv`` on an input of spatial ``input_size``.

    Inside one call a convolution applies the same kernel at every output position: this spells
    those uses out, so that an unshared (locally connected) layer's size is their sum.
    """
    if not isinstance(conv, (nn.Conv1d, nn.Conv2d)):
        raise TypeError(f"conv must be an nn.Conv1d or nn.Conv2d, got {type(conv).__name__}")
    dims = len(conv.kernel_size)
    if len(input_size) != dims or any(s < 1 for s in input_size):
        raise ValueError(f"input_size must be {dims} positive ints, got {input_size}")
    out = []
    for i, size in enumerate(input_size):
        if conv.padding == "same":
            out.append(size)
            continue
        pad = 0 if conv.padding == "valid" else conv.padding[i]
        span = conv.dilation[i] * (conv.kernel_size[i] - 1) + 1
        out.append((size + 2 * pad - span) // conv.stride[i] + 1)
    if any(o < 1 for o in out):
        raise ValueError(f"input_size {input_size} is smaller than the kernel")
    names = tuple(name for name, _ in conv.named_parameters())
    numel = sum(p.numel() for p in conv.parameters())
    positions = [()]
    for o in out:
        positions = [(*p, k) for p in positions for k in range(o)]
    return [Use(f"position {p if dims > 1 else p[0]}", names, numel) for p in positions]


def count_per_use(uses: list[Use]) -> int:
    """Parameters the model would hold if every use had its own copy: the sum over uses."""
    return sum(use.numel for use in uses)


def unit_names(model: nn.Module) -> list[str]:
    """Names of the model's building blocks: its children, with ModuleLists/ModuleDicts opened.

    The same object registered under several names is listed once (by its first name).
    """
    names, seen = [], set()

    def walk(module: nn.Module, prefix: str) -> None:
        for name, child in module.named_children():
            qualified = f"{prefix}{name}"
            if isinstance(child, (nn.ModuleList, nn.ModuleDict)):
                walk(child, qualified + ".")
            elif id(child) not in seen and any(True for _ in child.parameters()):
                seen.add(id(child))
                names.append(qualified)

    walk(model, "")
    return names


def unit_of(units: Sequence[str]) -> Callable[[str], str]:
    """Map a parameter name to the unit (see :func:`unit_names`) that owns it: a ``column_of``
    for :func:`shared_lib.plotting.plot_sharing_map`."""
    ordered = sorted(units, key=len, reverse=True)

    def column(name: str) -> str:
        for unit in ordered:
            if name == unit or name.startswith(unit + "."):
                return unit
        return name.rpartition(".")[0] or name

    return column
