"""The harness end to end on the synthetic corpus: run, records, resume, report, CLI."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from bench import execute, runner
from bench.cli import main
from bench.leaderboard import write_leaderboards
from bench.records import RecordStore
from bench.runner import BenchError, RunOptions, run_suite
from bench.suite import SuiteError, load_suite, parse_suite
from ser_models.models import model_spec

TINY = {
    "name": "tiny", "description": "test suite", "corpora": ["synthetic"], "models": ["logreg", "svm"],
    "protocol_options": {"n_folds": 2},  # 8 speakers would get 8 leave-one-out folds: 2 keep the tests quick
    "corpus_options": {"synthetic": {"seed": 1, "n_speakers": 8, "utterances_per_emotion": 3,
                                     "emotions": ["angry", "neutral", "sad"]}},
}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("tiny")
    options = RunOptions(suite=parse_suite(TINY, default_name="tiny"), results_dir=base / "results",
                         cache_dir=base / "cache", jobs=1, progress=False)
    return options, run_suite(options)


def test_run_writes_records_predictions_and_leaderboard(tiny_run):
    options, summary = tiny_run
    records = RecordStore(summary.folder).load()
    assert summary.trained == len(records) == 2 * 2  # 2 models x 2 folds (8 speakers)
    for record in records:
        assert not set(record["train_speakers"]) & set(record["test_speakers"])
        assert record["n_test"] == sum(map(sum, record["confusion"]))
        predictions = RecordStore(summary.folder).load_predictions(record["config_hash"])
        assert len(predictions) == record["n_test"]
        assert set(predictions["speaker"]) == set(record["test_speakers"])
        recomputed = (predictions["true"] == predictions["predicted"]).mean()
        assert recomputed == pytest.approx(record["accuracy"])
        assert predictions.filter(like="p_").sum(axis=1).round(5).eq(1).all()
    text = summary.leaderboard.read_text()
    assert "## synthetic — speaker_folds" in text and "logreg" in text and "svm" in text


@pytest.mark.parametrize("damage", ["not a predictions table", "truncated"])
def test_damaged_stored_predictions_leave_their_intervals_out_with_a_warning(tiny_run, tmp_path, caplog, damage):
    """A predictions file that reads as a table of the wrong shape is refused, never bootstrapped: the CI and
    p-value cells it feeds are '—', a warning names the record, and nothing else in the leaderboard moves."""
    import gzip

    options, summary = tiny_run
    folder = tmp_path / "tiny"
    shutil.copytree(summary.folder, folder, ignore=shutil.ignore_patterns("figures", "models"))
    store = RecordStore(folder)
    key = store.load()[0]["config_hash"]
    path = store.prediction_path(key)
    lines = gzip.decompress(path.read_bytes()).decode().splitlines(keepends=True)
    text = "garbage\n" if damage == "not a predictions table" else "".join(lines[:5])
    path.write_bytes(gzip.compress(text.encode()))
    write_leaderboards(store, options.suite)
    damaged = (folder / "leaderboard.md").read_text()
    assert f"the stored predictions of record {key} cannot be read" in caplog.text
    table = [line for line in damaged.splitlines() if line.startswith("| 1 ") or line.startswith("| 2 ")][:2]
    assert table and all("| —  " in line for line in table)
    original = summary.leaderboard.read_text()
    uar = [line.split("|")[3] for line in original.splitlines() if line.startswith(("| 1 ", "| 2 "))][:2]
    assert uar == [line.split("|")[3] for line in table]


def test_rerun_skips_recorded_folds(tiny_run):
    options, first = tiny_run
    again = run_suite(options)
    assert again.trained == 0 and again.reused == first.trained


def test_interrupted_run_redoes_only_the_missing_fold(tiny_run, tmp_path):
    options, first = tiny_run
    results = tmp_path / "results"
    shutil.copytree(options.results_dir, results)
    records_path = results / "tiny" / "records.jsonl"
    lines = records_path.read_text().splitlines()
    records_path.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][: len(lines[-1]) // 2])  # cut mid-line
    options_copy = RunOptions(**{**options.__dict__, "results_dir": results})
    resumed = run_suite(options_copy)
    assert resumed.trained == 1
    before = {json.loads(line)["config_hash"]: json.loads(line)["uar"] for line in lines}
    after = {r["config_hash"]: r["uar"] for r in RecordStore(results / "tiny").load()}
    assert after == before  # same folds, same numbers: classical models are deterministic


def test_a_second_run_on_a_results_folder_in_use_is_refused_and_changes_nothing(tiny_run, tmp_path):
    """Two runs at once on one folder would train the same folds twice and could drop each other's records."""
    from filelock import FileLock

    options, _ = tiny_run
    results = tmp_path / "results"
    shutil.copytree(options.results_dir, results)
    before = (results / "tiny" / "records.jsonl").read_bytes()
    with FileLock(str(results / "tiny" / ".run.lock")):  # another process's run, as far as this one can tell
        with pytest.raises(BenchError, match="another `bench run` is writing .*its own --results-dir"):
            run_suite(RunOptions(**{**options.__dict__, "results_dir": results, "fresh": True}))
    assert (results / "tiny" / "records.jsonl").read_bytes() == before  # --fresh cleared nothing
    assert run_suite(RunOptions(**{**options.__dict__, "results_dir": results})).trained == 0  # released


