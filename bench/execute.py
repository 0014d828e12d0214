"""Running the planned fits: one fit and its predictions in a worker, then the record and predictions it leaves."""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from dataclasses import asdict
from datetime import datetime, timezone

import numpy as np
import pandas as pd
from joblib import Memory, Parallel, delayed, parallel_config
from joblib.externals.loky.process_executor import BrokenProcessPool, TerminatedWorkerError
from tqdm.auto import tqdm

from bench.options import BenchError, FitFailedError, RunOptions
from bench.plan import Dataset, Job
from bench.records import RecordStore, package_versions
from bench.suite import Suite, augment_for
from bench.votes import vote_outcome
from ser_models.ensembles import oof_digest, timed_fit
from ser_models.feature_store import resident
from ser_models.metrics import classification_metrics, roc_auc
from ser_models.model_inputs import ModelInputs, job_data
from ser_models.models import model_spec
from ser_models.models.cpu_threads import xla_threads
from ser_models.plugins import ensure_plugins, loaded_plugins
from ser_models.protocols import SpeakerLeakError, assert_speaker_disjoint
from ser_models.tuning import tune

log = logging.getLogger(__name__)

_PORTABLE_PATH = "relpath"


def fit_job(label: str, plugins: tuple[str, ...], *args, **kwargs) -> dict:
    """`fit_and_predict` in a worker, after loading the parent's plugins there; an error of the fit comes back named
    by `label` (the worker's traceback stays attached: -v logs it). A speaker leak stays a speaker leak."""
    try:
        ensure_plugins(plugins)
        return fit_and_predict(*args, **kwargs)
    except (SpeakerLeakError, BenchError):
        raise
    except Exception as error:
        raise FitFailedError(f"{label} failed: {type(error).__name__}: {error}") from error


def _selection(estimator) -> dict:
    """A greedy ensemble's selection, as its record keeps it: candidates in order, each addition with the inner UAR
    after it, and the digest of the stored out-of-fold probabilities it chose on (bench.benchmarks.greedy_replay)."""
    if not hasattr(estimator, "selection_trace_"):
        return {}
    return {"candidates": estimator.candidates_, "trace": estimator.selection_trace_,
            "oof_digest": oof_digest(estimator.inner_oof_, estimator.candidates_)}


def fit_and_predict(model: str, params: dict, seed: int, x_train, y_train, groups_train, x_test, *,
                    tuning: dict | None = None, storage: str | None = None, study: str | None = None,
                    cache_dir: str | None = None, share_fit: bool = False) -> dict:
    """Train one model on one fold's training rows (tuned first on inner folds of them) and predict its test rows.

    `share_fit`: an ensemble of this run refits this model as a member with the same parameters, so the fit is
    memoised in `cache_dir` beside the ensembles' and whichever of the two comes second loads it; the row then
    records the seconds the fit took when it was trained, and `fit_reused`.
    """
    spec = model_spec(model)
    x_train, x_test = resident(x_train), resident(x_test)  # stored utterance rows read here, in the worker
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
                "weights": [float(w) for w in estimator.weights_], **_selection(estimator)},
            "inner_oof": getattr(estimator, "inner_oof_", None),
            "curves": _rounded(getattr(estimator, "history_", None))}


def _rounded(curves: dict[str, list[float]] | None, digits: int = 4) -> dict[str, list[float]] | None:
    """Per-epoch curves at 4 decimals: float32 metrics printed in full were a quarter of records.jsonl."""
    if curves is None:
        return None
    return {key: [round(float(v), digits) for v in values] for key, values in curves.items()}


def run_votes(options: RunOptions, store: RecordStore, dataset: Dataset, jobs: list[Job], labels: list[str]) -> int:
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
        record, predictions = make_record(options.suite, job, dataset, outcome, labels)
        record["params"] = {k: v for k, v in record["params"].items() if k != "member_hashes"}
        store.append(record, predictions)
        done += 1
    return done


