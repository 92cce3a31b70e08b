"""Save and load models whose tensors are shared, as plain safetensors files (chapter 05).

Engineering pitfalls motivate this package (the first two are taught in chapter 05):

* ``safetensors.torch.save_file(model.state_dict(), path)`` refuses a tied model, because the
  state dict lists the shared tensor under every name (safetensors issues #98 and #202); naive
  workarounds write it twice and load two independent copies, silently untying the model.
* Wrappers rename everything: ``torch.compile``'s ``OptimizedModule`` adds ``_orig_mod.``
  (nanoGPT issue #325) and ``DistributedDataParallel`` adds ``module.``, so checkpoints of
  wrapped and plain models do not load into each other.
* A model sharded with FSDP2 (:func:`shared_lib.distributed.shard_model`) holds DTensors, which
  plain tensor code can neither read nor copy into (see :mod:`shared_lib.checkpoint.sharded`).

:func:`save_checkpoint` writes every tensor of the state dict once, under canonical names, in a
plain model file that Hugging Face ``from_pretrained`` and ``safetensors.torch.load_model`` read
as it is; the ties and the architecture are recorded in its metadata, the optimizer state goes
to a file of its own beside it
(:func:`~shared_lib.checkpoint.format.optimizer_path`), and nothing is pickled.
:func:`load_checkpoint` reads these files and also plain safetensors files and Hugging Face
``save_pretrained`` folders; it checks the architecture, copies the values in bit for bit,
restores the ties and the optimizer state, refuses anything that does not fit with a clear error,
and says what it skipped (:class:`LoadResult`).

The file format is described in :mod:`shared_lib.checkpoint.format` (the model's part) and
:mod:`shared_lib.checkpoint.optimizer` (the optimizer file); :mod:`shared_lib.checkpoint.sources`
finds the files of other tools' checkpoints.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable

import torch
from torch import nn

from shared_lib._validation import check_bool, check_instance, check_module
from shared_lib.checkpoint.format import (
    CHECKPOINT_ID_KEY,
    FORMAT_VERSION,
    OPTIMIZER_FILE_KEY,
    CheckpointHeader,
    abbreviate,
    check_architecture,
    check_load_dtype,
    check_metadata,
    model_header,
    model_tensors,
    optimizer_path,
    read_header,
    storable_tensor,
    tie_groups,
    unwrap_model,
    without_wrapper_prefix,
    write_file,
)
from shared_lib.checkpoint.optimizer import (
    optimizer_header,
    optimizer_record,
    read_optimizer_source,
    read_optimizer_state,
)
from shared_lib.checkpoint.sharded import (
    copy_into,
    is_sharded,
    shard_optimizer_state,
    write_on_rank_zero,
    writes_files,
)
from shared_lib.checkpoint.sources import open_files
from shared_lib.tying import retie

__all__ = ["FORMAT_VERSION", "LoadResult", "load_checkpoint", "optimizer_path", "save_checkpoint"]


def _file_to_write(path: object) -> str:
    """``path`` as a string, refusing a folder (save_checkpoint writes one named file)."""
    path = os.fspath(check_instance(path, "path", (str, os.PathLike), "str or os.PathLike"))
    if os.path.isdir(path) or path.endswith(("/", os.sep)):
        example = os.path.join(path, "model.safetensors")
        raise ValueError(
            f"path: {path!r} is a folder; save_checkpoint writes one file, so give a file name "
            f"such as {example!r}"
        )
    return path


def save_checkpoint(
    model: nn.Module,
    path: str | os.PathLike,
    optimizer: torch.optim.Optimizer | None = None,
    metadata: dict[str, str] | None = None,
) -> None:
    """Save ``model`` to a ``.safetensors`` file that keeps ties, its optimizer beside it (ch. 05).

    Every shared tensor is written once, under its first name; the other names are recorded as
    ties. The file holds the model's tensors only, with ``format: pt`` metadata, so Hugging Face
    ``from_pretrained`` (as ``model.safetensors`` beside a ``config.json``) and
    ``safetensors.torch.load_model`` read it. The optimizer state goes to
    :func:`~shared_lib.checkpoint.format.optimizer_path` (``lm.safetensors`` ->
    ``lm.optimizer.safetensors``), which the weights file names in its metadata. Wrapped
    models are saved under the plain model's names:
    ``torch.compile``'d (no ``_orig_mod.``) and ``DistributedDataParallel`` (no ``module.``).

    **Sharded models (FSDP2):** saving is collective. Every process must call
    ``save_checkpoint`` with the same arguments (each DTensor is gathered with
    ``full_tensor()``); only rank 0 writes, and every process raises if that failed. Calling it
    on rank 0 alone would wait forever. (For DDP, every process holds everything: call it on
    one process, usually rank 0, and it does not communicate.)

    Args:
        model: the model; its parameters and persistent buffers are saved.
        path: file to write; parent folders are created, and the file is replaced atomically.
        optimizer: optional optimizer over ``model``'s parameters; its state is saved (to its
            own file, also atomically, written first).
        metadata: optional ``str -> str`` entries stored in the file and returned by
            :func:`load_checkpoint` (keys starting with ``"shared_lib."`` and ``"format"`` are
            reserved).

    Raises:
        TypeError: for arguments of the wrong type.
        ValueError: ``path`` is a folder; a model that cannot be stored (meta tensors,
            non-tensor state), an optimizer holding a parameter twice or one that is not in
            ``model``, reserved metadata keys.
        RuntimeError: (sharded model, ranks other than 0) rank 0 could not write the files.

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
    path = _file_to_write(path)
    metadata = check_metadata(metadata)

    inner = unwrap_model(model)
    model_state, _ = model_tensors(inner)
    groups = tie_groups(model_state)
    aliases = {name for group in groups for name in group[1:]}
    collective = any(is_sharded(tensor) for tensor in model_state.values())
    writes = writes_files(model_state.values())
    seen_storage: set[tuple[str, int]] = set()
    tensors = {}
    for name, tensor in model_state.items():
        if name in aliases:
            continue
        value = storable_tensor(tensor, name, seen_storage)  # gathers a DTensor: every rank
        if writes:
            tensors[name] = value
    header = model_header(model_state, groups)
    header[CHECKPOINT_ID_KEY] = uuid.uuid4().hex
    files = [(path, tensors, header)]
    if optimizer is not None:
        record, optimizer_tensors = optimizer_record(inner, model_state, optimizer, set(), writes)
        second = optimizer_path(path)
        header[OPTIMIZER_FILE_KEY] = os.path.basename(second)
        # Written first: a crash between the two leaves a pair whose ids differ (refused).
        optimizer_file = optimizer_header(record, header[CHECKPOINT_ID_KEY], os.path.basename(path))
        files.insert(0, (second, optimizer_tensors, optimizer_file))
    header.update(metadata)

    def write() -> None:
        for file, file_tensors, file_header in files:
            write_file(file, file_tensors, file_header)

    write_on_rank_zero(write, collective, repr(path))


