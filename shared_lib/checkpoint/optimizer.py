"""Optimizer state in a checkpoint, recorded by parameter name, in a file of its own (chapter 05).

``optimizer.state_dict()`` numbers parameters by their position in the parameter groups, which
says nothing about which tensor of the model each one is. A checkpoint records the optimizer
by the parameters' canonical names instead (a tied tensor under its first name, once), in the
optimizer file beside the weights file (:func:`shared_lib.checkpoint.format.optimizer_path`,
``lm.safetensors`` -> ``lm.optimizer.safetensors``), format version 2:

* tensors: ``state.<parameter name>.<key>`` (``exp_avg``, ``step``, ``momentum_buffer``, ...)
  and ``param_groups.<group index>.<key>`` for tensor-valued hyperparameters, if any;
* metadata: ``format: pt``, ``shared_lib.format_version``, ``shared_lib.checkpoint_id`` (the
  weights file's, so that a stale or mismatched pair is refused), ``shared_lib.weights_file``
  and ``shared_lib.optimizer`` (JSON: class, param groups with parameter names and
  hyperparameters, non-tensor state).

A version-1 checkpoint kept the same tensors inside the weights file, prefixed
``__optimizer__.``; it is still read. An optimizer holding a parameter twice is refused
(:func:`shared_lib.guards.optimizer_parameters`). The moments of a sharded model (DTensors)
are gathered on save like its parameters.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from shared_lib._validation import check_bool
from shared_lib.checkpoint.format import (
    CHECKPOINT_ID_KEY,
    FORMAT_KEY,
    FORMAT_VERSION,
    OPTIMIZER_FILE_KEY,
    OPTIMIZER_KEY,
    OPTIMIZER_TENSORS,
    VERSION_KEY,
    WEIGHTS_FILE_KEY,
    CheckpointHeader,
    abbreviate,
    canonical_name,
    optimizer_path,
    storable_tensor,
)
from shared_lib.checkpoint.sources import checkpoint_files, open_files
from shared_lib.guards import optimizer_parameters

__all__ = [
    "OptimizerSource",
    "optimizer_header",
    "optimizer_record",
    "read_optimizer_source",
    "read_optimizer_state",
]


def _owners_of(model: nn.Module, model_tensors: Mapping[str, torch.Tensor]) -> dict[int, str]:
    """id(parameter) -> canonical name of the first state-dict name that uses it."""
    owners: dict[int, str] = {}
    parameter_ids = {id(param) for param in model.parameters()}
    for name, tensor in model_tensors.items():
        if id(tensor) in parameter_ids:
            owners.setdefault(id(tensor), name)
    return owners


def _to_json(value: Any, what: str) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"optimizer: {what} is a {type(value).__name__} that cannot be stored as JSON "
            "(no pickle is used); only tensors and JSON values are supported"
        ) from error
    return value


def optimizer_record(
    model: nn.Module,
    model_tensors: Mapping[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    seen_storage: set[tuple[str, int]],
    keep: bool = True,
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Describe ``optimizer`` by parameter names, and collect its tensor state for the file.

    Args:
        model: the model the optimizer trains (unwrapped,
            :func:`shared_lib.checkpoint.format.unwrap_model`).
        model_tensors: its tensors by canonical name
            (:func:`shared_lib.checkpoint.format.model_tensors`).
        optimizer: the optimizer to record.
        seen_storage: memories already stored (see
            :func:`shared_lib.checkpoint.format.storable_tensor`); updated.
        keep: whether to return the tensors; a sharded model's moments are gathered from every
            process in any case, and a process that does not write passes ``False``.

    Returns:
        A pair, the JSON-ready record of the optimizer's class, its parameter groups
        (parameter names and hyperparameters) and its non-tensor state by parameter name; and
        the tensors of the optimizer file by key (empty if not ``keep``).

    Raises:
        TypeError: ``optimizer`` is not a :class:`torch.optim.Optimizer`, ``keep`` not a bool.
        ValueError: the optimizer holds a parameter twice or one that is not ``model``'s, or
            holds state that is neither a tensor nor a JSON value.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from shared_lib.checkpoint.format import model_tensors
        >>> from shared_lib.checkpoint.optimizer import optimizer_record
        >>> layer = nn.Linear(2, 2, bias=False); net = nn.Sequential(layer, layer)  # 2 names
        >>> optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
        >>> net(torch.ones(1, 2)).sum().backward(); optimizer.step()
        >>> record, tensors = optimizer_record(net, model_tensors(net)[0], optimizer, set())
        >>> record["param_groups"][0]["params"], list(tensors)  # the tied tensor, once
        (['0.weight'], ['state.0.weight.momentum_buffer'])
    """
    check_bool(keep, "keep")
    owners = _owners_of(model, model_tensors)
    parameter_groups = optimizer_parameters(optimizer)
    names_by_index: list[str] = []  # torch's state_dict numbers parameters in group order
    for group_index, params in enumerate(parameter_groups):
        for param in params:
            if id(param) not in owners:
                raise ValueError(
                    f"optimizer: group {group_index} holds a parameter of shape "
                    f"{tuple(param.shape)} that is not a parameter of model"
                )
            names_by_index.append(owners[id(param)])

    tensors: dict[str, torch.Tensor] = {}

    def store(key: str, value: torch.Tensor) -> None:
        value = storable_tensor(value, key, seen_storage)  # gathers a DTensor: every rank
        if keep:
            tensors[key] = value

    state_dict = optimizer.state_dict()
    groups_record = []
    for group_index, group in enumerate(state_dict["param_groups"]):
        record: dict[str, Any] = {"params": [names_by_index[i] for i in group["params"]]}
        tensor_keys = []
        for key, value in group.items():
            if key in ("params", "param_names"):  # parameters are recorded by canonical name
                continue
            if isinstance(value, torch.Tensor):
                store(f"param_groups.{group_index}.{key}", value)
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
                store(f"state.{name}.{key}", value)
                tensor_keys.append(key)
            else:
                values[key] = _to_json(value, f"state of {name!r}, key {key!r}")
        state_record[name] = {"tensors": tensor_keys, "values": values}
    record = {
        "class": f"{type(optimizer).__module__}.{type(optimizer).__qualname__}",
        "param_groups": groups_record,
        "state": state_record,
    }
    return record, tensors


