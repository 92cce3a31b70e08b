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

from shared_lib._validation import check_callable, check_instance, check_int, check_module, describe

__all__ = [
    "Use",
    "conv_position_uses",
    "count_per_use",
    "direct_parameters",
    "trace_uses",
    "unit_names",
    "unit_of",
]


@dataclass(frozen=True)
class Use:
    """One use of some parameters: a label for the use and the canonical names it reads.

    :func:`trace_uses` and :func:`conv_position_uses` return lists of them; a sharing map
    (:func:`shared_lib.plotting.plot_sharing_map`) draws one row per use (chapter 01).

    Attributes:
        label: what used the tensors, e.g. ``"cell (call 3)"`` or ``"position (0, 2)"``.
        tensors: canonical names of the tensors read (a tied tensor under its first name).
        numel: number of parameter elements read; summed over uses by :func:`count_per_use`.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from shared_lib.uses import trace_uses
        >>> layer = nn.Linear(3, 2)
        >>> trace_uses(layer, lambda: layer(torch.randn(1, 3)))
        [Use(label='Linear', tensors=('weight', 'bias'), numel=8)]
    """

    label: str
    tensors: tuple[str, ...]
    numel: int


def _canonical_names(model: nn.Module) -> dict[int, str]:
    names: dict[int, str] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(param), name)
    return names


def direct_parameters(module: nn.Module) -> list[nn.Parameter]:
    """Parameters a module reads when called: its own, and the originals behind parametrizations.

    Unlike ``module.parameters()``, submodules' parameters are left out, and a parametrized
    weight (such as the transposed tie of :func:`shared_lib.tie`) shows as the tensor it is
    computed from. This is what one call of the module uses, for :func:`trace_uses` and for the
    checks of :mod:`shared_lib.distributed`.

    Args:
        module: any module.

    Returns:
        Its own registered parameters in registration order, then the parametrizations'
        originals.

    Raises:
        TypeError: ``module`` is not an ``nn.Module``.

    Examples:
        >>> from torch import nn
        >>> import shared_lib as sl
        >>> from shared_lib.uses import direct_parameters
        >>> encoder, decoder = nn.Linear(6, 3), nn.Linear(3, 6)
        >>> _ = sl.tie(decoder, encoder, transpose=True)  # decoder.weight is encoder.weight.T
        >>> [param is encoder.weight for param in direct_parameters(decoder)]  # bias, original
        [False, True]
        >>> direct_parameters(nn.Sequential(encoder))  # a container reads nothing itself
        []
    """
    check_module(module, "module")
    params = [p for p in module._parameters.values() if p is not None]
    if parametrize.is_parametrized(module):
        for parametrization in module.parametrizations.values():
            params.extend(p for p in parametrization._parameters.values() if p is not None)
    return params


def _units(model: nn.Module, modules: Sequence[str] | None) -> list[tuple[str, nn.Module, list]]:
    """(label, module, tensors it reads) for every module to watch."""
    if modules is None:
        found = [
            (name, module, direct_parameters(module)) for name, module in model.named_modules()
        ]
        return [unit for unit in found if unit[2]]
    if isinstance(modules, str) or not isinstance(modules, Sequence):
        raise TypeError(
            f"modules must be a list of submodule names or None, got {describe(modules)}"
        )
    units, seen = [], set()
    for index, name in enumerate(modules):
        check_instance(name, f"modules[{index}]", str)
        try:
            module = model.get_submodule(name)
        except AttributeError as error:
            raise ValueError(f"modules: {name!r} is not a submodule of the model") from error
        if id(module) in seen:
            continue  # the same object under another name: one unit, labelled by its first name
        seen.add(id(module))
        tensors = list({id(p): p for m in module.modules() for p in direct_parameters(m)}.values())
        units.append((name, module, tensors))
    return units


