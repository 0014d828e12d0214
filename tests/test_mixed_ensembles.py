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
    ({"mixed_vote": {"refit_members": "all"}}, r"refit_members must be one of candidate, registered, not 'all'"),
    ({"cnn": {"monitor": "val_f1"}}, r"model_params.cnn\] monitor must be one of val_accuracy, val_loss, val_uar"),
    ({"mlp": {"best_epoch_ties": "last"}}, r"best_epoch_ties must be one of first, lowest_loss, not 'last'"),
    ({"gru": {"schedule": "onecycle"}}, r"schedule must be one of plateau, cosine, not 'onecycle'"),
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


def test_member_folds_give_a_member_inner_folds_of_its_own_on_training_speakers_only(tmp_path, monkeypatch):
    """Instrumented: a member given 2 inner folds trains twice, on half the training speakers each time, the others
    three times; every inner fit sees training speakers only, and both fold sets are recorded."""
    calls = []
    original = ensembles.fit_member

    def spy(name, params, seed, x, y, groups):
        calls.append((name, set(groups)))
        return original(name, params, seed, x, y, groups)

    monkeypatch.setattr(ensembles, "fit_member", spy)
    x = MultiInput(toy_vectors())
    test = np.isin(SPEAKERS, sorted(set(SPEAKERS))[:3])
    model = EnsembleClassifier(method="stacking", selection="greedy", members=("logreg", "svm"),
                               member_folds={"svm": 2}, cache_dir=str(tmp_path)).fit(
        x[~test], LABELS[~test], SPEAKERS[~test])
    training = set(SPEAKERS[~test])
    inner = [(n, s) for n, s in calls if s != training]
    assert sorted(n for n, _ in inner) == ["logreg"] * 3 + ["svm"] * 2
    assert all(s < training for _, s in inner)
    assert len(model.inner_speakers_) == 5  # the 2 held-out speaker sets of svm's folds and the 3 of the others
    for name, k in (("logreg", 3), ("svm", 2)):
        held_out = [training - s for n, s in inner if n == name]
        assert len(held_out) == k and set().union(*held_out) == training  # every training row gets a probability
        assert all(sorted(h) in model.inner_speakers_ for h in held_out)
    assert model.predict_proba(x[test]).shape == (test.sum(), 3)


@pytest.mark.parametrize(("folds", "message"), [({"cnn": 1}, "at least 2"), ({"svmm": 2}, "unknown model 'svmm'"),
                                                 ({"cnn": "2"}, "whole number")])
def test_member_folds_are_checked_when_a_suite_loads(folds, message):
    from bench.suite import SuiteError, parse_suite

    with pytest.raises(SuiteError, match=message):
        parse_suite({"corpora": ["synthetic"], "models": ["mixed_vote"],
                     "model_params": {"mixed_vote": {"members": ["logreg", "cnn"], "member_folds": folds}}},
                    default_name="bad")


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


@pytest.mark.parametrize("refit", ["candidate", "registered"])
def test_refit_members_chooses_the_parameters_of_the_chosen_members_refits(tmp_path, monkeypatch, refit):
    """The overrides always apply on the inner folds; the refit on the whole training fold uses them too
    ("candidate") or the member's own parameters, as its own row has them ("registered")."""
    calls = []
    original = ensembles.fit_member

    def spy(name, params, seed, x, y, groups):
        calls.append((name, dict(params), len(set(groups))))
        return original(name, params, seed, x, y, groups)

    monkeypatch.setattr(ensembles, "fit_member", spy)
    x = MultiInput(toy_vectors())
    test = np.isin(SPEAKERS, sorted(set(SPEAKERS))[:3])
    EnsembleClassifier(members=("logreg", "svm"), member_params={"logreg": {"C": 1.0}},
                       member_overrides={"logreg": {"C": 0.01}}, refit_members=refit,
                       cache_dir=str(tmp_path)).fit(x[~test], LABELS[~test], SPEAKERS[~test])
    training = len(set(SPEAKERS[~test]))
    inner = [p for n, p, speakers in calls if n == "logreg" and speakers < training]
    refits = [p for n, p, speakers in calls if n == "logreg" and speakers == training]
    assert len(inner) == 3 and all(p == {"C": 0.01} for p in inner)
    assert refits == [{"C": 0.01} if refit == "candidate" else {"C": 1.0}]


