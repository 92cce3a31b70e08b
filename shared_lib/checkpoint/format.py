"""The checkpoint files: canonical names, ties, tensors and the safetensors header (chapter 05).

File format (version 2). :func:`shared_lib.save_checkpoint` writes, at ``path``, a plain model
file that ``safetensors.torch.load_model`` and Hugging Face ``from_pretrained`` read as it is:

* tensors: ``<name>``, one entry per distinct state-dict tensor (parameters and persistent
  buffers), under the first name that uses it; names are canonical (no ``_orig_mod.`` segment of
  ``torch.compile``, no ``module.`` prefix of DDP); nothing else;
* metadata: ``format: pt`` (the safetensors convention Hugging Face checks),
  ``shared_lib.format_version`` (``"2"``), ``shared_lib.torch_version``,
  ``shared_lib.signature`` (JSON: every state-dict name with shape and dtype), ``shared_lib.ties``
  (JSON: groups of names that are one tensor, the stored name first), ``shared_lib.checkpoint_id``
  (a random id shared with the optimizer file), ``shared_lib.optimizer_file`` (the optimizer
  file's name, when one was saved) and the caller's own ``metadata`` entries.

The optimizer state goes to a file of its own beside it, :func:`optimizer_path` (``lm.safetensors``
-> ``lm.optimizer.safetensors``), described in :mod:`shared_lib.checkpoint.optimizer`. Each file
is written atomically; the optimizer file first, so that a crash in between leaves a pair whose
ids differ, which the load refuses.

Version 1 (read, no longer written) kept the optimizer state inside the weights file, as
tensors ``__optimizer__.state.<name>.<key>`` / ``__optimizer__.param_groups.<group>.<key>`` and a
``shared_lib.optimizer`` metadata entry, and had no ``format`` entry.

Files without ``shared_lib`` metadata (``safetensors.torch.save_file`` / ``save_model``, Hugging
Face ``save_pretrained`` folders, see :mod:`shared_lib.checkpoint.sources`) are read too: their
signature is what the file holds, their ties the names ``save_model`` dropped (if any).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from shared_lib._validation import check_bool, check_instance
from shared_lib.checkpoint.sharded import gather, is_sharded
from shared_lib.checkpoint.sources import TensorFile, checkpoint_files

__all__ = [
    "CHECKPOINT_ID_KEY",
    "FORMAT_KEY",
    "FORMAT_VERSION",
    "METADATA_PREFIX",
    "OPTIMIZER_FILE_KEY",
    "OPTIMIZER_KEY",
    "OPTIMIZER_TENSORS",
    "READ_VERSIONS",
    "VERSION_KEY",
    "WEIGHTS_FILE_KEY",
    "CheckpointHeader",
    "LoadPlan",
    "abbreviate",
    "canonical_name",
    "check_architecture",
    "check_load_dtype",
    "check_metadata",
    "model_header",
    "model_tensors",
    "optimizer_path",
    "read_header",
    "storable_tensor",
    "tie_groups",
    "unwrap_model",
    "without_wrapper_prefix",
    "write_file",
]

FORMAT_VERSION = 2
"""Version of the file layout written by :func:`shared_lib.save_checkpoint`."""

READ_VERSIONS = (1, 2)
"""Versions :func:`shared_lib.load_checkpoint` reads."""

METADATA_PREFIX = "shared_lib."
"""Metadata keys starting with this are the library's own; a caller's ``metadata`` may not."""

FORMAT_KEY = "format"
"""safetensors' metadata key for the framework (``"pt"``), which Hugging Face checks; reserved."""

OPTIMIZER_KEY = METADATA_PREFIX + "optimizer"
"""Metadata key of the optimizer record, a JSON text kept in the optimizer file (in version 1,
in the weights file)."""

OPTIMIZER_FILE_KEY = METADATA_PREFIX + "optimizer_file"
"""Metadata key of the weights file naming its optimizer file, present when one was saved."""

CHECKPOINT_ID_KEY = METADATA_PREFIX + "checkpoint_id"
"""Metadata key of the id that a weights file and its optimizer file share."""

