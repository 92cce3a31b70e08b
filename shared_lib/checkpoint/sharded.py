"""Checkpoints of sharded models: gather DTensors on save, shard the file's values on load.

FSDP2 (``torch.distributed.fsdp.fully_shard``, used by :func:`shared_lib.distributed.shard_model`)
replaces every parameter by a ``DTensor``: each process holds one slice (its *local shard*), and
the parameter's shape is the whole tensor's. Two things then fail with plain tensor code:
reading its memory (``RuntimeError: Attempted to access the data pointer on an invalid python
storage``) and copying a plain tensor into it (``aten.copy_.default got mixed torch.Tensor and
DTensor``). So:

* **saving** gathers each DTensor with ``full_tensor()``, a collective: **every** process must
  call :func:`shared_lib.save_checkpoint`, in the same order; only rank 0 writes the file(s),
  and every process learns whether that worked (:func:`write_on_rank_zero`);
* **loading** needs no communication: every process reads the file and keeps its own slice,
  ``distribute_tensor(full, param.device_mesh, param.placements, src_data_rank=None)``, which it
  copies into the parameter (:func:`copy_into`). Optimizer moments are sharded the same way
  (:func:`shard_optimizer_state`).

Models of plain tensors (one process, DDP) pass through every function here unchanged.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from typing import Any

import torch

from shared_lib._validation import check_bool

__all__ = [
    "copy_into",
    "gather",
    "is_sharded",
    "shard_like",
    "shard_optimizer_state",
    "write_on_rank_zero",
    "writes_files",
]


def _dtensor_class() -> type | None:
    # No DTensor can exist unless torch.distributed.tensor was imported: do not import it here.
    module = sys.modules.get("torch.distributed.tensor")
    return getattr(module, "DTensor", None)


def is_sharded(tensor: torch.Tensor) -> bool:
    """Whether ``tensor`` is a ``DTensor`` (a parameter sharded by FSDP2 or tensor parallelism).

    Args:
        tensor: any tensor.

    Returns:
        ``True`` for a DTensor.

    Examples:
        >>> import torch
        >>> from shared_lib.checkpoint.sharded import is_sharded
        >>> is_sharded(torch.zeros(3))
        False
    """
    dtensor = _dtensor_class()
    return dtensor is not None and isinstance(tensor, dtensor)


def gather(tensor: torch.Tensor) -> torch.Tensor:
    """The whole value of ``tensor``, detached: gathered from every process for a DTensor.

    For a DTensor this is a collective (``full_tensor()``): every process of its mesh must call
    it, in the same order.

    Args:
        tensor: a plain tensor or a DTensor.

    Returns:
        A plain tensor with the global shape (``tensor`` itself, detached, if it is plain).

    Examples:
        >>> import torch
        >>> from shared_lib.checkpoint.sharded import gather
        >>> weight = torch.ones(2, requires_grad=True)
        >>> gather(weight).requires_grad
        False
    """
    if is_sharded(tensor):
        return tensor.detach().full_tensor()
    return tensor.detach()


def shard_like(value: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``value`` (a whole tensor) laid out like ``target``: its local slice for a DTensor target.

    No communication: every process slices the value it holds itself
    (``distribute_tensor(..., src_data_rank=None)``), so every process must hold the same value
    (it read the same file).

    Args:
        value: a plain tensor of ``target``'s (global) shape.
        target: the tensor it is meant for.

    Returns:
        A DTensor on ``target``'s mesh with ``target``'s placements, or ``value`` itself if
        ``target`` is not a DTensor.

    Examples:
        >>> import torch
        >>> from shared_lib.checkpoint.sharded import shard_like
        >>> value = torch.arange(3.0)
        >>> shard_like(value, torch.zeros(3)) is value  # a plain target: unchanged
        True
    """
    if not is_sharded(target):
        return value
    from torch.distributed.tensor import distribute_tensor

    return distribute_tensor(
        value.detach(), target.device_mesh, target.placements, src_data_rank=None
    )