def test_refit_members_is_stored_only_when_a_suite_sets_it():
    """The switch is optional: the rows recorded before it existed keep their configuration hash."""
    from bench.runner import model_params
    from bench.suite import parse_suite

    plain = parse_suite({"corpora": ["synthetic"], "models": ["mixed_vote"]}, default_name="plain")
    assert "refit_members" not in model_params(plain, "mixed_vote")
    set_ = parse_suite({"corpora": ["synthetic"], "models": ["mixed_vote"],
                        "model_params": {"mixed_vote": {"refit_members": "registered"}}}, default_name="set")
    assert model_params(set_, "mixed_vote")["refit_members"] == "registered"


def test_a_shared_fit_is_trained_once_and_predicts_as_a_fresh_one(tmp_path):
    """A row fitted with `share_fit` stores its fit beside the ensembles'; the same fit asked again (as an ensemble's
    member refit would) is loaded, not retrained: same probabilities, its original seconds, `fit_reused`."""
    from bench.execute import fit_and_predict

    x = toy_frames()
    test = np.isin(SPEAKERS, sorted(set(SPEAKERS))[:3])
    params = {**model_spec("cnn").defaults, "epochs": 2, "width": 8, "batch_size": 16, "refit_networks": 2}
    args = ("cnn", params, 0, x[~test], LABELS[~test], SPEAKERS[~test], x[test])
    fresh = fit_and_predict(*args)
    first = fit_and_predict(*args, cache_dir=str(tmp_path), share_fit=True)
    again = fit_and_predict(*args, cache_dir=str(tmp_path), share_fit=True)
    assert not fresh["fit_reused"] and not first["fit_reused"] and again["fit_reused"]
    assert again["fit_seconds"] == first["fit_seconds"]
    assert np.array_equal(fresh["probabilities"], first["probabilities"])
    assert np.array_equal(first["probabilities"], again["probabilities"])
    other_seed = fit_and_predict("cnn", params, 1, *args[3:], cache_dir=str(tmp_path), share_fit=True)
    assert not other_seed["fit_reused"]  # a different fit is trained, not served


def test_an_ensemble_refits_a_member_its_row_already_trained_from_the_store(tmp_path, monkeypatch):
    """In a run with an ensemble, a candidate's own row and the ensemble's refit of it on the same fold (same
    parameters, seed and rows) train once; the records are those of a run that trains both."""
    from bench import runner
    from bench.records import RecordStore
    from bench.runner import RunOptions, run_suite
    from bench.suite import parse_suite
    from ser_models.models.registry import ModelSpec

    corpus = {"synthetic": {"seed": 1, "n_speakers": 8, "utterances_per_emotion": 3,
                            "emotions": ["angry", "neutral", "sad"]}}
    suite = parse_suite({"corpora": ["synthetic"], "models": ["logreg", "svm", "soft_vote"], "corpus_options": corpus,
                         "protocol_options": {"n_folds": 2},
                         "model_params": {"soft_vote": {"members": ["logreg", "svm"]}}}, default_name="shared")
    original = ModelSpec.build
    results = {}
    for sharing in (True, False):
        built = []

        def spy(self, *, seed=0, _built=built, **params):
            _built.append(self.name)
            return original(self, seed=seed, **params)

        monkeypatch.setattr(ModelSpec, "build", spy)
        if not sharing:
            monkeypatch.setattr(runner, "shared_fits", lambda suite, models: {})
        folder = tmp_path / str(sharing)
        run_suite(RunOptions(suite=suite, results_dir=folder, cache_dir=folder / "c", progress=False, jobs=1,
                             save_models=False))
        records = RecordStore(folder / "shared").load()
        results[sharing] = ({(r["model"], r["fold"]): (r["uar"], r["confusion"]) for r in records},
                            sorted(n for n in built if n != "soft_vote"))
    assert results[True][0] == results[False][0]  # the same records
    # 2 folds x 2 members: each member's rows (4), inner-fold fits (12) and refits (4) without sharing; no refits with
    assert len(results[False][1]) == 20 and len(results[True][1]) == 16
    assert results[True][1] == ["logreg"] * 8 + ["svm"] * 8


