"""Save and load models whose tensors are shared, in one safetensors file (chapter 05).

Two engineering pitfalls motivate this module (both are taught in chapter 05):

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

File format (version 1): a ``.safetensors`` file whose tensors are

* ``<name>``: one entry per distinct state-dict tensor (parameters and persistent buffers), under
  the first name that uses it; names are canonical (no ``_orig_mod.`` segment);
* ``__optimizer__.state.<parameter name>.<key>``: tensor optimizer state (``exp_avg``, ``step``,
  ``momentum_buffer``, ...), keyed by the parameter's canonical name, not the optimizer's index;
* ``__optimizer__.param_groups.<group index>.<key>``: tensor-valued hyperparameters, if any;

and whose string metadata holds ``shared_lib.format_version``, ``shared_lib.signature`` (JSON:
every state-dict name with shape and dtype), ``shared_lib.ties`` (JSON: groups of names that are
one tensor, the stored name first), ``shared_lib.optimizer`` (JSON, when saved: class, param
groups with parameter names, non-tensor state) and the caller's own ``metadata`` entries.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from shared_lib.tying import retie

__all__ = ["FORMAT_VERSION", "load_checkpoint", "save_checkpoint"]

FORMAT_VERSION = 1
"""Version of the file layout written by :func:`save_checkpoint`."""

_PREFIX = "shared_lib."
_VERSION_KEY = _PREFIX + "format_version"
_SIGNATURE_KEY = _PREFIX + "signature"
_TIES_KEY = _PREFIX + "ties"
_OPTIMIZER_KEY = _PREFIX + "optimizer"
_TORCH_KEY = _PREFIX + "torch_version"
_OPTIMIZER_TENSORS = "__optimizer__."
_COMPILE_SEGMENT = "_orig_mod"  # torch.compile's OptimizedModule keeps the model here
_SHOW = 5  # how many offending names an error message lists


# --------------------------------------------------------------------------- helpers


def _check_model(model: object) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return model


def _check_optimizer(optimizer: object) -> torch.optim.Optimizer | None:
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(
            f"optimizer must be a torch.optim.Optimizer or None, got {type(optimizer).__name__}"
        )
    return optimizer


def _check_path(path: object) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    return os.fspath(path)


def _first(items: Iterable[Any]) -> str:
    """Show the first few items of a list in an error message."""
    items = list(items)
    shown = ", ".join(str(item) for item in items[:_SHOW])
    return shown + (f", ... ({len(items)} in all)" if len(items) > _SHOW else "")


def _canonical(name: str) -> str:
    """Drop torch.compile's ``_orig_mod`` segments: ``_orig_mod.fc.weight`` -> ``fc.weight``."""
    return ".".join(part for part in name.split(".") if part != _COMPILE_SEGMENT)


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _model_tensors(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Canonical name -> tensor (the model's own objects) and canonical -> real name."""
    tensors: dict[str, torch.Tensor] = {}
    real: dict[str, str] = {}
    for name, value in model.state_dict(keep_vars=True).items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(
                f"model: state-dict entry {name!r} is a {type(value).__name__}, not a tensor; "
                "a safetensors checkpoint holds tensors only (no pickle)"
            )
        canonical = _canonical(name)
        if canonical in tensors:
            raise ValueError(
                f"model: names {real[canonical]!r} and {name!r} are the same once torch.compile's "
                f"{_COMPILE_SEGMENT!r} is removed"
            )
        if canonical.startswith(_OPTIMIZER_TENSORS):
            raise ValueError(
                f"model: name {name!r} uses the reserved prefix {_OPTIMIZER_TENSORS!r}"
            )
        tensors[canonical] = value
        real[canonical] = name
    return tensors, real


def _tie_groups(tensors: Mapping[str, torch.Tensor]) -> list[list[str]]:
    """Names that are one tensor object (parameters or buffers), groups of two or more."""
    by_object: dict[int, list[str]] = {}
    for name, tensor in tensors.items():
        by_object.setdefault(id(tensor), []).append(name)
    return [names for names in by_object.values() if len(names) >= 2]


def _owners_of(model: nn.Module, tensors: Mapping[str, torch.Tensor]) -> dict[int, str]:
    """id(parameter) -> canonical name of the first state-dict name that uses it."""
    owners: dict[int, str] = {}
    parameter_ids = {id(param) for param in model.parameters()}
    for name, tensor in tensors.items():
        if id(tensor) in parameter_ids:
            owners.setdefault(id(tensor), name)
    return owners


def _optimizer_parameters(optimizer: torch.optim.Optimizer) -> list[list[torch.Tensor]]:
    """The optimizer's parameters per group; refuses a parameter held twice (pytorch #40967)."""
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


def _to_json(value: Any, what: str) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"optimizer: {what} is a {type(value).__name__} that cannot be stored as JSON "
            "(no pickle is used); only tensors and JSON values are supported"
        ) from error
    return value


def _storable(tensor: torch.Tensor, name: str, seen_storage: set[tuple[str, int]]) -> torch.Tensor:
    """A contiguous CPU copy-free view when possible; a clone if its memory is already stored."""
    if tensor.is_meta:
        raise ValueError(f"model: {name!r} is on the meta device and holds no values to save")
    if tensor.layout != torch.strided:
        raise ValueError(
            f"model: {name!r} has layout {tensor.layout}; only dense tensors are saved"
        )
    value = tensor.detach().to("cpu").contiguous()
    key = (str(value.device), value.untyped_storage().data_ptr())
    if key[1] != 0 and key in seen_storage:
        # Distinct tensors over one memory (views): safetensors refuses them, so store a copy.
        value = value.clone()
    else:
        seen_storage.add(key)
    return value


# --------------------------------------------------------------------------- save


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
    """
    _check_model(model)
    _check_optimizer(optimizer)
    path = _check_path(path)
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, Mapping):
        raise TypeError(f"metadata must be a dict of str to str, got {type(metadata).__name__}")
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"metadata must map str to str, got {key!r}: {type(value).__name__}")
        if key.startswith(_PREFIX):
            raise ValueError(f"metadata key {key!r}: keys starting with {_PREFIX!r} are reserved")

    model_tensors, _ = _model_tensors(model)
    groups = _tie_groups(model_tensors)
    aliases = {name for group in groups for name in group[1:]}
    seen_storage: set[tuple[str, int]] = set()
    tensors = {
        name: _storable(tensor, name, seen_storage)
        for name, tensor in model_tensors.items()
        if name not in aliases
    }
    header = {
        _VERSION_KEY: str(FORMAT_VERSION),
        _TORCH_KEY: torch.__version__,
        _SIGNATURE_KEY: json.dumps(
            {
                name: {"shape": list(tensor.shape), "dtype": _dtype_name(tensor.dtype)}
                for name, tensor in model_tensors.items()
            }
        ),
        _TIES_KEY: json.dumps(groups),
    }
    if optimizer is not None:
        header[_OPTIMIZER_KEY] = json.dumps(
            _optimizer_record(model, model_tensors, optimizer, tensors, seen_storage)
        )
    header.update(metadata)

    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    # Write next to the target and rename: a crash never leaves a half-written checkpoint.
    temporary = os.path.join(folder, f".{os.path.basename(path)}.{uuid.uuid4().hex[:12]}.tmp")
    os.close(os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    try:
        # safetensors creates its files 0o600; keep the usual umask-based permissions instead.
        mode = os.stat(temporary).st_mode & 0o777
        save_file(tensors, temporary, metadata=header)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def _optimizer_record(
    model: nn.Module,
    model_tensors: Mapping[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    tensors: dict[str, torch.Tensor],
    seen_storage: set[tuple[str, int]],
) -> dict[str, Any]:
    """Describe ``optimizer`` by parameter names; add its tensor state to ``tensors``."""
    owners = _owners_of(model, model_tensors)
    parameter_groups = _optimizer_parameters(optimizer)
    names_by_index: list[str] = []  # torch's state_dict numbers parameters in group order
    for group_index, params in enumerate(parameter_groups):
        for param in params:
            if id(param) not in owners:
                raise ValueError(
                    f"optimizer: group {group_index} holds a parameter of shape "
                    f"{tuple(param.shape)} that is not a parameter of model"
                )
            names_by_index.append(owners[id(param)])

    state_dict = optimizer.state_dict()
    groups_record = []
    for group_index, group in enumerate(state_dict["param_groups"]):
        record: dict[str, Any] = {"params": [names_by_index[i] for i in group["params"]]}
        tensor_keys = []
        for key, value in group.items():
            if key in ("params", "param_names"):  # parameters are recorded by canonical name
                continue
            if isinstance(value, torch.Tensor):
                file_key = f"{_OPTIMIZER_TENSORS}param_groups.{group_index}.{key}"
                tensors[file_key] = _storable(value, file_key, seen_storage)
                tensor_keys.append(key)
            else:
                record[key] = _to_json(value, f"param_groups[{group_index}][{key!r}]")
        record["__tensors__"] = tensor_keys
        groups_record.append(record)

    state_record: dict[str, Any] = {}
    for index, entries in state_dict["state"].items():
        name = names_by_index[index]
        tensor_keys, values = [], {}
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                file_key = f"{_OPTIMIZER_TENSORS}state.{name}.{key}"
                tensors[file_key] = _storable(value, file_key, seen_storage)
                tensor_keys.append(key)
            else:
                values[key] = _to_json(value, f"state of {name!r}, key {key!r}")
        state_record[name] = {"tensors": tensor_keys, "values": values}
    return {
        "class": f"{type(optimizer).__module__}.{type(optimizer).__qualname__}",
        "param_groups": groups_record,
        "state": state_record,
    }


# --------------------------------------------------------------------------- load


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


def _read_header(path: str) -> tuple[dict[str, str], list[str]]:
    if not os.path.exists(path):
        raise FileNotFoundError(f"path: no checkpoint file at {path!r}")
    if not os.path.isfile(path):
        raise ValueError(f"path: {path!r} is not a file")
    try:
        with safe_open(path, framework="pt", device="cpu") as handle:
            header = handle.metadata() or {}
            keys = list(handle.keys())
    except SafetensorError as error:
        raise ValueError(f"path: {path!r} is not a safetensors file ({error})") from error
    if _VERSION_KEY not in header:
        raise ValueError(
            f"path: {path!r} is not a shared_lib checkpoint (no {_VERSION_KEY!r} in its "
            "metadata); write it with shared_lib.save_checkpoint"
        )
    if header[_VERSION_KEY] != str(FORMAT_VERSION):
        raise ValueError(
            f"path: {path!r} has checkpoint format version {header[_VERSION_KEY]}, this "
            f"shared_lib reads version {FORMAT_VERSION}"
        )
    return header, keys


def _check_architecture(
    path: str,
    signature: Mapping[str, Mapping[str, Any]],
    model_tensors: Mapping[str, torch.Tensor],
    strict: bool,
) -> list[str]:
    """Return the names to load; raise if the model does not fit the file."""
    missing = [name for name in model_tensors if name not in signature]
    unexpected = [name for name in signature if name not in model_tensors]
    mismatched = []
    for name, tensor in model_tensors.items():
        if name not in signature:
            continue
        shape, dtype = tuple(signature[name]["shape"]), signature[name]["dtype"]
        if tuple(tensor.shape) != shape or _dtype_name(tensor.dtype) != dtype:
            mismatched.append(
                f"{name} (file {dtype}{list(shape)}, model "
                f"{_dtype_name(tensor.dtype)}{list(tensor.shape)})"
            )
    problems = []
    if strict and missing:
        problems.append(f"missing from the file: {_first(missing)}")
    if strict and unexpected:
        problems.append(f"not in the model: {_first(unexpected)}")
    if mismatched:
        problems.append(f"shape/dtype mismatch: {_first(mismatched)}")
    if problems:
        raise ValueError(
            f"path: checkpoint {path!r} does not fit model's architecture; " + "; ".join(problems)
        )
    meta = [name for name in signature if name in model_tensors and model_tensors[name].is_meta]
    if meta:
        raise ValueError(
            f"model: tensors {_first(meta)} are on the meta device; materialise them first "
            "(model.to_empty(device=...) inside shared_lib.preserve_ties)"
        )
    return [name for name in model_tensors if name in signature]


def _stored_names(path: str, signature: Mapping[str, Any], ties: list[list[str]], keys: list[str]):
    """Map every name in the file's signature to the name its values are stored under."""
    stored = {name: name for name in signature}
    for group in ties:
        for name in group:
            stored[name] = group[0]
    absent = sorted({key for key in stored.values() if key not in keys})
    if absent:
        raise ValueError(f"path: checkpoint {path!r} is damaged, tensors {_first(absent)} missing")
    return stored


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
    and plain models read each other's files.

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
    """
    _check_model(model)
    _check_optimizer(optimizer)
    path = _check_path(path)
    if not isinstance(strict, bool):
        raise TypeError(f"strict must be a bool, got {type(strict).__name__}")
    header, keys = _read_header(path)
    signature = {
        _canonical(name): spec for name, spec in json.loads(header[_SIGNATURE_KEY]).items()
    }
    file_ties = [[_canonical(name) for name in group] for group in json.loads(header[_TIES_KEY])]
    keys_canonical = {_canonical(key): key for key in keys}
    stored = _stored_names(path, signature, file_ties, list(keys_canonical))

    # 1. Plan: check everything before changing the model, so a refused load changes nothing.
    model_tensors, real_names = _model_tensors(model)
    names = _check_architecture(path, signature, model_tensors, strict)
    loaded = set(names)
    components = _UnionFind()
    for group in [*file_ties, *_tie_groups(model_tensors)]:
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
                reference = handle.get_tensor(keys_canonical[sources[0]])
                differ = [
                    source
                    for source in sources[1:]
                    if not torch.equal(handle.get_tensor(keys_canonical[source]), reference)
                ]
                if differ:
                    raise ValueError(
                        f"model ties {_first(group)} into one tensor, but checkpoint {path!r} "
                        f"stores {sources[0]!r} and {_first(differ)} as separate tensors with "
                        "different values; loading would silently keep only one of them. Load "
                        "into a model built without this tie"
                    )
    kinds = {id(param) for param in model.parameters()}
    retie_params, retie_buffers = [], []
    for group in groups.values():
        objects = {id(model_tensors[name]) for name in group}
        if len(objects) == 1:
            continue
        is_param = {id(model_tensors[name]) in kinds for name in group}
        if len(is_param) != 1:
            raise ValueError(f"model: cannot tie parameters and buffers together: {group}")
        (retie_params if is_param.pop() else retie_buffers).append(group)

    # Which tensor each name will be after re-tying: the group's first name's tensor.
    final = dict(model_tensors)
    for group in retie_params + retie_buffers:
        for name in group[1:]:
            final[name] = model_tensors[group[0]]
    optimizer_state = None
    if optimizer is not None:
        optimizer_state = _plan_optimizer(path, header, model, final, optimizer, keys_canonical)

    # 2. Apply: copy values, re-tie, load the optimizer.
    with torch.no_grad(), safe_open(path, framework="pt", device="cpu") as handle:
        written: set[int] = set()
        for name in names:
            target = model_tensors[name]
            if id(target) in written:
                continue
            target.copy_(handle.get_tensor(keys_canonical[stored[name]]))
            written.add(id(target))
        if optimizer_state is not None:
            for entries in optimizer_state["state"].values():
                for key, file_key in list(entries.items()):
                    if isinstance(file_key, _TensorRef):
                        entries[key] = handle.get_tensor(keys_canonical[_canonical(file_key.key)])
            for group in optimizer_state["param_groups"]:
                for key, file_key in list(group.items()):
                    if isinstance(file_key, _TensorRef):
                        group[key] = handle.get_tensor(keys_canonical[_canonical(file_key.key)])
    if retie_params:
        retie(model, [[real_names[name] for name in group] for group in retie_params])
    for group in retie_buffers:
        keeper = model_tensors[group[0]]
        for name in group[1:]:
            owner_name, _, attr = real_names[name].rpartition(".")
            owner = model.get_submodule(owner_name) if owner_name else model
            owner._buffers[attr] = keeper
    _verify_ties(path, model, file_ties, loaded)
    if optimizer is not None:
        optimizer.load_state_dict(optimizer_state)
    return {key: value for key, value in header.items() if not key.startswith(_PREFIX)}


class _TensorRef:
    """Placeholder for an optimizer tensor read from the file once the plan is checked."""

    def __init__(self, key: str) -> None:
        self.key = key


def _plan_optimizer(
    path: str,
    header: Mapping[str, str],
    model: nn.Module,
    final: Mapping[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    available: Iterable[str],
) -> dict[str, Any]:
    """Build a torch optimizer state dict for ``optimizer`` from the file, by parameter names."""
    available = set(available)
    if _OPTIMIZER_KEY not in header:
        raise ValueError(f"path: checkpoint {path!r} holds no optimizer state (saved without one)")
    record = json.loads(header[_OPTIMIZER_KEY])
    saved_class = record["class"]
    this_class = f"{type(optimizer).__module__}.{type(optimizer).__qualname__}"
    if saved_class != this_class:
        raise ValueError(f"optimizer is a {this_class}, but the checkpoint holds a {saved_class}")
    parameter_groups = _optimizer_parameters(optimizer)
    saved_groups = record["param_groups"]
    if len(saved_groups) != len(parameter_groups):
        raise ValueError(
            f"optimizer has {len(parameter_groups)} parameter group(s), checkpoint {path!r} "
            f"has {len(saved_groups)}"
        )
    # A parameter's name is the first state-dict name that will use it after the load.
    owner_of: dict[int, str] = {}
    parameter_ids = {id(param) for param in model.parameters()}
    for name, tensor in final.items():
        if id(tensor) in parameter_ids:
            owner_of.setdefault(id(tensor), name)
    aliases: dict[str, str] = {}  # any name of a tied parameter -> the name used for it
    for name, tensor in final.items():
        if id(tensor) in owner_of:
            aliases[name] = owner_of[id(tensor)]

    index_of: dict[str, int] = {}
    groups_out = []
    index = 0
    for group_index, (params, saved) in enumerate(zip(parameter_groups, saved_groups, strict=True)):
        names = []
        for param in params:
            if id(param) not in owner_of:
                raise ValueError(
                    f"optimizer: group {group_index} holds a parameter of shape "
                    f"{tuple(param.shape)} that is not a parameter of model after loading "
                    "(build the optimizer after load_checkpoint when the load re-ties parameters)"
                )
            names.append(owner_of[id(param)])
        saved_names = [aliases.get(_canonical(name), _canonical(name)) for name in saved["params"]]
        if len(set(saved_names)) != len(saved_names):
            raise ValueError(
                f"optimizer: checkpoint {path!r} updated {_first(saved['params'])} in group "
                f"{group_index} as separate parameters, but model ties some of them into one"
            )
        missing = [name for name in saved_names if name not in names]
        extra = [name for name in names if name not in saved_names]
        if missing or extra:
            raise ValueError(
                f"optimizer: group {group_index} does not hold the saved parameters; "
                f"saved but not held: [{_first(missing)}]; held but not saved: [{_first(extra)}]"
            )
        group_out: dict[str, Any] = {}
        current = optimizer.param_groups[group_index]
        for key, value in saved.items():
            if key in ("params", "__tensors__"):
                continue
            # JSON has no tuples: give back the tuple the optimizer uses (e.g. Adam's betas).
            if isinstance(current.get(key), tuple) and isinstance(value, list):
                value = tuple(value)
            group_out[key] = value
        for key in saved["__tensors__"]:
            group_out[key] = _TensorRef(f"{_OPTIMIZER_TENSORS}param_groups.{group_index}.{key}")
        for name in names:
            index_of[name] = index
            index += 1
        group_out["params"] = [index_of[name] for name in names]
        groups_out.append(group_out)

    state_out: dict[int, dict[str, Any]] = {}
    for saved_name, entry in record["state"].items():
        name = aliases.get(_canonical(saved_name), _canonical(saved_name))
        if name not in index_of:
            raise ValueError(
                f"path: checkpoint {path!r} holds optimizer state for {saved_name!r}, which is "
                "in none of its parameter groups"
            )
        values: dict[str, Any] = dict(entry["values"])
        for key in entry["tensors"]:
            values[key] = _TensorRef(f"{_OPTIMIZER_TENSORS}state.{saved_name}.{key}")
        state_out[index_of[name]] = values
    absent = [
        ref.key
        for entries in [*state_out.values(), *groups_out]
        for ref in entries.values()
        if isinstance(ref, _TensorRef) and _canonical(ref.key) not in available
    ]
    if absent:
        raise ValueError(f"path: checkpoint {path!r} is damaged, tensors {_first(absent)} missing")
    return {"state": state_out, "param_groups": groups_out}


def _verify_ties(path: str, model: nn.Module, file_ties: list[list[str]], loaded: set[str]) -> None:
    tensors, _ = _model_tensors(model)
    for group in file_ties:
        present = [name for name in group if name in loaded]
        if len({id(tensors[name]) for name in present}) > 1:  # pragma: no cover - defensive
            raise RuntimeError(f"ties from {path!r} could not be restored: {present}")
