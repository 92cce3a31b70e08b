"""Where a checkpoint's tensors are: a safetensors file, a folder, or a sharded index (chapter 05).

:func:`shared_lib.load_checkpoint` reads its own files and also the files other tools write:
``safetensors.torch.save_file`` / ``save_model`` and Hugging Face ``save_pretrained`` (a folder
holding ``model.safetensors``, or, for large models, ``model.safetensors.index.json`` and the
shard files it names). This module finds the files and lists what each holds (keys, shapes,
dtypes and string metadata) without reading any tensor; :mod:`shared_lib.checkpoint.format`
makes a checkpoint header of them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import torch
from safetensors import SafetensorError, safe_open

__all__ = ["INDEX_NAME", "WEIGHTS_NAME", "TensorFile", "checkpoint_files", "open_files"]

WEIGHTS_NAME = "model.safetensors"
"""The weights file of a Hugging Face ``save_pretrained`` folder."""

INDEX_NAME = "model.safetensors.index.json"
"""The index of a sharded ``save_pretrained`` folder (``weight_map``: tensor name -> file)."""

# safetensors' dtype codes -> torch dtype names (the checkpoint's signature uses torch's names).
_DTYPES = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U64": "uint64",
    "U32": "uint32",
    "U16": "uint16",
    "U8": "uint8",
    "BOOL": "bool",
    "C64": "complex64",
    "C128": "complex128",
}


@dataclass(frozen=True)
class TensorFile:
    """One safetensors file and what it holds, as listed by :func:`checkpoint_files`.

    Attributes:
        path: the file.
        metadata: its string metadata (``{}`` if it has none).
        tensors: key as stored -> ``{"shape": [...], "dtype": "<torch dtype name>"}``, in the
            file's order.

    Examples:
        >>> from shared_lib.checkpoint.sources import TensorFile
        >>> TensorFile("w.safetensors", {}, {"weight": {"shape": [2], "dtype": "float32"}}).path
        'w.safetensors'
    """

    path: str
    metadata: dict[str, str]
    tensors: dict[str, dict]


def _dtype_name(code: str, handle: object, key: str) -> str:
    if code in _DTYPES:
        return _DTYPES[code]
    # A dtype this table does not know: ask torch (reads this one tensor).
    return str(handle.get_tensor(key).dtype).removeprefix("torch.")  # pragma: no cover


def _list_file(path: str, keys: list[str] | None = None) -> TensorFile:
    """What ``path`` holds: metadata, and shape and dtype of each key (all, or ``keys``)."""
    try:
        with safe_open(path, framework="pt", device="cpu") as handle:
            metadata = dict(handle.metadata() or {})
            available = list(handle.keys())
            wanted = available if keys is None else keys
            held = set(available)
            absent = [key for key in wanted if key not in held]
            if absent:
                raise ValueError(
                    f"path: {path!r} lacks tensors its index names: {', '.join(absent[:5])}"
                )
            tensors = {}
            for key in wanted:
                piece = handle.get_slice(key)
                tensors[key] = {
                    "shape": list(piece.get_shape()),
                    "dtype": _dtype_name(piece.get_dtype(), handle, key),
                }
    except SafetensorError as error:
        raise ValueError(f"path: {path!r} is not a safetensors file ({error})") from error
    return TensorFile(path, metadata, tensors)


def _list_index(index_path: str) -> list[TensorFile]:
    """The shard files of a ``model.safetensors.index.json``, each with the keys it holds."""
    try:
        with open(index_path, encoding="utf-8") as stream:
            index = json.load(stream)
        weight_map = index["weight_map"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(
            f"path: {index_path!r} is not a safetensors index (a JSON object with a "
            f"'weight_map' of tensor name -> file): {error}"
        ) from error
    folder = os.path.dirname(index_path)
    by_file: dict[str, list[str]] = {}
    for key, file_name in weight_map.items():
        by_file.setdefault(file_name, []).append(key)
    files = []
    for file_name, keys in by_file.items():
        shard = os.path.join(folder, file_name)
        if not os.path.isfile(shard):
            raise FileNotFoundError(f"path: {index_path!r} names {file_name!r}, which is missing")
        files.append(_list_file(shard, keys))
    index_metadata = index.get("metadata") or {}
    strings = {k: v for k, v in index_metadata.items() if isinstance(v, str)}
    return [TensorFile(f.path, {**f.metadata, **strings}, f.tensors) for f in files]


def checkpoint_files(path: str) -> list[TensorFile]:
    """The safetensors files that make up the checkpoint at ``path``, with what each holds.

    ``path`` may be a safetensors file, or a folder as Hugging Face ``save_pretrained`` writes
    it: ``model.safetensors``, or ``model.safetensors.index.json`` and its shard files.

    Args:
        path: a file or a folder.

    Returns:
        One :class:`TensorFile` per file (one for a single file; one per shard for an index).

    Raises:
        FileNotFoundError: ``path`` (or a shard its index names) does not exist.
        ValueError: ``path`` is not a safetensors file, or a folder without either file.

    Examples:
        >>> import os, tempfile
        >>> import torch
        >>> from safetensors.torch import save_file
        >>> from shared_lib.checkpoint.sources import checkpoint_files
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     save_file({"weight": torch.zeros(2, 3)}, os.path.join(folder, "model.safetensors"))
        ...     (found,) = checkpoint_files(folder)  # a save_pretrained-style folder
        >>> found.tensors, os.path.basename(found.path)
        ({'weight': {'shape': [2, 3], 'dtype': 'float32'}}, 'model.safetensors')
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"path: no checkpoint file at {path!r}")
    if os.path.isdir(path):
        weights, index = os.path.join(path, WEIGHTS_NAME), os.path.join(path, INDEX_NAME)
        if os.path.isfile(weights):
            return [_list_file(weights)]
        if os.path.isfile(index):
            return _list_index(index)
        raise ValueError(
            f"path: {path!r} is a folder without {WEIGHTS_NAME!r} or {INDEX_NAME!r}; give the "
            "checkpoint file itself"
        )
    if not os.path.isfile(path):
        raise ValueError(f"path: {path!r} is not a file")
    if path.endswith(".json"):
        return _list_index(path)
    return [_list_file(path)]


@contextmanager
def open_files(locations: Mapping[str, tuple[str, str]]) -> Iterator[Callable[[str], torch.Tensor]]:
    """Read tensors by name from several files, each opened once, when first needed.

    Args:
        locations: name -> ``(file, key as stored in that file)``.

    Yields:
        ``read(name)``, which returns that tensor (on the CPU).

    Raises:
        KeyError: ``read`` is given a name that ``locations`` does not list.

    Examples:
        >>> import os, tempfile
        >>> import torch
        >>> from safetensors.torch import save_file
        >>> from shared_lib.checkpoint.sources import open_files
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = os.path.join(folder, "w.safetensors")
        ...     save_file({"module.weight": torch.ones(2)}, path)
        ...     with open_files({"weight": (path, "module.weight")}) as read:
        ...         print(read("weight"))
        tensor([1., 1.])
    """
    with ExitStack() as stack:
        handles: dict[str, object] = {}

        def read(name: str) -> torch.Tensor:
            if name not in locations:
                raise KeyError(f"no file holds tensor {name!r}")
            file, key = locations[name]
            if file not in handles:
                handles[file] = stack.enter_context(safe_open(file, framework="pt", device="cpu"))
            return handles[file].get_tensor(key)

        yield read
