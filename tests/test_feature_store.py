"""The memory-mapped feature store: the same numbers as the in-memory table, jobs that carry a path and row numbers
instead of arrays, copies stacked from two stores, and a damaged store rebuilt from the cache."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from ser_models.augment import Augmentation
from ser_models.feature_cache import extract_features
from ser_models.feature_store import RaggedFrames, StoredFrames, StoredRows
from ser_models.model_inputs import ModelInputs, job_data


@pytest.fixture(scope="module")
def tables(synthetic_manifest, tmp_path_factory):
    cache = tmp_path_factory.mktemp("store-cache")
    stored = extract_features(synthetic_manifest, cache_dir=cache, progress=False)
    memory = extract_features(synthetic_manifest, cache_dir=cache, progress=False, store=False)
    return stored, memory, cache


def _folds(features):
    speakers = features.manifest["speaker"].to_numpy()
    test = np.isin(speakers, sorted(set(speakers))[:2])
    return np.flatnonzero(~test), np.flatnonzero(test)


def test_the_store_holds_what_the_in_memory_table_holds(tables, synthetic_manifest):
    stored, memory, cache = tables
    assert stored.store and memory.store is None and isinstance(stored.frames, RaggedFrames)
    assert np.array_equal(np.asarray(stored.functionals), memory.functionals)
    assert len(stored.frames) == len(memory.frames)
    assert all(np.array_equal(a, b) for a, b in zip(stored.frames, memory.frames, strict=True))
    assert stored.keys == memory.keys and stored.manifest.equals(memory.manifest)
    subset = stored.subset(np.array([5, 1, 3]))  # a subset keeps reading the store, at its rows
    assert np.array_equal(subset.frames[0], memory.frames[5]) and list(subset.store_rows) == [5, 1, 3]
    meta = Path(stored.store) / "store.json"
    written = meta.stat().st_mtime_ns
    again = extract_features(synthetic_manifest, cache_dir=cache, progress=False)
    assert again.store == stored.store and meta.stat().st_mtime_ns == written  # opened, not written again


@pytest.mark.parametrize("model", ["logreg", "cnn", "fusion"])
def test_a_job_carries_the_store_and_row_numbers_and_reads_the_same_inputs(tables, model):
    stored, memory, _ = tables
    train, test = _folds(stored)
    lazy = job_data(ModelInputs(stored), model, train, test)
    eager = job_data(ModelInputs(memory), model, train, test)
    assert isinstance(lazy[0], StoredRows if model == "logreg" else StoredFrames)
    assert len(pickle.dumps(lazy[0])) < 16 * len(train) + 2_000  # row numbers, not features
    assert len(pickle.dumps(eager[0])) > 100 * len(pickle.dumps(lazy[0]))
    for lazy_x, eager_x in ((lazy[0], eager[0]), (lazy[3], eager[3])):
        if model == "logreg":
            assert np.array_equal(np.asarray(lazy_x), eager_x)
            continue
        batch = pickle.loads(pickle.dumps(lazy_x)).read()  # as a worker reads it
        assert np.array_equal(batch.values, eager_x.values) and np.array_equal(batch.lengths, eager_x.lengths)
        assert np.array_equal(lazy_x.lengths, eager_x.lengths)
        if model == "fusion":
            assert np.array_equal(batch.utterance, eager_x.utterance)
    assert np.array_equal(lazy[1], eager[1]) and np.array_equal(lazy[2], eager[2])


def test_training_copies_stack_rows_of_two_stores(tables, synthetic_manifest):
    stored, memory, cache = tables
    jitter = Augmentation("pitch_jitter", 2.0)
    copies = [extract_features(synthetic_manifest, cache_dir=cache, progress=False, augmentation=jitter, store=s)
              for s in (True, False)]
    train, test = _folds(stored)
    lazy = job_data(ModelInputs(stored, [copies[0]]), "cnn", train, test)
    eager = job_data(ModelInputs(memory, [copies[1]]), "cnn", train, test)
    assert len(lazy[0].frames.folders) == 2 and len(lazy[0]) == 2 * len(train)
    assert np.array_equal(lazy[0].read().values, eager[0].values)
    assert np.array_equal(lazy[1], eager[1]) and np.array_equal(lazy[2], eager[2])


def test_a_damaged_or_unfinished_store_is_rebuilt_from_the_cache(synthetic_manifest, tmp_path, caplog):
    first = extract_features(synthetic_manifest, cache_dir=tmp_path, progress=False)
    expected = [np.array(f) for f in first.frames]
    frames = Path(first.store) / "frames.f16"
    frames.write_bytes(frames.read_bytes()[:1000])  # truncated
    rebuilt = extract_features(synthetic_manifest, cache_dir=tmp_path, progress=False)
    assert "damaged" in caplog.text
    assert all(np.array_equal(a, b) for a, b in zip(rebuilt.frames, expected, strict=True))
    (Path(first.store) / "store.json").unlink()  # a build that stopped before its last write
    again = extract_features(synthetic_manifest, cache_dir=tmp_path, progress=False)
    assert all(np.array_equal(a, b) for a, b in zip(again.frames, expected, strict=True))


def test_a_file_that_cannot_be_read_is_skipped_in_the_store_as_in_memory(synthetic_manifest, tmp_path):
    manifest = synthetic_manifest.copy()
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF not audio")
    manifest.loc[3, "path"] = str(broken)
    stored = extract_features(manifest, cache_dir=tmp_path / "c", progress=False)
    memory = extract_features(manifest, cache_dir=tmp_path / "c", progress=False, store=False)
    assert [s["path"] for s in stored.skipped] == [s["path"] for s in memory.skipped] == [str(broken)]
    assert stored.manifest.equals(memory.manifest)
    assert np.array_equal(np.asarray(stored.functionals), memory.functionals)


def test_the_frame_scaler_read_in_chunks_agrees_with_one_read(tables, monkeypatch):
    """A corpus too large for one read is standardised chunk by chunk: the same statistics (to float32)."""
    from ser_models.models import network_inputs
    from ser_models.models.deep import DeepClassifier

    stored, _, _ = tables
    frames = ModelInputs(stored).test_set("cnn", np.arange(len(stored.manifest)))
    rows = np.arange(len(frames))
    whole = DeepClassifier()
    whole._fit_scaler(frames, rows)
    monkeypatch.setattr(network_inputs, "SCALER_VALUES", 20_000)  # a few utterances per chunk
    assert len(network_inputs._chunks(rows, frames.lengths * frames.shape[2], 20_000)) > 10
    chunked = DeepClassifier()
    chunked._fit_scaler(frames, rows)
    np.testing.assert_allclose(chunked.mean_, whole.mean_, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(chunked.scale_, whole.scale_, rtol=1e-5)
