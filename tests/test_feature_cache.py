"""The content-addressed cache: hit, miss, damaged entry, content change."""

from __future__ import annotations

import shutil

import numpy as np
from conftest import write_tone

from ser_models.corpora import load_corpus
from ser_models.feature_cache import FeatureCache, content_hash, extract_features
from ser_models.features import FeatureSpec


def test_miss_then_hit_gives_identical_features(synthetic_manifest, cache_dir, monkeypatch):
    subset = synthetic_manifest.head(6)
    cold = extract_features(subset, cache_dir=cache_dir)
    assert len(list(cache_dir.rglob("*.npz"))) == 6

    def fail(*_, **__):
        raise AssertionError("a warm run must not extract")

    monkeypatch.setattr("ser_models.feature_cache.load_signal", fail)
    warm = extract_features(subset, cache_dir=cache_dir)
    np.testing.assert_array_equal(cold.functionals, warm.functionals)
    assert cold.fingerprint() == warm.fingerprint()


def test_damaged_entry_is_recomputed(synthetic_manifest, cache_dir):
    subset = synthetic_manifest.head(3)
    first = extract_features(subset, cache_dir=cache_dir)
    cache = FeatureCache(cache_dir, FeatureSpec())
    damaged = cache.entry(first.keys[1])
    damaged.write_bytes(damaged.read_bytes()[:100])  # truncated, as by a kill mid-write without atomicity
    again = extract_features(subset, cache_dir=cache_dir, store=False)  # read from the cache entries
    np.testing.assert_array_equal(first.functionals, again.functionals)
    assert cache.load(first.keys[1]) is not None
    damaged.write_bytes(damaged.read_bytes()[:100])
    shutil.rmtree(cache_dir / "stores")  # a store built again reads every entry: the damaged one is redone
    rebuilt = extract_features(subset, cache_dir=cache_dir)
    np.testing.assert_array_equal(first.functionals, np.asarray(rebuilt.functionals))
    assert cache.load(first.keys[1]) is not None


def test_key_follows_content_not_name(tmp_path):
    a = write_tone(tmp_path / "a.wav", freq=200.0)
    b = write_tone(tmp_path / "b.wav", freq=200.0)
    c = write_tone(tmp_path / "c.wav", freq=300.0)
    assert content_hash(a) == content_hash(b) != content_hash(c)


def test_other_spec_other_entries(synthetic_manifest, cache_dir):
    subset = synthetic_manifest.head(2)
    extract_features(subset, cache_dir=cache_dir)
    extract_features(subset, FeatureSpec(n_mfcc=13), cache_dir=cache_dir)
    assert len(list(cache_dir.glob("features-*"))) == 2


def test_unusable_file_is_skipped_not_fatal(tmp_path, cache_dir):
    write_tone(tmp_path / "Actor_01" / "03-01-05-02-01-01-01.wav")
    (tmp_path / "Actor_01" / "03-01-04-02-01-01-01.wav").write_bytes(b"garbage")
    features = extract_features(load_corpus("ravdess", tmp_path), cache_dir=cache_dir)
    assert len(features.manifest) == 1
    assert features.skipped[0]["path"].endswith("03-01-04-02-01-01-01.wav")
    assert "unreadable" in features.skipped[0]["reason"]


def test_written_files_get_the_mode_open_would_give_them(tmp_path):
    """Cache entries, records' predictions and leaderboards are written through mkstemp (mode 0o600); they must
    end with 0o666 less the umask, as `open` gives, so that a shared cache or results folder stays readable."""
    import os

    import pandas as pd

    from bench.records import RecordStore
    from ser_models.feature_cache import _atomic_savez
    from ser_models.files import _umask, atomic_write_bytes

    expected = 0o666 & ~_umask()
    atomic_write_bytes(tmp_path / "board.md", b"x")
    _atomic_savez(tmp_path / "entry.npz", functionals=np.zeros(3))
    store = RecordStore(tmp_path / "suite")
    store.append({"config_hash": "abc", "model": "m"}, pd.DataFrame({"speaker": ["s"], "key": ["k"], "true": ["a"],
                                                                      "predicted": ["a"], "p_a": [1.0]}))
    for path in (tmp_path / "board.md", tmp_path / "entry.npz", store.prediction_path("abc"), store.records_path):
        assert path.read_bytes()
        assert os.stat(path).st_mode & 0o777 == expected, path
    assert not list(tmp_path.rglob("*.tmp"))