def copy_into(target: torch.Tensor, value: torch.Tensor) -> None:
    """Copy the whole tensor ``value`` into ``target`` in place (into its local slice if sharded).

    Args:
        target: a model's tensor (plain or DTensor); it keeps its identity, device and dtype.
        value: the whole value, of ``target``'s global shape and dtype, on any device.

    Examples:
        >>> import torch
        >>> from shared_lib.checkpoint.sharded import copy_into
        >>> weight = torch.nn.Parameter(torch.zeros(2))
        >>> copy_into(weight, torch.tensor([1.0, 2.0])); weight.data
        tensor([1., 2.])
    """
    with torch.no_grad():
        target.copy_(shard_like(value, target))


def writes_files(tensors: Iterable[torch.Tensor]) -> bool:
    """Whether this process writes the checkpoint of a model holding ``tensors``.

    With DTensors among them (a sharded model), only rank 0 of the default process group
    writes; otherwise (one process, or DDP where every process holds everything) this one does.

    Args:
        tensors: the model's tensors.

    Returns:
        ``True`` if this process writes.

    Examples:
        >>> import torch
        >>> from shared_lib.checkpoint.sharded import writes_files
        >>> writes_files([torch.zeros(2)])
        True
    """
    if not any(is_sharded(tensor) for tensor in tensors):
        return True
    import torch.distributed as dist

    return dist.get_rank() == 0


def write_on_rank_zero(write: Callable[[], None], collective: bool, what: str) -> None:
    """Run ``write`` on rank 0 only and tell every process how it went (if ``collective``).

    Without ``collective`` (a model of plain tensors), ``write`` simply runs here. With it, rank
    0 runs ``write`` and broadcasts whether it worked; rank 0 re-raises its own error, the other
    processes raise a ``RuntimeError`` that quotes it, so that none is left waiting or believes
    the checkpoint was written.

    Args:
        write: what to do (writes the files).
        collective: whether every process of the default group calls this.
        what: the files, for the message of the other ranks' error.

    Raises:
        TypeError: ``collective`` is not a bool.
        RuntimeError: (ranks other than 0) rank 0 failed to write.

    Examples:
        >>> from shared_lib.checkpoint.sharded import write_on_rank_zero
        >>> write_on_rank_zero(lambda: print("written"), collective=False, what="lm.safetensors")
        written
    """
    if not check_bool(collective, "collective"):
        write()
        return
    import torch.distributed as dist

    outcome: list[Any] = [None]
    error: BaseException | None = None
    if dist.get_rank() == 0:
        try:
            write()
        except Exception as caught:  # reported to every rank below, then re-raised here
            error = caught
            outcome[0] = f"{type(caught).__name__}: {caught}"
    dist.broadcast_object_list(outcome, src=0)
    if error is not None:
        raise error
    if outcome[0] is not None:
        raise RuntimeError(f"rank 0 could not write {what}: {outcome[0]}")


def shard_optimizer_state(state_dict: dict, optimizer: torch.optim.Optimizer) -> None:
    """Lay out the whole tensors of an optimizer state dict like the parameters they belong to.

    A sharded parameter's moments (``exp_avg``, ``momentum_buffer``, ... of the parameter's
    shape) become DTensors with its mesh and placements; scalars (``step``) and the state of
    plain parameters are left as they are. Changes ``state_dict`` in place.

    Args:
        state_dict: ``{"state": {index: {key: value}}, "param_groups": [...]}`` with whole
            tensors, numbered like ``optimizer.state_dict()``.
        optimizer: the optimizer it is meant for.

    Examples:
        >>> import torch
        >>> from shared_lib.checkpoint.sharded import shard_optimizer_state
        >>> weight = torch.nn.Parameter(torch.zeros(2))
        >>> optimizer = torch.optim.SGD([weight], lr=0.1, momentum=0.9)
        >>> state = {"state": {0: {"momentum_buffer": torch.ones(2)}}, "param_groups": []}
        >>> shard_optimizer_state(state, optimizer)  # a plain parameter: nothing to do
        >>> state["state"][0]["momentum_buffer"]
        tensor([1., 1.])
    """
    params = [param for group in optimizer.param_groups for param in group["params"]]
    for index, entries in state_dict["state"].items():
        param = params[index]
        if not is_sharded(param):
            continue
        for key, value in entries.items():
            # "step" stays a plain scalar, as torch keeps it for sharded parameters too.
            same_shape = isinstance(value, torch.Tensor) and value.shape == param.shape
            if key != "step" and same_shape:
                entries[key] = shard_like(value, param)
