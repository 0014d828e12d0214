"""Nested tuning and ensembles never see an outer-test speaker; studies resume; Dask gives the same records."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pytest

from bench.records import RecordStore
from bench.runner import RunOptions, run_suite
from bench.suite import SuiteError, parse_suite
from ser_models import tuning
from ser_models.ensembles import EnsembleClassifier, MultiInput
from ser_models.feature_cache import extract_features

FOLDS = {"n_folds": 2}  # 8 speakers: 2 folds keep the tests quick (the default would leave each out)
CORPUS = {"synthetic": {"seed": 1, "n_speakers": 8, "utterances_per_emotion": 3,
                        "emotions": ["angry", "neutral", "sad"]}}


@pytest.fixture(scope="module")
def features(synthetic_manifest, tmp_path_factory):
    return extract_features(synthetic_manifest, cache_dir=tmp_path_factory.mktemp("fc"))


def test_no_outer_test_speaker_reaches_tuning_inner_folds_or_stacking(features, tmp_path, monkeypatch):
    """Instrument every fit inside tuning and the ensembles: none ever holds an outer-test speaker."""
    from bench import execute

    seen = []  # (outer test speakers, speakers of every fit/score inside the job)
    original_fit = EnsembleClassifier.fit
    original_tune = tuning.tune

    found = []  # the parameters each search handed to the fit

    def spy_tune(model, x, y, groups, **kwargs):
        seen.append(("tune", set(groups)))
        found.append(original_tune(model, x, y, groups, **kwargs))
        return found[-1]

    def spy_fit(self, X, y, groups):
        seen.append(("ensemble", set(groups)))
        result = original_fit(self, X, y, groups)
        seen.append(("inner", {s for fold in self.inner_speakers_ for s in fold}))
        return result

    monkeypatch.setattr(execute, "tune", spy_tune)
    monkeypatch.setattr(EnsembleClassifier, "fit", spy_fit)
    suite = parse_suite({"corpora": ["synthetic"], "models": ["stacking", "logreg"], "corpus_options": CORPUS,
                         "protocol_options": FOLDS,
                         "model_params": {"stacking": {"members": ["logreg", "svm"]}},
                         "tuning": {"logreg": {"trials": 3}}}, default_name="nested")
    summary = run_suite(RunOptions(suite=suite, results_dir=tmp_path, cache_dir=tmp_path / "c", progress=False,
                                   jobs=1, save_models=False))  # (the saved model is refit on everyone, on purpose)
    records = RecordStore(summary.folder).load()
    nested = [r for r in records if r["model"] == "stacking" or r.get("variant")]
    assert {(r["model"], bool(r.get("variant"))) for r in nested} == {("stacking", False), ("logreg", True)}
    assert len(nested) == 4
    for record in nested:
        test = set(record["test_speakers"])
        assert record["inner_speakers"] and all(not set(s) & test for s in record["inner_speakers"])
        assert all(set(s) <= set(record["train_speakers"]) for s in record["inner_speakers"])
    # every instrumented fit saw training speakers of some fold only, never that fold's test speakers
    folds = [(set(r["train_speakers"]), set(r["test_speakers"])) for r in nested]
    for _, speakers in seen:
        assert any(speakers <= train and not speakers & test for train, test in folds)
    for record in (r for r in nested if r.get("variant")):  # a tuned row shows the parameters it was fitted with
        assert record["params"] == record["tuning"]["params"] in [t.params for t in found]
        assert record["tuning"]["searched_from"] == {"C": 0.01}  # logreg's registered start, which keys the fit
    study_names = optuna.get_all_study_names(f"sqlite:///{summary.folder / 'optuna.sqlite3'}")
    assert len(study_names) == 2  # one study per outer fold


def test_inner_folds_are_speaker_disjoint():
    groups = np.repeat([f"s{i}" for i in range(7)], 6)
    y = np.tile(["a", "b", "c"], 14)
    for train, held_out in tuning.inner_speaker_folds(y, groups, 3, seed=0):
        assert not set(groups[train]) & set(groups[held_out])


def test_interrupted_study_continues(features, tmp_path, monkeypatch):
    from sklearn.linear_model import LogisticRegression

    x, y = features.functionals, features.manifest["emotion"].to_numpy()
    groups = features.manifest["speaker"].to_numpy()
    storage = f"sqlite:///{tmp_path / 'study.sqlite3'}"
    tuning.prepare_storage(storage)
    original_fit, calls = LogisticRegression.fit, {"n": 0}

    def interrupted_fit(self, *args, **kwargs):  # Ctrl-C during the third trial (3 inner folds a trial)
        calls["n"] += 1
        if calls["n"] == 2 * 3 + 1:
            raise KeyboardInterrupt
        return original_fit(self, *args, **kwargs)

    monkeypatch.setattr(LogisticRegression, "fit", interrupted_fit)
    with pytest.raises(KeyboardInterrupt):
        tuning.tune("logreg", x, y, groups, n_trials=5, seed=0, storage=storage, study_name="s")
    monkeypatch.setattr(LogisticRegression, "fit", original_fit)
    study = optuna.load_study(study_name="s", storage=storage)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 2
    first = [(t.number, t.params, t.value) for t in done]
    result = tuning.tune("logreg", x, y, groups, n_trials=5, seed=0, storage=storage, study_name="s")
    study = optuna.load_study(study_name="s", storage=storage)
    complete = [t for t in study.trials if t.state in (optuna.trial.TrialState.COMPLETE,
                                                       optuna.trial.TrialState.PRUNED)]
    assert result.n_trials == 5 and result.new_trials == 3  # only the missing trials ran
    assert [(t.number, t.params, t.value) for t in complete[:2]] == first  # finished trials kept, not redone
    assert [t.number for t in complete[2:]] == [3, 4, 5]  # numbering continues after the interrupted trial 2


def test_ensemble_methods_agree_on_shapes_and_pick_top_k(features, tmp_path):
    x = MultiInput(features.functionals)
    y, groups = features.manifest["emotion"].to_numpy(), features.manifest["speaker"].to_numpy()
    test = np.isin(groups, sorted(set(groups))[:2])
    for method in ("soft", "hard", "weighted", "stacking"):
        model = EnsembleClassifier(method=method, members=("logreg", "svm", "random_forest"), top_k=2,
                                   cache_dir=str(tmp_path)).fit(x[~test], y[~test], groups[~test])
        assert len(model.chosen_) == 2
        ranked = sorted(model.inner_uar_, key=lambda n: -model.inner_uar_[n])
        assert model.chosen_ == ranked[:2]
        probabilities = model.predict_proba(x[test])
        assert probabilities.shape == (test.sum(), 3) and np.allclose(probabilities.sum(axis=1), 1)


def test_bad_tuning_budget_is_a_suite_error():
    with pytest.raises(SuiteError, match="trials"):
        parse_suite({"corpora": ["synthetic"], "models": ["svm"], "tuning": {"svm": {"trails": 3}}}, default_name="x")


@contextlib.contextmanager
def dask_cluster(folder: Path, workers: int = 2):
    """A scheduler and `workers` worker processes on loopback, each started as its own command as a user would
    (`dask scheduler`, then `dask worker` per machine); stopped on exit."""
    distributed = pytest.importorskip("dask.distributed", reason="the dask extra is not installed")
    address_file = folder / "scheduler.json"
    common = ["--no-dashboard", "--host", "127.0.0.1", "--scheduler-file", str(address_file)]
    processes = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--port", "0", *common],
                                  cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        for _ in range(600):  # up to 60 s for the scheduler to write its address
            if address_file.exists() and address_file.stat().st_size:
                break
            time.sleep(0.1)
        processes += [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", "--nthreads", "1",
                                        "--nworkers", "1", *common], cwd=folder, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL) for _ in range(workers)]
        with distributed.Client(scheduler_file=str(address_file), timeout=60) as client:
            client.wait_for_workers(workers, timeout=120)
            yield client.scheduler.address
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            process.wait(timeout=30)


def test_a_dask_cluster_of_separate_processes_reads_the_feature_store_and_gives_the_local_records(tmp_path):
    """The workers read their rows from the feature store under the shared cache folder; the local run keeps every
    array in memory: the same records, a frame model's curves included."""
    suite = parse_suite({"corpora": ["synthetic"], "models": ["logreg", "cnn"], "corpus_options": CORPUS,
                         "protocol_options": FOLDS, "budget": 0.05, "model_params": {"cnn": {"refit_networks": 1}}},
                        default_name="dask")
    options = {"suite": suite, "cache_dir": tmp_path / "c", "progress": False, "save_models": False}
    local = run_suite(RunOptions(**options, results_dir=tmp_path / "local", jobs=1, feature_store=False))
    with dask_cluster(tmp_path) as address:
        remote = run_suite(RunOptions(**options, results_dir=tmp_path / "dask", scheduler=address))
    assert list((tmp_path / "c" / "stores").iterdir())  # the cluster run read a store

    def rows(summary):
        return {r["config_hash"]: (r["uar"], r["confusion"], r["test_speakers"], r["curves"])
                for r in RecordStore(summary.folder).load()}

    assert remote.trained == local.trained == 4 and rows(remote) == rows(local)


