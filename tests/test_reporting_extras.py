"""ROC/AUC, gender as a task and as an input, the fusion model and the openSMILE feature sets."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from bench.cli import main
from bench.leaderboard import _dataset_facts, records_frame
from bench.records import RecordStore
from bench.runner import RunOptions, run_suite
from bench.suite import parse_suite
from ser_models import opensmile_features
from ser_models.feature_cache import extract_features
from ser_models.features import FeatureSpec
from ser_models.metrics import roc_auc, roc_auc_from_predictions

SUITE = {
    "corpora": ["synthetic"], "models": ["logreg", "fusion"], "protocol_options": {"n_folds": 2},
    "corpus_options": {"synthetic": {"seed": 1, "n_speakers": 8, "utterances_per_emotion": 3,
                                     "emotions": ["angry", "neutral", "sad"]}},
    "tasks": {"gender": ["logreg"]},
    "variants": [{"gender_input": True, "models": ["logreg", "fusion"]}],
    "model_params": {"fusion": {"epochs": 2, "width": 8}},
}


@pytest.fixture(scope="module")
def extras_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("extras")
    suite = parse_suite(SUITE, default_name="extras")
    summary = run_suite(RunOptions(suite=suite, results_dir=base, cache_dir=base / "c", progress=False))
    return summary, RecordStore(summary.folder)


def test_auc_from_stored_probabilities_equals_scikit_learn(extras_run):
    summary, store = extras_run
    for record in store.load():
        predictions = store.load_predictions(record["config_hash"])
        labels = record["labels"]
        probabilities = predictions[[f"p_{label}" for label in labels]].to_numpy()
        if len(labels) == 2:
            expected = roc_auc_score(predictions["true"] == labels[1], probabilities[:, 1])
        else:
            expected = roc_auc_score(predictions["true"], probabilities, multi_class="ovr", average="macro",
                                     labels=labels)
        assert roc_auc_from_predictions(predictions, labels)["auc_macro"] == pytest.approx(expected)
        assert record["auc_macro"] == pytest.approx(expected, abs=1e-5)  # the record's, from unrounded values
    frame = records_frame(store.load(), store.load_predictions)
    assert frame["auc"].between(0, 1).all()
    assert "macro AUC" in summary.leaderboard.read_text()
    assert list((summary.folder / "figures").glob("roc-synthetic-*.png"))


def test_auc_of_a_class_absent_from_the_fold_is_undefined():
    result = roc_auc(["a", "a", "b"], np.array([[0.9, 0.1, 0], [0.6, 0.4, 0], [0.2, 0.8, 0]]), ["a", "b", "c"])
    assert result["auc_per_class"]["c"] is None and result["auc_macro"] == pytest.approx(1.0)


def test_gender_task_is_speaker_independent_and_has_its_section(extras_run):
    summary, store = extras_run
    gender = [r for r in store.load() if r["target"] == "gender"]
    assert gender and all(r["labels"] == ["female", "male"] for r in gender)
    for record in gender:
        assert not set(record["train_speakers"]) & set(record["test_speakers"])
        predictions = store.load_predictions(record["config_hash"])
        assert set(predictions["true"]) <= {"female", "male"}
    text = summary.leaderboard.read_text()
    assert "# Gender recognition" in text and "## synthetic (gender) — speaker_folds" in text


def test_gender_as_input_gives_a_row_pair(extras_run):
    summary, store = extras_run
    with_gender = [r for r in store.load() if r.get("variant") == {"gender_input": True}]
    assert {r["model"] for r in with_gender} == {"logreg", "fusion"}
    text = summary.leaderboard.read_text()
    assert "logreg +gender" in text and "UAR with gender" in text


def test_gender_target_from_the_command_line(tmp_path, synthetic_root):
    code = main(["run", "--suite", "smoke", "--target", "gender", "--model", "logreg", "--jobs", "1",
                 "--results-dir", str(tmp_path), "--cache-dir", str(tmp_path / "c")])
    assert code == 0
    records = RecordStore(tmp_path / "smoke").load()
    assert records and {r["target"] for r in records} == {"gender"}
    assert all(not set(r["train_speakers"]) & set(r["test_speakers"]) for r in records)


def test_fusion_standardises_with_training_rows_only(synthetic_manifest, tmp_path):
    from ser_models.model_inputs import ModelInputs
    from ser_models.models import get_model

    features = extract_features(synthetic_manifest, cache_dir=tmp_path)
    inputs = ModelInputs(features)
    speakers = features.manifest["speaker"].to_numpy()
    test = np.flatnonzero(np.isin(speakers, sorted(set(speakers))[:2]))
    train = np.setdiff1d(np.arange(len(speakers)), test)
    x, y, groups, _ = inputs.training_set("fusion", train)
    model = get_model("fusion", epochs=1, width=8, validation_speakers=0.0).fit(x, y, groups=groups)
    assert np.allclose(model.utterance_mean_, features.functionals[train].mean(axis=0), atol=1e-3)
    assert not np.allclose(model.utterance_mean_, features.functionals.mean(axis=0), atol=1e-3)
    probabilities = model.predict_proba(inputs.test_set("fusion", test))
    assert probabilities.shape == (len(test), len(model.classes_))
    assert np.allclose(probabilities.sum(axis=1), 1)


def test_missing_opensmile_gives_the_install_message(monkeypatch, synthetic_manifest, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "opensmile", None)  # import opensmile now raises ImportError
    opensmile_features._smile.cache_clear()
    with pytest.raises(opensmile_features.MissingExtraError, match=r"pip install -e '\.\[opensmile\]'"):
        extract_features(synthetic_manifest.iloc[:2], FeatureSpec(feature_set="egemaps"), cache_dir=tmp_path)
    suite = tmp_path / "os.toml"
    suite.write_text('corpora = ["synthetic"]\nmodels = ["logreg"]\n[features]\nfeature_set = "compare"\n')
    assert main(["run", "--suite", str(suite), "--results-dir", str(tmp_path), "--cache-dir", str(tmp_path)]) == 2
    assert "opensmile" in capsys.readouterr().err
    opensmile_features._smile.cache_clear()


def test_opensmile_feature_sets_through_the_cache(synthetic_manifest, tmp_path):
    pytest.importorskip("opensmile", reason="the opensmile extra is not installed")
    for name, size in (("egemaps", 88), ("compare", 6373)):
        spec = FeatureSpec(feature_set=name)
        features = extract_features(synthetic_manifest.iloc[:3], spec, cache_dir=tmp_path)
        assert features.functionals.shape == (3, size) and np.isfinite(features.functionals).all()
        assert features.frames[0].shape[1] == len(spec.frame_names())
        assert spec.key() != FeatureSpec().key()
        assert len(list(tmp_path.glob(f"features-{spec.key()}/*/*.npz"))) == 3


def test_dataset_facts_warn_when_test_folds_lack_classes():
    def group(confusions):
        return pd.DataFrame({"model": "m", "seed": 0, "fold": range(len(confusions)), "labels": [["a", "b", "c"]] * 2,
                             "confusion": confusions, "train_speakers": [["s1", "s2"], ["s3", "s4"]],
                             "test_speakers": [["s3", "s4"], ["s1", "s2"]]})

    full = np.eye(3, dtype=int).tolist()
    assert "Test folds hold" not in _dataset_facts(group([full, full]))  # every fold holds every class
    partial = [[1, 0, 0], [0, 0, 0], [0, 0, 0]]  # one test fold holds only class a
    assert "Test folds hold 1 to 3 of the 3 classes (mean 2.0)" in _dataset_facts(group([partial, full]))
