"""Corpus registry: each corpus is a loader function plus the metadata a paper cites."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ser_models.corpora.manifest import make_manifest

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
    loader: Loader


class CorpusNotFoundError(FileNotFoundError):
    """A corpus folder that is missing or holds no recognisable files."""


_CORPORA: dict[str, CorpusEntry] = {}


def register_corpus(info: CorpusInfo) -> Callable[[Loader], Loader]:
    """Decorator: register `loader` under `info.name`."""

    def decorate(loader: Loader) -> Loader:
        if info.name in _CORPORA:
            raise ValueError(f"corpus {info.name!r} is registered twice")
        _CORPORA[info.name] = CorpusEntry(info=info, loader=loader)
        return loader

    return decorate


def corpus_names() -> list[str]:
    """Names of every registered corpus."""
    return sorted(_CORPORA)


def corpus_info(name: str) -> CorpusInfo:
    """Metadata of a registered corpus."""
    return _entry(name).info


def _entry(name: str) -> CorpusEntry:
    if name not in _CORPORA:
        raise KeyError(f"unknown corpus {name!r}; choose from {', '.join(corpus_names())}")
    return _CORPORA[name]


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
    rows, skipped = entry.loader(root, **options)
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
