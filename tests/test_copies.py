"""Copies of one recording that are not byte-identical (re-encoded, resampled, rescaled, padded) are found, kept off
the other side of every fold, and distinct recordings are never taken for copies."""

from __future__ import annotations

import re
from pathlib import Path

import librosa
import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from bench.cli import main
from bench.records import RecordStore
from ser_models.copies import NEAR_COPY_DISTANCE, copies_in, first_copies, near_copy_pairs
from ser_models.feature_cache import extract_features

COPIES = {  # how a corpus bundle or a user's conversion may have re-saved a recording
    "resampled": lambda y, r: (librosa.resample(y, orig_sr=r, target_sr=22_050), 22_050, "PCM_16"),
    "rescaled": lambda y, r: (0.5 * y, r, "PCM_16"),
    "24-bit": lambda y, r: (y, r, "PCM_24"),
    "padded": lambda y, r: (np.concatenate([np.zeros(r // 2, y.dtype), y]), r, "PCM_16"),
}


def _copy(source: str, target: Path, how: str) -> Path:
    audio, rate = sf.read(source, dtype="float32")
    audio, rate, subtype = COPIES[how](audio, rate)
    target.parent.mkdir(parents=True, exist_ok=True)
    sf.write(target, audio, rate, subtype=subtype)
    return target


@pytest.fixture(scope="module")
def synthetic_features(synthetic_manifest, tmp_path_factory):
    return extract_features(synthetic_manifest, cache_dir=tmp_path_factory.mktemp("cache"))


@pytest.fixture(params=["exact", "indexed"])
def search(request, monkeypatch):
    """Each check twice: nearest rows by every distance, and from the graph index large corpora use."""
    if request.param == "indexed":
        monkeypatch.setattr("ser_models.copies.INDEX_ROWS", 0)
    return request.param


def test_distinct_recordings_are_no_copies(synthetic_features, search):
    """24 speakers' worth of different utterances (8 speakers x 3 emotions x 3): none is taken for another's copy."""
    assert near_copy_pairs(synthetic_features.functionals) == []
    keys = synthetic_features.keys
    assert (first_copies(keys, synthetic_features.functionals) == np.arange(len(keys))).all()


def test_re_saved_copies_are_found_and_point_at_their_original(synthetic_features, tmp_path, search):
    manifest = synthetic_features.manifest
    originals = [0, 7, 30, 50]
    sources = manifest["path"].iloc[originals]
    copies = manifest.iloc[originals].assign(
        path=[str(_copy(p, tmp_path / f"{how}.wav", how)) for p, how in zip(sources, COPIES, strict=True)])
    found = extract_features(copies, cache_dir=tmp_path / "cache")
    assert len(set(found.keys) & set(synthetic_features.keys)) == 0  # none is byte-identical
    where = copies_in(found.keys, found.functionals, synthetic_features.keys, synthetic_features.functionals)
    assert where.tolist() == originals
    both = np.concatenate([synthetic_features.functionals, found.functionals])
    first = first_copies([*synthetic_features.keys, *found.keys], both)
    assert first[len(manifest):].tolist() == originals
    pairs = near_copy_pairs(synthetic_features.functionals, found.functionals)
    assert [(i, j) for i, j, _ in pairs] == [(o, n) for n, o in enumerate(originals)]
    assert all(distance <= NEAR_COPY_DISTANCE for *_, distance in pairs)
    # the other way round too, and the same file byte for byte
    assert copies_in(synthetic_features.keys[:1], synthetic_features.functionals[:1] + 1e3,
                     synthetic_features.keys, synthetic_features.functionals).tolist() == [0]


def test_re_saved_copies_never_sit_on_both_sides_of_a_fold(synthetic_root, tmp_path, caplog):
    """A corpus (6 synthetic speakers) and a bundle that holds two of its speakers again, resampled and rescaled,
    under ids of its own, beside two speakers of its own; inside the bundle one file is also a padded copy of another
    speaker's file. No table may train on a recording that it tests."""
    corpus = pd.DataFrame([{"path": str(p), "speaker": p.name.split("_")[0], "emotion": p.name.split("_")[1]}
                           for p in sorted(synthetic_root.glob("*.wav"))])
    mine = corpus[corpus["speaker"].isin(["m01", "f01", "m02", "f02", "m03", "f03"])]
    mine.to_csv(tmp_path / "mine.csv", index=False)
    bundle = corpus[corpus["speaker"].isin(["m01", "f01", "m04", "f04"])].assign(
        speaker=lambda t: "b_" + t["speaker"])
    twins = bundle["speaker"].isin(["b_m01", "b_f01"])
    bundle.loc[twins, "path"] = [str(_copy(p, tmp_path / "bundle" / f"{i}.wav", ("resampled", "rescaled")[i % 2]))
                                 for i, p in enumerate(bundle.loc[twins, "path"])]
    inner = bundle.index[bundle["speaker"] == "b_f04"][0]
    source = bundle.loc[bundle["speaker"] == "b_m04", "path"].iloc[0]
    bundle.loc[inner, "path"] = str(_copy(source, tmp_path / "bundle" / "inner.wav", "padded"))
    bundle.to_csv(tmp_path / "other.csv", index=False)
    suite = tmp_path / "copies.toml"
    suite.write_text('corpora = []\nmodels = ["logreg"]\nprotocols = ["speaker_folds", "combined", "cross_corpus"]\n'
                     '[combined]\nn_folds = 2\n[protocol_options]\nn_folds = 2\n'
                     '[[variants]]\nfeature_set = "egemaps"\nmodels = ["logreg"]\nprotocols = ["speaker_folds"]\n')
    assert main(["run", "--suite", str(suite), "--manifest", f"mine={tmp_path / 'mine.csv'}",
                 f"other={tmp_path / 'other.csv'}", "--jobs", "1", "--results-dir", str(tmp_path / "r"),
                 "--cache-dir", str(tmp_path / "c")]) == 0
    records = RecordStore(tmp_path / "r" / "copies").load()
    skipped = pd.read_csv(tmp_path / "r" / "copies" / "skipped.csv")
    assert skipped["path"].tolist() == [str(tmp_path / "bundle" / "inner.wav")]
    assert skipped["reason"].str.contains(re.escape(f"the same audio as {source} (other:b_m04), nearly")).all()
    own = {(r["corpus"], r.get("variant", {}).get("feature_set")): 0 for r in records}
    for r in records:  # the eGeMAPS rows leave out the file the suite's own features found to be a copy
        if r["protocol"] == "speaker_folds":
            own[(r["corpus"], r.get("variant", {}).get("feature_set"))] += r["n_test"]
    assert {k: v for k, v in own.items() if k[0] in ("mine", "other")} == {
        ("mine", None): 54, ("mine", "egemaps"): 54, ("other", None): 35, ("other", "egemaps"): 35}
    combined = {s for r in records if r["protocol"] == "combined" for s in r["train_speakers"] + r["test_speakers"]}
    assert combined == {*(f"mine:{s}" for s in mine["speaker"].unique()), "other:b_m04", "other:b_f04"}
    cross = {r["corpus"]: r for r in records if r["protocol"] == "cross_corpus"}
    assert cross["other->mine"]["train_speakers"] == ["other:b_f04", "other:b_m04"]
    assert cross["mine->other"]["train_speakers"] == [f"mine:{s}" for s in ("f02", "f03", "m02", "m03")]
    assert "2 speakers of other (18 files) have recordings that another corpus of this table also has" in caplog.text