def test_a_fit_recorded_twice_counts_once(tiny_run, tmp_path, caplog):
    """Duplicated record lines (two runs at once, before the lock) must not double the test utterances."""
    options, summary = tiny_run
    folder = tmp_path / "tiny"
    shutil.copytree(summary.folder, folder, ignore=shutil.ignore_patterns("figures", "models"))
    records = folder / "records.jsonl"
    records.write_text(records.read_text() * 2)
    store = RecordStore(folder)
    assert [r["config_hash"] for r in store.load()] == [r["config_hash"] for r in RecordStore(summary.folder).load()]
    assert "its fit is recorded above" in caplog.text
    write_leaderboards(store, options.suite)
    assert (folder / "leaderboard.md").read_text() == summary.leaderboard.read_text()


def test_report_rebuilds_the_same_leaderboard_from_records(tiny_run):
    options, summary = tiny_run
    store = RecordStore(summary.folder)
    before = summary.leaderboard.read_text()
    summary.leaderboard.unlink()
    write_leaderboards(store, options.suite)
    markdown = summary.leaderboard.read_text()
    assert markdown == before
    assert "per-speaker results of `" in markdown and "macro AUC" in markdown


def test_smoke_suite_is_learnable_but_not_trivial(tmp_path, monkeypatch):
    """The embedded corpus: baselines well above chance (0.2) under speaker folds, nobody perfect."""
    settings = []

    class Recording(execute.Parallel):  # the jobs' inputs are sent, not memory-mapped (a file per job filled RAM)
        def __init__(self, *args, **kwargs):
            settings.append(kwargs.get("max_nbytes", "default"))
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(execute, "Parallel", Recording)
    options = RunOptions(suite=load_suite("smoke"), models=("logreg", "random_forest"), results_dir=tmp_path / "r",
                         cache_dir=tmp_path / "c", jobs=2, progress=False)
    summary = run_suite(options)
    frame = pd.DataFrame(RecordStore(summary.folder).load())
    assert frame["fold"].nunique() == 3
    uar = frame.groupby("model")["uar"].mean()
    assert (uar > 0.45).all(), uar
    assert (uar < 0.95).all(), uar
    assert settings and all(value is None for value in settings)


def test_found_corpora_need_a_data_root(tmp_path):
    with pytest.raises(BenchError, match="--data-root"):
        run_suite(RunOptions(suite=load_suite("quick"), results_dir=tmp_path, cache_dir=tmp_path))


def test_empty_data_root_is_an_error_not_an_empty_leaderboard(tmp_path):
    with pytest.raises(BenchError, match="no corpus found"):
        run_suite(RunOptions(suite=load_suite("quick"), data_root=tmp_path, results_dir=tmp_path, cache_dir=tmp_path))


def test_a_data_root_that_is_a_corpus_folder_itself_says_which_folder_to_give(tmp_path, capsys):
    inside = tmp_path / "RAVDESS"
    (inside / "Actor_01").mkdir(parents=True)
    common = ["--results-dir", str(tmp_path / "r"), "--cache-dir", str(tmp_path / "c")]
    for extra in ([], ["--corpus", "ravdess"]):
        assert main(["run", "--suite", "quick", "--data-root", str(inside), *extra, *common]) == 2
        assert f"looks like a corpus' own folder: the data root is the folder that holds it, --data-root {tmp_path}" \
            in capsys.readouterr().err