def trace_uses(
    model: nn.Module, run: Callable[[], object], modules: Sequence[str] | None = None
) -> list[Use]:
    """Run ``run()`` and return one :class:`Use` per call of a watched module (chapter 01).

    By default every module that owns parameters is watched; ``modules`` names coarser units
    instead (e.g. ``["embeddings", "layers.0", "pooler"]``), each counting all the tensors below
    it. Calls are labelled with the module's name, and a call number when it is called more
    than once (``"cell (call 3)"``). The hooks are removed afterwards, even if ``run`` fails.

    Args:
        model: the model whose modules to watch.
        run: a function of no arguments that calls the model (its result is ignored).
        modules: names of submodules to watch as units; ``None`` watches every module that
            owns parameters, each for its own tensors.

    Returns:
        The uses, in call order.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``, ``run`` is not callable, or ``modules``
            is not a list of names.
        ValueError: a name in ``modules`` is not a submodule of ``model``.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from shared_lib.uses import count_per_use, trace_uses
        >>> cell = nn.RNNCell(2, 3)  # 21 parameters, called at each of 4 time steps
        >>> xs = torch.randn(4, 1, 2)
        >>> uses = trace_uses(cell, lambda: [cell(x) for x in xs])
        >>> [use.label for use in uses[:2]], count_per_use(uses)
        (['RNNCell (call 1)', 'RNNCell (call 2)'], 84)
    """
    check_module(model, "model")
    check_callable(run, "run", "taking no arguments")
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
    those uses out, so that an unshared (locally connected) layer's size is their sum
    (chapter 01).

    Args:
        conv: a 1-D or 2-D convolution.
        input_size: the input's spatial size, one positive int per dimension (``(H, W)`` or
            ``(L,)``).

    Returns:
        One use per output position, in row-major order, each reading all of ``conv``'s
        parameters.

    Raises:
        TypeError: ``conv`` is not an ``nn.Conv1d`` or ``nn.Conv2d``, or a size is not an int.
        ValueError: ``input_size`` has the wrong length or a size below 1, or is smaller than
            the kernel.

    Examples:
        >>> from torch import nn
        >>> from shared_lib.uses import conv_position_uses, count_per_use
        >>> conv = nn.Conv2d(1, 2, kernel_size=3)  # 20 parameters
        >>> uses = conv_position_uses(conv, (5, 5))  # a 3 x 3 output: 9 uses of one kernel
        >>> len(uses), uses[0].label, count_per_use(uses)
        (9, 'position (0, 0)', 180)
    """
    check_instance(conv, "conv", (nn.Conv1d, nn.Conv2d), "torch.nn.Conv1d or Conv2d")
    dims = len(conv.kernel_size)
    if isinstance(input_size, str) or not isinstance(input_size, Sequence):
        raise TypeError(f"input_size must be a tuple of {dims} ints, got {describe(input_size)}")
    for index, size in enumerate(input_size):
        check_int(size, f"input_size[{index}]")
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


def count_per_use(uses: Sequence[Use]) -> int:
    """Parameters the model would hold if every use had its own copy: the sum over uses.

    Compare with :func:`shared_lib.count_parameters`, which counts what is stored (chapter 01).

    Args:
        uses: the uses, as :func:`trace_uses` or :func:`conv_position_uses` return them.

    Returns:
        The sum of their ``numel``.

    Raises:
        TypeError: an entry of ``uses`` is not a :class:`Use`.

    Examples:
        >>> from shared_lib.uses import Use, count_per_use
        >>> uses = [Use("cell (call 1)", ("weight",), 12), Use("cell (call 2)", ("weight",), 12)]
        >>> count_per_use(uses)  # one stored tensor of 12 elements, used twice
        24
    """
    for index, use in enumerate(uses):
        check_instance(use, f"uses[{index}]", Use)
    return sum(use.numel for use in uses)


def unit_names(model: nn.Module) -> list[str]:
    """Names of the model's building blocks: its children, with ModuleLists/ModuleDicts opened.

    The same object registered under several names is listed once (by its first name); children
    without parameters are left out. These are the columns of a sharing map (chapter 01).

    Args:
        model: the model.

    Returns:
        Qualified names of the building blocks, in registration order.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``.

    Examples:
        >>> from torch import nn
        >>> from shared_lib.uses import unit_names
        >>> block = nn.Linear(4, 4)  # registered at two depths
        >>> layers = nn.ModuleList([block, block])
        >>> unit_names(nn.ModuleDict({"embed": nn.Embedding(9, 4), "layers": layers}))
        ['embed', 'layers.0']
    """
    check_module(model, "model")
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
    for :func:`shared_lib.plotting.plot_sharing_map` (chapter 01).

    Args:
        units: unit names; the longest one that prefixes a parameter name wins.

    Returns:
        A function from a qualified parameter name to its unit; a name under no unit maps to
        its module's name (the name without its last part).

    Raises:
        TypeError: ``units`` is a string or holds a non-string.

    Examples:
        >>> from shared_lib.uses import unit_of
        >>> column = unit_of(["embed", "layers.0"])
        >>> column("layers.0.weight"), column("head.bias")
        ('layers.0', 'head')
    """
    if isinstance(units, str):
        raise TypeError(f"units must be a list of unit names, got {describe(units)}")
    units = list(units)
    for index, unit in enumerate(units):
        check_instance(unit, f"units[{index}]", str)
    ordered = sorted(units, key=len, reverse=True)

    def column(name: str) -> str:
        for unit in ordered:
            if name == unit or name.startswith(unit + "."):
                return unit
        return name.rpartition(".")[0] or name

    return column
