"""The manifest contract: one row per utterance, canonical labels, global speaker ids."""

from __future__ import annotations

import pandas as pd

CANONICAL_EMOTIONS = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")
MANIFEST_COLUMNS = ("path", "corpus", "speaker", "gender", "emotion", "label_raw")
# Spellings met in corpus labels and user manifests, mapped to the canonical vocabulary.
EMOTION_ALIASES = {
    "neu": "neutral", "calmness": "calm", "happiness": "happy", "joy": "happy", "hap": "happy",
    "sadness": "sad", "anger": "angry", "ang": "angry", "fear": "fearful", "fea": "fearful", "afraid": "fearful",
    "disgusted": "disgust", "dis": "disgust", "surprise": "surprised", "ps": "surprised",
    "pleasant_surprise": "surprised", "pleasant_surprised": "surprised",
}


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


def canonical_emotion(label: object) -> str | None:
    """The canonical name of an emotion label, or None when it is not one we know."""
    if not isinstance(label, str):
        return None
    word = label.strip().lower().replace(" ", "_").replace("-", "_")
    return word if word in CANONICAL_EMOTIONS else EMOTION_ALIASES.get(word)


def harmonise_labels(
    manifest: pd.DataFrame, *, merge: dict[str, str] | None = None, drop: list[str] | tuple[str, ...] = (),
    keep: list[str] | tuple[str, ...] | None = None,
) -> pd.DataFrame:
    """Merge classes (e.g. calm -> neutral), then drop classes, then keep only `keep` (when given)."""
    merge, drop = dict(merge or {}), list(drop)
    unknown = sorted((set(merge) | set(merge.values()) | set(drop) | set(keep or ())) - set(CANONICAL_EMOTIONS))
    if unknown:
        raise ManifestError(f"label options name unknown emotions {unknown}; use {CANONICAL_EMOTIONS}")
    frame = manifest.copy()
    frame["emotion"] = frame["emotion"].replace(merge)
    rows = ~frame["emotion"].isin(drop)
    if keep is not None:
        rows &= frame["emotion"].isin(keep)
    frame = frame[rows].reset_index(drop=True)
    frame.attrs = dict(manifest.attrs)
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