def test_suite_errors_are_clear(tmp_path):
    with pytest.raises(SuiteError, match="smoke"):
        load_suite("nonesuch")
    with pytest.raises(SuiteError, match="unknown keys"):
        parse_suite({**TINY, "modles": []}, default_name="x")
    bad = tmp_path / "bad.toml"
    bad.write_text("corpora = [")
    with pytest.raises(SuiteError, match="not valid TOML"):
        load_suite(str(bad))
    for seeds in ([-1], [2**32], ["0"], [], 0, [True]):
        with pytest.raises(SuiteError, match="seeds = \\[0, 1, 2\\] \\(a list of integer seeds from 0 to 4294967295"):
            parse_suite({**TINY, "seeds": seeds}, default_name="x")
    with pytest.raises(SuiteError, match=r"\[model_seeds\] deep = \[0, 1, 2\]"):
        parse_suite({**TINY, "model_seeds": {"deep": [0, -2]}}, default_name="x")
    for budget in (0, -1.0, float("nan"), float("inf"), "1"):
        with pytest.raises(SuiteError, match="budget must be a number above 0"):
            parse_suite({**TINY, "budget": budget}, default_name="x")
    assert parse_suite({**TINY, "seeds": [0, 1, 1], "budget": 0.5}, default_name="x").seeds == (0, 1)


@pytest.mark.parametrize(("argv", "message"), [
    (["run", "--seed", "-1"], "a seed is an integer from 0 to 4294967295, not '-1'"),
    (["run", "--seed", "1.5"], "a seed is an integer from 0 to 4294967295, not '1.5'"),
    (["run", "--budget", "0"], "the budget factor is a number above 0"),
    (["run", "--budget", "nan"], "the budget factor is a number above 0"),
])
def test_bad_seed_or_budget_on_the_command_line_is_a_usage_error(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--model", "perceptron"], "unknown model 'perceptron'; choose from"),
        (["run", "--suite", "quick", "--data-root", "/no/such/dir"], "does not exist"),
        (["run", "--corpus", "ravdess"], "needs a data root"),
        (["report", "--suite", "quick", "--results-dir", "/no/such/dir"], "no records"),
    ],
)
def test_cli_user_errors_are_one_line(argv, message, capsys, monkeypatch):
    monkeypatch.delenv("SER_DATA", raising=False)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_cli_lists(capsys):
    assert main(["list", "models"]) == 0
    assert "xgboost" in capsys.readouterr().out
    assert main(["list", "corpora"]) == 0
    assert "Actor_NN" in capsys.readouterr().out
    assert main(["list", "suites"]) == 0
    assert "full" in capsys.readouterr().out


def test_deep_models_run_through_the_harness_with_honest_validation(tmp_path):
    suite = parse_suite({**TINY, "models": ["mlp", "cnn"], "budget": 0.1,
                         "protocol_models": {"speaker_folds": ["all"]}}, default_name="tinydeep")
    options = RunOptions(suite=suite, results_dir=tmp_path / "r", cache_dir=tmp_path / "c", progress=False)
    summary = run_suite(options)
    records = RecordStore(summary.folder).load()
    assert {r["model"] for r in records} == {"mlp", "cnn"}
    for record in records:
        assert record["params"]["epochs"] == max(1, round(model_spec(record["model"]).defaults["epochs"] * 0.1))
        assert record["validation_speakers"]
        assert set(record["validation_speakers"]) <= set(record["train_speakers"])
        assert not set(record["validation_speakers"]) & set(record["test_speakers"])
        assert len(record["curves"]["loss"]) >= 1
        assert all(v == round(v, 4) for v in record["curves"]["loss"])  # 4 decimals keep records.jsonl small
    figures = sorted(p.name for p in (summary.folder / "figures").glob("curves-*.png"))
    assert figures == ["curves-synthetic-speaker_folds-cnn.png", "curves-synthetic-speaker_folds-mlp.png"]
    assert "(figures/curves-synthetic-speaker_folds-cnn.png)" in summary.leaderboard.read_text()


def test_protocol_models_restrict_a_protocol(tmp_path):
    suite = parse_suite({**TINY, "models": ["logreg"], "protocol_models": {"speaker_folds": ["svm"]}},
                        default_name="restricted")
    summary = run_suite(RunOptions(suite=suite, results_dir=tmp_path, cache_dir=tmp_path / "c", progress=False))
    assert summary.trained == 0


