"""The checkpoint file: canonical names, ties, tensors and the safetensors header (chapter 05).

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

This module handles the model's part of the file; :mod:`shared_lib.checkpoint.optimizer` the
optimizer's. :func:`shared_lib.save_checkpoint` and :func:`shared_lib.load_checkpoint` use both.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from shared_lib._validation import check_bool

__all__ = [
    "FORMAT_VERSION",
    "METADATA_PREFIX",
    "OPTIMIZER_KEY",
    "OPTIMIZER_TENSORS",
    "CheckpointHeader",
    "abbreviate",
    "canonical_name",
    "check_architecture",
    "check_metadata",
    "model_header",
    "model_tensors",
    "read_header",
    "storable_tensor",
    "tie_groups",
    "write_file",
]

FORMAT_VERSION = 1
"""Version of the file layout written by :func:`shared_lib.save_checkpoint`."""

METADATA_PREFIX = "shared_lib."
"""Metadata keys starting with this are the library's own; a caller's ``metadata`` may not."""

OPTIMIZER_KEY = METADATA_PREFIX + "optimizer"
"""Metadata key of the optimizer record (JSON), present when an optimizer was saved."""

OPTIMIZER_TENSORS = "__optimizer__."
"""Prefix of the optimizer's tensors in the file; no model tensor may be named so."""

_VERSION_KEY = METADATA_PREFIX + "format_version"
_SIGNATURE_KEY = METADATA_PREFIX + "signature"
_TIES_KEY = METADATA_PREFIX + "ties"
_TORCH_KEY = METADATA_PREFIX + "torch_version"
_COMPILE_SEGMENT = "_orig_mod"  # torch.compile's OptimizedModule keeps the model here
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


def canonical_name(name: str) -> str:
    """A state-dict name without torch.compile's ``_orig_mod`` segments.

    A compiled model (``torch.compile``) names its tensors ``_orig_mod.<name>``, so its
    checkpoints and a plain model's would not fit each other (nanoGPT issue #325); the file
    uses the canonical names only.

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


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def model_tensors(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The model's state-dict tensors by canonical name, and each canonical name's real name.

    The tensors are the model's own objects (``state_dict(keep_vars=True)``), so that names
    which are one tensor can be recognised by identity (:func:`tie_groups`) and values copied
    into them in place.

    Args:
        model: the model (plain or ``torch.compile``'d).

    Returns:
        A pair ``(tensors, real)`` of dicts, canonical name -> tensor and canonical name ->
        the model's own name.

    Raises:
        ValueError: a state-dict entry is not a tensor, two names are the same once
            ``_orig_mod`` is removed, or a name uses the reserved prefix
            :data:`OPTIMIZER_TENSORS`.

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
        if canonical.startswith(OPTIMIZER_TENSORS):
            raise ValueError(f"model: name {name!r} uses the reserved prefix {OPTIMIZER_TENSORS!r}")
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


def storable_tensor(
    tensor: torch.Tensor, name: str, seen_storage: set[tuple[str, int]]
) -> torch.Tensor:
    """A contiguous CPU copy-free view when possible; a clone if its memory is already stored.

    safetensors refuses two distinct tensors over one memory (views of one tensor), so the
    second of them is cloned; ``seen_storage`` remembers the memory already taken.

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
        ValueError: a key starts with :data:`METADATA_PREFIX`.

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
    return dict(metadata)


def model_header(tensors: Mapping[str, torch.Tensor], ties: list[list[str]]) -> dict[str, str]:
    """The library's metadata entries for a model: format version, torch version, signature, ties.

    Args:
        tensors: canonical name -> tensor, as :func:`model_tensors` gives.
        ties: the groups of names that are one tensor, as :func:`tie_groups` gives.

    Returns:
        The string metadata of the file (before the optimizer record and the caller's entries).

    Examples:
        >>> import json
        >>> from torch import nn
        >>> from shared_lib.checkpoint.format import model_header, model_tensors, tie_groups
        >>> tensors, _ = model_tensors(nn.Linear(3, 2))
        >>> header = model_header(tensors, tie_groups(tensors))
        >>> json.loads(header["shared_lib.signature"])["weight"], header["shared_lib.ties"]
        ({'shape': [2, 3], 'dtype': 'float32'}, '[]')
    """
    return {
        _VERSION_KEY: str(FORMAT_VERSION),
        _TORCH_KEY: torch.__version__,
        _SIGNATURE_KEY: json.dumps(
            {
                name: {"shape": list(tensor.shape), "dtype": _dtype_name(tensor.dtype)}
                for name, tensor in tensors.items()
            }
        ),
        _TIES_KEY: json.dumps(ties),
    }


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