OPTIMIZER_TENSORS = "__optimizer__."
"""Prefix of the optimizer's tensors inside a version-1 weights file."""

VERSION_KEY = METADATA_PREFIX + "format_version"
"""Metadata key of the format version; its presence marks a file as a shared_lib checkpoint."""

WEIGHTS_FILE_KEY = METADATA_PREFIX + "weights_file"
"""Metadata key of the optimizer file naming the weights file it belongs to."""

_SIGNATURE_KEY = METADATA_PREFIX + "signature"
_TIES_KEY = METADATA_PREFIX + "ties"
_TORCH_KEY = METADATA_PREFIX + "torch_version"
_COMPILE_SEGMENT = "_orig_mod"  # torch.compile's OptimizedModule keeps the model here
_DDP_PREFIX = "module."  # DistributedDataParallel keeps the model here
_SHOW = 5  # how many offending names an error message lists


def abbreviate(items: Iterable[Any]) -> str:
    """The first few items of a list, comma-separated, for an error message.

    Args:
        items: the names (or anything printable) to show.

    Returns:
        At most five items, and how many there are in all if there are more.

    Examples:
        >>> from shared_lib.checkpoint.format import abbreviate
        >>> abbreviate(["embed.weight", "head.weight"])
        'embed.weight, head.weight'
        >>> abbreviate(range(12))
        '0, 1, 2, 3, 4, ... (12 in all)'
    """
    items = list(items)
    shown = ", ".join(str(item) for item in items[:_SHOW])
    return shown + (f", ... ({len(items)} in all)" if len(items) > _SHOW else "")


# --------------------------------------------------------------------------- names


def canonical_name(name: str) -> str:
    """A state-dict name without torch.compile's ``_orig_mod`` segments.

    A compiled model (``torch.compile``) names its tensors ``_orig_mod.<name>``, so its
    checkpoints and a plain model's would not fit each other (nanoGPT issue #325); the file
    uses the canonical names only. (DDP's ``module.`` prefix is removed by unwrapping the model,
    :func:`unwrap_model`, and from a file by :func:`without_wrapper_prefix`: a submodule that a
    user called ``module`` keeps its name.)

    Args:
        name: a state-dict or file key, dotted.

    Returns:
        ``name`` with every ``_orig_mod`` segment removed.

    Examples:
        >>> from shared_lib.checkpoint.format import canonical_name
        >>> canonical_name("_orig_mod.head.weight")
        'head.weight'
    """
    return ".".join(part for part in name.split(".") if part != _COMPILE_SEGMENT)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The model inside ``torch.compile``'s and ``DistributedDataParallel``'s wrappers.

    Args:
        model: a model, possibly wrapped (in any order, any number of times).

    Returns:
        The innermost model (``model`` itself if it is not wrapped).

    Examples:
        >>> from torch import nn
        >>> from shared_lib.checkpoint.format import unwrap_model
        >>> compiled = nn.Module()
        >>> compiled._orig_mod = nn.Linear(2, 2)  # where torch.compile keeps the model
        >>> unwrap_model(compiled) is compiled._orig_mod
        True
    """
    while True:
        if isinstance(getattr(model, _COMPILE_SEGMENT, None), nn.Module):
            model = getattr(model, _COMPILE_SEGMENT)
        elif isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


def model_tensors(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The model's state-dict tensors by canonical name, and each canonical name's real name.

    The tensors are the model's own objects (``state_dict(keep_vars=True)``), so that names
    which are one tensor can be recognised by identity (:func:`tie_groups`) and values copied
    into them in place. Give the unwrapped model (:func:`unwrap_model`).

    Args:
        model: the model (plain, or with ``torch.compile``'d submodules).

    Returns:
        A pair ``(tensors, real)`` of dicts, canonical name -> tensor and canonical name ->
        the model's own name.

    Raises:
        ValueError: a state-dict entry is not a tensor, or two names are the same once
            ``_orig_mod`` is removed.

    Examples:
        >>> from torch import nn
        >>> from shared_lib.checkpoint.format import model_tensors
        >>> compiled = nn.Module()
        >>> compiled._orig_mod = nn.Linear(2, 2)  # where torch.compile keeps the model
        >>> tensors, real = model_tensors(compiled)
        >>> list(tensors), real["weight"]
        (['weight', 'bias'], '_orig_mod.weight')
    """
    tensors: dict[str, torch.Tensor] = {}
    real: dict[str, str] = {}
    for name, value in model.state_dict(keep_vars=True).items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(
                f"model: state-dict entry {name!r} is a {type(value).__name__}, not a tensor; "
                "a safetensors checkpoint holds tensors only (no pickle)"
            )
        canonical = canonical_name(name)
        if canonical in tensors:
            raise ValueError(
                f"model: names {real[canonical]!r} and {name!r} are the same once torch.compile's "
                f"{_COMPILE_SEGMENT!r} is removed"
            )
        tensors[canonical] = value
        real[canonical] = name
    return tensors, real


