"""Mixed ensembles: greedy forward selection over classical and deep candidates, on inner folds only."""

from __future__ import annotations

import numpy as np
import pytest
from deep_toy_data import LABELS, SPEAKERS, toy_frames, toy_vectors

from ser_models import ensembles
from ser_models.ensembles import EnsembleClassifier, MultiInput, greedy_selection
from ser_models.models import model_spec

CLASSES = np.array(["a", "b", "c"])


def _confident(rows: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    p = np.full((len(rows), 3), 0.1)
    p[np.arange(len(rows)), predicted] = 0.8
    return p


def test_greedy_selection_adds_a_complementary_member_not_a_copy():
    y = CLASSES[np.arange(60) % 3]
    truth = np.arange(60) % 3
    # A is right on a and b and calls every c "a"; its copy adds nothing; C is right on c only, weakly elsewhere
    a = _confident(y, np.where(truth == 2, 0, truth))
    c = np.where((truth == 2)[:, None], [0.05, 0.05, 0.9], 1 / 3)
    oof = {"A": a, "A copy": a.copy(), "C": c, "noise": np.random.default_rng(0).dirichlet(np.ones(3), 60)}
    counts = greedy_selection(oof, y, CLASSES, ["A", "A copy", "C", "noise"], steps=10)
    assert list(counts) == ["A", "C"]  # the best single member first, then the one that fixes its errors
    assert sum(counts.values()) < 10  # it stopped when no addition raised the UAR
    assert greedy_selection(oof, y, CLASSES, ["A", "A copy", "C", "noise"], steps=1) == {"A": 1}


def test_soft_vote_after_greedy_selection_weights_members_by_their_additions(tmp_path, monkeypatch):
    monkeypatch.setattr(ensembles, "greedy_selection", lambda *args: {"svm": 2, "logreg": 1})
    x = MultiInput(toy_vectors())
    test = np.isin(SPEAKERS, sorted(set(SPEAKERS))[:3])
    model = EnsembleClassifier(selection="greedy", members=("logreg", "svm"), cache_dir=str(tmp_path)).fit(
        x[~test], LABELS[~test], SPEAKERS[~test])
    assert model.chosen_ == ["svm", "logreg"] and np.allclose(model.weights_, [2 / 3, 1 / 3])
    svm, logreg = (model.members_[n].predict_proba(x.functionals[test]) for n in ("svm", "logreg"))
    assert np.allclose(model.predict_proba(x[test]), (2 * svm + logreg) / 3)
    with pytest.raises(ValueError, match="selection"):
        EnsembleClassifier(selection="best").fit(x, LABELS, SPEAKERS)


@pytest.mark.parametrize(("params", "message"), [
    ({"mixed_vote": {"selection": "best"}}, r"model_params.mixed_vote\] selection must be one of top_k, greedy"),
    ({"svm": {"CC": 1.0}}, r"model_params.svm\] model 'svm' has no parameters \['CC'\]; it takes \['C', 'gamma'\]"),
    ({"soft_vote": {"members": ["svm", "svmm"]}}, r"model_params.soft_vote\] unknown model 'svmm'"),
    ({"soft_vote": {"members": ["svm@compar"]}}, r"member 'svm@compar': unknown feature set 'compar'"),
    ({"soft_vote": {"members": ["cnn@compare"]}}, r"only utterance-functional models can read another feature set"),
    ({"stacking": {"members": ["soft_vote", "svm"]}}, r"member 'soft_vote' is itself an ensemble"),
    ({"soft_vote": {"members": "svm"}}, r"members must be a non-empty list"),
    ({"mixed_vote": {"member_overrides": {"cnn": {"refit_ful": False}}}},
     r"model 'cnn' has no parameters \['refit_ful'\]"),
    ({"svm": 3}, r"model_params.svm\] write it as a table"),
    ({"deep_vote": {"members": ["cnn", "svm@compare"]}}, r"members are model names without @feature_set"),
    ({"stacking": {"meta_class_weight": "auto"}}, r"meta_class_weight must be one of 'balanced', 'none'"),
    ({"soft_vote": {"meta_class_weight": "balanced"}}, r"model 'soft_vote' has no parameters \['meta_class_weight'\]"),
])
def test_a_suite_with_a_bad_model_parameter_is_refused_before_any_fit(params, message):
    """A typo in [model_params] (a parameter, a member, its feature set or its parameters) is a suite error at
    load, not a traceback from a worker once the fits have begun."""
    from bench.suite import SuiteError, parse_suite

    with pytest.raises(SuiteError, match=message):
        parse_suite({"corpora": ["synthetic"], "models": ["all"], "model_params": params}, default_name="bad")


def test_every_bundled_suite_passes_the_parameter_checks():
    from bench.suite import load_suite, suite_names

    assert {load_suite(name).name for name in suite_names()} == set(suite_names())


def test_mixed_ensemble_fits_only_training_speakers_and_applies_member_overrides(tmp_path, monkeypatch):
    """Instrumented: every member fit inside the ensemble (inner folds and refits) sees training speakers only,
    the frame member trains with its override, and the weights are the greedy counts."""
    calls = []
    original = ensembles.fit_member

    def spy(name, params, seed, x, y, groups):
        calls.append((name, dict(params), set(groups)))
        return original(name, params, seed, x, y, groups)

    monkeypatch.setattr(ensembles, "fit_member", spy)
    x = MultiInput(toy_vectors(), toy_frames())
    test = np.isin(SPEAKERS, sorted(set(SPEAKERS))[:3])
    small = {"epochs": 2, "width": 8, "batch_size": 16}
    model = EnsembleClassifier(method="soft", selection="greedy", members=("logreg", "cnn"),
                               member_params={"cnn": small}, member_overrides={"cnn": {"refit_full": False}},
                               cache_dir=str(tmp_path)).fit(x[~test], LABELS[~test], SPEAKERS[~test])
    training, outer_test = set(SPEAKERS[~test]), set(SPEAKERS[test])
    assert all(speakers <= training and not speakers & outer_test for _, _, speakers in calls)
    inner = [(n, s) for n, _, s in calls if s != training]  # the inner-fold fits
    assert sorted(n for n, _ in inner) == ["cnn"] * 3 + ["logreg"] * 3
    held_out = [set(s) for s in model.inner_speakers_]
    assert all(any(not s & h and s | h == training for h in held_out) for _, s in inner)
    assert all(p == {**small, "refit_full": False} for n, p, _ in calls if n == "cnn")
    assert set(model.chosen_) <= {"logreg", "cnn"} and len(model.chosen_) >= 1
    assert np.isclose(sum(model.weights_), 1) and len(model.weights_) == len(model.chosen_)
    probabilities = model.predict_proba(x[test])
    assert probabilities.shape == (test.sum(), 3) and np.allclose(probabilities.sum(axis=1), 1)


def test_mixed_ensembles_are_registered_with_every_frame_model_as_one_network():
    for name in ("mixed_vote", "mixed_stacking"):
        defaults = model_spec(name).defaults
        frame_members = [m for m in defaults["members"] if model_spec(m).input != "functionals"]
        assert {"cnn", "cnn2d", "lstm", "gru", "bilstm", "cnn_lstm", "transformer", "fusion"} == set(frame_members)
        assert all(defaults["member_overrides"][m] == {"refit_full": False} for m in frame_members)
        assert defaults["selection"] == "greedy"


def test_stacking_meta_learner_is_class_balanced_by_default_and_recorded(tmp_path):
    """The registered stacking rows record the meta-learner's class weighting (so it is in their config hash) and
    fit it; on training rows where one class is rare, balancing raises that class's share of the predictions."""
    assert model_spec("stacking").defaults["meta_class_weight"] == "balanced"
    assert model_spec("mixed_stacking").defaults["meta_class_weight"] == "balanced"
    assert "meta_class_weight" not in model_spec("soft_vote").defaults  # a vote has no meta-learner
    x, rng = MultiInput(toy_vectors()), np.random.default_rng(0)
    rare = LABELS == LABELS[0]
    keep = ~rare | (rng.random(len(LABELS)) < 0.25)  # three quarters of one class's training rows dropped
    test = np.isin(SPEAKERS, sorted(set(SPEAKERS))[:3])
    train = keep & ~test
    fitted = {}
    for weighting in ("balanced", "none"):
        model = model_spec("stacking").build(seed=0, members=["logreg", "svm"], meta_class_weight=weighting)
        model.set_params(cache_dir=str(tmp_path))
        fitted[weighting] = model.fit(x[train], LABELS[train], SPEAKERS[train])
    assert fitted["balanced"].meta_.class_weight == "balanced" and fitted["none"].meta_.class_weight is None
    share = {w: (m.predict(x[test]) == LABELS[0]).mean() for w, m in fitted.items()}
    assert share["balanced"] > share["none"]


def test_stacking_meta_benchmark_fits_on_inner_training_speakers_only(monkeypatch):
    """The meta-learner benchmark scores held-out inner speakers with members and meta-learners that never saw them."""
    from bench.benchmarks import stacking_meta

    seen = []
    original_fit, original_oof = stacking_meta.fit_member, stacking_meta.out_of_fold

    def fit_spy(name, params, seed, x, y, groups):
        seen.append(set(groups))
        return original_fit(name, params, seed, x, y, groups)

    def oof_spy(name, params, seed, x, y, groups, splits, classes):
        seen.append(set(groups))
        return original_oof(name, params, seed, x, y, groups, splits, classes)

    monkeypatch.setattr(stacking_meta, "fit_member", fit_spy)
    monkeypatch.setattr(stacking_meta, "out_of_fold", oof_spy)
    x = toy_vectors()
    held = np.isin(SPEAKERS, sorted(set(SPEAKERS))[:3])
    scores = stacking_meta._scores(x, LABELS, SPEAKERS, np.flatnonzero(~held), np.flatnonzero(held),
                                   ["logreg", "svm"], seed=0)
    assert set(scores) == {"soft vote (reference)", *stacking_meta.META}
    assert all(0.0 <= uar <= 1.0 for uar in scores.values())
    assert len(seen) == 4 and all(not groups & set(SPEAKERS[held]) for groups in seen)
