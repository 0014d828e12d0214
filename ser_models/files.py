"""Files written all or nothing, with the permissions a plain `open` would give them, and file digests."""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


@functools.cache
def _umask() -> int:
    """Read once per process: reading the umask means setting it, which would race with other threads' files."""
    current = os.umask(0)
    os.umask(current)
    return current


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write through a temporary file beside `path`, then rename it over `path`: a reader sees the old file or
    the whole new one. The file gets the mode `open` would give it (0o666 less the umask), not mkstemp's 0o600,
    so a cache or results folder shared by a group stays readable to it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        os.fchmod(handle, 0o666 & ~_umask())
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """`payload` to `path`, all or nothing (see `atomic_write`)."""
    atomic_write(path, lambda stream: stream.write(payload))


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """The hex digest of a file's bytes, read in blocks of 1 MiB (hashlib.file_digest from Python 3.11)."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
