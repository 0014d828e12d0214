"""Corpus hygiene before any fold: copies of a recording, people shared by corpora, classes one speaker voices.

Each rule leaves files out (to skipped.csv, with the reason) so that no fold can test what it trained on, and
says so once. The thresholds are the protocols' (MIN_SPEAKERS, MIN_CLASS_SPEAKERS).
"""

from __future__ import annotations

import logging

import numpy as np

from ser_models.copies import NEAR_COPY_DISTANCE, copies_in, first_copies
from ser_models.feature_cache import FeatureSet
from ser_models.protocols import MIN_CLASS_SPEAKERS, MIN_SPEAKERS, lone_speaker_classes

log = logging.getLogger(__name__)


def has_gender(name: str, features: FeatureSet, why: str) -> bool:
    """True when every utterance has a known gender and each gender has 2 or more speakers; otherwise say why the
    rows are left out."""
    unknown = int((~features.manifest["gender"].isin(["female", "male"])).sum())
    genders = features.manifest["gender"].nunique()
    lone = lone_speaker_classes(features.manifest, "gender")
    if unknown:
        log.warning("%s: %s skipped: %d utterances have no gender metadata (not guessed)", name, why, unknown)
    elif genders < 2:
        log.warning("%s: %s skipped: every speaker has the same gender", name, why)
    elif lone:
        log.warning("%s: %s skipped: only one speaker is %s, so no speaker-independent fold trains on that gender "
                    "while testing it", name, why, lone[0])
    return unknown == 0 and genders == 2 and not lone


def copies_within(corpus: str, features: FeatureSet) -> list[dict]:
    """The skipped.csv rows of the files that hold the recording of an earlier file which a fold could put on the
    other side of it: a copy (byte-identical, or re-encoded, resampled, rescaled) under another speaker, or any copy
    where folds split utterances (fewer than MIN_SPEAKERS speakers)."""
    manifest = features.manifest
    any_copy = manifest["speaker"].nunique() < MIN_SPEAKERS
    paths, speakers = manifest["path"].astype(str).to_numpy(), manifest["speaker"].to_numpy()
    copies = []
    for index, first in enumerate(first_copies(features.keys, features.functionals)):
        if first == index or (speakers[first] == speakers[index] and not any_copy):
            continue
        how = ("byte for byte" if features.keys[first] == features.keys[index] else
               "nearly (re-encoded, resampled, rescaled or padded: functionals within "
               f"{NEAR_COPY_DISTANCE} interquartile ranges)")
        copies.append({"path": paths[index], "copy_of": paths[first],
                       "reason": f"the same audio as {paths[first]} ({speakers[first]}), {how}: one recording on both "
                                 f"sides of a fold would be tested on what it trained on"})
    return copies


def without(features: FeatureSet, copies: list[dict], *, corpus: str | None) -> FeatureSet:
    """`features` less the files of `copies` (to skipped.csv); a warning names them when `corpus` is given."""
    paths = {row["path"] for row in copies}
    dropped = features.manifest["path"].astype(str).isin(paths).to_numpy()
    if not dropped.any():
        return features
    if corpus:
        log.warning("%s: %d files are copies (byte-identical, or re-encoded, resampled or rescaled) of other files "
                    "of the corpus under another speaker (or in utterance folds) and are left out, e.g. %s",
                    corpus, int(dropped.sum()), copies[0]["path"])
    kept = features.subset(np.flatnonzero(~dropped))
    gone = set(features.manifest["path"].astype(str)[dropped])
    kept.skipped += [row for row in copies if row["path"] in gone]
    return kept


def without_shared_speakers(name: str, features: FeatureSet, others: FeatureSet | None) -> FeatureSet:
    """`features` less every speaker with a file whose recording another corpus of the table (`others`) also has,
    byte for byte or nearly: the same recording means the same person, who must not be on both sides of a fold."""
    if others is None or others.manifest.empty:
        return features
    found = copies_in(features.keys, features.functionals, others.keys, others.functionals)
    speakers = features.manifest["speaker"].to_numpy()
    twins = {speakers[i]: others.manifest["speaker"].iloc[j] for i, j in enumerate(found) if j >= 0}
    if not twins:
        return features
    left_out = np.isin(speakers, list(twins))
    speaker, twin = next(iter(twins.items()))
    log.warning("%s: %d speakers of %s (%d files) have recordings that another corpus of this table also has (byte "
                "for byte, or re-encoded, resampled or rescaled), so they are taken for the same people and left out "
                "of it, e.g. %s (= %s)", name, len(twins), features.manifest["corpus"].iloc[0], int(left_out.sum()),
                speaker, twin)
    return features.subset(np.flatnonzero(~left_out))


def without_lone_speaker_classes(corpus: str, features: FeatureSet, *, say: bool = True) -> FeatureSet:
    """Leave out (to skipped.csv) a class that one speaker alone voices: each fold testing it never trained on it."""
    manifest = features.manifest
    if manifest["speaker"].nunique() < MIN_SPEAKERS:  # speaker-dependent folds: the rule does not apply
        return features
    lone = lone_speaker_classes(manifest)
    if not lone:
        return features
    dropped = manifest["emotion"].isin(lone).to_numpy()
    if say:
        log.warning("%s: classes %s are voiced by fewer than %d speakers and are left out (utterances: %d): "
                    "no speaker-independent fold can both train and test them", corpus, lone, MIN_CLASS_SPEAKERS,
                    int(dropped.sum()))
    kept = features.subset(np.flatnonzero(~dropped))
    kept.skipped += [{"path": str(row.path), "reason": f"class {row.emotion!r} is voiced by one speaker only "
                      f"({row.speaker}): no speaker-independent fold can both train and test it"}
                     for row in manifest[dropped].itertuples()]
    return kept