@pytest.fixture
def training_sets(monkeypatch) -> list[tuple]:
    """Instrument `job_data`: every job's (model, train rows, test rows, source rows of its training set, size)."""
    seen = []
    original = execute.job_data

    def spy(inputs, model, train, test, speaker_independent=True, members=None, seed=0):
        _, y_train, _, source = inputs.training_set(model, train, members, seed)
        seen.append((model, train, test, source, len(y_train)))
        return original(inputs, model, train, test, speaker_independent, members, seed)

    monkeypatch.setattr(execute, "job_data", spy)
    return seen


def test_augmented_copies_come_from_training_rows_only(tmp_path, training_sets):
    """Instrument every job's training set: its source rows never include a test-fold utterance."""
    seen = training_sets
    suite = parse_suite({**TINY, "models": ["logreg"], "augment": [{"kind": "noise", "amount": 15},
                                                                   {"kind": "lowpass", "amount": 2000}]},
                        default_name="augmented")
    summary = run_suite(RunOptions(suite=suite, results_dir=tmp_path, cache_dir=tmp_path / "c", progress=False))
    assert summary.trained == 2 and len(seen) == 2
    for _, train, test, source, n_rows in seen:
        assert n_rows == 3 * len(train)  # original + two augmented copies of each training utterance
        assert set(source) == set(train)
        assert not set(source) & set(test)
    records = RecordStore(summary.folder).load()
    assert [a["kind"] for a in records[0]["augment"]] == ["noise", "lowpass"]
    assert len(list((tmp_path / "c").glob("features-*-aug-*"))) == 2


def test_model_augment_gives_copies_to_its_models_only(tmp_path, training_sets):
    """[model_augment]: logreg's rows train on their copies, svm's on the originals alone with the hash of a run
    without copies; no job's training set holds a test-fold utterance or a copy of one."""
    seen = training_sets
    suite = parse_suite({**TINY, "model_augment": {"logreg": [{"kind": "noise", "amount": 15}]}}, default_name="own")
    summary = run_suite(RunOptions(suite=suite, results_dir=tmp_path, cache_dir=tmp_path / "c", progress=False))
    assert summary.trained == 4 and len(seen) == 4
    for model, train, test, source, n_rows in seen:
        assert n_rows == (2 if model == "logreg" else 1) * len(train)
        assert set(source) == set(train) and not set(source) & set(test)
    records = {(r["model"], r["fold"]): r for r in RecordStore(summary.folder).load()}
    assert [a["kind"] for a in records[("logreg", 0)]["augment"]] == ["noise"]
    assert records[("svm", 0)]["augment"] == []
    plain = run_suite(RunOptions(suite=parse_suite(TINY, default_name="own"), results_dir=tmp_path / "plain",
                                 cache_dir=tmp_path / "c", progress=False))
    plain_hashes = {(r["model"], r["fold"]): r["config_hash"] for r in RecordStore(plain.folder).load()}
    for (model, fold), record in records.items():
        assert (record["config_hash"] == plain_hashes[(model, fold)]) == (model == "svm")


def test_copies_are_drawn_with_the_model_seed(tmp_path, monkeypatch):
    """Each seed's rows train on copies drawn with that seed (seed 0 as before seeds drew them): the spread over
    seeds includes the copies'."""
    from ser_models.model_inputs import ModelInputs

    drawn, original = {}, ModelInputs.training_set

    def spy(self, model, train, members=None, seed=0):
        out = original(self, model, train, members, seed)
        drawn[(seed, tuple(train))] = out[0]
        return out

    monkeypatch.setattr(ModelInputs, "training_set", spy)
    suite = parse_suite({**TINY, "models": ["logreg"], "model_seeds": {"logreg": [0, 1]},
                         "model_augment": {"logreg": [{"kind": "noise", "amount": 15}]}}, default_name="seeded")
    summary = run_suite(RunOptions(suite=suite, results_dir=tmp_path, cache_dir=tmp_path / "c", progress=False,
                                   save_models=False))
    records = RecordStore(summary.folder).load()
    assert sorted((r["seed"], r["augment"][0]["seed"]) for r in records) == [(0, 0), (0, 0), (1, 1), (1, 1)]
    for train in {t for _, t in drawn}:
        first, second, n = drawn[(0, train)], drawn[(1, train)], len(train)
        np.testing.assert_array_equal(first[:n], second[:n])  # the same originals
        assert first.shape == second.shape and not np.allclose(first[n:], second[n:])  # copies drawn apart


