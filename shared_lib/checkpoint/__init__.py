"""Save and load models whose tensors are shared, in one safetensors file (chapter 05).

Two engineering pitfalls motivate this package (both are taught in chapter 05):

* ``safetensors.torch.save_file(model.state_dict(), path)`` refuses a tied model, because the
  state dict lists the shared tensor under every name (safetensors issues #98 and #202); naive
  workarounds write it twice and load two independent copies, silently untying the model.
* ``torch.compile`` wraps a model in an ``OptimizedModule`` whose state-dict names carry an
  ``_orig_mod.`` prefix, so checkpoints of compiled and plain models do not load into each other
  (nanoGPT issue #325).

:func:`save_checkpoint` writes every tensor of the state dict once, records the ties, the
architecture and (optionally) the optimizer state in the file's metadata, and never pickles.
:func:`load_checkpoint` checks the architecture, copies the values in bit for bit, restores the
ties and the optimizer state, and refuses anything that does not fit with a clear error.

The file format is described in ``shared_lib.checkpoint.format``, which reads and writes the
model's part; ``shared_lib.checkpoint.optimizer`` records the optimizer by parameter name.
"""

from __future__ import annotations

import json
import os

import torch
from safetensors import safe_open
from torch import nn

from shared_lib._validation import check_bool, check_instance, check_module
from shared_lib.checkpoint.format import (
    FORMAT_VERSION,
    OPTIMIZER_KEY,
    abbreviate,
    check_architecture,
    check_metadata,
    model_header,
    model_tensors,
    read_header,
    storable_tensor,
    tie_groups,
    write_file,
)
from shared_lib.checkpoint.optimizer import optimizer_record, read_optimizer_state
from shared_lib.tying import retie

__all__ = ["FORMAT_VERSION", "load_checkpoint", "save_checkpoint"]


def save_checkpoint(
    model: nn.Module,
    path: str | os.PathLike,
    optimizer: torch.optim.Optimizer | None = None,
    metadata: dict[str, str] | None = None,
) -> None:
    """Save ``model`` (and ``optimizer``) to one ``.safetensors`` file that keeps ties (chapter 05).

    Every shared tensor is written once, under its first name; the other names are recorded as
    ties. Works for ``torch.compile``'d models (names are stored without ``_orig_mod.``).

    Args:
        model: the model; its parameters and persistent buffers are saved.
        path: file to write; parent folders are created, and the file is replaced atomically.
        optimizer: optional optimizer over ``model``'s parameters; its state is saved too.
        metadata: optional ``str -> str`` entries stored in the file and returned by
            :func:`load_checkpoint` (keys starting with ``"shared_lib."`` are reserved).

    Raises:
        TypeError: for arguments of the wrong type.
        ValueError: for a model that cannot be stored (meta tensors, non-tensor state), an
            optimizer holding a parameter twice or one that is not in ``model``, reserved keys.

    Examples:
        >>> import os, tempfile
        >>> from torch import nn
        >>> import shared_lib as sl
        >>> lm = nn.ModuleDict({"embed": nn.Embedding(10, 4), "head": nn.Linear(4, 10, bias=False)})
        >>> _ = sl.tie(lm["head"], lm["embed"])
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     sl.save_checkpoint(lm, os.path.join(folder, "lm.safetensors"))
        ...     untied = nn.ModuleDict({"embed": nn.Embedding(10, 4),
        ...                             "head": nn.Linear(4, 10, bias=False)})  # no tie
        ...     _ = sl.load_checkpoint(untied, os.path.join(folder, "lm.safetensors"))
        >>> sl.shared_groups(untied)  # the tie survived the round trip
        [['embed.weight', 'head.weight']]
    """
    check_module(model, "model")
    if optimizer is not None:
        check_instance(optimizer, "optimizer", torch.optim.Optimizer, "torch.optim.Optimizer")
    path = os.fspath(check_instance(path, "path", (str, os.PathLike), "str or os.PathLike"))
    metadata = check_metadata(metadata)

    model_state, _ = model_tensors(model)
    groups = tie_groups(model_state)
    aliases = {name for group in groups for name in group[1:]}
    seen_storage: set[tuple[str, int]] = set()
    tensors = {
        name: storable_tensor(tensor, name, seen_storage)
        for name, tensor in model_state.items()
        if name not in aliases
    }
    header = model_header(model_state, groups)
    if optimizer is not None:
        header[OPTIMIZER_KEY] = json.dumps(
            optimizer_record(model, model_state, optimizer, tensors, seen_storage)
        )
    header.update(metadata)
    write_file(path, tensors, header)