class LoadResult(dict):
    """What :func:`load_checkpoint` returns: the file's metadata, and what the load skipped.

    A ``dict`` of the ``metadata`` entries given to :func:`save_checkpoint` (``{}`` for a file
    without any), so ``print(load_checkpoint(...))`` shows them as before; the names a
    non-strict load skipped are attributes (both empty after a strict load, which skips
    nothing), as in ``torch.nn.Module.load_state_dict``.

    Args:
        metadata: the caller's metadata entries of the file.
        missing_keys: canonical names of the model that the file does not hold (not loaded).
        unexpected_keys: canonical names in the file that the model does not have (ignored).

    Attributes:
        missing_keys: as given, a list.
        unexpected_keys: as given, a list.

    Examples:
        >>> from shared_lib.checkpoint import LoadResult
        >>> result = LoadResult({"step": "9"}, missing_keys=["head.bias"])
        >>> result, result["step"], result.missing_keys, result.unexpected_keys
        ({'step': '9'}, '9', ['head.bias'], [])
    """

    def __init__(
        self,
        metadata: dict[str, str] | None = None,
        missing_keys: list[str] | None = None,
        unexpected_keys: list[str] | None = None,
    ) -> None:
        super().__init__(metadata or {})
        self.missing_keys = list(missing_keys or [])
        self.unexpected_keys = list(unexpected_keys or [])


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


