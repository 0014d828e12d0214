"""Runs a suite: corpora → cached features → folds → models → records → leaderboard."""

from __future__ import annotations

import contextlib
import dataclasses
import getpass
import logging
import os
import re
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from filelock import FileLock, Timeout
from joblib import Memory, Parallel, delayed, parallel_config
from joblib.externals.loky.process_executor import BrokenProcessPool, TerminatedWorkerError
from tqdm.auto import tqdm

from bench.inputs import MODEL_INPUTS, ModelInputs, job_data
from bench.leaderboard import write_leaderboards
from bench.records import RecordStore, config_hash, package_versions, record_identity
from bench.saved_models import save_best_model
from bench.suite import Suite, augment_for, seeds_for
from bench.votes import STORED, is_vote, vote_outcome
from ser_models.copies import NEAR_COPY_DISTANCE, copies_in, first_copies
from ser_models.corpora import corpus_info, corpus_names, harmonise_labels, load_corpus, register_manifest_corpus
from ser_models.ensembles import member_feature_set, timed_fit
from ser_models.feature_cache import FeatureSet, default_cache_dir, extract_features
from ser_models.features import FeatureSpec
from ser_models.metrics import classification_metrics, roc_auc
from ser_models.models import model_names, model_spec
from ser_models.models.cpu_threads import request_xla_threads, xla_threads
from ser_models.models.deep import XLA_CACHE_ENV
from ser_models.opensmile_features import MissingExtraError
from ser_models.protocols import (
    MIN_CLASS_SPEAKERS,
    MIN_SPEAKERS,
    PROTOCOLS,
    Fold,
    ProtocolError,
    SpeakerLeakError,
    assert_speaker_disjoint,
    lone_speaker_classes,
    make_folds,
    untrained_test_classes,
)
from ser_models.tuning import StorageError, prepare_storage, tune

log = logging.getLogger(__name__)


_PORTABLE_PATH = "relpath"


class BenchError(RuntimeError):
    """A run that cannot go ahead; the message says what to change."""


class FitFailedError(BenchError):
    """One fit raised an error of its own (not a worker that died); the message names the fit."""


def select_device(device: str) -> None:
    """Point JAX (in this process and the worker processes it starts) at the CPU or a GPU. On the CPU each deep fit
    gets one XLA thread, and each worker process a core of its own while one is free (ser_models.models.cpu_threads)."""
    if device != "gpu":
        try:
            request_xla_threads(1, Path(tempfile.gettempdir()) / f"ser-bench-cpu-slots-{getpass.getuser()}")
        except ValueError as error:
            raise BenchError(str(error)) from None
    if device == "cpu":
        os.environ["JAX_PLATFORMS"] = "cpu"
    elif device == "gpu":
        os.environ["JAX_PLATFORMS"] = "cuda"
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # several worker processes share the GPU
        try:
            import jax

            has_gpu = any(device.platform == "gpu" for device in jax.devices())
        except Exception:  # noqa: BLE001  -- JAX reports a missing CUDA backend in several ways
            has_gpu = False
        if not has_gpu:
            raise BenchError("--device gpu: JAX sees no GPU; install the CUDA build with `pip install -e .[gpu]`")


@dataclass
class RunOptions:
    """What the command line adds to a suite."""

    suite: Suite
    data_root: Path | None = None
    corpora: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    seeds: tuple[int, ...] = ()
    jobs: int = 1
    fresh: bool = False
    results_dir: Path = Path("results")
    cache_dir: Path = field(default_factory=default_cache_dir)
    progress: bool | None = None  # None: bars only on a terminal
    manifests: dict = field(default_factory=dict)  # corpus name -> CSV/TSV manifest (from --manifest)
    target: str = "emotion"  # what the suite's main tables predict (--target gender)
    save_models: bool = True  # refit and save each corpus' best model for `bench predict`
    storage: str | None = None  # Optuna storage URL (default: SQLite under results/<suite>/)
    scheduler: str | None = None  # Dask scheduler address: run the jobs on that cluster


@dataclass
class RunSummary:
    suite: str
    folder: Path
    leaderboard: Path
    trained: int
    reused: int
    skipped_files: int
    best: dict[str, tuple[str, float]]  # corpus/protocol -> (model, mean UAR)
    saved_models: dict[str, str] = field(default_factory=dict)  # corpus -> model refit on all of it
    skipped_by_reason: dict[str, int] = field(default_factory=dict)  # reason (details elided) -> files


def reason_kind(reason: str) -> str:
    """A skip reason without its file-specific details, so that like reasons count together."""
    kind = re.sub(r"\([^)]*\)|'[^']*'|\"[^\"]*\"", "…", reason)
    return ":".join(kind.split(":")[:2]).strip()


def resolve_models(requested: tuple[str, ...]) -> list[str]:
    """Expand 'all' and family names; unknown names raise with the valid choices."""
    names: list[str] = []
    for item in requested:
        if item == "all":
            names += model_names()
        elif item in ("classical", "deep", "ensemble"):
            names += model_names(family=item)
        else:
            model_spec(item)
            names.append(item)
    return list(dict.fromkeys(names))


def register_manifests(manifests: dict[str, str], data_root: Path | None) -> list[str]:
    """Register CSV/TSV-described corpora; a relative path is tried as given, then under the data root."""
    for name, file in manifests.items():
        path = Path(file).expanduser()
        if not path.is_absolute() and not path.exists() and data_root is not None:
            path = data_root / path
        register_manifest_corpus(name, path)
    return list(manifests)


