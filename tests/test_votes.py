"""Votes over stored predictions: the mean of the members' stored probabilities, redone when a member changes."""

from __future__ import annotations

import numpy as np
import pytest

from bench.records import RecordStore
from bench.runner import RunOptions, run_suite
from bench.suite import parse_suite

SUITE = {
    "corpora": ["synthetic"], "models": ["logreg", "random_forest", "all_vote"],
    "protocol_options": {"n_folds": 2},
    "corpus_options": {"synthetic": {"seed": 1, "n_speakers": 8, "utterances_per_emotion": 3,
                                     "emotions": ["angry", "neutral", "sad"]}},
    "model_params": {"all_vote": {"members": ["logreg", "random_forest"]}, "random_forest": {"n_estimators": 20}},
}


def _run(base, suite=SUITE, **options):
    summary = run_suite(RunOptions(suite=parse_suite(suite, default_name="votes"), results_dir=base,
                                   cache_dir=base / "c", progress=False, **options))
    return summary, RecordStore(summary.folder)


@pytest.fixture(scope="module")
def vote_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("votes")
    return base, *_run(base)


def test_vote_is_the_mean_of_the_members_stored_probabilities(vote_run):
    _, summary, store = vote_run
    records = store.load()
    votes = [r for r in records if r["model"] == "all_vote"]
    assert len(votes) == 2
    labels = votes[0]["labels"]
    columns = [f"p_{label}" for label in labels]
    for vote in votes:
        members = [r for r in records if r["model"] in ("logreg", "random_forest") and r["fold"] == vote["fold"]]
        assert sorted(vote["ensemble"]["member_hashes"]) == sorted(r["config_hash"] for r in members)
        expected = np.mean([store.load_predictions(r["config_hash"])[columns].to_numpy() for r in members], axis=0)
        stored = store.load_predictions(vote["config_hash"])
        np.testing.assert_allclose(stored[columns].to_numpy(), expected / expected.sum(axis=1, keepdims=True),
                                   atol=2e-6)
        assert list(stored["predicted"]) == [labels[i] for i in expected.argmax(axis=1)]
        assert vote["fit_seconds"] == pytest.approx(sum(r["fit_seconds"] for r in members), abs=1e-3)
        assert vote["test_speakers"] == members[0]["test_speakers"]


def test_rerun_reuses_votes_and_a_changed_member_redoes_them(vote_run):
    base, _, store = vote_run
    again, _ = _run(base)
    assert again.trained == 0
    changed = {**SUITE, "model_params": {**SUITE["model_params"], "random_forest": {"n_estimators": 21}}}
    summary, store = _run(base, changed)
    assert summary.trained == 4  # random_forest's 2 folds and the vote's 2 folds; logreg reused
    votes = [r for r in store.load() if r["model"] == "all_vote"]
    forest = {r["config_hash"] for r in store.load() if r["model"] == "random_forest"}
    assert len(votes) == 2 and all(set(v["ensemble"]["member_hashes"]) & forest for v in votes)


def test_a_member_retrained_without_its_vote_retires_the_vote(tmp_path, caplog):
    """--model naming a member but not the vote: the old vote, a mean of predictions no longer in the table, leaves
    the records with a warning, and a run with the vote and its members makes it again."""
    _run(tmp_path)
    changed = {**SUITE, "model_params": {**SUITE["model_params"], "random_forest": {"n_estimators": 21}}}
    summary, store = _run(tmp_path, changed, models=("random_forest",))
    assert summary.trained == 2 and not [r for r in store.load() if r["model"] == "all_vote"]
    assert "2 vote records (synthetic all_vote) averaged members retrained since" in caplog.text
    assert "| all_vote" not in summary.leaderboard.read_text()  # the table rebuilt without it
    summary, store = _run(tmp_path, changed)
    assert summary.trained == 2 and len([r for r in store.load() if r["model"] == "all_vote"]) == 2


def test_a_vote_whose_member_does_not_run_is_left_out(tmp_path):
    suite = {**SUITE, "models": ["logreg", "all_vote"]}
    summary, store = _run(tmp_path, suite)
    assert {r["model"] for r in store.load()} == {"logreg"}
    assert summary.trained == 2


def test_suite_timing_counts_no_training_time_for_votes():
    from bench.benchmarks.suite_timing import fit_seconds_by_kind

    def record(model, family, seconds, finished="2026-01-02T00:00:00"):
        return {"model": model, "family": family, "protocol": "speaker_folds", "fit_seconds": seconds,
                "predict_seconds": 1.0, "finished_at": finished}

    records = [record("cnn", "deep", 100.0), record("logreg", "classical", 2.0),
               record("deep_vote", "ensemble", 101.0),  # its members' time, not its own
               record("cnn", "deep", 50.0, finished="2025-12-31T00:00:00")]  # an earlier run's
    fits, counts = fit_seconds_by_kind(records, since="2026-01-01T00:00:00")
    assert fits == {"speaker_folds: deep": 101.0, "speaker_folds: classical": 3.0,
                    "speaker_folds: votes over stored predictions": 0.0}
    assert counts["speaker_folds: deep"] == 1 and counts["speaker_folds: votes over stored predictions"] == 1
