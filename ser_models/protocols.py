"""Speaker-independent evaluation protocols: no speaker is ever on both sides of a fold."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold


class SpeakerLeakError(AssertionError):
    """A split that puts one speaker on both sides."""


class ProtocolError(ValueError):
    """A protocol that cannot be applied to this corpus."""


@dataclass(frozen=True)
class Fold:
    """One outer fold: which speakers are tested; every other speaker trains."""

    index: int
    test_speakers: tuple[str, ...]

    def split(self, manifest: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Row positions (train, test) of `manifest`, asserted speaker-disjoint."""
        is_test = manifest["speaker"].isin(self.test_speakers).to_numpy()
        train, test = np.flatnonzero(~is_test), np.flatnonzero(is_test)
        assert_speaker_disjoint(manifest["speaker"].iloc[train], manifest["speaker"].iloc[test])
        if test.size == 0 or train.size == 0:
            raise ProtocolError(f"fold {self.index} has an empty side (test speakers {self.test_speakers})")
        return train, test


def assert_speaker_disjoint(train_speakers, test_speakers) -> None:
    """Raise SpeakerLeakError if any speaker id appears on both sides."""
    shared = set(train_speakers) & set(test_speakers)
    if shared:
        raise SpeakerLeakError(f"speakers on both sides of a split: {sorted(shared)[:5]}")


def default_fold_count(n_speakers: int, speakers_per_fold: int = 4) -> int:
    """More than 6 speakers: folds of about `speakers_per_fold`; 4-6: leave one speaker out."""
    if n_speakers < 4:
        raise ProtocolError(
            f"only {n_speakers} speakers: no speaker-independent protocol is possible (need at least 4)"
        )
    if n_speakers <= 6:
        return n_speakers
    return max(2, round(n_speakers / speakers_per_fold))


def leave_speakers_out(
    manifest: pd.DataFrame, *, n_folds: int | None = None, seed: int = 0, speakers_per_fold: int = 4
) -> list[Fold]:
    """K speaker-disjoint folds, balanced in emotion and gender, shuffled by `seed`.

    Speakers are whole groups (StratifiedGroupKFold on the joint emotion/gender
    label), so each fold gets a similar class mix even in corpora whose speakers
    each cover only some emotions.
    """
    n_speakers = manifest["speaker"].nunique()
    n_folds = n_folds or default_fold_count(n_speakers, speakers_per_fold)
    if not 2 <= n_folds <= n_speakers:
        raise ProtocolError(f"cannot make {n_folds} speaker folds from {n_speakers} speakers")
    strata = manifest["emotion"].astype(str) + "/" + manifest["gender"].astype(str)
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    speakers = manifest["speaker"].to_numpy()
    with warnings.catch_warnings():  # "least populated class" warnings are expected for small strata
        warnings.simplefilter("ignore", UserWarning)
        splits = list(splitter.split(np.zeros(len(manifest)), strata, groups=speakers))
    folds = [Fold(index=i, test_speakers=tuple(sorted(set(speakers[test])))) for i, (_, test) in enumerate(splits)]
    if any(not f.test_speakers for f in folds):
        raise ProtocolError(f"could not spread {n_speakers} speakers over {n_folds} folds")
    return folds


# EmoBox (Ma et al., 2024, arXiv 2406.07162), RAVDESS speech: the test actors of each fold.
EMOBOX_RAVDESS_FOLDS = (
    ("01", "11", "20", "21"),
    ("04", "10", "12", "14"),
    ("08", "09", "19", "23"),
    ("03", "05", "07", "24"),
    ("02", "15", "16", "18"),
    ("06", "13", "17", "22"),
)


def emobox_folds(manifest: pd.DataFrame, *, seed: int = 0, **_: object) -> list[Fold]:
    """The published EmoBox RAVDESS folds (seed-independent)."""
    corpora = set(manifest["corpus"])
    if corpora != {"ravdess"}:
        raise ProtocolError(f"the emobox protocol is defined for RAVDESS only, not {sorted(corpora)}")
    folds = [Fold(i, tuple(f"ravdess:{a}" for a in actors)) for i, actors in enumerate(EMOBOX_RAVDESS_FOLDS)]
    missing = sorted(set(manifest["speaker"]) - {s for f in folds for s in f.test_speakers})
    if missing:
        raise ProtocolError(f"actors {missing} are in no emobox fold")
    return folds


@dataclass(frozen=True)
class Protocol:
    name: str
    description: str
    make_folds: Callable[..., list[Fold]]


PROTOCOLS = {
    p.name: p
    for p in (
        Protocol("speaker_folds", "leave-speakers-out K-fold, ~4 speakers a fold, gender-balanced", leave_speakers_out),
        Protocol("emobox", "EmoBox published RAVDESS folds: 6 folds of 4 actors", emobox_folds),
    )
}


def make_folds(protocol: str, manifest: pd.DataFrame, *, seed: int = 0, n_folds: int | None = None) -> list[Fold]:
    """Folds of the named protocol for `manifest`."""
    if protocol not in PROTOCOLS:
        raise KeyError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")
    options = {"seed": seed} | ({"n_folds": n_folds} if n_folds else {})
    return PROTOCOLS[protocol].make_folds(manifest, **options)
