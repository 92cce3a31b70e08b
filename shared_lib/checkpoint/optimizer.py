"""Optimizer state in a checkpoint, recorded by parameter name (chapter 05).

``optimizer.state_dict()`` numbers parameters by their position in the parameter groups, which
says nothing about which tensor of the model each one is. A checkpoint records the optimizer
by the parameters' canonical names instead (a tied tensor under its first name, once): tensor
state is stored in the file as ``__optimizer__.state.<name>.<key>``, tensor hyperparameters as
``__optimizer__.param_groups.<group>.<key>``, everything else in the JSON record under
``shared_lib.optimizer`` (see :mod:`shared_lib.checkpoint.format`). An optimizer holding a
parameter twice is refused (:func:`shared_lib.guards.optimizer_parameters`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import torch
from safetensors import safe_open
from torch import nn

from shared_lib.checkpoint.format import (
    OPTIMIZER_KEY,
    OPTIMIZER_TENSORS,
    CheckpointHeader,
    abbreviate,
    canonical_name,
    storable_tensor,
)
from shared_lib.guards import optimizer_parameters

__all__ = ["optimizer_record", "read_optimizer_state"]


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
    tensors: dict[str, torch.Tensor],
    seen_storage: set[tuple[str, int]],
) -> dict[str, Any]:
    """Describe ``optimizer`` by parameter names; add its tensor state to ``tensors``.

    Args:
        model: the model the optimizer trains.
        model_tensors: its tensors by canonical name
            (:func:`shared_lib.checkpoint.format.model_tensors`).
        optimizer: the optimizer to record.
        tensors: the tensors to write to the file; the optimizer's are added, under
            :data:`~shared_lib.checkpoint.format.OPTIMIZER_TENSORS` keys.
        seen_storage: memories already stored (see
            :func:`shared_lib.checkpoint.format.storable_tensor`); updated.

    Returns:
        The JSON-ready record of the optimizer's class, its parameter groups (parameter names
        and hyperparameters) and its non-tensor state by parameter name.

    Raises:
        TypeError: ``optimizer`` is not a :class:`torch.optim.Optimizer`.
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
        >>> tensors = {}
        >>> record = optimizer_record(net, model_tensors(net)[0], optimizer, tensors, set())
        >>> record["param_groups"][0]["params"], list(tensors)  # the tied tensor, once
        (['0.weight'], ['__optimizer__.state.0.weight.momentum_buffer'])
    """
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

    state_dict = optimizer.state_dict()
    groups_record = []
    for group_index, group in enumerate(state_dict["param_groups"]):
        record: dict[str, Any] = {"params": [names_by_index[i] for i in group["params"]]}
        tensor_keys = []
        for key, value in group.items():
            if key in ("params", "param_names"):  # parameters are recorded by canonical name
                continue
            if isinstance(value, torch.Tensor):
                file_key = f"{OPTIMIZER_TENSORS}param_groups.{group_index}.{key}"
                tensors[file_key] = storable_tensor(value, file_key, seen_storage)
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
                file_key = f"{OPTIMIZER_TENSORS}state.{name}.{key}"
                tensors[file_key] = storable_tensor(value, file_key, seen_storage)
                tensor_keys.append(key)
            else:
                values[key] = _to_json(value, f"state of {name!r}, key {key!r}")
        state_record[name] = {"tensors": tensor_keys, "values": values}
    return {
        "class": f"{type(optimizer).__module__}.{type(optimizer).__qualname__}",
        "param_groups": groups_record,
        "state": state_record,
    }


class _TensorRef:
    """Placeholder for an optimizer tensor read from the file once the plan is checked."""

    def __init__(self, key: str) -> None:
        self.key = key


def read_optimizer_state(
    header: CheckpointHeader,
    model: nn.Module,
    final: Mapping[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
) -> dict[str, Any]:
    """A torch state dict for ``optimizer`` built from the file's record, by parameter names.

    Everything is checked before any tensor is read: the optimizer's class, its groups and the
    parameters in each (by name, through the ties the model will have after the load), and that
    every tensor the record names is in the file. Hyperparameters come from the file.

    Args:
        header: the file's header (:func:`shared_lib.checkpoint.format.read_header`).
        model: the model being loaded.
        final: canonical name -> the tensor each name will be once the load has re-tied the
            model.
        optimizer: the optimizer to load into (not changed here).

    Returns:
        A state dict for ``optimizer.load_state_dict``, its tensors read from the file.

    Raises:
        TypeError: ``optimizer`` is not a :class:`torch.optim.Optimizer`.
        ValueError: the file holds no optimizer state, or one of another class, other groups or
            other parameters; the optimizer holds a parameter twice or one that is not the
            model's after loading; or the file is damaged.

    Examples:
        >>> import os, tempfile
        >>> import torch
        >>> from torch import nn
        >>> import shared_lib as sl
        >>> from shared_lib.checkpoint.format import model_tensors, read_header
        >>> from shared_lib.checkpoint.optimizer import read_optimizer_state
        >>> net = nn.Linear(2, 2)
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = os.path.join(folder, "net.safetensors")
        ...     sl.save_checkpoint(net, path, torch.optim.SGD(net.parameters(), lr=0.1))
        ...     state = read_optimizer_state(read_header(path), net, model_tensors(net)[0],
        ...                                  torch.optim.SGD(net.parameters(), lr=0.5))
        >>> state["param_groups"][0]["lr"], state["param_groups"][0]["params"]  # saved lr
        (0.1, [0, 1])
    """
    path, available = header.path, set(header.keys)
    if OPTIMIZER_KEY not in header.metadata:
        raise ValueError(f"path: checkpoint {path!r} holds no optimizer state (saved without one)")
    record = json.loads(header.metadata[OPTIMIZER_KEY])
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
            group_out[key] = _TensorRef(f"{OPTIMIZER_TENSORS}param_groups.{group_index}.{key}")
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
            values[key] = _TensorRef(f"{OPTIMIZER_TENSORS}state.{saved_name}.{key}")
        state_out[index_of[name]] = values
    absent = [
        ref.key
        for entries in [*state_out.values(), *groups_out]
        for ref in entries.values()
        if isinstance(ref, _TensorRef) and canonical_name(ref.key) not in available
    ]
    if absent:
        raise ValueError(
            f"path: checkpoint {path!r} is damaged, tensors {abbreviate(absent)} missing"
        )

    # Everything is checked: read the tensors.
    with safe_open(path, framework="pt", device="cpu") as handle:
        for entries in [*state_out.values(), *groups_out]:
            for key, ref in list(entries.items()):
                if isinstance(ref, _TensorRef):
                    entries[key] = handle.get_tensor(header.keys[canonical_name(ref.key)])
    return {"state": state_out, "param_groups": groups_out}