def make_record(suite: Suite, job: Job, dataset: Dataset, outcome: dict, labels: list[str]):
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
        "suite": suite.name, "corpus": job.corpus, "protocol": job.protocol, "model": job.model,
        "family": model_spec(job.model).family, "fold": job.fold.index, "seed": job.seed,
        "config_hash": job.key, "labels": labels, "target": dataset.target, **multi,
        **({"variant": dataset.variant.fields()} if dataset.variant else {}),
        **({} if job.fold.speaker_independent else {"speaker_independent": False}),
        **classification_metrics(y_test, outcome["predicted"], labels),
        **roc_auc(y_test, probabilities, labels),
        "n_train": int(len(job.train)), "n_test": int(len(job.test)),
        "train_speakers": train_speakers, "test_speakers": test_speakers,
        "validation_speakers": outcome["validation_speakers"], "curves": outcome["curves"],
        **({"inner_speakers": outcome["inner_speakers"]} if outcome["inner_speakers"] else {}),
        # a tuned fit's params are the ones it was fitted with; the search started from (and is keyed by) job.params
        **({"tuning": {**outcome["tuning"], "searched_from": job.params}} if outcome["tuning"] else {}),
        **({"ensemble": outcome["ensemble"]} if outcome["ensemble"] else {}),
        "fit_seconds": round(outcome["fit_seconds"], 4), "predict_seconds": round(outcome["predict_seconds"], 4),
        **({"fit_reused": True} if outcome.get("fit_reused") else {}),  # trained earlier, as an ensemble's member
        **({"xla_threads": outcome["xla_threads"]} if outcome.get("xla_threads") else {}),
        "params": outcome["tuning"]["params"] if outcome["tuning"] else job.params,
        "model_version": model_spec(job.model).version,
        "features": asdict(dataset.spec) | {"key": dataset.spec.key()},
        "augment": [asdict(a) for a in augment_for(suite, job.model, job.seed)],
        "data_fingerprint": features.fingerprint(), "versions": package_versions(),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    return record, predictions


def run_fits(options: RunOptions, store: RecordStore, dataset: Dataset, jobs: list[Job], inputs: ModelInputs,
             labels: list[str], *, storage: str, shared: dict[str, set[str]], trained: int = 0) -> int:
    """Fit every job of a table in worker processes (or on the Dask cluster), recording each as it finishes;
    a dead worker or a failing fit stops the run with what is recorded kept (`trained`: fits this run recorded
    before this table). Returns the fits recorded."""
    suite = options.suite
    plugins = loaded_plugins()
    calls = (
        delayed(fit_job)(
            f"{job.model} {job.protocol} fold {job.fold.index} seed {job.seed}", plugins, job.model, job.params,
            job.seed, *job_data(inputs, job.model, job.train, job.test, job.fold.speaker_independent,
                                job.params.get("members"), seed=job.seed),
            tuning=dataset.variant.budget(), storage=storage,
            study=f"{suite.name}-{dataset.name}-{job.protocol}-{job.model}-fold{job.fold.index}-seed{job.seed}"
                  f"-{job.key[:8]}",
            cache_dir=str(options.cache_dir / "ensembles"),
            share_fit=len(dataset.corpora) == 1 and job.model in shared.get(job.protocol, ()),
        )
        for job in jobs
    )
    bar = tqdm(total=len(jobs), desc=f"{dataset.name} folds", unit="fit",
               disable=None if options.progress is None else not options.progress)
    finished = 0
    with backend(options.scheduler), warnings.catch_warnings():  # results consumed inside: the client stays open
        # loky restarts workers whose memory grew (JAX caches) between jobs; a job lost that way raises.
        warnings.filterwarnings("ignore", message="A worker stopped while some jobs", category=UserWarning)
        # No memory-mapping of the inputs: joblib writes every job's arrays to a new file in /dev/shm and keeps
        # it for the whole call, which grew to 19 GiB over the 144 frame-model fits of RAVDESS and was killed
        # for memory. Pickled to the worker instead: a copy per job, freed with it.
        outcomes = Parallel(n_jobs=-1 if options.scheduler else options.jobs, return_as="generator",
                            max_nbytes=None)(calls)
        try:
            for job, outcome in zip(jobs, outcomes, strict=True):
                store.append(*make_record(suite, job, dataset, outcome, labels), inner=outcome.get("inner_oof"))
                finished += 1
                bar.update()
        except (TerminatedWorkerError, BrokenProcessPool) as error:
            job = jobs[finished]
            raise BenchError(
                f"training on {dataset.name}: a worker process died ({type(error).__name__}) with "
                f"{len(jobs) - finished} fits to go, near {job.model} {job.protocol} fold {job.fold.index} "
                f"seed {job.seed}; {trained + finished} fits of this run are recorded and will be reused. Run the same "
                "command again; if it happens again, try --jobs 1 (memory) or --device cpu"
            ) from None
        except FitFailedError as error:
            log.debug("the failed fit's traceback", exc_info=error)
            raise BenchError(
                f"training on {dataset.name}: {str(error).rstrip('.')}. Every finished fit is recorded "
                f"({trained + finished} in this run) and the same command continues from them (-v shows the traceback)"
            ) from error
        finally:
            bar.close()
    return finished


@contextlib.contextmanager
def backend(scheduler: str | None):
    """Local processes (joblib), or the Dask cluster at --scheduler through joblib's dask backend."""
    if not scheduler:
        yield
        return
    with dask_client(scheduler) as client, parallel_config(backend="dask"):
        log.info("running jobs on the Dask cluster at %s (%d workers)", scheduler,
                 len(client.scheduler_info()["workers"]))
        yield


def dask_client(address: str):
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