@pytest.mark.parametrize(("entry", "message"), [
    ({"nonexistent": [{"kind": "noise", "amount": 15}]}, "nonexistent"),
    ({"soft_vote": [{"kind": "noise", "amount": 15}]}, "is an ensemble"),
    ({"logreg": []}, "model_augment"),
    ({"logreg": [{"kind": "reverb", "amount": 1}]}, "unknown augmentation"),
])
def test_bad_model_augment_is_a_suite_error(entry, message):
    with pytest.raises(SuiteError, match=message):
        parse_suite({**TINY, "model_augment": entry}, default_name="x")


def test_a_member_with_copies_of_its_own_does_not_share_its_row_fit_with_an_ensemble():
    suite = parse_suite({**TINY, "models": ["logreg", "svm", "stacking"],
                         "model_params": {"stacking": {"members": ["logreg", "svm"], "refit_members": "registered"}},
                         "model_augment": {"svm": [{"kind": "noise", "amount": 15}]}}, default_name="x")
    assert runner.shared_fits(suite, ["logreg", "svm", "stacking"]) == {"speaker_folds": {"logreg"}}


def test_a_failing_fit_is_a_clear_error_and_loses_no_finished_fit(tmp_path, capsys, monkeypatch):
    """A fit that raises (here svm, after logreg's folds) ends the run with one line naming the fit and the
    error, exit 2, no traceback; the finished fits are recorded and the same command reuses them."""
    original = execute.fit_and_predict

    def failing(model, *args, **kwargs):
        if model == "svm":
            raise np.linalg.LinAlgError("SVD did not converge")
        return original(model, *args, **kwargs)

    monkeypatch.setattr(execute, "fit_and_predict", failing)
    suite = tmp_path / "tiny.toml"
    suite.write_text('corpora = ["synthetic"]\nmodels = ["logreg", "svm"]\n[protocol_options]\nn_folds = 2\n'
                     '[corpus_options.synthetic]\nn_speakers = 8\nutterances_per_emotion = 3\n'
                     'emotions = ["angry", "neutral", "sad"]\n')
    command = ["run", "--suite", str(suite), "--results-dir", str(tmp_path / "r"), "--cache-dir", str(tmp_path / "c"),
               "--jobs", "1"]
    assert main(command) == 2
    err = capsys.readouterr().err
    assert "svm speaker_folds fold 0 seed 0 failed: LinAlgError: SVD did not converge" in err
    assert "Every finished fit is recorded (2 in this run)" in err and "Traceback" not in err
    records = RecordStore(tmp_path / "r" / "tiny").load()
    assert sorted(r["model"] for r in records) == ["logreg", "logreg"]
    monkeypatch.setattr(execute, "fit_and_predict", original)
    assert main(command) == 0
    assert sorted(r["model"] for r in RecordStore(tmp_path / "r" / "tiny").load()) == ["logreg"] * 2 + ["svm"] * 2


def test_an_unreachable_dask_scheduler_is_a_clear_error_before_fresh_clears_anything(tiny_run, capsys):
    pytest.importorskip("dask.distributed")
    options, _ = tiny_run
    records = (options.results_dir / "tiny" / "records.jsonl").read_text()
    tiny = options.results_dir.parent / "tiny.toml"
    tiny.write_text('name = "tiny"\ncorpora = ["synthetic"]\nmodels = ["logreg", "svm"]\n')
    assert main(["run", "--suite", str(tiny), "--results-dir", str(options.results_dir), "--fresh",
                 "--scheduler", "no-port-here"]) == 2
    err = capsys.readouterr().err
    assert "cannot reach the Dask scheduler at 'no-port-here'" in err and "Traceback" not in err
    assert (options.results_dir / "tiny" / "records.jsonl").read_text() == records


