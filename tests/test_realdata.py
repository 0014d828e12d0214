"""Integration on the real corpora (RAVDESS, URDU) when SER_DATA points at them."""

from __future__ import annotations

import numpy as np
import pandas as pd
from test_copies import COPIES, _copy

from bench.records import RecordStore
from bench.runner import RunOptions, default_cache_dir, run_suite
from bench.suite import parse_suite
from ser_models.copies import near_copy_pairs
from ser_models.corpora import load_corpus
from ser_models.feature_cache import extract_features
from ser_models.metrics import uar_from_confusion


def test_logreg_on_real_corpora_is_honest_and_well_above_chance(real_data, tmp_path):
    suite = parse_suite({"corpora": ["ravdess", "urdu"], "models": ["logreg"],
                         "protocols": ["speaker_folds", "emobox"]}, default_name="realdata")
    options = RunOptions(suite=suite, data_root=real_data, results_dir=tmp_path, cache_dir=default_cache_dir(),
                         jobs=2, progress=False)
    summary = run_suite(options)
    frame = pd.DataFrame(RecordStore(summary.folder).load())
    assert set(frame.groupby(["corpus", "protocol"]).size().index) == {
        ("ravdess", "speaker_folds"), ("ravdess", "emobox"), ("urdu", "speaker_folds")}
    ravdess = frame[frame["corpus"] == "ravdess"]
    assert (ravdess.groupby("protocol")["fold"].nunique() == 6).all()
    assert (ravdess["n_test"] == 240).all()  # 4 actors x 60 files
    assert frame.loc[frame["corpus"] == "urdu", "n_test"].sum() == 400
    # no file is taken for a copy of another speaker's (ravdess' one byte-identical pair is one actor's)
    assert not (summary.folder / "skipped.csv").exists()
    for _, record in frame.iterrows():
        assert not set(record["train_speakers"]) & set(record["test_speakers"])
    pooled = {corpus: uar_from_confusion(sum(map(pd.DataFrame, rows["confusion"])).to_numpy())
              for corpus, rows in frame[frame["protocol"] == "speaker_folds"].groupby("corpus")}
    assert pooled["ravdess"] > 0.5  # 8 classes: chance 0.125
    assert pooled["urdu"] > 0.45  # 4 classes: chance 0.25


def test_graph_index_finds_the_exact_searchs_copies_on_real_corpora(real_data, tmp_path):
    """RAVDESS and URDU, each alone and pooled with re-saved copies of 8 of their files: the graph index (what corpora
    of INDEX_ROWS rows and more use) finds the same near-copy pairs as the exact search, the copies among them."""
    sets = [extract_features(load_corpus(name, real_data / name), cache_dir=default_cache_dir(), n_jobs=2,
                             progress=False) for name in ("ravdess", "urdu")]
    for features in sets:
        assert near_copy_pairs(features.functionals, indexed=True) == near_copy_pairs(features.functionals)
    corpus = pd.concat([features.manifest for features in sets], ignore_index=True)
    functionals = np.vstack([features.functionals for features in sets])
    originals = np.random.default_rng(0).choice(len(corpus), 8, replace=False)
    hows = list(COPIES) * 2
    copies = corpus.iloc[originals].assign(path=[str(_copy(corpus["path"][o], tmp_path / f"{n}.wav", how))
                                                for n, (o, how) in enumerate(zip(originals, hows, strict=True))])
    found = extract_features(copies, cache_dir=tmp_path / "cache", progress=False)
    pooled = np.vstack([functionals, found.functionals])
    exact = near_copy_pairs(pooled)
    assert near_copy_pairs(pooled, indexed=True) == exact
    assert {(int(o), len(functionals) + n) for n, o in enumerate(originals)} <= {(i, j) for i, j, _ in exact}
