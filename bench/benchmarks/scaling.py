"""How each stage of a suite grows with the corpus: wall time, time per utterance and peak memory, per size.

    python -m bench.benchmarks.scaling --utterances 1000 10000 100000 [--jobs 2] [--paths store memory]
        [--work DIR] [--json OUT.json]
    python -m bench.benchmarks.scaling --corpus ravdess --data-root DIR --paths memory store

At each size it generates the synthetic corpus (5 emotions, one speaker per 500 utterances, at least 12) in `--work`
(a temporary folder by default), then runs the stages of a suite through the harness' own functions: feature
extraction into an empty cache, the same read back from the cache (what a second run pays), the copy checks, fold
planning (speaker folds), then fold 0 of one classical fit (logreg), one mlp fit and one frame model (cnn), each
in a worker process as `bench run` starts them, with 2 and 1 epochs so that the data path is what is timed, and the
leaderboard from the records. The copy checks use the exact search below `INDEX_ROWS` utterances and the graph index
from there on, as a suite does. Per stage it prints the wall seconds, the milliseconds per utterance and the peak
resident memory of this process and its workers together (sampled every 50 ms with psutil).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import threading
import time
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import psutil

from bench.execute import run_fits
from bench.leaderboard import write_leaderboards
from bench.options import RunOptions
from bench.plan import plan_datasets, plan_jobs
from bench.records import RecordStore
from bench.suite import parse_suite
from ser_models.copies import INDEX_ROWS
from ser_models.corpora import load_corpus
from ser_models.corpora.synthetic import SyntheticConfig, generate_synthetic
from ser_models.feature_cache import extract_features
from ser_models.hygiene import copies_within, without
from ser_models.model_inputs import ModelInputs

MODELS = ("logreg", "mlp", "cnn")
EPOCHS = {"mlp": {"epochs": 2, "refit_full": False}, "cnn": {"epochs": 1}}


def corpus_config(utterances: int) -> SyntheticConfig:
    """About `utterances` files: 5 emotions, a speaker per 500 utterances (at least 12)."""
    speakers = max(12, utterances // 500)
    return SyntheticConfig(n_speakers=speakers, utterances_per_emotion=max(1, round(utterances / (5 * speakers))))


class PeakMemory:
    """Peak of the summed resident memory of this process and all its descendants, sampled in a thread."""

    def __init__(self, every: float = 0.05):
        self.every, self.peak, self._stop = every, 0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _total(self) -> int:
        me = psutil.Process()
        total = 0
        for process in [me, *me.children(recursive=True)]:
            try:
                total += process.memory_info().rss
            except psutil.Error:  # a worker that exited between the listing and the reading
                pass
        return total

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._total())
            self._stop.wait(self.every)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._total())


@contextmanager
def stage(rows: list[dict], name: str, utterances: int, path: str):
    """Time a stage and record its wall seconds, ms per utterance and peak memory (parent and workers)."""
    start = time.perf_counter()
    with PeakMemory() as memory:
        yield
    seconds = time.perf_counter() - start
    rows.append({"utterances": utterances, "path": path, "stage": name, "seconds": round(seconds, 3),
                 "ms_per_utterance": round(1000 * seconds / utterances, 4),
                 "peak_gib": round(memory.peak / 2**30, 3)})
    print(f"  {name:<20} {seconds:9.2f} s {1000 * seconds / utterances:9.3f} ms/utt {memory.peak / 2**30:7.2f} GiB",
          flush=True)


def run_size(target: int, jobs: int, work: Path, *, store: bool = True, corpus: str = "synthetic",
             data_root: Path | None = None, warm: bool = False) -> list[dict]:
    """Every stage on a generated corpus of about `target` utterances (or a real `corpus` under `data_root`), read
    from feature stores or (`store` False, the path before them) with every array in memory; one row per stage."""
    path = "store" if store else "memory"
    cache, results = work / f"cache-{corpus}-{target}-{path}", work / f"results-{corpus}-{target}-{path}"
    if not warm:
        shutil.rmtree(cache, ignore_errors=True)  # extraction starts cold
    if corpus == "synthetic":
        config = corpus_config(target)
        root, corpus_options = work / f"synthetic-{target}", _options(config)
        start = time.perf_counter()
        generate_synthetic(root, config, n_jobs=jobs)
        print(f"corpus generated in {time.perf_counter() - start:.0f} s")
    else:
        root, corpus_options = data_root / corpus, {}
    manifest = load_corpus(corpus, root, **corpus_options)
    n = len(manifest)
    print(f"{corpus}: {n} utterances, {manifest['speaker'].nunique()} speakers, {path} path", flush=True)
    rows: list[dict] = []
    with stage(rows, "extraction" + (" (warm cache)" if warm else ""), n, path):
        extract_features(manifest, cache_dir=cache, n_jobs=jobs, progress=False, store=store)
    with stage(rows, "second run's read", n, path):
        features = extract_features(manifest, cache_dir=cache, n_jobs=jobs, progress=False, store=store)
    with stage(rows, "copy checks", n, path):
        features = without(features, copies_within(corpus, features), corpus=None)
    rows[-1]["search"] = "graph index" if n >= INDEX_ROWS else "exact"
    suite = parse_suite({"corpora": [corpus], "models": list(MODELS), "model_params": EPOCHS,
                         "corpus_options": {corpus: corpus_options}}, default_name="scaling")
    options = RunOptions(suite=suite, results_dir=results, cache_dir=cache, jobs=jobs, progress=False,
                         save_models=False, feature_store=store)
    with stage(rows, "fold planning", n, path):
        dataset = plan_datasets(suite, {corpus: features})[0]
        jobs_, _, _ = plan_jobs(suite, dataset, list(MODELS), set())
    store_ = RecordStore(results / suite.name)
    store_.clear()
    inputs = ModelInputs(dataset.features)
    labels = sorted(features.manifest["emotion"].unique())
    for model in MODELS:
        fold0 = [job for job in jobs_ if job.model == model and job.fold.index == 0]
        with stage(rows, f"fit {model}", n, path):
            run_fits(options, store_, dataset, fold0, inputs, labels, storage=f"sqlite:///{results}/optuna.db",
                     shared={})
    with stage(rows, "leaderboard", n, path):
        write_leaderboards(store_, suite)
    return rows


def _options(config: SyntheticConfig) -> dict:
    return {"seed": config.seed, "n_speakers": config.n_speakers,
            "utterances_per_emotion": config.utterances_per_emotion}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--utterances", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--work", type=Path, help="folder for the corpora, caches and records (default: temporary)")
    parser.add_argument("--paths", nargs="+", choices=["store", "memory"], default=["store"],
                        help="read the tables from feature stores, or keep every array in memory (the path before)")
    parser.add_argument("--corpus", default="synthetic", help="a real corpus under --data-root instead (one size)")
    parser.add_argument("--data-root", type=Path)
    parser.add_argument("--warm", action="store_true",
                        help="keep the cache of an earlier run in --work (extraction then times a warm read)")
    parser.add_argument("--json", type=Path, help="also store the rows (with date, host and CPU count) here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ser-scaling-") as temporary:
        work = args.work or Path(temporary)
        rows = []
        for target in args.utterances if args.corpus == "synthetic" else [0]:
            for path in args.paths:
                rows += run_size(target, args.jobs, work, store=path == "store", corpus=args.corpus,
                                 data_root=args.data_root, warm=args.warm)
    if args.json:
        args.json.write_text(json.dumps({"date": date.today().isoformat(), "host": platform.node(),
                                         "cpus": psutil.cpu_count(), "jobs": args.jobs, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
