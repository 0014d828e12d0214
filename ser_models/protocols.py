"""Speaker-independent evaluation protocols: no speaker is ever on both sides of a fold."""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold


class SpeakerLeakError(AssertionError):
    """A split that puts one speaker on both sides."""


class ProtocolError(ValueError):
    """A protocol that cannot be applied to this corpus."""


@dataclass(frozen=True)
class Fold:
    """One outer fold: which speakers are tested, and which train (default: every other speaker).

    A speaker-dependent fold (only for corpora with too few speakers) names its test rows instead.
    """

    index: int
    test_speakers: tuple[str, ...]
    train_speakers: tuple[str, ...] | None = None
    test_rows: tuple[int, ...] | None = None

    @property
    def speaker_independent(self) -> bool:
        return self.test_rows is None

    def hash_fields(self) -> dict:
        """What identifies the fold in a record's config hash (old fold kinds keep their old hashes)."""
        fields = {"fold": self.index, "test_speakers": self.test_speakers}
        if self.train_speakers is not None:
            fields["train_speakers"] = self.train_speakers
        if self.test_rows is not None:
            fields["test_rows"] = hashlib.sha256(str(self.test_rows).encode()).hexdigest()[:16]
        return fields

    def split(self, manifest: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Row positions (train, test) of `manifest`, asserted speaker-disjoint (unless speaker-dependent)."""
        if self.test_rows is not None:
            is_test = np.zeros(len(manifest), bool)
            is_test[list(self.test_rows)] = True
            return np.flatnonzero(~is_test), np.flatnonzero(is_test)
        is_test = manifest["speaker"].isin(self.test_speakers).to_numpy()
        is_train = ~is_test
        if self.train_speakers is not None:
            is_train &= manifest["speaker"].isin(self.train_speakers).to_numpy()
        train, test = np.flatnonzero(is_train), np.flatnonzero(is_test)
        assert_speaker_disjoint(manifest["speaker"].iloc[train], manifest["speaker"].iloc[test])
        if test.size == 0 or train.size == 0:
            raise ProtocolError(f"fold {self.index} has an empty side (test speakers {self.test_speakers})")
        return train, test


def assert_speaker_disjoint(train_speakers, test_speakers) -> None:
    """Raise SpeakerLeakError if any speaker id appears on both sides."""
    shared = set(train_speakers) & set(test_speakers)
    if shared:
        raise SpeakerLeakError(f"speakers on both sides of a split: {sorted(shared)[:5]}")


MAX_DEFAULT_FOLDS = 10  # large corpora (CREMA-D: 91 speakers) get 10 folds, not 23: bounded cost
MIN_SPEAKERS = 4  # fewer: no speaker-independent protocol (utterance folds, labelled speaker-dependent)
MIN_CLASS_SPEAKERS = 2  # a class voiced by one speaker is never on the training side when it is tested


def lone_speaker_classes(manifest: pd.DataFrame, target: str = "emotion") -> list[str]:
    """Classes voiced by fewer than MIN_CLASS_SPEAKERS speakers: no speaker-independent fold can train and test them."""
    speakers = manifest.groupby(target)["speaker"].nunique()
    return sorted(str(label) for label, n in speakers.items() if n < MIN_CLASS_SPEAKERS)


def untrained_test_classes(fold: Fold, manifest: pd.DataFrame, target: str = "emotion") -> list[str]:
    """Classes in the fold's test rows that none of its training rows has (their recall is 0 by construction)."""
    train, test = fold.split(manifest)
    labels = manifest[target].to_numpy()
    return sorted(set(labels[test]) - set(labels[train]))


def default_fold_count(n_speakers: int, speakers_per_fold: int = 4) -> int:
    """Leave one speaker out up to 12 speakers; above, folds of about `speakers_per_fold` speakers,
    at least 5 (so every training side keeps >= 75 % of the speakers) and at most 10.

    RAVDESS (24 actors) gets 6 folds of 4, URDU (29) 7 folds.
    """
    if n_speakers < MIN_SPEAKERS:
        raise ProtocolError(
            f"only {n_speakers} speakers: no speaker-independent protocol is possible (need at least {MIN_SPEAKERS})"
        )
    if n_speakers <= 12:
        return n_speakers
    return min(MAX_DEFAULT_FOLDS, max(5, round(n_speakers / speakers_per_fold)))


def leave_speakers_out(
    manifest: pd.DataFrame, *, n_folds: int | None = None, seed: int = 0, speakers_per_fold: int = 4,
    leave_one_speaker_out: bool = False,
) -> list[Fold]:
    """K speaker-disjoint folds, balanced in emotion and gender, shuffled by `seed` (K: default_fold_count).

    `leave_one_speaker_out=True` makes one fold per speaker whatever the corpus size.

    Speakers are whole groups (StratifiedGroupKFold on the joint emotion/gender
    label), so each fold gets a similar class mix even in corpora whose speakers
    each cover only some emotions.
    """
    n_speakers = manifest["speaker"].nunique()
    if leave_one_speaker_out:
        n_folds = n_speakers
    n_folds = n_folds or default_fold_count(n_speakers, speakers_per_fold)
    if not 2 <= n_folds <= n_speakers:
        raise ProtocolError(f"cannot make {n_folds} speaker folds from {n_speakers} speakers")
    if n_folds == n_speakers:  # leave one speaker out: one fold per speaker, in speaker order
        speakers = sorted(manifest["speaker"].unique())
        return [Fold(index=i, test_speakers=(speaker,)) for i, speaker in enumerate(speakers)]
    strata = manifest["emotion"].astype(str) + "/" + manifest["gender"].astype(str)
    if manifest["corpus"].nunique() > 1:  # merged corpora: every fold gets speakers of each corpus
        strata = manifest["corpus"].astype(str) + "/" + strata
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


def speaker_dependent_folds(manifest: pd.DataFrame, *, n_folds: int | None = None, seed: int = 0) -> list[Fold]:
    """Utterance-level stratified folds, for corpora with fewer than 4 speakers; NOT speaker-independent."""
    n_folds = n_folds or 5
    if len(manifest) < 2 * n_folds:  # every test fold needs utterances, every training side more than one
        raise ProtocolError(f"only {len(manifest)} utterances: {n_folds} utterance-level folds need at least "
                            f"{2 * n_folds}")
    splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    speakers = tuple(sorted(manifest["speaker"].unique()))
    return [Fold(index=i, test_speakers=speakers, test_rows=tuple(int(r) for r in test))
            for i, (_, test) in enumerate(splitter.split(np.zeros(len(manifest)), manifest["emotion"]))]


def cross_corpus_folds(manifest: pd.DataFrame, *, train_corpora: tuple[str, ...], test_corpus: str,
                       **_: object) -> list[Fold]:
    """One fold: train on every speaker of `train_corpora`, test on every speaker of `test_corpus`."""
    by_corpus = manifest.groupby("corpus")["speaker"].unique()
    missing = sorted((set(train_corpora) | {test_corpus}) - set(by_corpus.index))
    if missing or test_corpus in train_corpora:
        raise ProtocolError(f"cross-corpus pair {train_corpora}->{test_corpus} is not in the data ({missing})")
    train = tuple(sorted(s for c in train_corpora for s in by_corpus[c]))
    return [Fold(index=0, test_speakers=tuple(sorted(by_corpus[test_corpus])), train_speakers=train)]


@dataclass(frozen=True)
class Protocol:
    name: str
    description: str
    make_folds: Callable[..., list[Fold]]
    scope: str = "corpus"  # corpus: one corpus; combined: corpora merged; cross: train on some, test on another


PROTOCOLS = {
    p.name: p
    for p in (
        Protocol("speaker_folds", "leave-speakers-out K-fold, ~4 speakers a fold, gender-balanced", leave_speakers_out),
        Protocol("emobox", "EmoBox published RAVDESS folds: 6 folds of 4 actors", emobox_folds),
        Protocol("speaker_dependent", "utterance-level 5-fold: the same speakers train and test",
                 speaker_dependent_folds),
        Protocol("combined", "corpora merged; leave-speakers-out folds across corpora", leave_speakers_out,
                 scope="combined"),
        Protocol("cross_corpus", "train on one corpus (or a set), test on another, over shared labels",
                 cross_corpus_folds, scope="cross"),
    )
}


def make_folds(protocol: str, manifest: pd.DataFrame, *, seed: int = 0, n_folds: int | None = None,
               **options: object) -> list[Fold]:
    """Folds of the named protocol for `manifest` (cross_corpus also takes train_corpora and test_corpus)."""
    if protocol not in PROTOCOLS:
        raise KeyError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")
    options = {"seed": seed, **options} | ({"n_folds": n_folds} if n_folds else {})
    return PROTOCOLS[protocol].make_folds(manifest, **options)
