"""Classical baselines: scikit-learn pipelines whose scaler is fitted on the training fold only."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import LabelEncoder, StandardScaler
from sklearn.svm import SVC
from xgboost import XGBClassifier

from ser_models.models.registry import register_model


def _scaled(classifier) -> Pipeline:
    return Pipeline([("scaler", StandardScaler()), ("classifier", classifier)])


class CalibrationFolds:
    """Stratified 3-fold (what cv=3 gives), or 2 when a class has fewer than 3 training rows (tiny corpora)."""

    def split(self, X, y, groups=None):
        smallest = int(np.unique(np.asarray(y), return_counts=True)[1].min())
        return StratifiedKFold(n_splits=max(2, min(3, smallest))).split(X, y)

    def get_n_splits(self, X=None, y=None, groups=None) -> int:
        return 3 if y is None else max(2, min(3, int(np.unique(np.asarray(y), return_counts=True)[1].min())))


@register_model(
    "svm", family="classical", input="functionals", description="RBF support vector machine",
    # Chosen on inner speaker folds of RAVDESS and URDU training folds, on librosa, eGeMAPS and ComParE
    # features (bench/benchmarks/svm_defaults.py): within 0.005 inner UAR of each set's best, where
    # the old C=10, gamma="scale" was 0.015-0.03 lower.
    defaults={"C": 100.0, "gamma": 1e-4},
    search_space=lambda trial: {
        "C": trial.suggest_float("C", 1e-2, 1e3, log=True),
        "gamma": trial.suggest_categorical("gamma", ["scale", 1e-4, 3e-4, 1e-3]),
    },
)
def make_svm(*, seed: int, C: float, gamma) -> Pipeline:
    # Platt-scaled probabilities from 3 inner folds of the training rows (never the test fold).
    svc = SVC(C=C, gamma=gamma, kernel="rbf", random_state=seed)
    return _scaled(CalibratedClassifierCV(svc, method="sigmoid", cv=CalibrationFolds(), ensemble=False))


@register_model(
    "logreg", family="classical", input="functionals", description="L2 logistic regression",
    defaults={"C": 0.01},
    search_space=lambda trial: {"C": trial.suggest_float("C", 1e-4, 10.0, log=True)},
)
def make_logreg(*, seed: int, C: float) -> Pipeline:
    return _scaled(LogisticRegression(C=C, max_iter=3000, random_state=seed))


@register_model(
    "random_forest", family="classical", input="functionals", description="random forest",
    defaults={"n_estimators": 500, "max_features": "sqrt", "min_samples_leaf": 1},
    search_space=lambda trial: {
        "n_estimators": trial.suggest_int("n_estimators", 100, 800, step=100),
        "max_features": trial.suggest_categorical("max_features", ["sqrt", "log2", 0.1]),
        "min_samples_leaf": trial.suggest_int("min_samples_leaf", 1, 8),
    },
)
def make_random_forest(*, seed: int, n_estimators: int, max_features, min_samples_leaf: int) -> Pipeline:
    forest = RandomForestClassifier(
        n_estimators=n_estimators, max_features=max_features, min_samples_leaf=min_samples_leaf,
        random_state=seed, n_jobs=1,
    )
    return _scaled(forest)


class LabelEncodedXGB(ClassifierMixin, BaseEstimator):
    """XGBoost with string labels: encodes them to 0..K-1 and back, scikit-learn style."""

    def __init__(self, *, n_estimators=150, max_depth=3, learning_rate=0.15, subsample=0.8,
                 colsample_bytree=0.2, max_bin=32, random_state=0):
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.max_bin = max_bin
        self.random_state = random_state

    def fit(self, X, y):
        self.encoder_ = LabelEncoder().fit(y)
        self.classes_ = self.encoder_.classes_
        self.booster_ = XGBClassifier(
            n_estimators=self.n_estimators, max_depth=self.max_depth, learning_rate=self.learning_rate,
            subsample=self.subsample, colsample_bytree=self.colsample_bytree, max_bin=self.max_bin,
            random_state=self.random_state,
            tree_method="hist", n_jobs=1,
        ).fit(X, self.encoder_.transform(y))
        return self

    def predict_proba(self, X) -> np.ndarray:
        return self.booster_.predict_proba(X)

    def predict(self, X) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


@register_model(
    "xgboost", family="classical", input="functionals", description="gradient-boosted trees (XGBoost, hist)",
    # Sized for 2 CPU cores: ~9 s a RAVDESS fold, within 0.01 UAR of 300 deeper trees at 1/10 of the time.
    defaults={"n_estimators": 150, "max_depth": 3, "learning_rate": 0.15, "subsample": 0.8,
              "colsample_bytree": 0.2, "max_bin": 32},
    search_space=lambda trial: {
        "n_estimators": trial.suggest_int("n_estimators", 100, 600, step=50),
        "max_depth": trial.suggest_int("max_depth", 2, 8),
        "learning_rate": trial.suggest_float("learning_rate", 0.02, 0.3, log=True),
        "subsample": trial.suggest_float("subsample", 0.5, 1.0),
        "colsample_bytree": trial.suggest_float("colsample_bytree", 0.1, 0.8),
        "max_bin": trial.suggest_categorical("max_bin", [32, 64, 128]),
    },
)
def make_xgboost(*, seed: int, **params) -> Pipeline:
    return _scaled(LabelEncodedXGB(random_state=seed, **params))