def resolve_corpora(requested: tuple[str, ...], data_root: Path | None, manifests: tuple[str, ...] = ()) -> list[str]:
    """Expand 'found' to every registered corpus whose folder is under the data root, plus manifest corpora."""
    if data_root is not None and not data_root.is_dir():
        raise BenchError(f"data root {data_root} does not exist (from --data-root or SER_DATA)")
    names: list[str] = []
    for item in requested:
        if item == "found" and manifests and data_root is None:
            names += manifests
        elif item == "found":
            if data_root is None:
                raise BenchError(
                    "this suite runs on the corpora under a data root: pass --data-root DIR or set SER_DATA"
                )
            found = [n for n in corpus_names() if not corpus_info(n).generated
                     and "manifest" not in corpus_info(n).extra and (data_root / corpus_info(n).folder).is_dir()]
            if not found and not manifests:
                layouts = "; ".join(corpus_info(n).layout for n in corpus_names() if not corpus_info(n).generated)
                raise BenchError(f"no corpus found under {data_root}{_inside_a_corpus(data_root)}. Expected one of: "
                                 f"{layouts}")
            names += found + list(manifests)
        else:
            info = corpus_info(item)
            if not info.generated and "manifest" not in info.extra and data_root is None:
                raise BenchError(f"corpus {item!r} needs a data root: pass --data-root DIR or set SER_DATA")
            if not info.generated and "manifest" not in info.extra and _inside_a_corpus(data_root) and \
                    not (data_root / info.folder).is_dir():
                raise BenchError(f"corpus {item!r} is not under {data_root}{_inside_a_corpus(data_root)}")
            names.append(item)
    return list(dict.fromkeys(names))


def _inside_a_corpus(data_root: Path) -> str:
    """A hint when the data root is a corpus' own folder (.../ravdess) rather than the folder that holds it."""
    folders = {corpus_info(n).folder.lower() for n in corpus_names() if not corpus_info(n).generated}
    if data_root.name.lower() in folders and not (data_root / data_root.name).is_dir():
        return (f" ({data_root} looks like a corpus' own folder: the data root is the folder that holds it, "
                f"--data-root {data_root.parent})")
    return ""


def corpus_root(name: str, options: dict, data_root: Path | None, cache_dir: Path) -> Path:
    """Where a corpus lives: generated ones in the cache, real ones under the data root."""
    info = corpus_info(name)
    if info.generated:
        return cache_dir / "corpora" / f"{name}-{config_hash(options)[:10]}"
    if "manifest" in info.extra:
        return Path(info.folder)
    return data_root / info.folder


def _fit_job(label: str, *args, **kwargs) -> dict:
    """`fit_and_predict` in a worker; an error of the fit comes back named by `label` (the worker's traceback stays
    attached: -v logs it). A speaker leak stays a speaker leak."""
    try:
        return fit_and_predict(*args, **kwargs)
    except (SpeakerLeakError, BenchError):
        raise
    except Exception as error:
        raise FitFailedError(f"{label} failed: {type(error).__name__}: {error}") from error


def fit_and_predict(model: str, params: dict, seed: int, x_train, y_train, groups_train, x_test, *,
                    tuning: dict | None = None, storage: str | None = None, study: str | None = None,
                    cache_dir: str | None = None, share_fit: bool = False) -> dict:
    """Train one model on one fold's training rows (tuned first on inner folds of them) and predict its test rows.

    `share_fit`: an ensemble of this run refits this model as a member with the same parameters, so the fit is
    memoised in `cache_dir` beside the ensembles' and whichever of the two comes second loads it; the row then
    records the seconds the fit took when it was trained, and `fit_reused`.
    """
    spec = model_spec(model)
    tuned = None
    if tuning:
        tuned = tune(model, x_train, y_train, groups_train, n_trials=tuning["trials"], timeout=tuning.get("timeout"),
                     seed=seed, storage=storage, study_name=study, base_params=params)
        params = tuned.params
    reused = False
    if share_fit and cache_dir and tuned is None:
        called_at = time.time()
        fitted = Memory(cache_dir, verbose=0).cache(timed_fit)(model, params, seed, x_train, y_train, groups_train,
                                                                version=spec.version)
        estimator, fit_seconds, reused = fitted.estimator, fitted.seconds, fitted.finished < called_at
    else:
        estimator = spec.build(seed=seed, **params)
        if "cache_dir" in estimator.get_params():  # ensembles share their members' inner work through it
            estimator.set_params(cache_dir=cache_dir)
        start = time.perf_counter()
        estimator.fit(x_train, y_train, **({"groups": groups_train} if spec.fit_groups else {}))
        fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    predicted = estimator.predict(x_test)
    probabilities = estimator.predict_proba(x_test)
    predict_seconds = time.perf_counter() - start
    threads = xla_threads() if spec.family != "classical" else None
    return {"predicted": np.asarray(predicted), "probabilities": probabilities,
            "classes": [str(c) for c in estimator.classes_], "xla_threads": threads,
            "fit_seconds": fit_seconds, "fit_reused": reused, "predict_seconds": predict_seconds,
            "validation_speakers": list(getattr(estimator, "validation_speakers_", [])),
            "inner_speakers": (tuned.inner_speakers if tuned else []) + list(getattr(estimator, "inner_speakers_", [])),
            "tuning": None if tuned is None else {"params": tuned.params, "trials": tuned.n_trials,
                                                  "new_trials": tuned.new_trials, "seconds": round(tuned.seconds, 2),
                                                  "inner_uar": tuned.best_inner_uar},
            "ensemble": None if not hasattr(estimator, "chosen_") else {
                "members": estimator.chosen_, "inner_uar": estimator.inner_uar_,
                "weights": [float(w) for w in estimator.weights_]},
            "curves": _rounded(getattr(estimator, "history_", None))}


def _rounded(curves: dict[str, list[float]] | None, digits: int = 4) -> dict[str, list[float]] | None:
    """Per-epoch curves at 4 decimals: float32 metrics printed in full were a quarter of records.jsonl."""
    if curves is None:
        return None
    return {key: [round(float(v), digits) for v in values] for key, values in curves.items()}


@dataclass
class Dataset:
    """What one leaderboard table (or a set of its rows) is computed on."""

    name: str  # "ravdess"; "ravdess+urdu" (combined); "ravdess->urdu" (cross-corpus)
    corpora: tuple[str, ...]
    features: FeatureSet
    protocols: tuple[str, ...]
    corpus_options: dict
    spec: FeatureSpec
    fold_options: dict = field(default_factory=dict)  # extra make_folds options (cross-corpus sides, K)
    target: str = "emotion"  # the manifest column predicted
    variant: dict = field(default_factory=dict)  # {feature_set: ...} or {gender_input: True}: extra rows
    models: tuple[str, ...] | None = None  # None: the suite's models under each protocol


