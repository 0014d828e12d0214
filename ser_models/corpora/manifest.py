"""The manifest contract: one row per utterance, canonical labels, global speaker ids."""

from __future__ import annotations

import pandas as pd

CANONICAL_EMOTIONS = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")
MANIFEST_COLUMNS = ("path", "corpus", "speaker", "gender", "emotion", "label_raw")


class ManifestError(ValueError):
    """A manifest that breaks the contract; the message says which rule."""


def make_manifest(rows: list[dict], corpus: str) -> pd.DataFrame:
    """Build a validated manifest from row dicts (extra keys become extra columns)."""
    frame = pd.DataFrame(rows, columns=None if rows else list(MANIFEST_COLUMNS))
    if frame.empty:
        return pd.DataFrame({column: pd.Series(dtype=object) for column in MANIFEST_COLUMNS})
    frame["corpus"] = corpus
    frame["speaker"] = corpus + ":" + frame["speaker"].astype(str)
    frame = frame.sort_values("path", kind="stable").reset_index(drop=True)
    validate_manifest(frame)
    return frame


def validate_manifest(frame: pd.DataFrame) -> None:
    """Raise ManifestError if columns, labels or speaker ids break the contract."""
    missing = [column for column in MANIFEST_COLUMNS if column not in frame.columns]
    if missing:
        raise ManifestError(f"manifest is missing columns {missing}")
    unknown = sorted(set(frame["emotion"]) - set(CANONICAL_EMOTIONS))
    if unknown:
        raise ManifestError(f"non-canonical emotion labels {unknown}; expected a subset of {CANONICAL_EMOTIONS}")
    if frame["path"].duplicated().any():
        raise ManifestError("manifest lists the same file twice")
    bad_ids = [s for s in frame["speaker"].unique() if ":" not in str(s)]
    if bad_ids:
        raise ManifestError(f"speaker ids must be 'corpus:speaker', got {bad_ids[:3]}")
