"""Features a user computed elsewhere, read from a file keyed by the manifest's paths (`feature_set = "precomputed"`).

The file (suite option `[features.options] file = "..."`) is one of:
- `.npz`: `paths` (n,) strings, `functionals` (n, d) numbers, optionally `names` (d,); frame sequences optionally as
  `frames` (sum of lengths, f) with `lengths` (n,) and `frame_names` (f,). Read without pickle.
- `.csv` or `.parquet`: a `path` column and one numeric column per feature (parquet needs pyarrow).

A path matches a manifest row by the file's path relative to its corpus folder, by its full path, or by either without
its audio suffix (features computed on the original .wav match the .flac copies). Rows of the manifest with no row in
the file, or with a NaN or infinite value, are skipped with the reason; the file's digest enters every config hash.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from ser_models.extractors import ExtractorDefaults, UtteranceFeatures, register_features
from ser_models.files import file_digest

AUDIO_SUFFIXES = (".wav", ".flac")
LABEL_COLUMNS = {"emotion", "label", "label_raw", "labels", "class", "target", "y", "speaker", "gender", "corpus"}


class PrecomputedError(ValueError):
    """A precomputed-features file that cannot be used; the message says what to fix."""


def _path_forms(path: str) -> list[str]:
    """A path as the file may write it: as given (POSIX separators) and without its audio suffix."""
    posix = str(path).replace("\\", "/")
    pure = PurePosixPath(posix)
    forms = [posix]
    if pure.suffix.lower() in AUDIO_SUFFIXES:
        forms.append(str(pure.with_suffix("")))
    return forms


@functools.lru_cache(maxsize=8)
def _read_table(path: str, size: int, mtime_ns: int) -> tuple[dict[str, int], np.ndarray, list[str], list, list]:
    """(row of each path form, functionals, names, frames per row or [], frame names) of a features file."""
    suffix = Path(path).suffix.lower()
    frames: list = []
    frame_names: list[str] = []
    if suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as data:
                paths = [str(p) for p in data["paths"]]
                values = np.asarray(data["functionals"], dtype=np.float32)
                names = [str(n) for n in data["names"]] if "names" in data else \
                    [f"f{i}" for i in range(values.shape[1])]
                if "frames" in data:
                    lengths = np.asarray(data["lengths"], dtype=int)
                    frames = np.split(np.asarray(data["frames"]), np.cumsum(lengths)[:-1])
                    frame_names = [str(n) for n in data["frame_names"]] if "frame_names" in data else \
                        [f"frame{i}" for i in range(frames[0].shape[1])]
        except (KeyError, ValueError, OSError) as error:
            raise PrecomputedError(f"{path}: not a features .npz with `paths` and `functionals` ({error})") from None
    elif suffix in (".csv", ".parquet"):
        try:
            table = pd.read_parquet(path) if suffix == ".parquet" else pd.read_csv(path)
        except ImportError as error:
            raise PrecomputedError(f"{path}: reading parquet needs pyarrow (pip install pyarrow), or give a .npz "
                                   f"or .csv ({error})") from None
        if "path" not in table.columns:
            raise PrecomputedError(f"{path}: needs a `path` column; it has {list(table.columns)[:6]}")
        labels = sorted(c for c in table.columns if str(c).lower() in LABEL_COLUMNS)
        if labels:  # an emotion id exported beside the features would be the answer, read as a feature
            raise PrecomputedError(f"{path}: columns {labels} are labels or speakers, not features; a features "
                                   "file holds `path` and feature columns only")
        paths = table["path"].astype(str).tolist()
        features = table.drop(columns=["path"])
        text = [str(c) for c in features.columns if not pd.api.types.is_numeric_dtype(features[c])]
        if text:
            raise PrecomputedError(f"{path}: columns {text[:5]} are not numbers; a features file holds `path` and "
                                   "numeric feature columns only")
        names, values = list(map(str, features.columns)), features.to_numpy(np.float32)
    else:
        raise PrecomputedError(f"{path}: precomputed features are read from .npz, .csv or .parquet, not {suffix!r}")
    if values.ndim != 2 or values.shape[0] != len(paths) or values.shape[1] != len(names) or not len(paths):
        raise PrecomputedError(f"{path}: {len(paths)} paths, functionals of shape {values.shape}, {len(names)} names")
    if frames and len(frames) != len(paths):
        raise PrecomputedError(f"{path}: `lengths` has {len(frames)} rows for {len(paths)} paths")
    rows: dict[str, int] = {}
    for row, item in enumerate(paths):
        for form in _path_forms(item):
            if rows.setdefault(form, row) != row and form == item.replace("\\", "/"):
                raise PrecomputedError(f"{path}: path {item!r} has two rows")
    return rows, values, names, frames, frame_names


@register_features("precomputed")
class PrecomputedFeatures(ExtractorDefaults):
    """A feature table read from `file`: no audio is analysed, so no augmentation and no new files to predict."""

    produces = ("functionals", "frames")

    def __init__(self, file: str):
        self.file = Path(file).expanduser().resolve()
        if not self.file.is_file():
            raise PrecomputedError(f"precomputed features file {file} does not exist")

    def table(self):
        stat = os.stat(self.file)
        return _read_table(str(self.file), stat.st_size, stat.st_mtime_ns)

    def key_fields(self) -> dict:
        """Its content, not where it lies: a moved file keeps its rows, a changed one redoes them."""
        stat = os.stat(self.file)
        return {"options": [], "file_sha256": _digest(str(self.file), stat.st_size, stat.st_mtime_ns)}

    def functional_names(self) -> list[str]:
        return self.table()[2]

    def frame_names(self) -> list[str]:
        return self.table()[4]

    def extract(self, signals, sample_rate, *, frames=False):
        raise PrecomputedError(f"precomputed features exist only for the files listed in {self.file}; new audio "
                               "cannot be analysed with them")

    def read_rows(self, manifest: pd.DataFrame, *, frames: bool) -> list[tuple[UtteranceFeatures | None, str]]:
        """Per manifest row: its features, or None and the reason it has none."""
        rows, values, _, frame_list, _ = self.table()
        relpaths = manifest["relpath"] if "relpath" in manifest else manifest["path"]
        out = []
        for relpath, path in zip(relpaths.astype(str), manifest["path"].astype(str), strict=True):
            row = next((rows[f] for f in (*_path_forms(relpath), *_path_forms(path)) if f in rows), None)
            if row is None:
                out.append((None, f"no row for this file in {self.file.name} (looked for {relpath!r})"))
            elif not np.isfinite(values[row]).all():
                out.append((None, f"its row in {self.file.name} has NaN or infinite values"))
            else:
                matrix = frame_list[row].astype(np.float16) if frames and frame_list else None
                out.append((UtteranceFeatures(values[row], matrix), ""))
        return out


@functools.lru_cache(maxsize=8)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    return file_digest(path)[:32]