@dataclass
class Job:
    corpus: str
    protocol: str
    model: str
    fold: Fold
    seed: int
    params: dict
    key: str
    train: np.ndarray
    test: np.ndarray


def _labels_of(features: FeatureSet, target: str) -> set[str]:
    return set(features.manifest[target])


def _restricted(features: FeatureSet, target: str, labels: set[str]) -> FeatureSet:
    return features.subset(np.flatnonzero(features.manifest[target].isin(labels).to_numpy()))


def _has_gender(name: str, features: FeatureSet, why: str) -> bool:
    """True when every utterance has a known gender and each gender has 2 or more speakers; otherwise say why the
    rows are left out."""
    unknown = int((~features.manifest["gender"].isin(["female", "male"])).sum())
    genders = features.manifest["gender"].nunique()
    lone = lone_speaker_classes(features.manifest, "gender")
    if unknown:
        log.warning("%s: %s skipped: %d utterances have no gender metadata (not guessed)", name, why, unknown)
    elif genders < 2:
        log.warning("%s: %s skipped: every speaker has the same gender", name, why)
    elif lone:
        log.warning("%s: %s skipped: only one speaker is %s, so no speaker-independent fold trains on that gender "
                    "while testing it", name, why, lone[0])
    return unknown == 0 and genders == 2 and not lone


def plan_datasets(suite: Suite, corpus_sets: dict[str, FeatureSet], *, target: str = "emotion",
                  variant_sets: dict[tuple[str, str], FeatureSet] | None = None) -> list[Dataset]:
    """Per-corpus tables, the combined table and cross-corpus pairs, other tasks, then variant rows."""
    scopes = {p: PROTOCOLS[p].scope for p in suite.protocols}
    per_corpus = tuple(p for p in suite.protocols if scopes[p] == "corpus")
    spec = suite.features
    datasets = []
    for name, features in corpus_sets.items():
        if target == "gender" and not _has_gender(name, features, "gender task"):
            continue
        protocols = per_corpus
        if features.manifest["speaker"].nunique() < MIN_SPEAKERS:  # no speaker-independent claim possible: say so
            protocols = tuple(dict.fromkeys("speaker_dependent" if p == "speaker_folds" else p for p in protocols))
        datasets.append(Dataset(name, (name,), features, protocols, suite.corpus_options.get(name, {}), spec,
                                target=target))
    names = sorted(n for n in corpus_sets if any(d.name == n for d in datasets))
    if len(names) >= 2:
        datasets += _multi_corpus(suite, {n: corpus_sets[n] for n in names}, scopes, target)
    if target != "emotion":
        return datasets
    for task, models in suite.tasks.items():
        for name, features in corpus_sets.items():
            if features.manifest["speaker"].nunique() >= MIN_SPEAKERS and _has_gender(name, features, f"{task} task"):
                datasets.append(Dataset(name, (name,), features, ("speaker_folds",), suite.corpus_options.get(name, {}),
                                        spec, target=task, models=models))
    for model, budget in suite.tuning.items():  # tuned rows on each corpus' speaker folds
        budget = {**budget, "trials": max(1, round(budget["trials"] * suite.budget))}  # the budget factor scales trials
        for name, features in corpus_sets.items():
            independent = features.manifest["speaker"].nunique() >= MIN_SPEAKERS
            protocol = "speaker_folds" if independent else "speaker_dependent"
            datasets.append(Dataset(name, (name,), features, (protocol,), suite.corpus_options.get(name, {}), spec,
                                    variant={"tuned": budget}, models=(model,)))
    for variant in suite.variants:
        extra = {k: v for k, v in variant.items() if k not in ("models", "protocols")}
        for name, features in corpus_sets.items():
            if "feature_set" in extra:
                if (name, extra["feature_set"]) not in (variant_sets or {}):
                    continue  # its extra is not installed (said when loading)
                features = variant_sets[(name, extra["feature_set"])]
            if extra.get("gender_input") and not _has_gender(name, features, "gender-input rows"):
                continue
            protocols = tuple(p for p in variant["protocols"] if p in per_corpus)
            variant_spec = FeatureSpec(**{**asdict(spec), "feature_set": extra.get("feature_set", spec.feature_set)})
            datasets.append(Dataset(name, (name,), features, protocols, suite.corpus_options.get(name, {}),
                                    variant_spec, variant=extra, models=variant["models"]))
    return datasets


def _multi_corpus(suite: Suite, corpus_sets: dict[str, FeatureSet], scopes: dict, target: str) -> list[Dataset]:
    names = sorted(corpus_sets)
    options = {c: suite.corpus_options.get(c, {}) for c in names}
    datasets = []
    if "combined" in scopes.values():
        label_sets = [_labels_of(corpus_sets[c], target) for c in names]
        labels = set.union(*label_sets) if suite.combined.get("labels") == "all" else set.intersection(*label_sets)
        parts = []
        for c in names:  # a speaker two corpora share (by a shared recording) is kept in the first only
            seen = FeatureSet.concat(parts) if parts else None
            parts.append(_without_shared_speakers("+".join(names), _restricted(corpus_sets[c], target, labels), seen))
        merged = FeatureSet.concat(parts)
        datasets.append(Dataset("+".join(names), tuple(names), merged, ("combined",), options, suite.features,
                                {"n_folds": suite.combined.get("n_folds")}, target=target))
    if "cross" in scopes.values():
        sides = [((a,), b) for a in names for b in names if a != b]
        if len(names) > 2:  # also every other corpus together -> one
            sides += [(tuple(c for c in names if c != b), b) for b in names]
        for train, test in sides:
            labels = set.union(*(_labels_of(corpus_sets[c], target) for c in train))
            labels &= _labels_of(corpus_sets[test], target)
            if len(labels) < 2:
                log.warning("cross-corpus %s->%s skipped: fewer than 2 shared labels", "+".join(train), test)
                continue
            tested = _restricted(corpus_sets[test], target, labels)
            name = f"{'+'.join(train)}->{test}"
            merged = FeatureSet.concat([*(_without_shared_speakers(name, _restricted(corpus_sets[c], target, labels),
                                                                   tested) for c in train), tested])
            datasets.append(Dataset(f"{'+'.join(train)}->{test}", (*train, test), merged, ("cross_corpus",),
                                    {c: options[c] for c in (*train, test)}, suite.features,
                                    {"train_corpora": train, "test_corpus": test}, target=target))
    return datasets