@dataclass(frozen=True)
class CheckpointHeader:
    """What :func:`read_header` finds in a checkpoint file, with canonical names.

    Attributes:
        path: the file.
        metadata: its string metadata as stored (the library's entries and the caller's).
        signature: every saved state-dict name -> ``{"shape": [...], "dtype": "..."}``.
        ties: groups of names that are one tensor, the stored name first.
        keys: canonical key -> key as stored, for every tensor in the file.
        stored: every name of ``signature`` -> the canonical key its values are stored under.

    Examples:
        >>> from shared_lib.checkpoint.format import CheckpointHeader
        >>> header = CheckpointHeader("lm.safetensors", {"shared_lib.ties": "[]", "step": "9"},
        ...                           {}, [], {}, {})
        >>> header.user_metadata
        {'step': '9'}
    """

    path: str
    metadata: dict[str, str]
    signature: dict[str, Any]
    ties: list[list[str]]
    keys: dict[str, str]
    stored: dict[str, str]

    @property
    def user_metadata(self) -> dict[str, str]:
        """The caller's metadata entries (those not starting with :data:`METADATA_PREFIX`)."""
        return {
            key: value
            for key, value in self.metadata.items()
            if not key.startswith(METADATA_PREFIX)
        }


def read_header(path: str) -> CheckpointHeader:
    """Read and check the header of the checkpoint file ``path``; no tensor is loaded.

    Args:
        path: the file.

    Returns:
        Its header, names made canonical.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``path`` is not a file, not a safetensors file, not a shared_lib
            checkpoint, of another format version, or damaged (a tensor its signature names is
            missing).

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
        >>> header.ties, list(header.keys), header.stored["head.weight"]  # stored once
        ([['embed.weight', 'head.weight']], ['embed.weight'], 'embed.weight')
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"path: no checkpoint file at {path!r}")
    if not os.path.isfile(path):
        raise ValueError(f"path: {path!r} is not a file")
    try:
        with safe_open(path, framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
            keys = list(handle.keys())
    except SafetensorError as error:
        raise ValueError(f"path: {path!r} is not a safetensors file ({error})") from error
    if _VERSION_KEY not in metadata:
        raise ValueError(
            f"path: {path!r} is not a shared_lib checkpoint (no {_VERSION_KEY!r} in its "
            "metadata); write it with shared_lib.save_checkpoint"
        )
    if metadata[_VERSION_KEY] != str(FORMAT_VERSION):
        raise ValueError(
            f"path: {path!r} has checkpoint format version {metadata[_VERSION_KEY]}, this "
            f"shared_lib reads version {FORMAT_VERSION}"
        )
    signature = {
        canonical_name(name): spec for name, spec in json.loads(metadata[_SIGNATURE_KEY]).items()
    }
    ties = [[canonical_name(name) for name in group] for group in json.loads(metadata[_TIES_KEY])]
    keys_canonical = {canonical_name(key): key for key in keys}
    # Every name of the signature -> the name its values are stored under.
    stored = {name: name for name in signature}
    for group in ties:
        for name in group:
            stored[name] = group[0]
    absent = sorted({key for key in stored.values() if key not in keys_canonical})
    if absent:
        raise ValueError(
            f"path: checkpoint {path!r} is damaged, tensors {abbreviate(absent)} missing"
        )
    return CheckpointHeader(path, metadata, signature, ties, keys_canonical, stored)


def check_architecture(
    header: CheckpointHeader, tensors: Mapping[str, torch.Tensor], strict: bool
) -> list[str]:
    """The names to load from the file into a model; raise if the model does not fit it.

    Args:
        header: the file's header (:func:`read_header`).
        tensors: the model's tensors by canonical name (:func:`model_tensors`).
        strict: if false, names missing from the file or from the model are skipped; shapes
            and dtypes must match in any case.

    Returns:
        The model's names that the file holds, in the model's order.

    Raises:
        TypeError: ``strict`` is not a bool.
        ValueError: names missing on either side (``strict``), a shape or dtype that differs,
            or tensors to load on the meta device.

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
    signature, path = header.signature, header.path
    missing = [name for name in tensors if name not in signature]
    unexpected = [name for name in signature if name not in tensors]
    mismatched = []
    for name, tensor in tensors.items():
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
        problems.append(f"missing from the file: {abbreviate(missing)}")
    if strict and unexpected:
        problems.append(f"not in the model: {abbreviate(unexpected)}")
    if mismatched:
        problems.append(f"shape/dtype mismatch: {abbreviate(mismatched)}")
    if problems:
        raise ValueError(
            f"path: checkpoint {path!r} does not fit model's architecture; " + "; ".join(problems)
        )
    meta = [name for name in signature if name in tensors and tensors[name].is_meta]
    if meta:
        raise ValueError(
            f"model: tensors {abbreviate(meta)} are on the meta device; materialise them first "
            "(model.to_empty(device=...) inside shared_lib.preserve_ties)"
        )
    return [name for name in tensors if name in signature]