class _UnionFind:
    """Merge names into connected groups (ties from the file and from the model)."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, name: str) -> str:
        self.parent.setdefault(name, name)
        while self.parent[name] != name:
            self.parent[name] = self.parent[self.parent[name]]
            name = self.parent[name]
        return name

    def union(self, names: list[str]) -> None:
        root = self.find(names[0])
        for name in names[1:]:
            self.parent[self.find(name)] = root


def load_checkpoint(
    model: nn.Module,
    path: str | os.PathLike,
    optimizer: torch.optim.Optimizer | None = None,
    strict: bool = True,
) -> dict[str, str]:
    """Load a :func:`save_checkpoint` file into ``model`` (and ``optimizer``); ties restored.

    Values are copied bit for bit into the model's own tensors, on their devices. Names that are
    one tensor in the file become one tensor in the model (re-tied with :func:`shared_lib.retie`
    if the model was built without the tie). A tie the model has but the file has not is
    accepted only if the file's values for those names are equal. Compiled (``torch.compile``)
    and plain models read each other's files. A refused load changes nothing.

    Args:
        model: a model of the saved architecture.
        path: the checkpoint file.
        optimizer: optional optimizer over ``model``'s parameters (build it after loading when
            the load re-ties parameters); receives the saved state and hyperparameters.
        strict: if false, names missing from the file or from the model are skipped (shape and
            dtype must still match, and the optimizer must still correspond).

    Returns:
        The ``metadata`` entries given to :func:`save_checkpoint`.

    Raises:
        TypeError: for arguments of the wrong type.
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if the file is not a shared_lib checkpoint, the architecture differs, the
            model ties tensors the file holds with different values, or the optimizer does not
            correspond to the saved one.

    Examples:
        >>> import os, tempfile
        >>> import torch
        >>> from torch import nn
        >>> import shared_lib as sl
        >>> def tiny_lm():
        ...     return nn.ModuleDict({"embed": nn.Embedding(10, 4), "head": nn.Linear(4, 10)})
        >>> lm = tiny_lm(); _ = sl.tie(lm["head"], lm["embed"])
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = os.path.join(folder, "lm.safetensors")
        ...     sl.save_checkpoint(lm, path, metadata={"step": "9"})
        ...     fresh = tiny_lm()  # built without the tie, other values
        ...     print(sl.load_checkpoint(fresh, path))
        {'step': '9'}
        >>> sl.shared_groups(fresh), torch.equal(fresh["head"].weight, lm["head"].weight)
        ([['embed.weight', 'head.weight']], True)
    """
    check_module(model, "model")
    if optimizer is not None:
        check_instance(optimizer, "optimizer", torch.optim.Optimizer, "torch.optim.Optimizer")
    path = os.fspath(check_instance(path, "path", (str, os.PathLike), "str or os.PathLike"))
    check_bool(strict, "strict")
    header = read_header(path)
    file_ties, stored = header.ties, header.stored

    # 1. Plan: check everything before changing the model, so a refused load changes nothing.
    model_state, real_names = model_tensors(model)
    names = check_architecture(header, model_state, strict)
    loaded = set(names)
    components = _UnionFind()
    for group in [*file_ties, *tie_groups(model_state)]:
        present = [name for name in group if name in loaded]
        if len(present) >= 2:
            components.union(present)
    groups: dict[str, list[str]] = {}
    for name in names:
        if name in components.parent:
            groups.setdefault(components.find(name), []).append(name)

    with safe_open(path, framework="pt", device="cpu") as handle:
        for group in groups.values():
            sources = list(dict.fromkeys(stored[name] for name in group))
            if len(sources) > 1:
                reference = handle.get_tensor(header.keys[sources[0]])
                differ = [
                    source
                    for source in sources[1:]
                    if not torch.equal(handle.get_tensor(header.keys[source]), reference)
                ]
                if differ:
                    raise ValueError(
                        f"model ties {abbreviate(group)} into one tensor, but checkpoint "
                        f"{path!r} stores {sources[0]!r} and {abbreviate(differ)} as separate "
                        "tensors with different values; loading would silently keep only one of "
                        "them. Load into a model built without this tie"
                    )
    kinds = {id(param) for param in model.parameters()}
    retie_params, retie_buffers = [], []
    for group in groups.values():
        objects = {id(model_state[name]) for name in group}
        if len(objects) == 1:
            continue
        is_param = {id(model_state[name]) in kinds for name in group}
        if len(is_param) != 1:
            raise ValueError(f"model: cannot tie parameters and buffers together: {group}")
        (retie_params if is_param.pop() else retie_buffers).append(group)

    # Which tensor each name will be after re-tying: the group's first name's tensor.
    final = dict(model_state)
    for group in retie_params + retie_buffers:
        for name in group[1:]:
            final[name] = model_state[group[0]]
    optimizer_state = None
    if optimizer is not None:
        optimizer_state = read_optimizer_state(header, model, final, optimizer)

    # 2. Apply: copy values, re-tie, load the optimizer.
    with torch.no_grad(), safe_open(path, framework="pt", device="cpu") as handle:
        written: set[int] = set()
        for name in names:
            target = model_state[name]
            if id(target) in written:
                continue
            target.copy_(handle.get_tensor(header.keys[stored[name]]))
            written.add(id(target))
    if retie_params:
        retie(model, [[real_names[name] for name in group] for group in retie_params])
    for group in retie_buffers:
        keeper = model_state[group[0]]
        for name in group[1:]:
            owner_name, _, attr = real_names[name].rpartition(".")
            owner = model.get_submodule(owner_name) if owner_name else model
            owner._buffers[attr] = keeper
    _verify_ties(path, model, file_ties, loaded)
    if optimizer is not None:
        optimizer.load_state_dict(optimizer_state)
    return header.user_metadata


def _verify_ties(path: str, model: nn.Module, file_ties: list[list[str]], loaded: set[str]) -> None:
    tensors, _ = model_tensors(model)
    for group in file_ties:
        present = [name for name in group if name in loaded]
        if len({id(tensors[name]) for name in present}) > 1:  # pragma: no cover - defensive
            raise RuntimeError(f"ties from {path!r} could not be restored: {present}")