def model_params(suite: Suite, model: str) -> dict:
    """A model's parameters in this suite; an ensemble also carries each member's."""
    params = model_spec(model).resolved_params(suite.model_params.get(model), suite.budget)
    if model_spec(model).family == "ensemble" and not is_vote(model):
        params["member_params"] = {m: model_params(suite, member_feature_set(m)[0]) for m in params["members"]}
    return params


def shared_fits(suite: Suite, models: list[str]) -> dict[str, set[str]]:
    """Per protocol, the models whose own rows an ensemble among `models` refits under that protocol as a chosen
    member with the same parameters (no member override applies to its refits): each such fit is trained once."""
    shared: dict[str, set[str]] = {}
    for protocol in suite.protocols:
        allowed = set(resolve_models(suite.protocol_models.get(protocol, ("all",))))
        for model in models:
            if model not in allowed or model_spec(model).family != "ensemble" or is_vote(model):
                continue
            params = model_params(suite, model)
            registered = params.get("refit_members", "candidate") == "registered"
            overrides = {} if registered else params.get("member_overrides") or {}
            # a member with copies of its own trains its row on more rows than the ensemble gives it: two fits
            shared.setdefault(protocol, set()).update(
                member_feature_set(m)[0] for m in params["members"]
                if not overrides.get(m) and not suite.model_augment.get(member_feature_set(m)[0]))
    return shared


def member_feature_sets(suite: Suite, models: list[str]) -> list[str]:
    """Feature sets (besides the suite's own) that the ensembles' members read, e.g. ["compare"]."""
    needed = [member_feature_set(m)[1] for model in models if model_spec(model).family == "ensemble"
              and not is_vote(model)
              for m in model_params(suite, model)["members"]]
    return list(dict.fromkeys(f for f in needed if f and f != suite.features.feature_set))


def _warn_untrained_test_classes(corpus: str, protocol: str, folds: list[Fold], manifest: pd.DataFrame,
                                 target: str) -> None:
    """Say which folds test a class that their training speakers never voice (its recall there is 0)."""
    untrained = {f.index: classes for f in folds if f.speaker_independent
                 and (classes := untrained_test_classes(f, manifest, target))}
    if untrained:
        log.warning("%s/%s: %d of %d folds test classes that none of their training speakers voices, so those "
                    "classes score 0 recall there (fold: classes): %s", corpus, protocol, len(untrained), len(folds),
                    "; ".join(f"{i}: {', '.join(c)}" for i, c in untrained.items()))


def _plan_jobs(options: RunOptions, dataset: Dataset, models: list[str], done: set[str]):
    suite, corpus, features = options.suite, dataset.name, dataset.features
    labels = sorted(features.manifest[dataset.target].unique())
    # Every model of a table is scored on the same folds (from the first seed); seeds vary the models.
    fold_seed = (options.seeds or suite.seeds)[0]
    jobs, reused, planned = [], 0, {}
    fold_options = {k: v for k, v in dataset.fold_options.items() if v is not None}
    unusable = []  # protocols whose folds cannot be made for this dataset, with the reason
    for protocol in dataset.protocols:
        options_here = {**suite.protocol_options, **fold_options} if protocol == "speaker_folds" else fold_options
        try:
            folds = make_folds(protocol, features.manifest, seed=fold_seed, **options_here)
        except ProtocolError as error:
            log.info("%s: protocol %s skipped (%s)", corpus, protocol, error)
            unusable.append(f"{protocol}: {error}")
            continue
        if not dataset.variant:  # a variant's rows share the folds of its table, said once
            _warn_untrained_test_classes(corpus, protocol, folds, features.manifest, dataset.target)
        allowed = set(resolve_models(suite.protocol_models.get(protocol, ("all",))))
        if dataset.models is not None:
            allowed &= set(resolve_models(dataset.models))
        # votes last: their config hashes name their members' (a retrained member redoes the vote)
        for model in sorted(models, key=is_vote):
            if model not in allowed:
                continue
            params = model_params(suite, model)
            for seed in options.seeds or seeds_for(suite, model):
                for fold in folds:
                    members = _vote_members(planned, model, params, corpus, protocol, fold.index, seed, dataset)
                    if is_vote(model) and members is None:
                        continue
                    key = config_hash({
                        "corpus": corpus, "corpus_options": dataset.corpus_options,
                        "protocol": protocol, **fold.hash_fields(),
                        "model": model, "params": params, "seed": seed, "features": dataset.spec.key(),
                        "data": features.fingerprint(), "labels": labels,
                        **({"target": dataset.target} if dataset.target != "emotion" else {}),
                        **({"variant": dataset.variant} if dataset.variant else {}),
                        **({"augment": [asdict(a) for a in augment]} if (augment := augment_for(suite, model)) else {}),
                        # version 1 is implicit, so hashes of rows recorded before versions existed still match
                        **({"model_version": version} if (version := model_spec(model).version) > 1 else {}),
                        **({"member_hashes": members} if members else {}),
                    })
                    identity = {"corpus": corpus, "protocol": protocol, "model": model, "fold": fold.index,
                                "seed": seed, "target": dataset.target, "variant": dataset.variant}
                    planned[record_identity(identity)] = key
                    if key in done:
                        reused += 1
                        continue
                    train, test = fold.split(features.manifest)
                    job_params = params | {"member_hashes": members} if members else params
                    jobs.append(Job(corpus, protocol, model, fold, seed, job_params, key, train, test))
    if unusable and len(unusable) == len(dataset.protocols):  # not one table for this dataset: say why
        log.warning("%s: no folds can be made, so it gets no rows (%s)", corpus, "; ".join(unusable))
    return jobs, reused, planned