def _embedding_names(model: nn.Module, tensors: dict[str, torch.Tensor]) -> list[str]:
    """Canonical names of the weights of the model's ``nn.Embedding`` layers."""
    weights = {id(module.weight) for module in model.modules() if isinstance(module, nn.Embedding)}
    return [name for name, tensor in tensors.items() if id(tensor) in weights]


def _tie_groups_to_load(
    names: list[str], file_ties: list[list[str]], model_state: dict[str, torch.Tensor]
) -> list[list[str]]:
    """Loaded names that are one tensor in the file or in the model, merged into groups."""
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
    return list(groups.values())


def _refuse_different_values(
    path: str, groups: list[list[str]], header: CheckpointHeader, read: Callable
) -> None:
    """Raise if the model ties names that the file stores as tensors with different values."""
    for group in groups:
        sources = list(dict.fromkeys(header.stored[name] for name in group))
        if len(sources) < 2:
            continue
        reference = read(sources[0])
        differ = [source for source in sources[1:] if not torch.equal(read(source), reference)]
        if differ:
            raise ValueError(
                f"model ties {abbreviate(group)} into one tensor, but checkpoint {path!r} stores "
                f"{sources[0]!r} and {abbreviate(differ)} as separate tensors with different "
                "values; loading would silently keep only one of them. Load into a model built "
                "without this tie"
            )


def load_checkpoint(
    model: nn.Module,
    path: str | os.PathLike,
    optimizer: torch.optim.Optimizer | None = None,
    strict: bool = True,
    *,
    dtype: torch.dtype | None = None,
) -> LoadResult:
    """Load a checkpoint into ``model`` (and ``optimizer``); ties restored, values exact.

    Reads :func:`save_checkpoint` files (format versions 1 and 2), any other safetensors file
    (``safetensors.torch.save_file`` / ``save_model``) and Hugging Face ``save_pretrained``
    folders (``model.safetensors`` or the sharded ``model.safetensors.index.json``). Values are
    copied bit for bit into the model's own tensors, on their devices. Names that are one
    tensor in the file become one tensor in the model (re-tied with :func:`shared_lib.retie` if
    the model was built without the tie). A name the file lacks is filled by a tie of the model
    to a name the file holds (Hugging Face stores a tied ``lm_head.weight`` once, as the
    embedding). A tie the model has but the file has not is accepted only if the file's values
    for those names are equal. A refused load changes nothing.

    Wrapped models read the plain model's files and vice versa: ``torch.compile``'d, and
    ``DistributedDataParallel`` (also files whose every name starts with DDP's ``module.``). A
    model sharded with FSDP2 loads on every process, without communication: each process reads
    the file and keeps its slice of every tensor (build and shard the model with its ties: they
    cannot be re-made after sharding).

    Args:
        model: a model of the saved architecture.
        path: the checkpoint file, or a ``save_pretrained`` folder.
        optimizer: optional optimizer over ``model``'s parameters (build it after loading when
            the load re-ties parameters); receives the saved state and hyperparameters from
            the optimizer file beside ``path``.
        strict: if false, names missing from the file or from the model are skipped (and
            listed in the result); shapes and dtypes must still match, and the optimizer must
            still correspond.
        dtype: cast the file's floating-point tensors to this dtype on load (the model's
            floating-point tensors must then be of this dtype); integer and bool tensors are
            never cast. ``None`` (default): dtypes must match the file's exactly. Optimizer
            state is cast to its parameter's dtype by ``torch.optim`` itself.

    Returns:
        A :class:`LoadResult`: the ``metadata`` entries given to :func:`save_checkpoint` (a
        dict), with ``missing_keys`` and ``unexpected_keys``, the canonical names skipped.

    Raises:
        TypeError: for arguments of the wrong type.
        FileNotFoundError: ``path`` (or the optimizer file, when ``optimizer`` is given) does
            not exist.
        ValueError: the file does not fit the model (names missing on either side, shapes or
            dtypes that differ: the message names them and the fix), the model ties tensors
            the file holds with different values, a sharded model would need re-tying, or the
            optimizer does not correspond to the saved one.

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
        ...     half = tiny_lm().to(torch.bfloat16)
        ...     skipped = sl.load_checkpoint(half, path, strict=False, dtype=torch.bfloat16)
        {'step': '9'}
        >>> sl.shared_groups(fresh), torch.equal(fresh["head"].weight, lm["head"].weight)
        ([['embed.weight', 'head.weight']], True)
        >>> half["embed"].weight.dtype, skipped.missing_keys, skipped.unexpected_keys
        (torch.bfloat16, [], [])
    """
    check_module(model, "model")
    if optimizer is not None:
        check_instance(optimizer, "optimizer", torch.optim.Optimizer, "torch.optim.Optimizer")
    path = os.fspath(check_instance(path, "path", (str, os.PathLike), "str or os.PathLike"))
    check_bool(strict, "strict")
    check_load_dtype(dtype)
    inner = unwrap_model(model)
    model_state, real_names = model_tensors(inner)
    header = without_wrapper_prefix(read_header(path), model_state)

    # 1. Plan: check everything before changing the model, so a refused load changes nothing.
    plan = check_architecture(
        header, model_state, strict, dtype=dtype, embeddings=_embedding_names(inner, model_state)
    )
    groups = _tie_groups_to_load(plan.names, header.ties, model_state)
    with open_files(header.locations) as read:
        _refuse_different_values(path, groups, header, read)
    retie_params, retie_buffers = _groups_to_retie(path, inner, groups, model_state)
    optimizer_state = None
    if optimizer is not None:
        # Which tensor each name will be after re-tying: the group's first name's tensor.
        final = dict(model_state)
        for group in retie_params + retie_buffers:
            for name in group[1:]:
                final[name] = model_state[group[0]]
        source = read_optimizer_source(header)
        optimizer_state = read_optimizer_state(source, inner, final, optimizer)

    # 2. Apply: copy values, re-tie, load the optimizer.
    _copy_values(header, plan.names, model_state, dtype)
    if retie_params:
        retie(inner, [[real_names[name] for name in group] for group in retie_params])
    for group in retie_buffers:
        keeper = model_state[group[0]]
        for name in group[1:]:
            owner_name, _, attr = real_names[name].rpartition(".")
            owner = inner.get_submodule(owner_name) if owner_name else inner
            owner._buffers[attr] = keeper
    _verify_ties(path, inner, header.ties, set(plan.names))
    if optimizer is not None:
        shard_optimizer_state(optimizer_state, optimizer)
        optimizer.load_state_dict(optimizer_state)
    return LoadResult(header.user_metadata, plan.missing, plan.unexpected)


