"""Integration on the real corpora (RAVDESS, URDU) when SER_DATA points at them."""

from __future__ import annotations

import pandas as pd

from bench.records import RecordStore
from bench.runner import RunOptions, default_cache_dir, run_suite
from bench.suite import parse_suite
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