def _vote_members(planned: dict, model: str, params: dict, corpus: str, protocol: str, fold: int, seed: int,
                  dataset: Dataset) -> list[str] | None:
    """The config hashes of a vote's members on this fold and seed; None when one of them does not run here."""
    if not is_vote(model):
        return None
    hashes = []
    for member in params["members"]:
        identity = record_identity({"corpus": corpus, "protocol": protocol, "model": member, "fold": fold,
                                    "seed": seed, "target": dataset.target, "variant": dataset.variant})
        if identity not in planned:
            if fold == 0:
                log.info("%s %s: %s left out (member %s does not run on this table with seed %d)",
                         corpus, protocol, model, member, seed)
            return None
        hashes.append(planned[identity])
    return hashes


def _run_votes(options: RunOptions, store: RecordStore, dataset: Dataset, jobs: list[Job], labels: list[str]) -> int:
    """Record every planned vote whose members are all recorded (no training: stored probabilities only)."""
    recorded = {r["config_hash"]: r for r in store.load()} if jobs else {}
    done = 0
    for job in jobs:
        hashes = job.params["member_hashes"]
        missing = [m for m, h in zip(job.params["members"], hashes, strict=True) if h not in recorded]
        if missing:
            log.warning("%s %s fold %d: %s not recorded (members %s missing)", job.corpus, job.protocol,
                        job.fold.index, job.model, missing)
            continue
        try:
            member_predictions = [store.load_predictions(h) for h in hashes]
        except (OSError, ValueError, EOFError) as error:
            log.warning("%s %s fold %d: %s not recorded: a member's stored predictions cannot be read (%s); delete "
                        "that file and run again to refit the member", job.corpus, job.protocol, job.fold.index,
                        job.model, error)
            continue
        outcome = vote_outcome(job.params["members"], member_predictions, [recorded[h] for h in hashes], labels)
        record, predictions = _record(options, job, dataset, outcome, labels)
        record["params"] = {k: v for k, v in record["params"].items() if k != "member_hashes"}
        store.append(record, predictions)
        done += 1
    return done


