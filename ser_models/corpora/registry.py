"""Corpus registry: each corpus is a loader function plus the metadata a paper cites."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ser_models.corpora.manifest import make_manifest
from ser_models.plugins import resolve
from ser_models.registry import Registry

# A loader walks a corpus folder and returns (rows, skipped): rows are manifest
# dicts, skipped are (path, reason) pairs for files it could not label.
Loader = Callable[..., tuple[list[dict], list[tuple[str, str]]]]


@dataclass(frozen=True)
class CorpusInfo:
    """What a corpus is, where it comes from and what it contains."""

    name: str
    title: str
    citation: str
    license: str
    native_sample_rate: int
    n_speakers: int
    emotions: tuple[str, ...]
    layout: str
    folder: str = ""
    url: str = ""
    generated: bool = False  # made by the project itself into the given folder
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class CorpusEntry:
    info: CorpusInfo
    loader: Loader | str  # or a lazy "package.module:attr" name

    def load(self, root: Path, **options) -> tuple[list[dict], list[tuple[str, str]]]:
        loader = resolve(self.loader) if isinstance(self.loader, str) else self.loader
        return loader(root, **options)


class CorpusNotFoundError(FileNotFoundError):
    """A corpus folder that is missing or holds no recognisable files."""


CORPORA: Registry[CorpusEntry] = Registry("corpus")


def register_corpus(info: CorpusInfo, *, loader: Loader | str | None = None) -> Callable[[Loader], Loader]:
    """Register a corpus loader under `info.name`: as a decorator, or with `loader=` (a function or a lazy
    "package.module:attr" name). A loader takes the corpus folder (and the suite's corpus options) and returns
    (rows, skipped): manifest dicts with path, speaker, emotion (and gender), and (path, reason) pairs."""

    def decorate(function: Loader | str) -> Loader | str:
        CORPORA.add(info.name, CorpusEntry(info=info, loader=function))
        return function

    return decorate if loader is None else decorate(loader)


def corpus_names() -> list[str]:
    """Names of every registered corpus."""
    return sorted(CORPORA.names())


def corpus_info(name: str) -> CorpusInfo:
    """Metadata of a registered corpus."""
    return _entry(name).info


def _entry(name: str) -> CorpusEntry:
    return CORPORA.get(name)


def load_corpus(name: str, root: str | Path, **options) -> pd.DataFrame:
    """Load corpus `name` from folder `root` as a manifest DataFrame.

    Files that could not be labelled are listed in `frame.attrs["skipped"]`.
    """
    entry = _entry(name)
    root = Path(root)
    if entry.info.generated:
        root.mkdir(parents=True, exist_ok=True)
    if not root.is_dir():
        raise CorpusNotFoundError(
            f"{entry.info.title}: folder {root} does not exist. Expected layout: {entry.info.layout}"
        )
    rows, skipped = entry.load(root, **options)
    if not rows:
        raise CorpusNotFoundError(
            f"{entry.info.title}: no usable audio files under {root}. Expected layout: {entry.info.layout}"
        )
    frame = make_manifest(rows, corpus=name)
    frame["relpath"] = [_relative(path, root) for path in frame["path"]]
    frame.attrs["skipped"] = [{"path": path, "reason": reason} for path, reason in skipped]
    return frame


AUDIO_SUFFIXES = (".wav", ".flac")


def audio_files(root: Path) -> list[Path]:
    """Every .wav/.flac file under `root`, sorted, any case of suffix."""
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())


def _relative(path: str, root: Path) -> str:
    """`path` relative to the corpus folder (POSIX form), or as given when it lies elsewhere."""
    try:
        return Path(path).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)
