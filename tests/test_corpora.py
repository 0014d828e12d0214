"""Loaders on fixture trees laid out like the real distributions (generated audio, real file names)."""

from __future__ import annotations

import pytest
from conftest import write_tone

from ser_models.corpora import CorpusNotFoundError, ManifestError, corpus_info, load_corpus, validate_manifest


@pytest.fixture
def ravdess_tree(tmp_path):
    root = tmp_path / "ravdess"
    for actor in (1, 2, 3, 4):
        for emotion in ("01", "05", "08"):
            intensity = "01" if emotion == "01" else "02"
            write_tone(root / f"Actor_{actor:02d}" / f"03-01-{emotion}-{intensity}-01-01-{actor:02d}.wav",
                       rate=48_000, channels=2 if actor == 1 else 1)
        write_tone(root / f"Actor_{actor:02d}" / f"03-02-05-01-01-01-{actor:02d}.wav")  # song
    write_tone(root / "Actor_01" / "notes.wav")  # unparseable name
    return root


def test_ravdess_speech_only_by_default(ravdess_tree):
    manifest = load_corpus("ravdess", ravdess_tree)
    assert len(manifest) == 12
    assert set(manifest["emotion"]) == {"neutral", "angry", "surprised"}
    assert sorted(manifest["speaker"].unique()) == [f"ravdess:{a:02d}" for a in (1, 2, 3, 4)]
    assert manifest.set_index("speaker")["gender"].to_dict()["ravdess:01"] == "male"
    assert manifest.set_index("speaker")["gender"].to_dict()["ravdess:02"] == "female"
    assert set(manifest["vocal_channel"]) == {"speech"}
    assert [s["path"].endswith("notes.wav") for s in manifest.attrs["skipped"]] == [True]
    validate_manifest(manifest)


def test_ravdess_song_when_asked(ravdess_tree):
    manifest = load_corpus("ravdess", ravdess_tree, include_song=True)
    assert len(manifest) == 16
    assert (manifest["vocal_channel"] == "song").sum() == 4


def test_ravdess_accepts_flac(tmp_path):
    write_tone(tmp_path / "Actor_07" / "03-01-04-02-02-02-07.flac")
    manifest = load_corpus("ravdess", tmp_path)
    assert manifest.iloc[0][["speaker", "emotion", "intensity", "gender"]].tolist() == [
        "ravdess:07", "sad", "strong", "male"]


def test_urdu_layout(tmp_path):
    for folder, letter in (("Angry", "A"), ("Happy", "H"), ("Neutral", "N"), ("Sad", "S")):
        for speaker in ("SM1", "SF10"):
            write_tone(tmp_path / folder / f"{speaker}_F1{letter == 'A' and 0 or 1}_{letter}01{speaker[-1]}.wav")
    write_tone(tmp_path / "Sad" / "SM2_F10_A011.wav")  # letter disagrees with folder
    manifest = load_corpus("urdu", tmp_path)
    assert len(manifest) == 8
    assert sorted(manifest["speaker"].unique()) == ["urdu:SF10", "urdu:SM1"]
    assert set(manifest["emotion"]) == {"angry", "happy", "neutral", "sad"}
    assert manifest.groupby("speaker")["gender"].first().to_dict() == {"urdu:SF10": "female", "urdu:SM1": "male"}
    assert len(manifest.attrs["skipped"]) == 1


def test_missing_folder_names_layout(tmp_path):
    with pytest.raises(CorpusNotFoundError, match="Actor_NN"):
        load_corpus("ravdess", tmp_path / "nowhere")


def test_empty_folder_is_an_error(tmp_path):
    with pytest.raises(CorpusNotFoundError, match="no usable audio"):
        load_corpus("urdu", tmp_path)


def test_unknown_corpus_lists_choices(tmp_path):
    with pytest.raises(KeyError, match="ravdess"):
        load_corpus("iemocap", tmp_path)


def test_manifest_rejects_labels_not_in_canonical_form(synthetic_manifest):
    broken = synthetic_manifest.copy()
    broken.loc[0, "emotion"] = "bored"
    with pytest.raises(ManifestError, match="bored"):
        validate_manifest(broken)


def test_corpus_metadata():
    info = corpus_info("ravdess")
    assert "Livingstone" in info.citation and info.native_sample_rate == 48_000 and info.n_speakers == 24
    assert len(corpus_info("urdu").emotions) == 4


def test_real_corpora(real_data):
    ravdess = load_corpus("ravdess", real_data / "ravdess")
    assert len(ravdess) == 1440 and ravdess["speaker"].nunique() == 24
    assert ravdess["emotion"].value_counts().to_dict()["neutral"] == 96
    urdu = load_corpus("urdu", real_data / "urdu")
    assert len(urdu) == 400 and urdu["speaker"].nunique() == 29
    assert set(urdu["emotion"].value_counts()) == {100}
