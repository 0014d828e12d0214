"""Every fold of every protocol keeps each speaker on one side."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ser_models.protocols import (
    EMOBOX_RAVDESS_FOLDS,
    Fold,
    ProtocolError,
    SpeakerLeakError,
    assert_speaker_disjoint,
    default_fold_count,
    make_folds,
)


def fake_manifest(n_speakers: int, corpus: str = "c", per_speaker: int = 5) -> pd.DataFrame:
    rows = [
        {"path": f"{s}-{i}", "corpus": corpus, "speaker": f"{corpus}:{s:02d}",
         "gender": "male" if s % 2 else "female", "emotion": ["angry", "sad"][i % 2], "label_raw": ""}
        for s in range(1, n_speakers + 1) for i in range(per_speaker)
    ]
    return pd.DataFrame(rows)


@pytest.mark.parametrize("n_speakers", [4, 5, 6, 7, 10, 24, 29])
@pytest.mark.parametrize("seed", [0, 1])
def test_speaker_folds_are_disjoint_and_cover_everyone(n_speakers, seed):
    manifest = fake_manifest(n_speakers)
    folds = make_folds("speaker_folds", manifest, seed=seed)
    tested = [s for f in folds for s in f.test_speakers]
    assert sorted(tested) == sorted(manifest["speaker"].unique())  # each speaker tested exactly once
    for fold in folds:
        train, test = fold.split(manifest)
        assert not set(manifest["speaker"].iloc[train]) & set(manifest["speaker"].iloc[test])
        assert len(train) + len(test) == len(manifest)


def test_ravdess_default_is_six_folds_of_four_gender_balanced():
    manifest = fake_manifest(24, corpus="ravdess")
    folds = make_folds("speaker_folds", manifest, seed=0)
    assert [len(f.test_speakers) for f in folds] == [4] * 6
    genders = manifest.drop_duplicates("speaker").set_index("speaker")["gender"]
    assert all(sorted(genders[list(f.test_speakers)]) == ["female", "female", "male", "male"] for f in folds)


def test_seed_changes_assignment_deterministically():
    manifest = fake_manifest(24)
    assert make_folds("speaker_folds", manifest, seed=3) == make_folds("speaker_folds", manifest, seed=3)
    assert make_folds("speaker_folds", manifest, seed=3) != make_folds("speaker_folds", manifest, seed=4)


def test_fold_rule():
    assert [default_fold_count(n) for n in (4, 5, 9, 10, 12)] == [4, 5, 9, 10, 12]  # leave one speaker out
    assert default_fold_count(13) == 5  # never fewer than 5 folds above 12 speakers
    assert default_fold_count(24) == 6  # RAVDESS: 6 folds of 4 actors, as before
    assert default_fold_count(29) == 7  # URDU
    assert default_fold_count(91) == 10  # CREMA-D: bounded cost
    with pytest.raises(ProtocolError, match="speaker-independent"):
        default_fold_count(3)


@pytest.mark.parametrize("n_speakers", [9, 12])
def test_small_corpora_get_leave_one_speaker_out(n_speakers):
    manifest = fake_manifest(n_speakers)
    folds = make_folds("speaker_folds", manifest, seed=0)
    assert [f.test_speakers for f in folds] == [(s,) for s in sorted(manifest["speaker"].unique())]


@pytest.mark.parametrize("n_speakers", [13, 14, 17, 21, 30, 53, 91])
def test_larger_corpora_keep_three_quarters_of_the_speakers_for_training(n_speakers):
    manifest = fake_manifest(n_speakers, per_speaker=4)
    folds = make_folds("speaker_folds", manifest, seed=0)
    assert 5 <= len(folds) <= 10
    assert all(len(f.test_speakers) <= 0.25 * n_speakers for f in folds), [len(f.test_speakers) for f in folds]


def test_fold_options_override_the_rule():
    manifest = fake_manifest(24)
    assert len(make_folds("speaker_folds", manifest, n_folds=3)) == 3
    assert len(make_folds("speaker_folds", manifest, leave_one_speaker_out=True)) == 24


def test_emobox_folds_match_the_published_lists():
    manifest = fake_manifest(24, corpus="ravdess")
    folds = make_folds("emobox", manifest)
    assert folds[0].test_speakers == ("ravdess:01", "ravdess:11", "ravdess:20", "ravdess:21")
    assert sorted(s for f in folds for s in f.test_speakers) == sorted(manifest["speaker"].unique())
    assert len(EMOBOX_RAVDESS_FOLDS) == 6
    for fold in folds:
        fold.split(manifest)


def test_emobox_refuses_other_corpora():
    with pytest.raises(ProtocolError, match="RAVDESS"):
        make_folds("emobox", fake_manifest(10, corpus="urdu"))


def test_leak_is_caught():
    with pytest.raises(SpeakerLeakError):
        assert_speaker_disjoint(["a:1", "a:2"], ["a:2", "a:3"])


def test_split_asserts_disjointness_even_for_a_bad_fold():
    manifest = fake_manifest(6)
    # A manifest whose speaker column is changed after folding cannot sneak a speaker into both sides:
    fold = Fold(0, ("c:01",))
    train, test = fold.split(manifest)
    assert set(np.asarray(manifest["speaker"])[test]) == {"c:01"}
    assert "c:01" not in set(np.asarray(manifest["speaker"])[train])


def test_speaker_dependent_folds_refuse_too_few_utterances():
    manifest = fake_manifest(2, per_speaker=5)
    assert len(make_folds("speaker_dependent", manifest)) == 5
    with pytest.raises(ProtocolError, match="only 6 utterances: 5 utterance-level folds need at least 10"):
        make_folds("speaker_dependent", manifest.head(6))
