"""A corpus' own emotions end to end, EmoDB, and what a manifest corpus must never lose."""

from __future__ import annotations

import io
import shutil
from contextlib import redirect_stdout
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from conftest import write_tone

from bench.cli import main
from bench.plan import _warn_untrained_test_classes
from bench.records import RecordStore
from ser_models.corpora import (
    canonical_emotion,
    harmonise_labels,
    load_corpus,
    register_manifest_corpus,
    validate_manifest,
)
from ser_models.corpora.emodb import EMOTION_CODES, SPEAKER_GENDERS
from ser_models.corpora.manifest import make_manifest
from ser_models.hygiene import has_gender
from ser_models.protocols import Fold, lone_speaker_classes, untrained_test_classes


def test_known_spellings_merge_and_other_words_become_classes():
    assert [canonical_emotion(x) for x in ("Anger", "ps", "Pleasant Surprise", "fear", "hap")] == \
        ["angry", "surprised", "surprised", "fearful", "happy"]
    assert [canonical_emotion(x) for x in ("Boredom", "bored", " Frustrated ", "contempt")] == \
        ["boredom", "boredom", "frustrated", "contempt"]
    assert [canonical_emotion(x) for x in ("", "  ", "7", "3.0", None)] == [None] * 5
    # IEMOCAP's "xxx" (annotators agreed on no emotion) and the like are no class, not a class "xxx"
    assert [canonical_emotion(x) for x in ("xxx", "XXX", "Unknown", "no agreement")] == [None] * 4


def test_label_options_take_any_class_name():
    manifest = make_manifest([{"path": f"/x/{i}.wav", "speaker": "a", "gender": "male", "emotion": e,
                               "label_raw": e} for i, e in enumerate(["angry", "boredom", "neutral"])], "c")
    assert harmonise_labels(manifest, drop=["Boredom"])["emotion"].tolist() == ["angry", "neutral"]
    assert harmonise_labels(manifest, merge={"bored": "neutral"})["emotion"].tolist() == ["angry", "neutral", "neutral"]


def test_speaker_ids_are_prefixed_once():
    rows = [{"path": "/x/1.wav", "speaker": "mine:07", "gender": "male", "emotion": "sad", "label_raw": "sad"},
            {"path": "/x/2.wav", "speaker": "08", "gender": "male", "emotion": "sad", "label_raw": "sad"}]
    assert make_manifest(rows, "mine")["speaker"].tolist() == ["mine:07", "mine:08"]


def _manifest_corpus(folder: Path, labels=("angry", "Boredom", "neutral"), speakers: int = 4,
                     lone: str | None = None) -> Path:
    """Every speaker voices every label; `lone` is a class that speaker 0 alone voices (3 files)."""
    rows = []
    for s in range(speakers):
        for e, label in enumerate(labels):
            for k in range(3):
                path = write_tone(folder / f"s{s}" / f"{e}_{k}.wav", freq=140.0 + 60 * e + 7 * s + 3 * k)
                rows.append({"path": str(path.relative_to(folder)), "speaker": f"mine:{s:02d}", "emotion": label,
                             "gender": "female" if s % 2 else "male"})
    for k in range(3 if lone else 0):
        path = write_tone(folder / "s0" / f"lone_{k}.wav", freq=400.0 + 11 * k)
        rows.append({"path": str(path.relative_to(folder)), "speaker": "mine:00", "emotion": lone, "gender": "male"})
    for name, label in (("unlabelled", ""), ("numbered", "7"), ("disagreed", "xxx")):
        write_tone(folder / "extra" / f"{name}.wav")
        rows.append({"path": f"extra/{name}.wav", "speaker": "mine:09", "emotion": label, "gender": "male"})
    pd.DataFrame(rows).to_csv(folder / "mine.csv", index=False)
    return folder / "mine.csv"


@pytest.fixture(scope="module")
def boredom_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("open")
    csv = _manifest_corpus(base / "mine", lone="contempt")
    suite = base / "open.toml"
    suite.write_text('corpora = []\nmodels = ["logreg"]\n[labels]\ndrop = ["XXX"]  # not needed, but no error\n')
    argv = ["run", "--suite", str(suite), "--manifest", f"mine={csv}", "--jobs", "1",
            "--results-dir", str(base / "results"), "--cache-dir", str(base / "cache")]
    out = io.StringIO()
    with redirect_stdout(out):
        code = main(argv)
    return base, code, out.getvalue()