def _record(options: RunOptions, job: Job, dataset: Dataset, outcome: dict, labels: list[str]):
    features = dataset.features
    manifest = features.manifest
    y_test = manifest[dataset.target].to_numpy()[job.test]
    probabilities = np.zeros((len(job.test), len(labels)))
    for column, label in enumerate(outcome["classes"]):
        probabilities[:, labels.index(label)] = outcome["probabilities"][:, column]
    predictions = pd.DataFrame({
        # Paths relative to the corpus folder (and the content key): joinable to any copy of the corpus.
        "path": manifest[_PORTABLE_PATH if _PORTABLE_PATH in manifest else "path"].to_numpy()[job.test],
        "speaker": manifest["speaker"].to_numpy()[job.test],
        "key": np.asarray(features.keys)[job.test], "true": y_test, "predicted": outcome["predicted"],
    })
    for column, label in enumerate(labels):
        predictions[f"p_{label}"] = probabilities[:, column]
    train_speakers = sorted(manifest["speaker"].iloc[job.train].unique())
    test_speakers = sorted(manifest["speaker"].iloc[job.test].unique())
    if job.fold.speaker_independent:
        assert_speaker_disjoint(train_speakers, test_speakers)
        assert_speaker_disjoint(outcome["validation_speakers"], test_speakers)
    if not set(outcome["validation_speakers"]) <= set(train_speakers):
        raise SpeakerLeakError("validation speakers must come from the training fold")
    for inner in outcome["inner_speakers"]:  # tuning and ensemble inner folds
        if job.fold.speaker_independent:
            assert_speaker_disjoint(inner, test_speakers)
        if not set(inner) <= set(train_speakers):
            raise SpeakerLeakError("inner-fold speakers must come from the training fold")
    multi = {"corpora": list(dataset.corpora)} if len(dataset.corpora) > 1 else {}
    if "test_corpus" in dataset.fold_options:
        multi |= {"train_corpora": list(dataset.fold_options["train_corpora"]),
                  "test_corpus": dataset.fold_options["test_corpus"]}
    record = {
        "suite": options.suite.name, "corpus": job.corpus, "protocol": job.protocol, "model": job.model,
        "family": model_spec(job.model).family, "fold": job.fold.index, "seed": job.seed,
        "config_hash": job.key, "labels": labels, "target": dataset.target, **multi,
        **({"variant": dataset.variant} if dataset.variant else {}),
        **({} if job.fold.speaker_independent else {"speaker_independent": False}),
        **classification_metrics(y_test, outcome["predicted"], labels),
        **roc_auc(y_test, probabilities, labels),
        "n_train": int(len(job.train)), "n_test": int(len(job.test)),
        "train_speakers": train_speakers, "test_speakers": test_speakers,
        "validation_speakers": outcome["validation_speakers"], "curves": outcome["curves"],
        **({"inner_speakers": outcome["inner_speakers"]} if outcome["inner_speakers"] else {}),
        **({"tuning": outcome["tuning"]} if outcome["tuning"] else {}),
        **({"ensemble": outcome["ensemble"]} if outcome["ensemble"] else {}),
        "fit_seconds": round(outcome["fit_seconds"], 4), "predict_seconds": round(outcome["predict_seconds"], 4),
        **({"fit_reused": True} if outcome.get("fit_reused") else {}),  # trained earlier, as an ensemble's member
        **({"xla_threads": outcome["xla_threads"]} if outcome.get("xla_threads") else {}),
        "params": job.params, "model_version": model_spec(job.model).version,
        "features": asdict(dataset.spec) | {"key": dataset.spec.key()},
        "augment": [asdict(a) for a in augment_for(options.suite, job.model)],
        "data_fingerprint": features.fingerprint(), "versions": package_versions(),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    return record, predictions


def _reads_frames(models) -> bool:
    """Whether any of these models (names or families) reads frame features rather than functionals."""
    return any(model_spec(m).input not in ("functionals", STORED) for m in resolve_models(tuple(models)))


def _load_features(options: RunOptions, corpus: str, spec: FeatureSpec | None = None, *,
                   frames: bool = True, main: FeatureSet | None = None) -> FeatureSet:
    """A corpus's usable features on `spec` (the suite's own set when None). Copies of a recording are found on the
    suite's own set; another set (`main`: the suite's own set of the corpus) leaves out the same files."""
    corpus_options = options.suite.corpus_options.get(corpus, {})
    root = corpus_root(corpus, corpus_options, options.data_root, options.cache_dir)
    manifest = load_corpus(corpus, root, **corpus_options)
    if options.suite.labels:
        manifest = harmonise_labels(manifest, **options.suite.labels)
        if manifest.empty:
            raise BenchError(f"corpus {corpus!r}: no utterances left after the suite's label options")
    features = extract_features(
        manifest, spec or options.suite.features, cache_dir=options.cache_dir, n_jobs=options.jobs,
        progress=options.progress, frames=frames,
    )
    features.skipped = manifest.attrs.get("skipped", []) + features.skipped
    if features.manifest.empty:
        raise BenchError(f"corpus {corpus!r}: no usable audio in {root} ({len(features.skipped)} files skipped)")
    say = main is None  # said once, for the suite's own feature set
    copies = _copies_within(corpus, features) if main is None else [row for row in main.skipped if "copy_of" in row]
    features = _without(features, copies, corpus=corpus if say else None)
    if options.target != "emotion":
        return features
    return _without_lone_speaker_classes(corpus, features, say=say)


def _copies_within(corpus: str, features: FeatureSet) -> list[dict]:
    """The skipped.csv rows of the files that hold the recording of an earlier file which a fold could put on the
    other side of it: a copy (byte-identical, or re-encoded, resampled, rescaled) under another speaker, or any copy
    where folds split utterances (fewer than MIN_SPEAKERS speakers)."""
    manifest = features.manifest
    any_copy = manifest["speaker"].nunique() < MIN_SPEAKERS
    paths, speakers = manifest["path"].astype(str).to_numpy(), manifest["speaker"].to_numpy()
    copies = []
    for index, first in enumerate(first_copies(features.keys, features.functionals)):
        if first == index or (speakers[first] == speakers[index] and not any_copy):
            continue
        how = ("byte for byte" if features.keys[first] == features.keys[index] else
               "nearly (re-encoded, resampled, rescaled or padded: functionals within "
               f"{NEAR_COPY_DISTANCE} interquartile ranges)")
        copies.append({"path": paths[index], "copy_of": paths[first],
                       "reason": f"the same audio as {paths[first]} ({speakers[first]}), {how}: one recording on both "
                                 f"sides of a fold would be tested on what it trained on"})
    return copies


def _without(features: FeatureSet, copies: list[dict], *, corpus: str | None) -> FeatureSet:
    """`features` less the files of `copies` (to skipped.csv); a warning names them when `corpus` is given."""
    paths = {row["path"] for row in copies}
    dropped = features.manifest["path"].astype(str).isin(paths).to_numpy()
    if not dropped.any():
        return features
    if corpus:
        log.warning("%s: %d files are copies (byte-identical, or re-encoded, resampled or rescaled) of other files "
                    "of the corpus under another speaker (or in utterance folds) and are left out, e.g. %s",
                    corpus, int(dropped.sum()), copies[0]["path"])
    kept = features.subset(np.flatnonzero(~dropped))
    gone = set(features.manifest["path"].astype(str)[dropped])
    kept.skipped += [row for row in copies if row["path"] in gone]
    return kept


def _without_shared_speakers(name: str, features: FeatureSet, others: FeatureSet | None) -> FeatureSet:
    """`features` less every speaker with a file whose recording another corpus of the table (`others`) also has,
    byte for byte or nearly: the same recording means the same person, who must not be on both sides of a fold."""
    if others is None or others.manifest.empty:
        return features
    found = copies_in(features.keys, features.functionals, others.keys, others.functionals)
    speakers = features.manifest["speaker"].to_numpy()
    twins = {speakers[i]: others.manifest["speaker"].iloc[j] for i, j in enumerate(found) if j >= 0}
    if not twins:
        return features
    left_out = np.isin(speakers, list(twins))
    speaker, twin = next(iter(twins.items()))
    log.warning("%s: %d speakers of %s (%d files) have recordings that another corpus of this table also has (byte "
                "for byte, or re-encoded, resampled or rescaled), so they are taken for the same people and left out "
                "of it, e.g. %s (= %s)", name, len(twins), features.manifest["corpus"].iloc[0], int(left_out.sum()),
                speaker, twin)
    return features.subset(np.flatnonzero(~left_out))


def _without_lone_speaker_classes(corpus: str, features: FeatureSet, *, say: bool = True) -> FeatureSet:
    """Leave out (to skipped.csv) a class that one speaker alone voices: each fold testing it never trained on it."""
    manifest = features.manifest
    if manifest["speaker"].nunique() < MIN_SPEAKERS:  # speaker-dependent folds: the rule does not apply
        return features
    lone = lone_speaker_classes(manifest)
    if not lone:
        return features
    dropped = manifest["emotion"].isin(lone).to_numpy()
    if say:
        log.warning("%s: classes %s are voiced by fewer than %d speakers and are left out (utterances: %d): "
                    "no speaker-independent fold can both train and test them", corpus, lone, MIN_CLASS_SPEAKERS,
                    int(dropped.sum()))
    kept = features.subset(np.flatnonzero(~dropped))
    kept.skipped += [{"path": str(row.path), "reason": f"class {row.emotion!r} is voiced by one speaker only "
                      f"({row.speaker}): no speaker-independent fold can both train and test it"}
                     for row in manifest[dropped].itertuples()]
    return kept


def _other_sets(dataset: Dataset, variant_sets: dict, feature_sets: list[str]) -> dict[str, FeatureSet]:
    """The dataset's utterances on the feature sets that ensemble members name ("logreg@compare")."""
    return {
        feature_set: dataset.features if dataset.spec.feature_set == feature_set
        else FeatureSet.concat([variant_sets[(corpus, feature_set)] for corpus in dataset.corpora])
        for feature_set in feature_sets
        if dataset.spec.feature_set == feature_set
        or all((corpus, feature_set) in variant_sets for corpus in dataset.corpora)
    }


def _training_copies(options: RunOptions, dataset: Dataset,
                     models: list[str]) -> tuple[list[FeatureSet], dict[str, tuple[int, ...]]]:
    """The augmented copies these models train on, each extracted once, and each model's positions among them."""
    wanted = {model: augment_for(options.suite, model) for model in models}
    augmentations = list(dict.fromkeys(a for own in wanted.values() for a in own))
    sets = [
        extract_features(dataset.features.manifest, dataset.spec, cache_dir=options.cache_dir,
                         n_jobs=options.jobs, progress=options.progress, augmentation=augmentation,
                         frames=dataset.features.frames is not None)
        for augmentation in augmentations
    ]
    return sets, {model: tuple(augmentations.index(a) for a in own) for model, own in wanted.items()}


def _write_skipped(folder: Path, rows: list[dict]) -> None:
    path = folder / "skipped.csv"
    if rows:
        pd.DataFrame(rows, columns=["corpus", "path", "reason"]).to_csv(path, index=False)
    elif path.exists():
        path.unlink()


def compiled_programs_beside(cache_dir: Path) -> None:
    """Keep the compiled-program cache in xla/ of this run's feature cache (so --cache-dir moves both),
    unless SER_BENCH_XLA_CACHE names its own place. Set before any worker starts: they inherit it."""
    os.environ.setdefault(XLA_CACHE_ENV, str(Path(cache_dir).expanduser() / "xla"))


def run_suite(options: RunOptions) -> RunSummary:
    """Run every job of the suite that is not yet recorded, then rebuild the leaderboards."""
    folder = options.results_dir / options.suite.name
    _writable(folder, "results folder", "--results-dir")
    with _sole_run(folder):
        return _run_suite(options)


@contextlib.contextmanager
def _sole_run(folder: Path):
    """Hold the results folder for this run. A second run on it would train the same folds again, and each run's
    record rewrites (supersede) would drop the other's new records; it is refused, not queued."""
    lock = FileLock(str(folder / ".run.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise BenchError(f"another `bench run` is writing {folder}: start this one when it has finished (what "
                         f"it recorded is then reused), or give this one its own --results-dir") from None
    try:
        yield
    finally:
        lock.release()


def _run_suite(options: RunOptions) -> RunSummary:
    suite = options.suite
    compiled_programs_beside(options.cache_dir)
    models = resolve_models(options.models or suite.models)
    manifests = register_manifests(suite.manifests | options.manifests, options.data_root)
    corpora = resolve_corpora(options.corpora or suite.corpora, options.data_root, tuple(manifests))
    left_out = [name for name in manifests if name not in corpora]
    if left_out and options.corpora:  # --corpus chose the corpora: say which declared ones it leaves out
        log.warning("manifest corpora %s are not among --corpus %s: left out", left_out, list(options.corpora))
    elif left_out:  # a declared manifest is a corpus the suite wants, even when `corpora` does not name it
        corpora += left_out
    folder = options.results_dir / suite.name
    _writable(options.cache_dir, "feature cache", "--cache-dir (or SER_BENCH_CACHE)")
    store = RecordStore(folder)
    if options.scheduler:  # an unreachable scheduler is said now, before --fresh clears anything or features run
        _dask_client(options.scheduler).close()
    if options.fresh:
        store.clear()
    done = store.recorded_hashes()
    trained = reused = 0
    skipped_rows: list[dict] = []
    corpus_sets = {}
    for corpus in corpora:
        corpus_sets[corpus] = _load_features(options, corpus, frames=_reads_frames(models))
        skipped_rows += [{"corpus": corpus, **row} for row in corpus_sets[corpus].skipped]
    variant_sets = {}
    member_sets = member_feature_sets(suite, models)
    for feature_set in dict.fromkeys([*(v["feature_set"] for v in suite.variants if "feature_set" in v),
                                      *member_sets]):
        spec = dataclasses.replace(suite.features, feature_set=feature_set)
        try:
            spec.check_available()
        except MissingExtraError as error:
            log.warning("rows on the %s feature set left out: %s", feature_set, error)
            if feature_set in member_sets:
                models = [m for m in models if feature_set not in member_feature_sets(suite, [m])]
            continue
        # An openSMILE set's frame pass runs only for the frame models of its variant rows.
        frames = any(_reads_frames(v["models"]) for v in suite.variants if v.get("feature_set") == feature_set)
        for corpus in corpora:
            variant_sets[(corpus, feature_set)] = _load_features(options, corpus, spec, frames=frames,
                                                                 main=corpus_sets[corpus])
            known = {row["path"] for row in corpus_sets[corpus].skipped}
            skipped_rows += [{"corpus": f"{corpus} ({feature_set})", **row}
                             for row in variant_sets[(corpus, feature_set)].skipped if row["path"] not in known]
    storage = options.storage or f"sqlite:///{(folder / 'optuna.sqlite3').resolve()}"
    if suite.tuning:
        try:
            prepare_storage(storage)
        except StorageError as error:
            raise BenchError(str(error)) from error
    datasets = plan_datasets(suite, corpus_sets, target=options.target, variant_sets=variant_sets)
    if not datasets:  # only --target gender leaves every corpus out (the warnings above say why)
        raise BenchError(f"none of {', '.join(corpora)} can be run for --target {options.target}: it needs a gender "
                         f"for every utterance and 2 or more speakers of each gender (the warnings above say what "
                         f"each corpus lacks)")
    main_datasets = [d for d in datasets if d.target == "emotion" and not d.variant and len(d.corpora) == 1]
    shared = shared_fits(options.suite, models)  # also across tables: a ComParE row and an "svm@compare" refit
    for dataset in datasets:
        features = dataset.features
        jobs, reused_here, planned = _plan_jobs(options, dataset, models, done)
        votes = [job for job in jobs if is_vote(job.model)]
        jobs = [job for job in jobs if not is_vote(job.model)]
        superseded = store.supersede(planned)
        if superseded:
            log.warning("%s: %d records of an older configuration moved to %s", dataset.name, superseded,
                        store.superseded_path.name)
        reused += reused_here
        labels = sorted(features.manifest[dataset.target].unique())
        copies, copies_of = _training_copies(options, dataset, list(dict.fromkeys(job.model for job in jobs)))
        inputs = ModelInputs(features, copies, target=dataset.target, copies=copies_of,
                             gender_input=bool(dataset.variant.get("gender_input")),
                             other_sets=_other_sets(dataset, variant_sets, member_sets))
        calls = (
            delayed(_fit_job)(
                f"{job.model} {job.protocol} fold {job.fold.index} seed {job.seed}", job.model, job.params, job.seed,
                *job_data(inputs, job.model, job.train, job.test, job.fold.speaker_independent,
                          job.params.get("members")),
                tuning=dataset.variant.get("tuned"), storage=storage,
                study=f"{suite.name}-{dataset.name}-{job.protocol}-{job.model}-fold{job.fold.index}-seed{job.seed}"
                      f"-{job.key[:8]}",
                cache_dir=str(options.cache_dir / "ensembles"),
                share_fit=len(dataset.corpora) == 1 and job.model in shared.get(job.protocol, ()),
            )
            for job in jobs
        )
        bar = tqdm(total=len(jobs), desc=f"{dataset.name} folds", unit="fit",
                   disable=None if options.progress is None else not options.progress)
        with _backend(options), warnings.catch_warnings():  # results consumed inside: the client stays open
            # loky restarts workers whose memory grew (JAX caches) between jobs; a job lost that way raises.
            warnings.filterwarnings("ignore", message="A worker stopped while some jobs", category=UserWarning)
            # No memory-mapping of the inputs: joblib writes every job's arrays to a new file in /dev/shm and keeps
            # it for the whole call, which grew to 19 GiB over the 144 frame-model fits of RAVDESS and was killed
            # for memory. Pickled to the worker instead: a copy per job, freed with it.
            outcomes = Parallel(n_jobs=-1 if options.scheduler else options.jobs, return_as="generator",
                                max_nbytes=None)(calls)
            finished = 0
            try:
                for job, outcome in zip(jobs, outcomes, strict=True):
                    record, predictions = _record(options, job, dataset, outcome, labels)
                    store.append(record, predictions)
                    trained += 1
                    finished += 1
                    bar.update()
            except (TerminatedWorkerError, BrokenProcessPool) as error:
                job = jobs[finished]
                raise BenchError(
                    f"training on {dataset.name}: a worker process died ({type(error).__name__}) with "
                    f"{len(jobs) - finished} fits to go, near {job.model} {job.protocol} fold {job.fold.index} "
                    f"seed {job.seed}; {trained} fits of this run are recorded and will be reused. Run the same "
                    "command again; if it happens again, try --jobs 1 (memory) or --device cpu"
                ) from None
            except FitFailedError as error:
                log.debug("the failed fit's traceback", exc_info=error)
                raise BenchError(
                    f"training on {dataset.name}: {str(error).rstrip('.')}. Every finished fit is recorded ({trained} "
                    "in this run) and the same command continues from them (-v shows the traceback)"
                ) from error
            finally:
                bar.close()
        trained += _run_votes(options, store, dataset, votes, labels)
    stale = store.retire_stale_votes()
    if stale:
        log.warning("%d vote records (%s) averaged members retrained since; moved to %s. Run the votes with all their "
                    "members in one command (no --model, or --model all) to redo them", len(stale),
                    ", ".join(sorted({f"{r['corpus']} {r['model']}" for r in stale})), store.superseded_path.name)
    _write_skipped(folder, skipped_rows)
    paths = write_leaderboards(store, suite, publish_to=options.results_dir if suite.publish else None)
    saved = _save_best_models(options, store, main_datasets) if options.save_models else {}
    by_reason = pd.Series([reason_kind(row["reason"]) for row in skipped_rows], dtype=object).value_counts()
    return RunSummary(suite.name, folder, paths["leaderboard"], trained, reused, len(skipped_rows), paths["best"],
                      saved, {str(k): int(v) for k, v in by_reason.items()})


@contextlib.contextmanager
def _backend(options: RunOptions):
    """Local processes (joblib), or the Dask cluster at --scheduler through joblib's dask backend."""
    if not options.scheduler:
        yield
        return
    with _dask_client(options.scheduler) as client, parallel_config(backend="dask"):
        log.info("running jobs on the Dask cluster at %s (%d workers)", options.scheduler,
                 len(client.scheduler_info()["workers"]))
        yield


def _writable(folder: Path, what: str, option: str) -> None:
    """Create `folder` now, so that a path that cannot hold files is said before any work, not after it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK):
            raise PermissionError("not writable")
    except OSError as error:
        raise BenchError(f"cannot write the {what} {folder} ({error.strerror or error}); choose another {option}") \
            from error


def _dask_client(address: str):
    """A client of the Dask scheduler at `address`; a missing Dask or an unreachable scheduler is a BenchError."""
    try:
        from dask.distributed import Client
    except ImportError as error:
        raise BenchError("--scheduler needs Dask: pip install -e '.[dask]'") from error
    try:
        return Client(address)
    except (OSError, ValueError) as error:  # a refused or timed-out connection, an address without a port
        raise BenchError(f"cannot reach the Dask scheduler at {address!r} ({error}); start it (`dask scheduler`, "
                         "then `dask worker ADDRESS` on each machine) or leave out --scheduler") from error


def _save_best_models(options: RunOptions, store: RecordStore, datasets: list[Dataset]) -> dict[str, str]:
    """Refit the best default model of each corpus' main table on all its utterances, for `bench predict`."""
    records = pd.DataFrame(store.load())
    saved = {}
    if records.empty:
        return saved
    for dataset in datasets:
        protocol = next((p for p in ("speaker_folds", "speaker_dependent", *dataset.protocols)
                         if p in dataset.protocols), None)
        rows = records[(records["corpus"] == dataset.name) & (records["protocol"] == protocol)]
        if "target" in rows.columns:
            rows = rows[rows["target"].fillna("emotion") == "emotion"]
        if "variant" in rows.columns:
            rows = rows[rows["variant"].isna()]
        rows = rows[rows["model"].map(lambda m: m in model_names() and model_spec(m).input in MODEL_INPUTS)]
        if rows.empty:
            continue
        uar = rows.groupby("model")["uar"].mean()
        model = str(uar.idxmax())
        first = rows[rows["model"] == model].iloc[0]
        copies, copies_of = _training_copies(options, dataset, [model])
        inputs = ModelInputs(dataset.features, copies, copies=copies_of)
        save_best_model(store.folder, dataset.name, model, dict(first["params"]), int(first["seed"]),
                        float(uar.max()), inputs, dataset.spec)
        saved[dataset.name] = model
    return saved