def test_a_frame_member_refitted_as_its_row_is_loaded_from_that_row(tmp_path, monkeypatch):
    """With `refit_members = "registered"`, a frame model's row and the mixed ensemble's refit of it are one fit:
    the row's padded frames and the ensemble's view of them hash alike."""
    from bench.records import RecordStore
    from bench.runner import RunOptions, run_suite
    from bench.suite import parse_suite
    from ser_models.models.registry import ModelSpec

    corpus = {"synthetic": {"seed": 1, "n_speakers": 8, "utterances_per_emotion": 3,
                            "emotions": ["angry", "neutral", "sad"]}}
    suite = parse_suite({"corpora": ["synthetic"], "models": ["cnn", "mixed_vote"], "corpus_options": corpus,
                         "protocol_options": {"n_folds": 2},
                         "model_params": {"cnn": {"epochs": 2, "width": 8, "refit_networks": 2},
                                          "mixed_vote": {"members": ["logreg", "cnn"], "selection": "top_k",
                                                         "refit_members": "registered"}}}, default_name="frames")
    built = []
    original = ModelSpec.build

    def spy(self, *, seed=0, **params):
        built.append((self.name, params.get("refit_full")))
        return original(self, seed=seed, **params)

    monkeypatch.setattr(ModelSpec, "build", spy)
    run_suite(RunOptions(suite=suite, results_dir=tmp_path, cache_dir=tmp_path / "c", progress=False, jobs=1,
                         save_models=False))
    records = RecordStore(tmp_path / "frames").load()
    assert sorted(r["model"] for r in records) == ["cnn", "cnn", "mixed_vote", "mixed_vote"]
    assert all(r["ensemble"]["members"] == ["logreg", "cnn"] or r["ensemble"]["members"] == ["cnn", "logreg"]
               for r in records if r["model"] == "mixed_vote")
    # 2 folds: the cnn rows (2, its recipe) and its inner-fold fits (3 per fold, one network); no refit of its own
    assert sorted(b for b in built if b[0] == "cnn") == [("cnn", False)] * 6 + [("cnn", True)] * 2


def test_the_full_suite_shares_the_fits_of_members_refitted_as_their_rows():
    """In `full`, the ensembles refit their chosen members as their own rows (on the speaker folds, the one
    protocol the ensembles run): the mixed ensembles refit a frame model as its row (`refit_members = "registered"`),
    not as the one network it was scored as; the classical ensembles refit logreg, svm, xgboost and the mlp. A frame
    model whose row also trains on copies of its own ([model_augment]) shares no fit with the ensembles."""
    from bench.runner import resolve_models, shared_fits
    from bench.suite import load_suite, parse_suite

    full = load_suite("full")
    frame = {"cnn", "cnn2d", "lstm", "gru", "bilstm", "cnn_lstm", "transformer", "fusion"}
    assert set(full.model_augment) == {"cnn", "cnn2d", "cnn_lstm"}
    assert shared_fits(full, resolve_models(("all",))) == {
        "speaker_folds": {"logreg", "svm", "xgboost", "mlp"} | frame - set(full.model_augment)}
    assert shared_fits(full, ["logreg", "cnn", "deep_vote"]) == {}  # no ensemble refits anything
    assert shared_fits(full, ["soft_vote"]) == {"speaker_folds": {"logreg", "svm", "xgboost", "mlp"}}
    candidate = parse_suite({"corpora": ["synthetic"], "models": ["mixed_vote"],
                             "model_params": {"mixed_vote": {"refit_members": "candidate"}}}, default_name="c")
    assert not shared_fits(candidate, ["mixed_vote"])["speaker_folds"] & frame  # refitted as one network each