def optimizer_header(record: Mapping[str, Any], checkpoint_id: str, weights_file: str) -> dict:
    """The metadata of an optimizer file.

    Args:
        record: the optimizer's record (:func:`optimizer_record`).
        checkpoint_id: the id the weights file carries too.
        weights_file: the weights file's name (without folder).

    Returns:
        The string metadata (``format``, format version, checkpoint id, weights file, record).

    Examples:
        >>> from shared_lib.checkpoint.optimizer import optimizer_header
        >>> header = optimizer_header({"state": {}}, "0123", "lm.safetensors")
        >>> header["format"], header["shared_lib.weights_file"], header["shared_lib.optimizer"]
        ('pt', 'lm.safetensors', '{"state": {}}')
    """
    return {
        FORMAT_KEY: "pt",
        VERSION_KEY: str(FORMAT_VERSION),
        CHECKPOINT_ID_KEY: checkpoint_id,
        WEIGHTS_FILE_KEY: weights_file,
        OPTIMIZER_KEY: json.dumps(record),
    }


@dataclass(frozen=True)
class OptimizerSource:
    """Where a checkpoint's optimizer state is (:func:`read_optimizer_source`).

    Attributes:
        path: the file holding it (the optimizer file; for version 1, the weights file).
        record: the JSON record written by :func:`optimizer_record`.
        locations: canonical tensor key (``state.<name>.<key>``, ``param_groups.<i>.<key>``)
            -> ``(file, key as stored)``.

    Examples:
        >>> from shared_lib.checkpoint.optimizer import OptimizerSource
        >>> OptimizerSource("lm.optimizer.safetensors", {"state": {}}, {}).path
        'lm.optimizer.safetensors'
    """

    path: str
    record: dict[str, Any]
    locations: dict[str, tuple[str, str]]


