"""One feature table on disk, memory-mapped: the utterance matrix (float32) and the frame sequences (ragged, float16,
with offsets), written once from the feature cache. Fit jobs carry a store's folder and row numbers instead of
arrays (`StoredRows`, `StoredFrames`); a worker reads the rows it needs, one batch at a time for frame models."""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from ser_models.files import atomic_write
from ser_models.models.frames import FrameBatch, pad_frames

STORE_VERSION = 1
_FRAMES, _OFFSETS, _META = "frames.f16", "offsets.npy", "store.json"


class StoreError(RuntimeError):
    """A feature store that is incomplete or does not match what it says it holds."""


def is_complete(folder: Path) -> bool:
    meta = Path(folder) / _META
    return meta.exists() and json.loads(meta.read_text()).get("version") == STORE_VERSION


def write_store(folder: Path, rows: Iterable[tuple[np.ndarray, np.ndarray | None]], *, n_rows: int,
                n_functionals: int, info: dict) -> None:
    """Write (functionals, frames or None) per row, in order, then the metadata last: a store without it is
    incomplete and rewritten. `info` is kept in the metadata (e.g. which rows were left out and why)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    functionals = np.lib.format.open_memmap(folder / "functionals.npy", mode="w+", dtype=np.float32,
                                            shape=(n_rows, n_functionals)) if n_rows else None
    offsets, written, n_features = [0], 0, 0
    with open(folder / _FRAMES, "wb") as frames:
        for vector, matrix in rows:
            functionals[written] = vector
            written += 1
            if matrix is not None:
                n_features = matrix.shape[1]
                frames.write(np.ascontiguousarray(matrix, dtype=np.float16).tobytes())
                offsets.append(offsets[-1] + len(matrix))
    if written != n_rows:
        raise StoreError(f"feature store {folder}: {written} rows written where {n_rows} were announced")
    if functionals is not None:
        functionals.flush()
        del functionals
    with_frames = len(offsets) == n_rows + 1 and n_rows > 0
    np.save(folder / _OFFSETS, np.asarray(offsets, dtype=np.int64))
    meta = {"version": STORE_VERSION, "rows": n_rows, "functionals": n_functionals,
            "frame_features": n_features if with_frames else None, **info}
    atomic_write(folder / _META, lambda stream: stream.write(json.dumps(meta).encode()))


def is_whole(folder: Path) -> bool:
    """A complete store whose files hold what its metadata says (a truncated or missing file: False)."""
    folder = Path(folder)
    if not is_complete(folder):
        return False
    meta = read_meta(folder)
    try:
        offsets = np.load(folder / _OFFSETS)
        if meta["rows"]:
            functionals = np.load(folder / "functionals.npy", mmap_mode="r")
            if functionals.shape != (meta["rows"], meta["functionals"]):
                return False
        width = meta["frame_features"] or 0
        return os.path.getsize(folder / _FRAMES) == int(offsets[-1]) * width * 2
    except (OSError, ValueError, EOFError):
        return False


def read_meta(folder: Path) -> dict:
    if not is_complete(folder):
        raise StoreError(f"feature store {folder} is incomplete (no {_META}); delete it and run again")
    return json.loads((Path(folder) / _META).read_text())


def open_functionals(folder: Path) -> np.ndarray:
    """The utterance matrix, memory-mapped read-only."""
    meta = read_meta(folder)
    if not meta["rows"]:
        return np.zeros((0, meta["functionals"]), np.float32)
    return np.load(Path(folder) / "functionals.npy", mmap_mode="r")


@functools.lru_cache(maxsize=64)
def _opened_frames(folder: str, stamp: int | None) -> tuple[int, np.ndarray, _FrameFile]:
    """(frame width, offsets, frames file) of a store, opened once per process and store version (`stamp`:
    its metadata's mtime, so a rebuilt store is opened afresh): a frame model reads a batch at a time."""
    meta = read_meta(Path(folder))
    if meta["frame_features"] is None:
        raise StoreError(f"feature store {folder} holds no frames")
    width = int(meta["frame_features"])
    offsets = np.load(Path(folder) / _OFFSETS)
    size = os.path.getsize(Path(folder) / _FRAMES)
    if size != int(offsets[-1]) * width * 2:
        raise StoreError(f"feature store {folder}: {_FRAMES} has {size} bytes, not what its offsets say; "
                         f"delete the folder and run again")
    return width, offsets, _FrameFile(Path(folder) / _FRAMES, width)


class _FrameFile:
    """The frames file, read a row range at a time into memory of its own (positioned reads, not a memory map: pages
    a map touches count as the reader's resident memory until the kernel drops them)."""

    def __init__(self, path: Path, width: int):
        self.path, self.width, self._fd = str(path), width, os.open(path, os.O_RDONLY)

    def __getitem__(self, rows: slice) -> np.ndarray:
        count, start = int(rows.stop - rows.start), int(rows.start)
        data = os.pread(self._fd, count * self.width * 2, start * self.width * 2) if count > 0 else b""
        if len(data) != count * self.width * 2:
            raise StoreError(f"feature store file {self.path} ended early; delete its folder and run again")
        return np.frombuffer(data, dtype=np.float16).reshape(count, self.width)

    def __del__(self) -> None:
        os.close(self._fd)


class RaggedFrames(Sequence):
    """The frame matrices of some rows of a store, read from the memory map when asked (a list of arrays to the
    code that iterates or indexes it). Pickles as its folder and row numbers."""

    def __init__(self, folder: str | Path, rows: np.ndarray | None = None):
        self.folder = str(folder)
        self._open()
        self.rows = np.arange(len(self.offsets) - 1) if rows is None else np.asarray(rows, dtype=np.int64)

    def _open(self) -> None:
        meta = Path(self.folder) / _META
        stamp = meta.stat().st_mtime_ns if meta.exists() else None
        self.n_features, self.offsets, self.values = _opened_frames(self.folder, stamp)

    def __getstate__(self) -> dict:
        return {"folder": self.folder, "rows": self.rows}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._open()

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            row = self.rows[index]
            return self.values[self.offsets[row]:self.offsets[row + 1]]
        return self.subset(self.rows[index])

    def subset(self, rows: np.ndarray) -> RaggedFrames:
        copy = object.__new__(RaggedFrames)
        copy.__dict__.update(self.__dict__, rows=np.asarray(rows, dtype=np.int64))
        return copy

    def lengths(self) -> np.ndarray:
        return (self.offsets[self.rows + 1] - self.offsets[self.rows]).astype(np.int64)


class StoredRows:
    """Rows of utterance matrices of one or more stores, read when `np.asarray` asks; slices and stacks like an
    array without reading anything."""

    def __init__(self, folders: Sequence[str], part: np.ndarray, rows: np.ndarray, n_columns: int):
        self.folders, self.part, self.rows, self.n_columns = tuple(folders), part, rows, n_columns

    @classmethod
    def of(cls, folder: str | Path, rows: np.ndarray, n_columns: int) -> StoredRows:
        rows = np.asarray(rows, dtype=np.int64)
        return cls([str(folder)], np.zeros(len(rows), np.int16), rows, n_columns)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.rows), self.n_columns

    def __getitem__(self, index) -> StoredRows:
        return type(self)(self.folders, self.part[index], self.rows[index], self.n_columns)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = np.empty((len(self.rows), self.n_columns), np.float32)
        for part, folder in enumerate(self.folders):
            where = np.flatnonzero(self.part == part)
            if len(where):
                out[where] = open_functionals(Path(folder))[self.rows[where]]
        return out if dtype is None else out.astype(dtype)

    @staticmethod
    def concatenate(blocks: Sequence[StoredRows]) -> StoredRows:
        folders = list(dict.fromkeys(f for b in blocks for f in b.folders))
        part = np.concatenate([np.array([folders.index(f) for f in b.folders], np.int16)[b.part] for b in blocks])
        return StoredRows(folders, part, np.concatenate([b.rows for b in blocks]), blocks[0].n_columns)