def test_the_full_suite_gives_every_frame_candidate_two_inner_folds_and_the_others_three():
    from bench.runner import model_params
    from bench.suite import load_suite

    full = load_suite("full")
    for kind in ("mixed_vote", "mixed_stacking"):
        params = model_params(full, kind)
        assert params["inner_folds"] == 3 and params["member_folds"] == dict.fromkeys(ensembles.FRAME_MEMBERS, 2)
    assert "member_folds" not in model_params(full, "stacking")


def test_mixed_refit_benchmark_fits_on_inner_training_speakers_only(tmp_path, monkeypatch):
    """The refit benchmark scores held-out inner speakers with ensembles none of whose fits saw them."""
    from bench.benchmarks import mixed_refit

    seen = []
    original = ensembles.fit_member

    def spy(name, params, seed, x, y, groups):
        seen.append(set(groups))
        return original(name, params, seed, x, y, groups)

    monkeypatch.setattr(ensembles, "fit_member", spy)
    x = MultiInput(toy_vectors())
    held = np.isin(SPEAKERS, sorted(set(SPEAKERS))[:3])
    params = {kind: {"members": ["logreg", "svm"], "selection": "greedy", "member_overrides": {"svm": {"C": 1.0}}}
              for kind in mixed_refit.METHODS}
    rows = mixed_refit._scores(x, LABELS, SPEAKERS, np.flatnonzero(~held), np.flatnonzero(held), params, 0,
                               str(tmp_path), list(mixed_refit.VARIANTS), list(mixed_refit.REFITS))
    assert len(rows) == len(mixed_refit.VARIANTS) * 2 and all(0.0 <= r["uar"] <= 1.0 for r in rows)
    assert seen and all(not groups & set(SPEAKERS[held]) for groups in seen)


def test_a_greedy_selection_is_replayed_from_what_its_record_stores(tmp_path, capsys):
    """The record keeps the candidates, each addition with its inner UAR, and the digest of the stored inner
    probabilities; the replay script reproduces the members from those files, and says so when they differ."""
    import json

    from bench.benchmarks import greedy_replay
    from bench.records import RecordStore
    from bench.runner import RunOptions, run_suite
    from bench.suite import parse_suite

    suite = parse_suite({"corpora": ["synthetic"], "models": ["mixed_vote"],
                         "corpus_options": {"synthetic": {"seed": 1, "n_speakers": 8, "utterances_per_emotion": 3,
                                                          "emotions": ["angry", "neutral", "sad"]}},
                         "protocol_options": {"n_folds": 2},
                         "model_params": {"mixed_vote": {"members": ["logreg", "svm", "random_forest"],
                                                         "member_overrides": {}}}}, default_name="greedy")
    run_suite(RunOptions(suite=suite, results_dir=tmp_path, cache_dir=tmp_path / "c", progress=False,
                         save_models=False))
    store = RecordStore(tmp_path / "greedy")
    records = store.load()
    assert len(records) == 2 and all(r["model_version"] == 2 for r in records)
    for record in records:
        selection = record["ensemble"]
        assert sorted(selection["candidates"]) == ["logreg", "random_forest", "svm"]
        assert [name for name, _ in selection["trace"]] and len(selection["oof_digest"]) == 64
        uars = [uar for _, uar in selection["trace"]]
        assert uars == sorted(uars) and store.inner_path(record["config_hash"]).exists()
    assert greedy_replay.main(["--suite", "greedy", "--results-dir", str(tmp_path)]) == 0
    assert "2 greedy selections replayed, 0 mismatches" in capsys.readouterr().out
    records[0]["ensemble"]["members"] = ["svm", "logreg", "random_forest", "svm"]  # a record that lies
    store.records_path.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert greedy_replay.main(["--suite", "greedy", "--results-dir", str(tmp_path)]) == 1
    assert "!= recorded" in capsys.readouterr().out