def tie_groups(tensors: Mapping[str, torch.Tensor]) -> list[list[str]]:
    """Names that are one tensor object (parameters or buffers), in groups of two or more.

    Like :func:`shared_lib.shared_groups`, but over every state-dict tensor, buffers included;
    the first name of each group is the one its values are stored under.

    Args:
        tensors: name -> tensor, as :func:`model_tensors` gives.

    Returns:
        The groups, each in the order of ``tensors``.

    Examples:
        >>> from torch import nn
        >>> from shared_lib.checkpoint.format import model_tensors, tie_groups
        >>> layer = nn.Linear(2, 2); net = nn.Sequential(layer, nn.ReLU(), layer)
        >>> tie_groups(model_tensors(net)[0])
        [['0.weight', '2.weight'], ['0.bias', '2.bias']]
    """
    by_object: dict[int, list[str]] = {}
    for name, tensor in tensors.items():
        by_object.setdefault(id(tensor), []).append(name)
    return [names for names in by_object.values() if len(names) >= 2]


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _is_float_name(name: str) -> bool:
    """Whether the dtype called ``name`` (``"bfloat16"``) is a floating-point one."""
    dtype = getattr(torch, name, None)
    return isinstance(dtype, torch.dtype) and dtype.is_floating_point


# --------------------------------------------------------------------------- writing


def storable_tensor(
    tensor: torch.Tensor, name: str, seen_storage: set[tuple[str, int]]
) -> torch.Tensor:
    """A contiguous CPU copy-free view when possible; a clone if its memory is already stored.

    safetensors refuses two distinct tensors over one memory (views of one tensor), so the
    second of them is cloned; ``seen_storage`` remembers the memory already taken. A sharded
    tensor (DTensor) is gathered first, which every process must do in the same order.

    Args:
        tensor: the tensor to store.
        name: its key in the file, for error messages.
        seen_storage: the memories stored so far; updated.

    Returns:
        A dense CPU tensor with the same values, sharing memory with no other stored tensor.

    Raises:
        ValueError: ``tensor`` is on the meta device or is not dense (sparse, ...).

    Examples:
        >>> import torch
        >>> from shared_lib.checkpoint.format import storable_tensor
        >>> base, seen = torch.arange(6.0), set()
        >>> first = storable_tensor(base[:3], "first", seen)
        >>> second = storable_tensor(base[3:], "second", seen)  # the same memory: cloned
        >>> first.data_ptr() == base.data_ptr(), second.data_ptr() == base[3:].data_ptr()
        (True, False)
    """
    if tensor.is_meta:
        raise ValueError(f"model: {name!r} is on the meta device and holds no values to save")
    if tensor.layout != torch.strided:
        raise ValueError(
            f"model: {name!r} has layout {tensor.layout}; only dense tensors are saved"
        )
    if is_sharded(tensor):
        tensor = gather(tensor)
    value = tensor.detach().to("cpu").contiguous()
    key = (str(value.device), value.untyped_storage().data_ptr())
    if key[1] != 0 and key in seen_storage:
        # Distinct tensors over one memory (views): safetensors refuses them, so store a copy.
        value = value.clone()
    else:
        seen_storage.add(key)
    return value