def test_a_class_outside_the_eight_is_kept_end_to_end(boredom_run, capsys):
    base, code, stdout = boredom_run
    assert code == 0
    records = RecordStore(base / "results" / "open").load()
    assert len(records) == 4  # leave one speaker out over 4 speakers
    assert all(r["labels"] == ["angry", "boredom", "neutral"] for r in records)
    assert sum(r["n_test"] for r in records) == 36
    leaderboard = (base / "results" / "open" / "leaderboard.md").read_text()
    assert "Classes: angry, boredom, neutral" in leaderboard and "boredom 12" in leaderboard
    assert "leave one speaker out" in leaderboard
    capsys.readouterr()
    wav = base / "mine" / "s0" / "1_0.wav"
    assert main(["predict", str(wav), "--suite", str(base / "open.toml"), "--results-dir",
                 str(base / "results")]) == 0
    header = next(line for line in capsys.readouterr().out.splitlines() if "boredom" in line)
    assert "angry" in header and "neutral" in header


def test_the_console_reports_skips_by_reason(boredom_run):
    _, _, stdout = boredom_run
    assert "skipped 6 files, by reason" in stdout
    assert "no emotion label given" in stdout and "is a number, not a class name" in stdout
    assert "1  emotion label … says no emotion was agreed on …, so it is no class" in stdout
    assert "3  class … is voiced by one speaker only …" in stdout


def test_a_class_one_speaker_voices_is_left_out_and_listed(boredom_run):
    base, _, _ = boredom_run
    skipped = pd.read_csv(base / "results" / "open" / "skipped.csv")
    lone = skipped[skipped["reason"].str.startswith("class 'contempt' is voiced by one speaker only (mine:00)")]
    assert sorted(Path(p).name for p in lone["path"]) == ["lone_0.wav", "lone_1.wav", "lone_2.wav"]
    assert not any("contempt" in r["labels"] for r in RecordStore(base / "results" / "open").load())


def test_folds_that_test_a_class_their_training_side_lacks_are_named(caplog):
    rows = [{"path": f"/x/{s}_{e}.wav", "speaker": f"c:{s}", "gender": "male", "emotion": e, "label_raw": e}
            for s in range(6) for e in (["angry", "sad"] if s < 2 else ["angry"])]
    manifest = make_manifest(rows, "c")
    assert lone_speaker_classes(manifest) == []
    together, apart = Fold(0, ("c:0", "c:1", "c:2")), Fold(1, ("c:0", "c:3", "c:4"))
    assert untrained_test_classes(together, manifest) == ["sad"]
    assert untrained_test_classes(apart, manifest) == []
    assert lone_speaker_classes(manifest[manifest["speaker"] != "c:1"]) == ["sad"]
    with caplog.at_level("WARNING"):
        _warn_untrained_test_classes("c", "speaker_folds", [together, apart], manifest, "emotion")
    assert "1 of 2 folds test classes that none of their training speakers voices" in caplog.text
    assert "0: sad" in caplog.text


def test_the_gender_task_needs_two_speakers_of_each_gender(caplog):
    def speakers(genders):
        rows = [{"path": f"/x/{s}.wav", "speaker": f"c:{s}", "gender": g, "emotion": "sad", "label_raw": "sad"}
                for s, g in enumerate(genders)]
        return SimpleNamespace(manifest=make_manifest(rows, "c"))

    assert has_gender("c", speakers(["male", "male", "female", "female", "male"]), "gender task")
    assert not has_gender("c", speakers(["male", "male", "female", "male", "male"]), "gender task")
    assert "only one speaker is female" in caplog.text


def test_predictions_store_paths_relative_to_the_corpus_folder(boredom_run):
    base, _, _ = boredom_run
    store = RecordStore(base / "results" / "open")
    for record in store.load():
        predictions = store.load_predictions(record["config_hash"])
        assert not predictions["path"].str.startswith("/").any()
        assert all((base / "mine" / p).is_file() for p in predictions["path"])
        assert predictions["key"].str.len().eq(32).all()  # the content key, for a copy whose folder differs


def test_cross_corpus_uses_only_the_shared_labels(tmp_path):
    csv = _manifest_corpus(tmp_path / "mine", speakers=4)
    suite = tmp_path / "cross.toml"
    suite.write_text('corpora = ["synthetic"]\nmodels = ["logreg"]\nprotocols = ["cross_corpus"]\n'
                     '[corpus_options.synthetic]\nseed = 2\nn_speakers = 4\nutterances_per_emotion = 2\n'
                     'emotions = ["angry", "neutral", "sad"]\n')
    assert main(["run", "--suite", str(suite), "--manifest", f"mine={csv}", "--jobs", "1",
                 "--results-dir", str(tmp_path / "r"), "--cache-dir", str(tmp_path / "c")]) == 0
    records = RecordStore(tmp_path / "r" / "cross").load()
    assert {r["corpus"] for r in records} == {"mine->synthetic", "synthetic->mine"}
    assert all(r["labels"] == ["angry", "neutral"] for r in records)  # no boredom, no sad