class StoredFrames:
    """Rows of stored frame sequences, padded (or centre-cropped) to `max_frames` only when read: `read(rows)`
    gives the FrameBatch of those rows. Slices, stacks and pickles without reading frames."""

    def __init__(self, frames: StoredRows, max_frames: int, utterance: StoredRows | np.ndarray | None = None):
        self.frames, self.max_frames, self.utterance = frames, max_frames, utterance

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def lengths(self) -> np.ndarray:
        out = np.empty(len(self), np.int64)
        for part, folder in enumerate(self.frames.folders):
            where = np.flatnonzero(self.frames.part == part)
            out[where] = RaggedFrames(folder, self.frames.rows[where]).lengths()
        return np.minimum(out, self.max_frames)

    @property
    def shape(self) -> tuple[int, ...]:
        return len(self), self.max_frames, self.frames.n_columns

    def __getitem__(self, index) -> StoredFrames:
        return StoredFrames(self.frames[index], self.max_frames,
                            None if self.utterance is None else self.utterance[index])

    def with_utterance(self, utterance) -> StoredFrames:
        return StoredFrames(self.frames, self.max_frames, utterance)

    def read(self, rows: np.ndarray | slice | None = None) -> FrameBatch:
        """The FrameBatch of `rows` (all when None), read from the stores."""
        chosen = self if rows is None else self[rows]
        matrices: list[np.ndarray | None] = [None] * len(chosen)
        for part, folder in enumerate(chosen.frames.folders):
            where = np.flatnonzero(chosen.frames.part == part)
            if len(where):
                ragged = RaggedFrames(folder, chosen.frames.rows[where])
                for position, matrix in zip(where, ragged, strict=True):
                    matrices[position] = matrix
        batch = pad_frames(matrices, chosen.max_frames) if matrices else \
            FrameBatch(np.zeros((0, chosen.max_frames, chosen.frames.n_columns), np.float16), np.zeros(0, np.int64))
        utterance = None if chosen.utterance is None else np.asarray(chosen.utterance, dtype=np.float32)
        return FrameBatch(batch.values, batch.lengths, utterance)

    @staticmethod
    def concatenate(blocks: Sequence[StoredFrames]) -> StoredFrames:
        utterance = None
        if blocks[0].utterance is not None:
            parts = [b.utterance for b in blocks]
            utterance = StoredRows.concatenate(parts) if all(isinstance(p, StoredRows) for p in parts) else \
                np.concatenate([np.asarray(p) for p in parts])
        return StoredFrames(StoredRows.concatenate([b.frames for b in blocks]), blocks[0].max_frames, utterance)


def resident_copy(x):
    """`x` with everything read into memory (frames padded as a FrameBatch)."""
    if isinstance(x, StoredRows):
        return np.asarray(x)
    if isinstance(x, StoredFrames):
        return x.read()
    return x


def resident(x):
    """A fit's input with its utterance matrices read into memory (in the worker); frames stay stored and are read
    batch by batch by the frame models."""
    if isinstance(x, StoredRows):
        return np.asarray(x)
    if isinstance(x, StoredFrames) and isinstance(x.utterance, StoredRows):
        return x.with_utterance(np.asarray(x.utterance))
    if hasattr(x, "resident"):  # an ensemble's input (MultiInput)
        return x.resident()
    return x