def check_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    """The caller's metadata for the file, checked: ``str -> str``, no reserved key.

    Args:
        metadata: the entries to store, or ``None`` for none.

    Returns:
        The entries, as a dict.

    Raises:
        TypeError: ``metadata`` is not a mapping of strings to strings.
        ValueError: a key starts with :data:`METADATA_PREFIX` or is :data:`FORMAT_KEY`.

    Examples:
        >>> from shared_lib.checkpoint.format import check_metadata
        >>> check_metadata({"step": "1200"})
        {'step': '1200'}
        >>> check_metadata({"shared_lib.ties": "[]"})
        Traceback (most recent call last):
        ...
        ValueError: metadata key 'shared_lib.ties': keys starting with 'shared_lib.' are reserved
    """
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, Mapping):
        raise TypeError(f"metadata must be a dict of str to str, got {type(metadata).__name__}")
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"metadata must map str to str, got {key!r}: {type(value).__name__}")
        if key.startswith(METADATA_PREFIX):
            raise ValueError(
                f"metadata key {key!r}: keys starting with {METADATA_PREFIX!r} are reserved"
            )
        if key == FORMAT_KEY:
            raise ValueError(
                f"metadata key {key!r} is reserved: the file says format 'pt' for safetensors "
                "and Hugging Face; choose another key"
            )
    return dict(metadata)


def model_header(tensors: Mapping[str, torch.Tensor], ties: list[list[str]]) -> dict[str, str]:
    """The library's metadata entries for a model: format, versions, signature, ties.

    Args:
        tensors: canonical name -> tensor, as :func:`model_tensors` gives.
        ties: the groups of names that are one tensor, as :func:`tie_groups` gives.

    Returns:
        The string metadata of the weights file (before the checkpoint id, the optimizer file
        and the caller's entries).

    Examples:
        >>> import json
        >>> from torch import nn
        >>> from shared_lib.checkpoint.format import model_header, model_tensors, tie_groups
        >>> tensors, _ = model_tensors(nn.Linear(3, 2))
        >>> header = model_header(tensors, tie_groups(tensors))
        >>> header["format"], json.loads(header["shared_lib.signature"])["weight"]
        ('pt', {'shape': [2, 3], 'dtype': 'float32'})
    """
    return {
        FORMAT_KEY: "pt",
        VERSION_KEY: str(FORMAT_VERSION),
        _TORCH_KEY: torch.__version__,
        _SIGNATURE_KEY: json.dumps(
            {
                name: {"shape": list(tensor.shape), "dtype": _dtype_name(tensor.dtype)}
                for name, tensor in tensors.items()
            }
        ),
        _TIES_KEY: json.dumps(ties),
    }


def optimizer_path(path: str | os.PathLike) -> str:
    """The file beside the weights file ``path`` that holds the optimizer state.

    Args:
        path: the weights file given to :func:`shared_lib.save_checkpoint`.

    Returns:
        ``path`` with ``.safetensors`` replaced by ``.optimizer.safetensors`` (appended if
        ``path`` has another ending).

    Raises:
        TypeError: ``path`` is not a ``str`` or ``os.PathLike``.

    Examples:
        >>> from shared_lib.checkpoint.format import optimizer_path
        >>> optimizer_path("runs/lm.safetensors")
        'runs/lm.optimizer.safetensors'
    """
    path = os.fspath(check_instance(path, "path", (str, os.PathLike), "str or os.PathLike"))
    stem = path.removesuffix(".safetensors")
    return stem + ".optimizer.safetensors"