def test_a_gender_target_with_no_corpus_to_run_is_an_error_not_an_empty_table(tmp_path, capsys):
    csv = _manifest_corpus(tmp_path / "mine", labels=("angry", "neutral"))
    pd.read_csv(csv).drop(columns="gender").to_csv(csv, index=False)
    assert main(["run", "--suite", "quick", "--manifest", f"mine={csv}", "--corpus", "mine", "--target", "gender",
                 "--jobs", "1", "--results-dir", str(tmp_path / "r"), "--cache-dir", str(tmp_path / "c")]) == 2
    assert "none of mine can be run for --target gender" in capsys.readouterr().err


def test_recordings_two_corpora_share_never_sit_on_both_sides(tmp_path, caplog):
    """A second manifest lists two of the first corpus' speakers again under ids of its own (as a corpus bundle
    that redistributes another would), plus two speakers of its own; inside the first corpus, one file is copied
    under another speaker. Copies are the same people: no fold may put them on both sides."""
    csv = _manifest_corpus(tmp_path / "mine", labels=("angry", "neutral"))
    table = pd.read_csv(csv)
    shutil.copy(tmp_path / "mine" / "s0" / "0_0.wav", tmp_path / "mine" / "s3" / "copy.wav")
    copy = {"path": "s3/copy.wav", "speaker": "mine:03", "emotion": "angry", "gender": "female"}
    pd.concat([table, pd.DataFrame([copy])]).to_csv(csv, index=False)
    twin = table[table["speaker"].isin(["mine:00", "mine:01"])].assign(
        path=lambda t: [str(tmp_path / "mine" / p) for p in t["path"]],
        speaker=lambda t: t["speaker"].str.replace("mine:", "twin:"))
    own = _manifest_corpus(tmp_path / "own", labels=("angry", "neutral"), speakers=2)
    own_rows = pd.read_csv(own).dropna(subset=["emotion"]).assign(
        path=lambda t: [str(tmp_path / "own" / p) for p in t["path"]],
        speaker=lambda t: t["speaker"].str.replace("mine:0", "twin:1"))
    for i, path in enumerate(own_rows["path"]):  # other recordings than mine's
        write_tone(Path(path), freq=500.0 + 9 * i)
    pd.concat([twin, own_rows]).to_csv(tmp_path / "twin.csv", index=False)
    suite = tmp_path / "twins.toml"
    suite.write_text('corpora = []\nmodels = ["logreg"]\nprotocols = ["speaker_folds", "combined", "cross_corpus"]\n'
                     '[combined]\nn_folds = 2\n')
    assert main(["run", "--suite", str(suite), "--manifest", f"mine={csv}", f"twin={tmp_path / 'twin.csv'}",
                 "--jobs", "1", "--results-dir", str(tmp_path / "r"), "--cache-dir", str(tmp_path / "c")]) == 0
    records = RecordStore(tmp_path / "r" / "twins").load()
    skipped = pd.read_csv(tmp_path / "r" / "twins" / "skipped.csv")
    assert skipped["reason"].str.contains("the same audio as .*0_0.wav \\(mine:00\\), byte for byte").sum() == 1
    combined = [r for r in records if r["protocol"] == "combined"]
    speakers = {s for r in combined for s in r["train_speakers"] + r["test_speakers"]}
    assert speakers == {"mine:00", "mine:01", "mine:02", "mine:03", "twin:10", "twin:11"}
    cross = {r["corpus"]: r for r in records if r["protocol"] == "cross_corpus"}
    assert cross["mine->twin"]["train_speakers"] == ["mine:02", "mine:03"]
    assert cross["twin->mine"]["train_speakers"] == ["twin:10", "twin:11"]
    assert "2 speakers of twin (12 files) have recordings that another corpus of this table also has" in caplog.text


def test_a_declared_manifest_is_run_even_when_corpora_does_not_name_it(tmp_path, caplog):
    csv = _manifest_corpus(tmp_path / "mine", labels=("angry", "neutral"), speakers=4)
    suite = tmp_path / "decl.toml"
    suite.write_text(f'corpora = ["synthetic"]\nmodels = ["logreg"]\n[manifests]\nmine = "{csv}"\n'
                     '[protocol_options]\nn_folds = 2\n'
                     '[corpus_options.synthetic]\nseed = 2\nn_speakers = 4\nutterances_per_emotion = 2\n'
                     'emotions = ["angry", "neutral", "sad"]\n')
    common = ["--jobs", "1", "--results-dir", str(tmp_path / "r"), "--cache-dir", str(tmp_path / "c")]
    assert main(["run", "--suite", str(suite), *common]) == 0
    assert {r["corpus"] for r in RecordStore(tmp_path / "r" / "decl").load()} == {"synthetic", "mine"}
    assert main(["run", "--suite", str(suite), "--corpus", "synthetic", *common]) == 0
    assert "manifest corpora ['mine'] are not among --corpus" in caplog.text


