"""Per-model seeds: same folds for every seed, one record per seed, seed mean and spread in the report."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench.leaderboard import corpus_section, records_frame, speaker_table
from bench.ranking import model_table
from bench.records import RecordStore
from bench.runner import RunOptions, run_suite
from bench.suite import SuiteError, parse_suite, seeds_for

SUITE = {
    "corpora": ["synthetic"], "models": ["logreg", "random_forest", "soft_vote"],
    "protocol_options": {"n_folds": 2},
    "corpus_options": {"synthetic": {"seed": 1, "n_speakers": 8, "utterances_per_emotion": 3,
                                     "emotions": ["angry", "neutral", "sad"]}},
    "model_seeds": {"random_forest": [0, 1, 2]},
    "model_params": {"soft_vote": {"members": ["logreg", "svm", "random_forest"], "top_k": 2},
                     "random_forest": {"n_estimators": 30}},
}


@pytest.fixture(scope="module")
def seeds_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("seeds")
    suite = parse_suite(SUITE, default_name="seeds")
    summary = run_suite(RunOptions(suite=suite, results_dir=base, cache_dir=base / "c", progress=False))
    return suite, summary, RecordStore(summary.folder).load()


def test_model_seeds_run_each_seed_on_the_same_folds(seeds_run):
    suite, _, records = seeds_run
    assert seeds_for(suite, "random_forest") == (0, 1, 2) and seeds_for(suite, "logreg") == (0,)
    forest = [r for r in records if r["model"] == "random_forest"]
    assert sorted((r["seed"], r["fold"]) for r in forest) == [(s, f) for s in (0, 1, 2) for f in (0, 1)]
    assert {r["seed"] for r in records if r["model"] == "logreg"} == {0}
    for fold in (0, 1):
        tests = {tuple(r["test_speakers"]) for r in records if r["fold"] == fold}
        assert len(tests) == 1  # every model and seed scored on the same speakers
    assert len({r["config_hash"] for r in forest}) == 6  # one record per (fold, seed)


def test_leaderboard_shows_seed_mean_and_spread(seeds_run):
    _, _, records = seeds_run
    frame = records_frame(records)
    group = frame[frame["protocol"] == "speaker_folds"]
    table = model_table(group)
    forest = group[group["model"] == "random_forest"]
    fold_means = forest.groupby("seed")["uar"].mean()
    assert table.loc["random_forest", "seeds"] == 3 and table.loc["logreg", "seeds"] == 1
    assert table.loc["random_forest", "uar_mean"] == pytest.approx(fold_means.mean())
    assert table.loc["random_forest", "seed_std"] == pytest.approx(fold_means.std())
    assert table.loc["random_forest", "uar_std"] == pytest.approx(forest.groupby("seed")["uar"].std().mean())
    text = corpus_section("synthetic", "speaker_folds", group)
    assert f"3 (± {fold_means.std():.3f})" in text


def test_seeded_row_interval_is_that_of_its_seed_mean(seeds_run):
    """The CI and p-value of a row run with several seeds are those of its mean over seeds, so the
    interval brackets the row's pooled UAR rather than the first seed's."""
    _, summary, records = seeds_run
    store = RecordStore(summary.folder)
    group = records_frame(records)
    group = group[group["protocol"] == "speaker_folds"]
    stats = speaker_table(group, ["logreg", "random_forest"], store.load_predictions)
    table = model_table(group)
    assert stats["random_forest"]["uar"] == pytest.approx(table.loc["random_forest", "uar_pooled"])
    assert stats["random_forest"]["ci_low"] <= stats["random_forest"]["uar"] <= stats["random_forest"]["ci_high"]
    first_seed = group[(group["model"] == "random_forest") & (group["seed"] == 0)]
    first = speaker_table(first_seed, ["random_forest"], store.load_predictions)["random_forest"]["uar"]
    assert first != pytest.approx(stats["random_forest"]["uar"])  # the seeds differ, so the mean is not seed 0


def test_seed_spread_by_hand():
    group = pd.DataFrame({"entry": ["m"] * 4, "seed": [0, 0, 1, 1], "uar": [0.5, 0.7, 0.6, 0.8],
                          "accuracy": 0.0, "macro_f1": 0.0, "weighted_f1": 0.0, "auc": np.nan, "fit_seconds": 1.0,
                          "confusion": [np.eye(2)] * 4})
    row = model_table(group).loc["m"]
    assert row["uar_mean"] == pytest.approx(0.65)  # seed means 0.6 and 0.7
    assert row["seed_std"] == pytest.approx(np.std([0.6, 0.7], ddof=1))
    assert row["uar_std"] == pytest.approx(np.std([0.5, 0.7], ddof=1))


def test_ensemble_members_are_reported_per_fold(seeds_run):
    _, _, records = seeds_run
    vote = [r for r in records if r["model"] == "soft_vote"]
    assert all(len(r["ensemble"]["members"]) == 2 and len(r["ensemble"]["inner_uar"]) == 3 for r in vote)
    frame = records_frame(records)
    text = corpus_section("synthetic", "speaker_folds", frame[frame["protocol"] == "speaker_folds"])
    assert "chosen in each outer training fold by inner-fold UAR" in text and "soft_vote: " in text


@pytest.mark.parametrize("bad", [{"mlp": 3}, {"mlp": []}, {"nonsense_model": [0, 1]}])
def test_bad_model_seeds_are_suite_errors(bad):
    with pytest.raises(SuiteError):
        parse_suite({"corpora": ["synthetic"], "models": ["mlp"], "model_seeds": bad}, default_name="x")


def test_gpu_suite_runs_five_seeds_of_every_deep_model_and_one_of_the_rest():
    from bench.suite import load_suite, suite_names

    assert "gpu" in suite_names()
    suite = load_suite("gpu")
    assert seeds_for(suite, "cnn2d") == (0, 1, 2, 3, 4) and seeds_for(suite, "logreg") == (0,)
    assert seeds_for(suite, "deep_vote") == seeds_for(suite, "cnn2d")  # a vote per seed of its members
    assert suite.budget > 1
    # the same recipe as `full`, so a gpu row differs from its full row by budget and seeds alone
    assert suite.model_augment == load_suite("full").model_augment != {}