def write_file(path: str, tensors: dict[str, torch.Tensor], header: dict[str, str]) -> None:
    """Write ``tensors`` and ``header`` to the safetensors file ``path``, atomically.

    Parent folders are created. The file is written next to ``path`` and renamed, so a crash
    never leaves a half-written checkpoint, and it gets the usual umask-based permissions
    (safetensors alone creates its files ``0o600``).

    Args:
        path: the file to write or replace.
        tensors: key -> tensor, each over its own memory (see :func:`storable_tensor`).
        header: the string metadata.

    Raises:
        OSError: the folder or file cannot be written (re-raised once the temporary file is
            removed), as can any error of ``safetensors.torch.save_file``.

    Examples:
        >>> import os, tempfile
        >>> import torch
        >>> from shared_lib.checkpoint.format import write_file
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = os.path.join(folder, "runs", "last.safetensors")
        ...     write_file(path, {"weight": torch.zeros(2)}, {"note": "first"})
        ...     write_file(path, {"weight": torch.ones(2)}, {"note": "second"})  # replaced
        ...     print(os.listdir(os.path.dirname(path)))  # no temporary file left behind
        ['last.safetensors']
    """
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


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class CheckpointHeader:
    """What :func:`read_header` finds in a checkpoint, with canonical names.

    Attributes:
        path: the checkpoint as given (a file or a folder).
        metadata: the string metadata as stored (the library's entries and the caller's).
        signature: every saved state-dict name -> ``{"shape": [...], "dtype": "..."}``.
        ties: groups of names that are one tensor, the stored name first.
        locations: canonical key -> ``(file, key as stored)``, for every model tensor stored.
        stored: every name of ``signature`` -> the canonical key its values are stored under.
        version: the format version of a shared_lib checkpoint, ``None`` for any other file.
        file: the weights file (for a sharded folder, its index).

    Examples:
        >>> from shared_lib.checkpoint.format import CheckpointHeader
        >>> header = CheckpointHeader("lm.safetensors", {"format": "pt", "step": "9"},
        ...                           {}, [], {}, {}, 2, "lm.safetensors")
        >>> header.user_metadata
        {'step': '9'}
    """

    path: str
    metadata: dict[str, str]
    signature: dict[str, Any]
    ties: list[list[str]]
    locations: dict[str, tuple[str, str]]
    stored: dict[str, str]
    version: int | None
    file: str

    @property
    def user_metadata(self) -> dict[str, str]:
        """The caller's metadata entries (not the library's, not ``format``, not ties)."""
        return {
            key: value
            for key, value in self.metadata.items()
            if not key.startswith(METADATA_PREFIX)
            and key != FORMAT_KEY
            # save_model records each name it dropped as metadata: a tie, not the caller's.
            and not (self.version is None and canonical_name(key) in self.signature)
        }


def _library_header(path: str, file: TensorFile) -> CheckpointHeader:
    """The header of a shared_lib checkpoint (``file`` is its :class:`TensorFile`)."""
    metadata = file.metadata
    version = metadata[VERSION_KEY]
    if version not in {str(v) for v in READ_VERSIONS}:
        raise ValueError(
            f"path: {file.path!r} has checkpoint format version {version}; this shared_lib "
            f"reads versions {', '.join(map(str, READ_VERSIONS))} (upgrade shared_lib)"
        )
    try:
        signature = {
            canonical_name(name): spec
            for name, spec in json.loads(metadata[_SIGNATURE_KEY]).items()
        }
        ties = [[canonical_name(n) for n in group] for group in json.loads(metadata[_TIES_KEY])]
    except (KeyError, ValueError, AttributeError) as error:
        raise ValueError(f"path: checkpoint {file.path!r} is damaged ({error!r})") from error
    locations = {
        canonical_name(key): (file.path, key)
        for key in file.tensors
        if not key.startswith(OPTIMIZER_TENSORS)  # version 1 kept the optimizer here
    }
    # Every name of the signature -> the name its values are stored under.
    stored = {name: name for name in signature}
    for group in ties:
        for name in group:
            stored[name] = group[0]
    absent = sorted({key for key in stored.values() if key not in locations})
    if absent:
        raise ValueError(
            f"path: checkpoint {file.path!r} is damaged, tensors {abbreviate(absent)} missing"
        )
    return CheckpointHeader(
        path, metadata, signature, ties, locations, stored, int(version), file.path
    )


