"""The GE2E speaker encoder: Resemblyzer's weights read weights-only, and the numpy network matching the original."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from fixtures.ge2e_signals import reference_signals

from ser_models.feature_cache import extract_features
from ser_models.features import FeatureSpec
from ser_models.ge2e import GE2ESpeakerEncoder, partial_slices, published_weights
from ser_models.torch_weights import LEGACY_MAGIC, CheckpointError, read_legacy_checkpoint

REFERENCE = Path(__file__).parent / "fixtures" / "ge2e_reference.npz"
needs_weights = pytest.mark.skipif(published_weights() is None,
                                   reason="Resemblyzer's weights are not installed: pip install --no-deps "
                                          "resemblyzer==0.1.4")


@needs_weights
def test_numpy_encoder_matches_resemblyzer_on_stored_reference():
    """tests/fixtures/make_ge2e_reference.py computed these with Resemblyzer's own PyTorch VoiceEncoder."""
    reference = np.load(REFERENCE)["embeddings"]
    ours = np.stack(GE2ESpeakerEncoder().extract(reference_signals(), 16_000))
    assert ours.shape == reference.shape == (3, 256)
    np.testing.assert_allclose(ours, reference, atol=1e-5)  # measured: 3e-7
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    assert np.abs(ours[0] - ours[1]).max() > 0.01  # different signals, different embeddings


def test_partials_cover_the_utterance():
    assert [(s.start, s.stop) for s in partial_slices(16_000)] == [(0, 160)]  # shorter than a partial: one
    slices = partial_slices(int(4.2 * 16_000))
    assert slices[0].start == 0 and slices[1].start == 77 and slices[-1].stop * 160 >= 0.75 * 4.2 * 16_000


def _legacy_file(path: Path, payload: bytes) -> Path:
    with open(path, "wb") as stream:
        for header in (LEGACY_MAGIC, 1001, {"little_endian": True}):
            pickle.dump(header, stream)
        stream.write(payload)
    return path


class _Runs:
    def __reduce__(self):
        return (Path.touch, (Path(_Runs.marker),))


def test_a_checkpoint_that_names_code_is_refused_and_runs_nothing(tmp_path):
    _Runs.marker = str(tmp_path / "ran")
    path = _legacy_file(tmp_path / "evil.pt", pickle.dumps({"model_state": _Runs()}) + pickle.dumps([]))
    with pytest.raises(CheckpointError, match="not a weights-only file"):
        read_legacy_checkpoint(path)
    assert not (tmp_path / "ran").exists()


def test_a_checkpoint_with_another_digest_is_refused(tmp_path):
    path = _legacy_file(tmp_path / "w.pt", pickle.dumps({}) + pickle.dumps([]))
    with pytest.raises(CheckpointError, match="SHA-256"):
        read_legacy_checkpoint(path, sha256="0" * 64)
    assert read_legacy_checkpoint(path) == {}
    (tmp_path / "cut.pt").write_bytes(path.read_bytes()[:-3])
    with pytest.raises(CheckpointError):
        read_legacy_checkpoint(tmp_path / "cut.pt")


def test_missing_weights_say_what_to_install(tmp_path):
    from ser_models.opensmile_features import MissingExtraError

    spec = FeatureSpec(feature_set="ge2e", options={"weights": str(tmp_path / "none.pt")})
    with pytest.raises(MissingExtraError, match="pip install --no-deps resemblyzer==0.1.4"):
        spec.check_available()


@needs_weights
def test_ge2e_features_through_the_cache(synthetic_manifest, tmp_path):
    subset = synthetic_manifest.head(6)
    spec = FeatureSpec(feature_set="ge2e")
    first = extract_features(subset, spec, cache_dir=tmp_path, n_jobs=2)
    again = extract_features(subset, spec, cache_dir=tmp_path)
    assert first.functionals.shape == (6, 256) and first.frames is None and not first.skipped
    np.testing.assert_array_equal(first.functionals, again.functionals)
    assert np.allclose(np.linalg.norm(first.functionals, axis=1), 1.0, atol=1e-4)
    assert spec.key() != FeatureSpec(feature_set="ge2e", options={"rate": 1.0}).key()


@needs_weights
def test_ensembles_take_ge2e_members_chosen_on_inner_folds(tmp_path):
    """"logreg@ge2e" is a candidate like any other: scored on inner speaker folds, kept or not by that score."""
    from bench.records import RecordStore
    from bench.runner import RunOptions, run_suite
    from bench.suite import parse_suite

    suite = parse_suite({"corpora": ["synthetic"], "models": ["soft_vote"], "protocol_options": {"n_folds": 2},
                         "corpus_options": {"synthetic": {"seed": 0, "n_speakers": 6, "utterances_per_emotion": 3,
                                                          "emotions": ["angry", "neutral", "sad"]}},
                         "model_params": {"soft_vote": {"members": ["logreg", "logreg@ge2e", "svm@ge2e"],
                                                        "top_k": 2}}}, default_name="ge2e_members")
    summary = run_suite(RunOptions(suite=suite, results_dir=tmp_path / "r", cache_dir=tmp_path / "c", jobs=1,
                                   progress=False, save_models=False))
    records = RecordStore(summary.folder).load()
    assert len(records) == 2
    for record in records:
        scores = record["ensemble"]["inner_uar"]
        assert set(scores) == {"logreg", "logreg@ge2e", "svm@ge2e"}
        assert record["ensemble"]["members"] == sorted(scores, key=lambda m: -scores[m])[:2]
