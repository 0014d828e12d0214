"""Tensors of a PyTorch checkpoint in the legacy (pre-zip) format, read without torch and without running its code.

A checkpoint is a pickle; unpickling one with torch can run any code it names. This reader's unpickler knows three
names (an OrderedDict, torch's tensor rebuild and its storage classes) and refuses every other, so the file can
only give numbers. Where a checkpoint's SHA-256 is known, it is checked before anything is read.
"""

from __future__ import annotations

import collections
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ser_models.files import file_digest

STORAGE_DTYPES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
                  "LongStorage": np.int64, "IntStorage": np.int32}
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class CheckpointError(ValueError):
    """A checkpoint that is not what it should be: another digest, another format, or code in its pickle."""


@dataclass
class _Storage:
    dtype: type
    key: str
    values: np.ndarray | None = None


@dataclass
class _Tensor:
    storage: _Storage
    offset: int
    size: tuple
    stride: tuple

    def array(self) -> np.ndarray:
        flat = self.storage.values
        element = flat.itemsize
        view = np.lib.stride_tricks.as_strided(flat[self.offset:], shape=self.size,
                                               strides=tuple(s * element for s in self.stride))
        return np.array(view)  # a copy: the storage may be shared by several tensors


def _rebuild_tensor(storage, offset, size, stride, *_ignored) -> _Tensor:
    return _Tensor(storage, int(offset), tuple(size), tuple(stride))


class _WeightsOnly(pickle.Unpickler):
    """Unpickles containers of tensors and refuses any other global (so no code of the file ever runs)."""

    def __init__(self, stream, storages: dict[str, _Storage]):
        super().__init__(stream)
        self.storages = storages

    def find_class(self, module: str, name: str):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in STORAGE_DTYPES:
            return name
        raise CheckpointError(f"the checkpoint names {module}.{name}: not a weights-only file, refused")

    def persistent_load(self, saved_id):
        kind, storage_type, key, *_ = saved_id
        if kind != "storage" or storage_type not in STORAGE_DTYPES:
            raise CheckpointError(f"the checkpoint holds a {kind} of {storage_type}, not tensor storage")
        return self.storages.setdefault(key, _Storage(STORAGE_DTYPES[storage_type], key))


def read_legacy_checkpoint(path: str | Path, *, sha256: str | None = None) -> dict:
    """The checkpoint's objects, its tensors as numpy arrays; CheckpointError when it is not weights only."""
    path = Path(path)
    if sha256 is not None and (digest := file_digest(path)) != sha256:
        raise CheckpointError(f"{path} has SHA-256 {digest[:16]}..., not the {sha256[:16]}... of the published file")
    storages: dict[str, _Storage] = {}
    with open(path, "rb") as stream:
        try:
            header = [_WeightsOnly(stream, {}).load() for _ in range(3)]  # magic, protocol, sizes
            if header[0] != LEGACY_MAGIC:
                raise CheckpointError(f"{path} is not a legacy PyTorch checkpoint")
            obj = _WeightsOnly(stream, storages).load()
            keys = _WeightsOnly(stream, storages).load()
            for key in keys:
                (count,) = struct.unpack("<q", stream.read(8))
                storage = storages[key]
                size = count * np.dtype(storage.dtype).itemsize
                storage.values = np.frombuffer(stream.read(size), dtype=storage.dtype, count=count)
        except (pickle.UnpicklingError, EOFError, struct.error, KeyError, ValueError) as error:
            if isinstance(error, CheckpointError):
                raise
            raise CheckpointError(f"{path} cannot be read as a weights-only checkpoint ({error})") from None
    return _arrays(obj)


def _arrays(obj):
    if isinstance(obj, _Tensor):
        return obj.array()
    if isinstance(obj, dict):
        return {key: _arrays(value) for key, value in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_arrays(value) for value in obj)
    return obj