def _plain_header(path: str, files: Sequence[TensorFile]) -> CheckpointHeader:
    """The header of safetensors files without shared_lib metadata (HF, save_file, save_model)."""
    metadata: dict[str, str] = {}
    signature: dict[str, Any] = {}
    locations: dict[str, tuple[str, str]] = {}
    for file in files:
        metadata.update(file.metadata)
        for key, spec in file.tensors.items():
            name = canonical_name(key)
            if name in locations:
                raise ValueError(
                    f"path: {path!r} holds both {locations[name][1]!r} and {key!r}, which are "
                    f"the same name once torch.compile's {_COMPILE_SEGMENT!r} is removed"
                )
            locations[name], signature[name] = (file.path, key), spec
    stored = {name: name for name in signature}
    # safetensors.torch.save_model drops each name whose tensor shares another's memory and
    # records it in the metadata, dropped -> kept: those names are one tensor.
    groups: dict[str, list[str]] = {}
    for key, value in metadata.items():
        dropped, kept = canonical_name(key), canonical_name(value)
        if key != FORMAT_KEY and dropped not in locations and kept in locations:
            groups.setdefault(kept, [kept]).append(dropped)
    for kept, group in groups.items():
        for name in group[1:]:
            signature[name], stored[name] = signature[kept], kept
    main = files[0].path if len(files) == 1 else path
    return CheckpointHeader(
        path, metadata, signature, list(groups.values()), locations, stored, None, main
    )


def read_header(path: str) -> CheckpointHeader:
    """Read and check the header of the checkpoint at ``path``; no tensor is loaded.

    ``path`` is a shared_lib checkpoint (format version 1 or 2), any other safetensors file, or
    a Hugging Face ``save_pretrained`` folder (see
    :func:`shared_lib.checkpoint.sources.checkpoint_files`).

    Args:
        path: the file or folder.

    Returns:
        Its header, names made canonical.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``path`` is not a safetensors file or such a folder, is a shared_lib
            checkpoint of a format version this library does not read, or is damaged (a
            tensor its signature names is missing).

    Examples:
        >>> import os, tempfile
        >>> from torch import nn
        >>> import shared_lib as sl
        >>> from shared_lib.checkpoint.format import read_header
        >>> lm = nn.ModuleDict({"embed": nn.Embedding(5, 3), "head": nn.Linear(3, 5, bias=False)})
        >>> _ = sl.tie(lm["head"], lm["embed"])
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     sl.save_checkpoint(lm, os.path.join(folder, "lm.safetensors"))
        ...     header = read_header(os.path.join(folder, "lm.safetensors"))
        >>> header.ties, list(header.locations), header.stored["head.weight"]  # stored once
        ([['embed.weight', 'head.weight']], ['embed.weight'], 'embed.weight')
    """
    files = checkpoint_files(path)
    if len(files) == 1 and VERSION_KEY in files[0].metadata:
        return _library_header(path, files[0])
    return _plain_header(path, files)


def without_wrapper_prefix(header: CheckpointHeader, names: Iterable[str]) -> CheckpointHeader:
    """``header`` without DDP's ``module.`` prefix, if every name has it and the model's do not.

    ``torch.save(ddp.state_dict())`` (and files converted from it) name every tensor
    ``module.<name>``. The prefix is removed only when it is on *every* name of the file and
    not on every name of the model, so a submodule called ``module`` keeps its name.

    Args:
        header: the file's header (:func:`read_header`).
        names: the model's canonical names.

    Returns:
        ``header``, or a copy with the prefix removed from its names.

    Examples:
        >>> from shared_lib.checkpoint.format import CheckpointHeader, without_wrapper_prefix
        >>> spec = {"shape": [2], "dtype": "float32"}
        >>> header = CheckpointHeader("ddp.safetensors", {}, {"module.bias": spec}, [],
        ...                           {"module.bias": ("ddp.safetensors", "module.bias")},
        ...                           {"module.bias": "module.bias"}, None, "ddp.safetensors")
        >>> without_wrapper_prefix(header, ["bias"]).locations
        {'bias': ('ddp.safetensors', 'module.bias')}
    """
    names = list(names)
    every_file_name = header.signature and all(
        name.startswith(_DDP_PREFIX) for name in header.signature
    )
    if not every_file_name or (names and all(name.startswith(_DDP_PREFIX) for name in names)):
        return header

    def strip(name: str) -> str:
        return name.removeprefix(_DDP_PREFIX)

    return CheckpointHeader(
        header.path,
        header.metadata,
        {strip(name): spec for name, spec in header.signature.items()},
        [[strip(name) for name in group] for group in header.ties],
        {strip(key): where for key, where in header.locations.items()},
        {strip(name): strip(key) for name, key in header.stored.items()},
        header.version,
        header.file,
    )