def test_a_results_or_cache_folder_that_cannot_be_written_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    suite = tmp_path / "tiny.toml"
    suite.write_text('corpora = ["synthetic"]\nmodels = ["logreg"]\n')
    for folders, message in ((["--results-dir", str(blocker / "r"), "--cache-dir", str(tmp_path / "c")],
                              f"cannot write the results folder {blocker / 'r' / 'tiny'} (Not a directory)"),
                             (["--results-dir", str(tmp_path / "r"), "--cache-dir", str(blocker / "c")],
                              f"cannot write the feature cache {blocker / 'c'} (Not a directory)")):
        assert main(["run", "--suite", str(suite), *folders]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err


def test_a_damaged_tuning_storage_is_a_clear_error(tmp_path, capsys):
    suite = tmp_path / "tuned.toml"
    suite.write_text('corpora = ["synthetic"]\nmodels = ["logreg"]\n[tuning.logreg]\ntrials = 2\n')
    (tmp_path / "r" / "tuned").mkdir(parents=True)
    (tmp_path / "r" / "tuned" / "optuna.sqlite3").write_text("not a database")
    command = ["run", "--suite", str(suite), "--results-dir", str(tmp_path / "r"), "--cache-dir", str(tmp_path / "c")]
    assert main(command) == 2
    err = capsys.readouterr().err
    assert "cannot open the tuning studies' storage sqlite:///" in err and "file is not a database" in err
    assert "move it aside" in err and "Traceback" not in err
    assert main([*command, "--storage", "postgresql://user:secret@127.0.0.1:1/db"]) == 2
    err = capsys.readouterr().err
    assert "postgresql://user:***@127.0.0.1:1/db" in err and "secret" not in err


def test_bad_augmentation_is_a_suite_error():
    with pytest.raises(SuiteError, match="unknown augmentation 'reverb'"):
        parse_suite({**TINY, "augment": [{"kind": "reverb", "amount": 1}]}, default_name="x")


def test_gpu_without_a_gpu_is_a_clear_error(capsys, monkeypatch):
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")  # restored after the test
    monkeypatch.setenv("XLA_PYTHON_CLIENT_PREALLOCATE", "true")
    assert main(["run", "--device", "gpu", "--model", "logreg"]) == 2
    assert "JAX sees no GPU" in capsys.readouterr().err


def test_job_data_refuses_a_leaking_split(synthetic_manifest, tmp_path):
    from ser_models.feature_cache import extract_features
    from ser_models.model_inputs import ModelInputs, job_data
    from ser_models.protocols import SpeakerLeakError

    features = extract_features(synthetic_manifest.head(12), cache_dir=tmp_path)
    inputs = ModelInputs(features)
    rows = np.arange(len(features.manifest))
    with pytest.raises(SpeakerLeakError):
        job_data(inputs, "logreg", rows[:8], rows[6:])


def test_job_data_refuses_a_test_file_whose_copy_is_trained_on(synthetic_manifest, tmp_path):
    """Speaker-disjoint on paper, but one recording on both sides (a byte-identical file under another speaker)."""
    from ser_models.feature_cache import extract_features
    from ser_models.model_inputs import ModelInputs, job_data
    from ser_models.protocols import SpeakerLeakError

    features = extract_features(synthetic_manifest.head(12), cache_dir=tmp_path)
    speakers = features.manifest["speaker"].to_numpy()
    train = np.flatnonzero(speakers != speakers[-1])
    test = np.flatnonzero(speakers == speakers[-1])
    job_data(ModelInputs(features), "logreg", train, test)  # distinct files: fine
    features.keys[test[0]] = features.keys[train[0]]
    with pytest.raises(SpeakerLeakError, match="byte-identical copy"):
        job_data(ModelInputs(features), "logreg", train, test)


def test_changed_configuration_supersedes_old_rows(tiny_run, tmp_path):
    options, first = tiny_run
    results = tmp_path / "results"
    shutil.copytree(options.results_dir, results)
    changed = parse_suite({**TINY, "model_params": {"logreg": {"C": 0.5}}}, default_name="tiny")
    again = run_suite(RunOptions(**{**options.__dict__, "suite": changed, "results_dir": results}))
    assert again.trained == 2 and again.reused == 2  # logreg redone, svm reused
    records = RecordStore(results / "tiny").load()
    assert len(records) == 4
    assert {r["params"]["C"] for r in records if r["model"] == "logreg"} == {0.5}
    superseded = (results / "tiny" / "records.superseded.jsonl").read_text().splitlines()
    assert len(superseded) == 2


def test_model_code_version_invalidates_recorded_rows(tiny_run, tmp_path, monkeypatch):
    import dataclasses

    from ser_models.models import registry

    options, first = tiny_run
    results = tmp_path / "results"
    shutil.copytree(options.results_dir, results)
    monkeypatch.setitem(registry.MODELS._entries, "svm", dataclasses.replace(registry.model_spec("svm"), version=2))
    again = run_suite(RunOptions(**{**options.__dict__, "results_dir": results}))
    assert again.trained == 2 and again.reused == 2  # svm redone under its new code version, logreg reused
    assert {r["model_version"] for r in RecordStore(results / "tiny").load() if r["model"] == "svm"} == {2}
