"""CREMA-D, TESS, SAVEE and CSV-manifest corpora on fixture trees in their real layouts."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import write_tone

from ser_models.corpora import (
    ManifestError,
    canonical_emotion,
    harmonise_labels,
    load_corpus,
    register_manifest_corpus,
    validate_manifest,
)


def test_crema_d_with_demographics(tmp_path):
    root = tmp_path / "crema_d"
    for actor in ("1001", "1002", "1091"):
        for sentence, code, level in (("DFA", "ANG", "XX"), ("IEO", "HAP", "HI"), ("TIE", "NEU", "XX"),
                                      ("IEO", "FEA", "LO"), ("MTI", "DIS", "MD"), ("WSI", "SAD", "XX")):
            write_tone(root / "AudioWAV" / f"{actor}_{sentence}_{code}_{level}.wav")
    write_tone(root / "AudioWAV" / "1001_DFA_XYZ_XX.wav")  # unknown emotion code
    write_tone(root / "AudioWAV" / "readme.wav")
    pd.DataFrame({"ActorID": ["1001", "1002"], "Age": [51, 21], "Sex": ["Male", "Female"]}).to_csv(
        root / "VideoDemographics.csv", index=False)
    manifest = load_corpus("crema_d", root)
    validate_manifest(manifest)
    assert len(manifest) == 18 and len(manifest.attrs["skipped"]) == 2
    assert sorted(manifest["speaker"].unique()) == ["crema_d:1001", "crema_d:1002", "crema_d:1091"]
    assert set(manifest["emotion"]) == {"angry", "happy", "neutral", "fearful", "disgust", "sad"}
    genders = manifest.groupby("speaker")["gender"].first().to_dict()
    assert genders == {"crema_d:1001": "male", "crema_d:1002": "female", "crema_d:1091": "unknown"}
    assert set(manifest["intensity"]) == {"unspecified", "high", "low", "medium"}


def test_crema_d_without_demographics_says_unknown(tmp_path):
    write_tone(tmp_path / "AudioWAV" / "1005_ITS_SAD_LO.wav")
    assert load_corpus("crema_d", tmp_path)["gender"].tolist() == ["unknown"]


def test_tess_folder_variants(tmp_path):
    root = tmp_path / "tess"
    files = {
        "OAF_angry": "OAF_back_angry", "OAF_Fear": "OAF_back_fear", "OAF_Pleasant_surprise": "OAF_back_ps",
        "OAF_neutral": "OAF_bar_neutral", "YAF_pleasant_surprised": "YAF_back_ps", "YAF_disgust": "YAF_back_disgust",
        "YAF_happy": "YAF_back_happy", "YAF_sad": "YAF_back_sad",
    }
    for folder, stem in files.items():
        write_tone(root / folder / f"{stem}.wav")
    write_tone(root / "YAF_sad" / "YAF_back_angry.wav")  # label disagrees with its folder
    write_tone(root / "YAF_sad" / "YAF_back_bored.wav")  # no such emotion
    manifest = load_corpus("tess", root)
    validate_manifest(manifest)
    assert len(manifest) == 8 and len(manifest.attrs["skipped"]) == 2
    assert sorted(manifest["speaker"].unique()) == ["tess:OAF", "tess:YAF"]
    assert manifest.groupby("emotion").size().to_dict() == {
        "angry": 1, "disgust": 1, "fearful": 1, "happy": 1, "neutral": 1, "sad": 1, "surprised": 2}
    assert set(manifest["gender"]) == {"female"}


@pytest.mark.parametrize("flat", [False, True])
def test_savee_both_layouts(tmp_path, flat):
    for speaker in ("DC", "JE", "JK", "KL"):
        for code in ("a01", "d02", "f03", "h04", "n05", "sa06", "su07"):
            path = tmp_path / (f"{speaker}_{code}.wav" if flat else f"AudioData/{speaker}/{code}.wav")
            write_tone(path)
    write_tone(tmp_path / ("XX_a01.wav" if flat else "AudioData/DC/info.wav"))
    manifest = load_corpus("savee", tmp_path)
    validate_manifest(manifest)
    assert len(manifest) == 28 and len(manifest.attrs["skipped"]) == 1
    assert manifest["speaker"].nunique() == 4 and set(manifest["gender"]) == {"male"}
    assert manifest.groupby("emotion").size().to_dict() == {
        e: 4 for e in ("angry", "disgust", "fearful", "happy", "neutral", "sad", "surprised")}


def test_manifest_corpus_from_csv_and_tsv(tmp_path):
    for i in range(4):
        write_tone(tmp_path / "audio" / f"u{i}.wav")
    table = pd.DataFrame({"path": [f"audio/u{i}.wav" for i in range(4)] + ["audio/missing.wav", "audio/u0.wav"],
                          "speaker": ["a", "a", "b", "b", "b", "c"],
                          "emotion": ["Anger", "sad", "fear", "neutral", "sad", "bored"],
                          "gender": ["F", "F", "male", "male", "male", ""]})
    table.iloc[:5].to_csv(tmp_path / "corpus.csv", index=False)
    table.to_csv(tmp_path / "corpus.tsv", index=False, sep="\t")
    register_manifest_corpus("mine", tmp_path / "corpus.csv")
    manifest = load_corpus("mine", tmp_path)
    assert manifest["emotion"].tolist() == ["angry", "sad", "fearful", "neutral"]
    assert manifest["speaker"].tolist() == ["mine:a", "mine:a", "mine:b", "mine:b"]
    assert manifest["gender"].tolist() == ["female", "female", "male", "male"]
    assert [s["reason"] for s in manifest.attrs["skipped"]] == ["listed in the manifest but not found"]
    register_manifest_corpus("mine_tsv", tmp_path / "corpus.tsv")
    skipped = load_corpus("mine_tsv", tmp_path).attrs["skipped"]
    assert [s["reason"] for s in skipped][-1] == "listed in the manifest more than once (the first row is used)"
    # a spreadsheet's export: semicolons, a byte-order mark, capitalised headers
    table.iloc[:5].rename(columns=str.capitalize).to_csv(tmp_path / "excel.csv", index=False, sep=";",
                                                          encoding="utf-8-sig")
    register_manifest_corpus("mine_excel", tmp_path / "excel.csv")
    excel = load_corpus("mine_excel", tmp_path)
    assert excel[["path", "emotion", "gender"]].equals(manifest[["path", "emotion", "gender"]])


def test_manifest_errors_name_the_problem(tmp_path):
    (tmp_path / "bad.csv").write_text("file,who,label\nx.wav,a,angry\n")
    with pytest.raises(ManifestError, match=r"lacks columns \['path', 'speaker', 'emotion'\].*header has \['file', "):
        register_manifest_corpus("bad", tmp_path / "bad.csv")
    with pytest.raises(ManifestError, match="does not exist"):
        register_manifest_corpus("bad", tmp_path / "nope.csv")
    (tmp_path / "ok.csv").write_text("path,speaker,emotion\nx.wav,a,angry\n")
    with pytest.raises(ManifestError, match="built-in"):
        register_manifest_corpus("ravdess", tmp_path / "ok.csv")


def test_label_harmonisation():
    manifest = pd.DataFrame({"emotion": ["calm", "neutral", "surprised", "sad", "angry"], "x": range(5)})
    merged = harmonise_labels(manifest, merge={"calm": "neutral"}, drop=["surprised"])
    assert merged["emotion"].tolist() == ["neutral", "neutral", "sad", "angry"]
    assert harmonise_labels(manifest, keep=["sad", "angry"])["x"].tolist() == [3, 4]
    with pytest.raises(ManifestError, match="'12'"):  # a number names no class
        harmonise_labels(manifest, drop=["12"])
    assert canonical_emotion("Pleasant Surprise") == "surprised" and canonical_emotion("bored") == "boredom"
