"""Classical models: registry, scikit-learn API, scaling fitted on training rows only."""

from __future__ import annotations

import numpy as np
import pytest

from ser_models.models import get_model, model_names, model_spec


@pytest.fixture(scope="module")
def toy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(90, 6)) * np.array([1, 10, 100, 1, 1, 1]) + np.array([0, 50, -20, 0, 0, 0])
    y = np.array(["angry", "neutral", "sad"])[np.arange(90) % 3]
    x[:, 0] += (np.arange(90) % 3) * 2.0
    return x, y


def test_registry_lists_the_four_classical_models():
    assert {"svm", "logreg", "random_forest", "xgboost"} <= set(model_names("classical"))


def test_unknown_model_lists_choices():
    with pytest.raises(KeyError, match="svm"):
        get_model("perceptron")


def test_unknown_parameter_is_refused():
    with pytest.raises(ValueError, match="C"):
        get_model("svm", kernel="linear")


@pytest.mark.parametrize("name", ["svm", "logreg", "random_forest", "xgboost"])
def test_sklearn_api_and_probabilities(name, toy):
    x, y = toy
    model = get_model(name, seed=0).fit(x[:60], y[:60])
    proba = model.predict_proba(x[60:])
    assert list(model.classes_) == ["angry", "neutral", "sad"]
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    assert set(model.predict(x[60:])) <= set(model.classes_)
    assert np.mean(model.predict(x[60:]) == y[60:]) > 0.5


@pytest.mark.parametrize("name", ["svm", "logreg", "random_forest", "xgboost"])
def test_scaler_sees_training_rows_only(name, toy):
    x, y = toy
    train = np.arange(60)
    model = get_model(name).fit(x[train], y[train])
    scaler = model.named_steps["scaler"]
    np.testing.assert_allclose(scaler.mean_, x[train].mean(axis=0))
    assert not np.allclose(scaler.mean_, x.mean(axis=0))


@pytest.mark.parametrize("name", ["svm", "logreg", "random_forest", "xgboost"])
def test_same_seed_same_predictions(name, toy):
    x, y = toy
    a = get_model(name, seed=1).fit(x[:60], y[:60]).predict_proba(x[60:])
    b = get_model(name, seed=1).fit(x[:60], y[:60]).predict_proba(x[60:])
    np.testing.assert_array_equal(a, b)


def test_every_trained_model_has_a_search_space():
    for name in model_names():  # votes over stored predictions train nothing, so there is nothing to tune
        assert model_spec(name).search_space is not None or model_spec(name).input == "stored", name