def test_members_on_another_feature_set_read_it(features, tmp_path):
    """'logreg@other' trains on the other set's functionals: the same model as logreg fed them directly."""
    y, groups = features.manifest["emotion"].to_numpy(), features.manifest["speaker"].to_numpy()
    other = np.random.default_rng(0).normal(size=(len(y), 7)) + (y == "angry")[:, None]
    x = MultiInput(features.functionals, other_functionals={"other": other})
    test = np.isin(groups, sorted(set(groups))[:2])
    mixed = EnsembleClassifier(method="soft", members=("logreg@other",), cache_dir=str(tmp_path / "a")).fit(
        x[~test], y[~test], groups[~test])
    direct = EnsembleClassifier(method="soft", members=("logreg",), cache_dir=str(tmp_path / "b")).fit(
        MultiInput(other[~test]), y[~test], groups[~test])
    assert np.allclose(mixed.predict_proba(x[test]), direct.predict_proba(MultiInput(other[test])))
    assert mixed.members_["logreg@other"].named_steps["scaler"].n_features_in_ == 7
    with pytest.raises(ValueError, match="lacks"):
        EnsembleClassifier(members=("logreg@compare",), cache_dir=str(tmp_path)).fit(x, y, groups)


def test_other_feature_sets_are_aligned_by_path_and_complete(features):
    from ser_models.model_inputs import ModelInputError, ModelInputs

    reordered = features.subset(np.arange(len(features.manifest))[::-1])
    inputs = ModelInputs(features, other_sets={"other": reordered})
    rows = np.arange(5)
    x, _, _, _ = inputs.training_set("soft_vote", rows)
    assert np.array_equal(x.other_functionals["other"], features.functionals[rows])
    partial = ModelInputs(features, other_sets={"other": features.subset(np.arange(3))})
    with pytest.raises(ModelInputError, match="no other features"):
        partial.training_set("soft_vote", rows)