def _emodb_tree(root: Path) -> Path:
    for i, speaker in enumerate(SPEAKER_GENDERS):  # tones 1 Hz apart would be near copies of one recording
        for e, letter in enumerate(EMOTION_CODES):
            for text in ("a01", "b02"):
                write_tone(root / "emodb" / "wav" / f"{speaker}{text}{letter}a.wav", seconds=0.5,
                           freq=120.0 + 90 * e + 9 * i)
    (root / "emodb" / "wav" / "notes.wav").write_bytes(b"")  # an unlabelled file is skipped, not fatal
    return root


def test_emodb_layout_speakers_and_genders(tmp_path):
    manifest = load_corpus("emodb", _emodb_tree(tmp_path) / "emodb")
    validate_manifest(manifest)
    assert len(manifest) == 140 and manifest["speaker"].nunique() == 10
    assert manifest.groupby("emotion").size().to_dict() == {e: 20 for e in EMOTION_CODES.values()}
    genders = manifest.groupby("speaker")["gender"].first()
    assert genders["emodb:03"] == "male" and genders["emodb:08"] == "female"
    assert [s["reason"] for s in manifest.attrs["skipped"]] == ["file name is not SSTTTEV (e.g. 03a01Fa)"]


def test_emodb_goes_through_the_quick_suite_with_seven_classes_and_ten_folds(tmp_path, capsys):
    root = _emodb_tree(tmp_path / "data")
    assert main(["run", "--suite", "quick", "--model", "logreg", "--data-root", str(root), "--jobs", "2",
                 "--results-dir", str(tmp_path / "r"), "--cache-dir", str(tmp_path / "c")]) == 0
    records = RecordStore(tmp_path / "r" / "quick").load()
    assert len(records) == 10 and all(len(r["test_speakers"]) == 1 for r in records)
    assert all(len(r["labels"]) == 7 and "boredom" in r["labels"] for r in records)
    leaderboard = (tmp_path / "r" / "quick" / "leaderboard.md").read_text()
    assert "10 speaker-disjoint folds: leave one speaker out" in leaderboard


def test_list_corpora_shows_emodb_with_licence_and_citation(capsys):
    assert main(["list", "corpora"]) == 0
    out = capsys.readouterr().out
    block = out[out.index("emodb"):out.index("ravdess")]
    assert "boredom" in block and "licence:" in block and "Burkhardt" in block and "wav/" in block


def test_speaker_ids_that_differ_only_in_case_or_leading_zeros_are_one_speaker(tmp_path, caplog):
    """Two joined tables, or a spreadsheet that dropped zeros, give one person two ids: merged, never two speakers
    that folds could put on both sides."""
    csv = _manifest_corpus(tmp_path / "mine", labels=("angry", "neutral"))
    table = pd.read_csv(csv, dtype=str)
    table.loc[table.index[table["speaker"] == "mine:01"][:2], "speaker"] = "MINE:1"
    table.to_csv(csv, index=False)
    suite = tmp_path / "ids.toml"
    suite.write_text('corpora = []\nmodels = ["logreg"]\n')
    assert main(["run", "--suite", str(suite), "--manifest", f"mine={csv}", "--jobs", "1",
                 "--results-dir", str(tmp_path / "r"), "--cache-dir", str(tmp_path / "c")]) == 0
    records = RecordStore(tmp_path / "r" / "ids").load()
    assert len(records) == 4 and {s for r in records for s in r["test_speakers"]} == {
        "mine:00", "mine:01", "mine:02", "mine:03"}
    assert "speaker ids that differ only in case or leading zeros are taken for one speaker: MINE:1 = mine:01" \
        in caplog.text


def test_a_manifest_written_on_windows_finds_its_files(tmp_path):
    csv = _manifest_corpus(tmp_path / "mine", labels=("angry", "neutral"))
    table = pd.read_csv(csv, dtype=str)
    table["path"] = table["path"].str.replace("/", "\\\\")  # s0\\0_0.wav
    table.to_csv(csv, index=False)
    register_manifest_corpus("windows", csv)
    manifest = load_corpus("windows", csv.parent)
    assert len(manifest) == 24 and manifest["path"].map(lambda p: Path(p).is_file()).all()
    assert [row["reason"] for row in manifest.attrs["skipped"]] == [
        "no emotion label given", "emotion label '7' is a number, not a class name",
        "emotion label 'xxx' says no emotion was agreed on (as xxx in IEMOCAP), so it is no class"]