# --------------------------------------------------------------------------- fitting a model


@dataclass(frozen=True)
class LoadPlan:
    """Which names a load takes from the file, and which it skips (:func:`check_architecture`).

    Attributes:
        names: the model's names whose values the file holds, in the model's order.
        missing: the model's names that the file lacks (and that no tie fills), skipped.
        unexpected: the file's names that the model lacks, skipped.

    Examples:
        >>> from shared_lib.checkpoint.format import LoadPlan
        >>> LoadPlan(["weight"], ["bias"], []).missing
        ['bias']
    """

    names: list[str]
    missing: list[str]
    unexpected: list[str]


def check_load_dtype(dtype: torch.dtype | None) -> torch.dtype | None:
    """``dtype`` if it is ``None`` or a floating-point ``torch.dtype`` (what a load may cast to).

    Args:
        dtype: the ``dtype`` argument of :func:`shared_lib.load_checkpoint`.

    Returns:
        ``dtype``.

    Raises:
        TypeError: ``dtype`` is not a ``torch.dtype``.
        ValueError: ``dtype`` is not a floating-point dtype.

    Examples:
        >>> import torch
        >>> from shared_lib.checkpoint.format import check_load_dtype
        >>> check_load_dtype(torch.bfloat16)
        torch.bfloat16
        >>> check_load_dtype(torch.int64)
        Traceback (most recent call last):
        ...
        ValueError: dtype must be a floating-point dtype such as torch.bfloat16, got torch.int64 ...
    """
    if dtype is None:
        return None
    check_instance(dtype, "dtype", torch.dtype, "torch.dtype (e.g. torch.bfloat16) or None")
    if not dtype.is_floating_point:
        raise ValueError(
            f"dtype must be a floating-point dtype such as torch.bfloat16, got {dtype} (only "
            "floating-point tensors are cast; integer and bool tensors load as stored)"
        )
    return dtype


