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
    # Classes outside the eight keep their own name; these are other spellings of them.
    "bored": "boredom", "frustration": "frustrated", "fru": "frustrated", "excitement": "excited", "exc": "excited",
    "contemptuous": "contempt", "anxious": "anxiety",
}

# Labels that say the annotators agreed on no emotion (IEMOCAP's "xxx"): such a row has no class, as an empty one.
NO_AGREEMENT = ("xxx", "no_agreement", "unknown", "unlabelled", "unlabeled")


class ManifestError(ValueError):
    """A manifest that breaks the contract; the message says which rule."""


def make_manifest(rows: list[dict], corpus: str) -> pd.DataFrame:
    """Build a validated manifest from row dicts (extra keys become extra columns)."""
    frame = pd.DataFrame(rows, columns=None if rows else list(MANIFEST_COLUMNS))
    if frame.empty:
        return pd.DataFrame({column: pd.Series(dtype=object) for column in MANIFEST_COLUMNS})
    frame["corpus"] = corpus
    if "label_raw" not in frame:  # a plugin's loader may give its own labels only: they are made canonical here
        frame["label_raw"] = frame["emotion"]
        frame["emotion"] = frame["emotion"].map(canonical_emotion)
    if "gender" not in frame:
        frame["gender"] = "unknown"
    prefix = corpus + ":"
    speakers = frame["speaker"].astype(str)
    frame["speaker"] = speakers.where(speakers.str.startswith(prefix), prefix + speakers)  # never prefixed twice
    frame = frame.sort_values("path", kind="stable").reset_index(drop=True)
    validate_manifest(frame)
    return frame


def canonical_emotion(label: object) -> str | None:
    """The canonical name of an emotion label: a known spelling maps to our vocabulary ("anger" -> angry),
    any other word is its own class, lowercase ("Boredom" -> boredom). None for an empty or numeric label, or one
    that says no emotion was agreed on ("xxx")."""
    if not isinstance(label, str):
        return None
    word = _word(label)
    if not word or not any(character.isalpha() for character in word) or no_agreement(word):
        return None
    return EMOTION_ALIASES.get(word, word)


def _word(label: str) -> str:
    return "_".join(label.strip().lower().replace("-", " ").split())


def no_agreement(label: object) -> bool:
    """Whether `label` says no emotion was agreed on (NO_AGREEMENT)."""
    return isinstance(label, str) and _word(label) in NO_AGREEMENT


def label_problem(label: object) -> str:
    """Why `label` gives no class (for skipped.csv), given that canonical_emotion returned None."""
    if not isinstance(label, str) or not label.strip():
        return "no emotion label given"
    if no_agreement(label):
        return f"emotion label {label!r} says no emotion was agreed on (as xxx in IEMOCAP), so it is no class"
    return f"emotion label {label!r} is a number, not a class name"


def harmonise_labels(
    manifest: pd.DataFrame, *, merge: dict[str, str] | None = None, drop: list[str] | tuple[str, ...] = (),
    keep: list[str] | tuple[str, ...] | None = None,
) -> pd.DataFrame:
    """Merge classes (e.g. calm -> neutral), then drop classes, then keep only `keep` (when given)."""
    merge = dict(merge or {})
    drop = [label for label in drop if not no_agreement(label)]  # those rows are never in a manifest
    named = [*merge, *merge.values(), *drop, *(keep or ())]
    bad = sorted({str(label) for label in named if canonical_emotion(label) is None})
    if bad:
        raise ManifestError(f"label options name no class: {bad}")
    merge = {canonical_emotion(k): canonical_emotion(v) for k, v in merge.items()}
    drop = [canonical_emotion(label) for label in drop]
    keep = None if keep is None else [canonical_emotion(label) for label in keep]
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
    unknown = sorted({str(e) for e in frame["emotion"] if canonical_emotion(e) != e})
    if unknown:
        raise ManifestError(f"emotion labels {unknown} are not in canonical form (canonical_emotion); "
                            f"known classes are {CANONICAL_EMOTIONS}, others are kept lowercase")
    if frame["path"].duplicated().any():
        raise ManifestError("manifest lists the same file twice")
    bad_ids = [s for s in frame["speaker"].unique() if ":" not in str(s)]
    if bad_ids:
        raise ManifestError(f"speaker ids must be 'corpus:speaker', got {bad_ids[:3]}")
