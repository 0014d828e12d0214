"""Runs a suite: corpora → cached features → folds → models → records → leaderboard (orchestration only).

`load` turns corpora into cleaned feature tables, `plan` makes the tables, folds and job keys, `execute` fits and
records; this module puts them in order and reports.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import logging
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from filelock import FileLock, Timeout

from bench.execute import dask_client, run_fits, run_votes
from bench.leaderboard import records_frame, write_leaderboards
from bench.load import load_tables, other_sets, register_manifests, resolve_corpora, training_copies, write_skipped
from bench.options import BenchError, FitFailedError, RunOptions
from bench.plan import Dataset, member_feature_sets, model_params, plan_datasets, plan_jobs, resolve_models, shared_fits
from bench.ranking import model_table
from bench.records import RecordStore
from bench.saved_models import save_best_model
from bench.votes import is_vote
from ser_models.feature_cache import default_cache_dir
from ser_models.model_inputs import MODEL_INPUTS, ModelInputs
from ser_models.models import model_names, model_spec
from ser_models.models.cpu_threads import request_xla_threads
from ser_models.models.keras_runtime import XLA_CACHE_ENV
from ser_models.tuning import StorageError, prepare_storage

log = logging.getLogger(__name__)

__all__ = ["BenchError", "FitFailedError", "RunOptions", "RunSummary", "default_cache_dir", "model_params",
           "resolve_models", "run_suite", "select_device", "shared_fits"]


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
    corpora = _corpora(options)
    folder = options.results_dir / suite.name
    _writable(options.cache_dir, "feature cache", "--cache-dir (or SER_BENCH_CACHE)")
    store = RecordStore(folder)
    if options.scheduler:  # an unreachable scheduler is said now, before --fresh clears anything or features run
        dask_client(options.scheduler).close()
    if options.fresh:
        store.clear()
    corpus_sets, variant_sets, skipped_rows, models = load_tables(options, corpora, models)
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
    trained, reused = _run_tables(options, store, datasets, models, variant_sets, storage)
    stale = store.retire_stale_votes()
    if stale:
        log.warning("%d vote records (%s) averaged members retrained since; moved to %s. Run the votes with all their "
                    "members in one command (no --model, or --model all) to redo them", len(stale),
                    ", ".join(sorted({f"{r['corpus']} {r['model']}" for r in stale})), store.superseded_path.name)
    write_skipped(folder, skipped_rows)
    paths = write_leaderboards(store, suite, publish_to=options.results_dir if suite.publish else None)
    tables = [d for d in datasets if d.target == "emotion" and len(d.corpora) == 1]
    saved = _save_best_models(options, store, tables) if options.save_models else {}
    by_reason = pd.Series([reason_kind(row["reason"]) for row in skipped_rows], dtype=object).value_counts()
    return RunSummary(suite.name, folder, paths["leaderboard"], trained, reused, len(skipped_rows), paths["best"],
                      saved, {str(k): int(v) for k, v in by_reason.items()})


def _corpora(options: RunOptions) -> list[str]:
    """The corpora to run: --corpus or the suite's, with the manifest corpora registered and added."""
    manifests = register_manifests(options.suite.manifests | options.manifests, options.data_root)
    corpora = resolve_corpora(options.corpora or options.suite.corpora, options.data_root, tuple(manifests))
    left_out = [name for name in manifests if name not in corpora]
    if left_out and options.corpora:  # --corpus chose the corpora: say which declared ones it leaves out
        log.warning("manifest corpora %s are not among --corpus %s: left out", left_out, list(options.corpora))
    elif left_out:  # a declared manifest is a corpus the suite wants, even when `corpora` does not name it
        corpora += left_out
    return corpora


def _run_tables(options: RunOptions, store: RecordStore, datasets: list[Dataset], models: list[str],
                variant_sets: dict, storage: str) -> tuple[int, int]:
    """Plan, fit and record every table's jobs not yet recorded, votes last; (fits recorded, rows reused)."""
    done = store.recorded_hashes()
    trained = reused = 0
    member_sets = member_feature_sets(options.suite, models)
    shared = shared_fits(options.suite, models)  # also across tables: a ComParE row and an "svm@compare" refit
    for dataset in datasets:
        jobs, reused_here, planned = plan_jobs(options.suite, dataset, models, done, options.seeds)
        votes = [job for job in jobs if is_vote(job.model)]
        jobs = [job for job in jobs if not is_vote(job.model)]
        superseded = store.supersede(planned)
        if superseded:
            log.warning("%s: %d records of an older configuration moved to %s", dataset.name, superseded,
                        store.superseded_path.name)
        reused += reused_here
        labels = sorted(dataset.features.manifest[dataset.target].unique())
        fits = list(dict.fromkeys((job.model, job.seed) for job in jobs))
        copies, copies_of = training_copies(options, dataset, fits)
        inputs = ModelInputs(dataset.features, copies, target=dataset.target, copies=copies_of,
                             gender_input=dataset.variant.gender_input,
                             other_sets=other_sets(dataset, variant_sets, member_sets))
        trained += run_fits(options, store, dataset, jobs, inputs, labels, storage=storage, shared=shared,
                            trained=trained)
        trained += run_votes(options, store, dataset, votes, labels)
    return trained, reused


def _writable(folder: Path, what: str, option: str) -> None:
    """Create `folder` now, so that a path that cannot hold files is said before any work, not after it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK):
            raise PermissionError("not writable")
    except OSError as error:
        raise BenchError(f"cannot write the {what} {folder} ({error.strerror or error}); choose another {option}") \
            from error


def _save_best_models(options: RunOptions, store: RecordStore, datasets: list[Dataset]) -> dict[str, str]:
    """Refit each corpus' best row (the first of its main table, feature-set variants included) on all its
    utterances, for `bench predict`. Rows that predict cannot reproduce (tuned, gender as an input, votes over stored
    predictions, ensembles) are passed over."""
    records = store.load()
    saved: dict[str, str] = {}
    if not records:
        return saved
    frame = records_frame(records)
    for corpus in dict.fromkeys(d.name for d in datasets if not d.variant):
        candidates = {json.dumps(d.variant.fields(), sort_keys=True): d for d in datasets
                      if d.name == corpus and not d.variant.gender_input and not d.variant.tuned}
        protocols = [p for d in candidates.values() for p in d.protocols]
        protocol = next((p for p in ("speaker_folds", "speaker_dependent", *protocols) if p in protocols), None)
        rows = frame[(frame["corpus"] == corpus) & (frame["protocol"] == protocol) & (frame["target"] == "emotion")]
        known = set(model_names(every=True))
        rows = rows[[json.dumps(r.get("variant") if isinstance(r.get("variant"), dict) else {}, sort_keys=True)
                     in candidates and r["model"] in known and model_spec(r["model"]).input in MODEL_INPUTS
                     for _, r in rows.iterrows()]]
        if rows.empty:
            continue
        best = model_table(rows).iloc[0]  # the table's own ranking
        first = rows[rows["entry"] == best.name].iloc[0]
        variant = first["variant"] if isinstance(first.get("variant"), dict) else {}
        dataset = candidates[json.dumps(variant, sort_keys=True)]
        model = str(first["model"])
        copies, copies_of = training_copies(options, dataset, [(model, int(first["seed"]))])
        inputs = ModelInputs(dataset.features, copies, copies=copies_of)
        save_best_model(store.folder, corpus, model, dict(first["params"]), int(first["seed"]),
                        float(best["uar_pooled"]), inputs, dataset.spec)
        saved[corpus] = str(best.name)
    return saved