def read_optimizer_source(header: CheckpointHeader) -> OptimizerSource:
    """Find and check the optimizer state of the checkpoint ``header`` describes.

    Version 2 keeps it in the file named by the weights file's metadata, beside it (or at
    :func:`~shared_lib.checkpoint.format.optimizer_path` if the pair was renamed); the two files
    must carry the same checkpoint id. Version 1 kept it inside the weights file.

    Args:
        header: the weights file's header
            (:func:`shared_lib.checkpoint.format.read_header`).

    Returns:
        The optimizer state's file, record and tensor keys; no tensor is read.

    Raises:
        FileNotFoundError: the optimizer file is missing.
        ValueError: the checkpoint was saved without an optimizer, is not a shared_lib
            checkpoint, or its optimizer file belongs to another save.

    Examples:
        >>> import os, tempfile
        >>> import torch
        >>> from torch import nn
        >>> import shared_lib as sl
        >>> from shared_lib.checkpoint.format import read_header
        >>> from shared_lib.checkpoint.optimizer import read_optimizer_source
        >>> net = nn.Linear(2, 2)
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = os.path.join(folder, "net.safetensors")
        ...     sl.save_checkpoint(net, path, torch.optim.SGD(net.parameters(), lr=0.1))
        ...     source = read_optimizer_source(read_header(path))
        >>> os.path.basename(source.path), source.record["class"]
        ('net.optimizer.safetensors', 'torch.optim.sgd.SGD')
    """
    where, metadata = header.file, header.metadata
    if header.version is None:
        raise ValueError(
            f"path: {header.path!r} holds no optimizer state: it is a plain safetensors file, "
            "not written by shared_lib.save_checkpoint(..., optimizer)"
        )
    if header.version == 1:
        if OPTIMIZER_KEY not in metadata:
            raise ValueError(
                f"path: checkpoint {where!r} holds no optimizer state (saved without one)"
            )
        (weights,) = checkpoint_files(where)
        locations = {
            canonical_name(key.removeprefix(OPTIMIZER_TENSORS)): (where, key)
            for key in weights.tensors
            if key.startswith(OPTIMIZER_TENSORS)
        }
        return OptimizerSource(where, json.loads(metadata[OPTIMIZER_KEY]), locations)
    if OPTIMIZER_FILE_KEY not in metadata:
        raise ValueError(f"path: checkpoint {where!r} holds no optimizer state (saved without one)")
    named = os.path.join(os.path.dirname(where), metadata[OPTIMIZER_FILE_KEY])
    found = next((p for p in (named, optimizer_path(where)) if os.path.isfile(p)), None)
    if found is None:
        raise FileNotFoundError(
            f"optimizer: checkpoint {where!r} keeps its optimizer state in "
            f"{metadata[OPTIMIZER_FILE_KEY]!r} beside it, and that file is missing ({named!r}); "
            "copy it along with the weights file, or load without optimizer="
        )
    (file,) = checkpoint_files(found)
    if file.metadata.get(CHECKPOINT_ID_KEY) != metadata.get(CHECKPOINT_ID_KEY):
        raise ValueError(
            f"optimizer: {found!r} does not belong to checkpoint {where!r} (their "
            f"{CHECKPOINT_ID_KEY!r} differ): it was written by another save_checkpoint call, "
            "or a save was interrupted between the two files"
        )
    if OPTIMIZER_KEY not in file.metadata:
        raise ValueError(f"optimizer: {found!r} is damaged (no {OPTIMIZER_KEY!r} in its metadata)")
    locations = {canonical_name(key): (file.path, key) for key in file.tensors}
    return OptimizerSource(file.path, json.loads(file.metadata[OPTIMIZER_KEY]), locations)


class _TensorRef:
    """Placeholder for an optimizer tensor read from the file once the plan is checked."""

    def __init__(self, key: str) -> None:
        self.key = key


