"""Nested, speaker-grouped hyperparameter tuning with Optuna (resumable through RDB storage).

Tuning only ever sees the outer training fold: each trial scores UAR on inner
leave-speakers-out folds made of the training speakers, so the outer test
fold is untouched. Studies live in an Optuna storage (SQLite by default, any
SQLAlchemy URL for a shared database) and are opened with `load_if_exists`,
so an interrupted study continues where it stopped.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import StratifiedGroupKFold

from ser_models.models import model_spec
from ser_models.protocols import assert_speaker_disjoint

log = logging.getLogger(__name__)


def inner_speaker_folds(y, groups, n_folds: int = 3, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Speaker-disjoint (train, validation) row splits of a training fold, stratified by label."""
    groups = np.asarray(groups)
    n_folds = min(n_folds, len(np.unique(groups)))
    if n_folds < 2:
        raise ValueError("inner folds need at least 2 training speakers")
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        splits = list(splitter.split(np.zeros(len(groups)), np.asarray(y), groups))
    for train, validation in splits:
        assert_speaker_disjoint(groups[train], groups[validation])
    return splits


@dataclass
class TuningResult:
    params: dict
    best_inner_uar: float
    n_trials: int  # finished trials in the study (this run and earlier ones)
    new_trials: int  # trials this call ran
    seconds: float
    inner_speakers: list[list[str]] = field(default_factory=list)  # validation speakers of each inner fold


class StorageError(RuntimeError):
    """The tuning studies' storage cannot be opened; the message says which and what to do."""


def prepare_storage(storage: str) -> None:
    """Create the storage's tables once, before worker processes open studies in it concurrently."""
    import optuna
    import sqlalchemy

    try:
        optuna.storages.RDBStorage(storage, engine_kwargs={"connect_args": {"timeout": 120}}
                                   if storage.startswith("sqlite") else {})
    except Exception as error:  # SQLAlchemy's or Optuna's: a damaged file, an unknown URL, a server not answering
        try:
            shown = sqlalchemy.engine.make_url(storage).render_as_string(hide_password=True)
        except sqlalchemy.exc.ArgumentError:
            shown = "(an unreadable URL)"
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        hint = ("if the file is damaged, move it aside: its studies start again, and the records of finished fits "
                "are kept" if storage.startswith("sqlite") else "check the URL and that the database answers")
        raise StorageError(f"cannot open the tuning studies' storage {shown} ({reason}); {hint}") from error


def open_study(study_name: str, storage: str | None, *, seed: int, pruner: str = "median"):
    """Create or load (load_if_exists) a maximising study with a seeded TPE sampler."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruners = {"median": optuna.pruners.MedianPruner(n_startup_trials=3),
               "hyperband": optuna.pruners.HyperbandPruner(), "none": optuna.pruners.NopPruner()}
    if storage and storage.startswith("sqlite"):
        storage = optuna.storages.RDBStorage(storage, engine_kwargs={"connect_args": {"timeout": 120}})
    return optuna.create_study(study_name=study_name, storage=storage, direction="maximize", load_if_exists=True,
                               sampler=optuna.samplers.TPESampler(seed=seed), pruner=pruners[pruner])


def tune(model: str, x, y, groups, *, n_trials: int = 20, timeout: float | None = None, seed: int = 0,
         storage: str | None = None, study_name: str | None = None, base_params: dict | None = None,
         inner_folds: int = 3, progress: bool = False) -> TuningResult:
    """Search `model`'s space on speaker-grouped inner folds of (x, y, groups); return the best parameters.

    Runs until the study holds `n_trials` finished trials (or `timeout` seconds pass), so calling
    it again on an interrupted study only runs the missing trials. Each trial reports the running
    mean UAR after every inner fold; unpromising trials are pruned (median rule).
    """
    import optuna

    spec = model_spec(model)
    if spec.search_space is None:
        raise ValueError(f"model {model!r} has no search space")
    y, groups = np.asarray(y), np.asarray(groups)
    splits = inner_speaker_folds(y, groups, inner_folds, seed)
    base = dict(base_params or {})
    study = open_study(study_name or f"{model}-seed{seed}", storage, seed=seed)

    def objective(trial) -> float:
        params = {**base, **spec.search_space(trial)}
        scores = []
        for step, (train, validation) in enumerate(splits):
            estimator = spec.build(seed=seed, **params)
            estimator.fit(x[train], y[train], **({"groups": groups[train]} if spec.fit_groups else {}))
            with warnings.catch_warnings():  # an inner fold may lack a class: UAR is over the classes present
                warnings.simplefilter("ignore", UserWarning)
                scores.append(balanced_accuracy_score(y[validation], estimator.predict(x[validation])))
            trial.report(float(np.mean(scores)), step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return float(np.mean(scores))

    finished = lambda: sum(t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)  # noqa: E731
                           for t in study.get_trials(deepcopy=False))
    before = finished()
    start = time.perf_counter()
    if before < n_trials:
        study.optimize(objective, n_trials=n_trials - before, timeout=timeout, show_progress_bar=progress,
                       gc_after_trial=True)
    completed = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    best = study.best_trial if completed else None
    params = {**base, **(best.params if best else {})}
    return TuningResult(
        params=params, best_inner_uar=float(best.value) if best else float("nan"), n_trials=finished(),
        new_trials=finished() - before, seconds=time.perf_counter() - start,
        inner_speakers=[sorted(map(str, set(groups[v]))) for _, v in splits],
    )