def _covered(signature: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> set[str]:
    """Model names the file lacks but that are one tensor with a name the file holds."""
    covered: set[str] = set()
    for group in tie_groups(tensors):
        if any(name in signature for name in group):
            covered.update(name for name in group if name not in signature)
    return covered


def _mismatch(
    spec: Mapping[str, Any], tensor: torch.Tensor, dtype: torch.dtype | None
) -> str | None:
    """How the file's ``spec`` and the model's tensor differ (``None``: they fit)."""
    shape, file_dtype = list(spec["shape"]), spec["dtype"]
    expected = (
        _dtype_name(dtype) if dtype is not None and _is_float_name(file_dtype) else file_dtype
    )
    if list(tensor.shape) == shape and _dtype_name(tensor.dtype) == expected:
        return None
    cast = f" -> {expected}" if expected != file_dtype else ""
    return f"file {file_dtype}{cast}{shape}, model {_dtype_name(tensor.dtype)}{list(tensor.shape)}"


def _hints(
    header: CheckpointHeader,
    tensors: Mapping[str, torch.Tensor],
    missing: list[str],
    unexpected: list[str],
    float_mismatch: list[str],
    dtype: torch.dtype | None,
    embeddings: Iterable[str],
) -> list[str]:
    """The fixes an architecture error suggests."""
    hints = []
    if missing or unexpected:
        hints.append(
            "pass strict=False to load only the names both have (the result lists the "
            "skipped names in missing_keys and unexpected_keys)"
        )
    for name in missing:
        shape = list(tensors[name].shape)
        embedding = next(
            (
                e
                for e in embeddings
                if e in header.signature and list(header.signature[e]["shape"]) == shape
            ),
            None,
        )
        if embedding is not None:
            hints.append(
                f"{name!r} has the shape of the input embedding {embedding!r}, which the file "
                "holds: if the model that wrote the file tied them (Hugging Face stores a tied "
                "output layer once), tie them in this model first, e.g. "
                "shared_lib.tie_embeddings(model)"
            )
            break
    if float_mismatch and dtype is None:
        wanted = sorted({_dtype_name(tensors[name].dtype) for name in float_mismatch})
        target = f"torch.{wanted[0]}" if len(wanted) == 1 else "the model's dtype"
        hints.append(f"to cast the file's floating-point tensors on load, pass dtype={target}")
    return hints


def check_architecture(
    header: CheckpointHeader,
    tensors: Mapping[str, torch.Tensor],
    strict: bool,
    *,
    dtype: torch.dtype | None = None,
    embeddings: Iterable[str] = (),
) -> LoadPlan:
    """The names to load from the file into a model; raise if the model does not fit it.

    A model name the file lacks is fine when the model ties it to a name the file holds (a
    Hugging Face file stores a tied ``lm_head.weight`` only as the embedding): the tie fills it.

    Args:
        header: the file's header (:func:`read_header`).
        tensors: the model's tensors by canonical name (:func:`model_tensors`).
        strict: if false, names missing from the file or from the model are skipped; shapes
            and dtypes must match in any case.
        dtype: the dtype the file's floating-point tensors are cast to (``None``: none); the
            model's tensors must then be of that dtype.
        embeddings: names of the model's input-embedding weights, for the hint when an output
            layer tied to one is missing.

    Returns:
        The plan, with the names to load and those skipped.

    Raises:
        TypeError: ``strict`` is not a bool, ``dtype`` not a ``torch.dtype``.
        ValueError: names missing on either side (``strict``), a shape or dtype that differs,
            tensors to load on the meta device, or a non-float ``dtype``. The message lists
            the names, how many of the file's names the model has, and the fixes.

    Examples:
        >>> import os, tempfile
        >>> from torch import nn
        >>> import shared_lib as sl
        >>> from shared_lib.checkpoint.format import check_architecture, model_tensors, read_header
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     sl.save_checkpoint(nn.Linear(3, 2), os.path.join(folder, "linear.safetensors"))
        ...     header = read_header(os.path.join(folder, "linear.safetensors"))
        >>> check_architecture(header, model_tensors(nn.Linear(3, 4))[0], strict=True)
        Traceback (most recent call last):
        ...
        ValueError: path: ... mismatch: weight (file float32[2, 3], model float32[4, 3]), ...
    """
    check_bool(strict, "strict")
    check_load_dtype(dtype)
    signature, path = header.signature, header.path
    covered = _covered(signature, tensors)
    missing = [name for name in tensors if name not in signature and name not in covered]
    unexpected = [name for name in signature if name not in tensors]
    present = [name for name in tensors if name in signature]
    mismatched, float_mismatch = [], []
    for name in present:
        difference = _mismatch(signature[name], tensors[name], dtype)
        if difference is not None:
            mismatched.append(f"{name} ({difference})")
            same_shape = list(tensors[name].shape) == list(signature[name]["shape"])
            both_float = (
                _is_float_name(signature[name]["dtype"]) and tensors[name].is_floating_point()
            )
            if same_shape and both_float:
                float_mismatch.append(name)
    problems = []
    if strict and missing:
        problems.append(f"missing from the file: {abbreviate(missing)}")
    if strict and unexpected:
        problems.append(f"not in the model: {abbreviate(unexpected)}")
    if mismatched:
        problems.append(f"shape/dtype mismatch: {abbreviate(mismatched)}")
    if problems:
        hints = _hints(
            header,
            tensors,
            missing if strict else [],
            unexpected if strict else [],
            float_mismatch,
            dtype,
            embeddings,
        )
        raise ValueError(
            f"path: checkpoint {path!r} does not fit model's architecture; "
            + "; ".join(problems)
            + f" ({len(present)} of the file's {len(signature)} names are the model's)"
            + "".join(f". {hint[0].upper()}{hint[1:]}" for hint in hints)
        )
    meta = [name for name in present if tensors[name].is_meta]
    if meta:
        raise ValueError(
            f"model: tensors {abbreviate(meta)} are on the meta device; materialise them first "
            "with shared_lib.materialize(model, device), which keeps ties"
        )
    return LoadPlan(present, [] if strict else missing, [] if strict else unexpected)