def _groups_to_retie(
    path: str, model: nn.Module, groups: list[list[str]], model_state: dict[str, torch.Tensor]
) -> tuple[list[list[str]], list[list[str]]]:
    """The groups that are separate tensors in the model: parameters, buffers (checked)."""
    parameter_ids = {id(param) for param in model.parameters()}
    params, buffers = [], []
    for group in groups:
        if len({id(model_state[name]) for name in group}) == 1:
            continue
        if any(is_sharded(model_state[name]) for name in group):
            raise ValueError(
                f"model: checkpoint {path!r} ties {abbreviate(group)} into one tensor, but this "
                "sharded model holds them separately, and ties cannot be re-made after FSDP "
                "sharding; tie them before shard_model (build the model as it was saved)"
            )
        is_param = {id(model_state[name]) in parameter_ids for name in group}
        if len(is_param) != 1:
            raise ValueError(f"model: cannot tie parameters and buffers together: {group}")
        (params if is_param.pop() else buffers).append(group)
    return params, buffers


def _copy_values(
    header: CheckpointHeader,
    names: list[str],
    model_state: dict[str, torch.Tensor],
    dtype: torch.dtype | None,
) -> None:
    """Copy the file's values into the model's tensors (each tensor once), cast to ``dtype``."""
    written: set[int] = set()
    with open_files(header.locations) as read:
        for name in names:
            target = model_state[name]
            if id(target) in written:
                continue
            value = read(header.stored[name])
            if dtype is not None and value.is_floating_point():
                value = value.to(dtype)
            copy_into(target, value)
            written.add(id(target))


def _verify_ties(path: str, model: nn.Module, file_ties: list[list[str]], loaded: set[str]) -> None:
    tensors, _ = model_tensors(model)
    for group in file_ties:
        present = [name for name in group if name in loaded]
        if len({id(tensors[name]) for name in present}) > 1:  # pragma: no cover - defensive
            raise RuntimeError(f"ties from {path!r} could not be restored: {present}")