def read_optimizer_state(
    source: OptimizerSource,
    model: nn.Module,
    final: Mapping[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
) -> dict[str, Any]:
    """A torch state dict for ``optimizer`` built from the file's record, by parameter names.

    Everything is checked before any tensor is read: the optimizer's class, its groups and the
    parameters in each (by name, through the ties the model will have after the load), and that
    every tensor the record names is in the file. Hyperparameters come from the file.

    Args:
        source: where the optimizer state is (:func:`read_optimizer_source`).
        model: the model being loaded (unwrapped).
        final: canonical name -> the tensor each name will be once the load has re-tied the
            model.
        optimizer: the optimizer to load into (not changed here).

    Returns:
        A state dict for ``optimizer.load_state_dict``, its tensors read from the file.

    Raises:
        TypeError: ``optimizer`` is not a :class:`torch.optim.Optimizer`.
        ValueError: the file holds optimizer state of another class, other groups or other
            parameters; the optimizer holds a parameter twice or one that is not the model's
            after loading; or the file is damaged.

    Examples:
        >>> import os, tempfile
        >>> import torch
        >>> from torch import nn
        >>> import shared_lib as sl
        >>> from shared_lib.checkpoint.format import model_tensors, read_header
        >>> from shared_lib.checkpoint.optimizer import read_optimizer_source, read_optimizer_state
        >>> net = nn.Linear(2, 2)
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = os.path.join(folder, "net.safetensors")
        ...     sl.save_checkpoint(net, path, torch.optim.SGD(net.parameters(), lr=0.1))
        ...     source = read_optimizer_source(read_header(path))
        ...     state = read_optimizer_state(source, net, model_tensors(net)[0],
        ...                                  torch.optim.SGD(net.parameters(), lr=0.5))
        >>> state["param_groups"][0]["lr"], state["param_groups"][0]["params"]  # saved lr
        (0.1, [0, 1])
    """
    path, record = source.path, source.record
    saved_class = record["class"]
    this_class = f"{type(optimizer).__module__}.{type(optimizer).__qualname__}"
    if saved_class != this_class:
        raise ValueError(f"optimizer is a {this_class}, but the checkpoint holds a {saved_class}")
    parameter_groups = optimizer_parameters(optimizer)
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
        saved_names = [
            aliases.get(canonical_name(name), canonical_name(name)) for name in saved["params"]
        ]
        if len(set(saved_names)) != len(saved_names):
            raise ValueError(
                f"optimizer: checkpoint {path!r} updated {abbreviate(saved['params'])} in group "
                f"{group_index} as separate parameters, but model ties some of them into one"
            )
        missing = [name for name in saved_names if name not in names]
        extra = [name for name in names if name not in saved_names]
        if missing or extra:
            raise ValueError(
                f"optimizer: group {group_index} does not hold the saved parameters; saved but "
                f"not held: [{abbreviate(missing)}]; held but not saved: [{abbreviate(extra)}]"
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
            group_out[key] = _TensorRef(f"param_groups.{group_index}.{key}")
        for name in names:
            index_of[name] = index
            index += 1
        group_out["params"] = [index_of[name] for name in names]
        groups_out.append(group_out)

    state_out: dict[int, dict[str, Any]] = {}
    for saved_name, entry in record["state"].items():
        name = aliases.get(canonical_name(saved_name), canonical_name(saved_name))
        if name not in index_of:
            raise ValueError(
                f"path: checkpoint {path!r} holds optimizer state for {saved_name!r}, which is "
                "in none of its parameter groups"
            )
        values: dict[str, Any] = dict(entry["values"])
        for key in entry["tensors"]:
            values[key] = _TensorRef(canonical_name(f"state.{saved_name}.{key}"))
        state_out[index_of[name]] = values
    absent = [
        ref.key
        for entries in [*state_out.values(), *groups_out]
        for ref in entries.values()
        if isinstance(ref, _TensorRef) and ref.key not in source.locations
    ]
    if absent:
        raise ValueError(
            f"path: checkpoint {path!r} is damaged, tensors {abbreviate(absent)} missing"
        )

    # Everything is checked: read the tensors.
    with open_files(source.locations) as read:
        for entries in [*state_out.values(), *groups_out]:
            for key, ref in list(entries.items()):
                if isinstance(ref, _TensorRef):
                    entries[key] = read(ref.key)
    return {"state": state_out, "param_groups": groups_out}
