"""Command line: `python -m bench run|list|report` (also installed as `ser-bench`)."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

from tabulate import tabulate

from bench.download import ARCHIVES, DownloadError, download_corpus
from bench.leaderboard import write_leaderboards
from bench.records import RecordStore
from bench.runner import BenchError, RunOptions, default_cache_dir, run_suite, select_device
from bench.saved_models import SavedModelError, choose_model, predict_files
from bench.suite import MAX_SEED, SuiteError, load_suite, suite_names, valid_budget, valid_seed
from ser_models.corpora import CorpusNotFoundError, ManifestError, corpus_info, corpus_names
from ser_models.corpora.registry import audio_files
from ser_models.extractors import FEATURES
from ser_models.feature_cache import ExtractionCrashError
from ser_models.model_inputs import ModelInputError
from ser_models.models import model_names, model_spec
from ser_models.opensmile_features import MissingExtraError
from ser_models.plugins import PluginError, load_plugins
from ser_models.precomputed import PrecomputedError
from ser_models.protocols import ProtocolError, SpeakerLeakError

USER_ERRORS = (BenchError, ModelInputError, SuiteError, CorpusNotFoundError, ManifestError, ProtocolError,
               MissingExtraError, SavedModelError, DownloadError, ExtractionCrashError, PluginError, PrecomputedError,
               KeyError)


def _checked(convert, valid, what: str):
    """An argparse type: `convert` the text, then refuse a value `valid` rejects, saying `what` it should be."""
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if not valid(value):
            raise argparse.ArgumentTypeError(f"{what}, not {text!r}")
        return value

    return parse


_seed = _checked(int, valid_seed, f"a seed is an integer from 0 to {MAX_SEED}")
_budget = _checked(float, valid_budget, "the budget factor is a number above 0 (1 = the registered epochs)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="ser-bench: speaker-independent speech emotion recognition benchmarks"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    commands = parser.add_subparsers(dest="command", required=True)
    plugins = argparse.ArgumentParser(add_help=False)
    plugins.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                         help="a module or .py file registering your own models, feature sets or corpora "
                              "(repeatable; see docs/extending.md)")

    run = commands.add_parser("run", help="run a suite (resumes: recorded folds are not redone)", parents=[plugins])
    run.add_argument("--suite", default="smoke", help=f"{'|'.join(suite_names())} or a suite .toml file")
    run.add_argument("--data-root", type=Path, default=None, help="folder holding ravdess/, urdu/ (default: $SER_DATA)")
    run.add_argument("--corpus", nargs="+", default=[], metavar="NAME", help="only these corpora")
    run.add_argument("--model", nargs="+", default=[], metavar="NAME", help="only these models (or all, classical)")
    run.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel processes (default: all cores)")
    run.add_argument("--seed", type=_seed, nargs="+", default=[], help="override the suite's seeds")
    run.add_argument("--fresh", action="store_true", help="forget this suite's records and start over")
    run.add_argument("--results-dir", type=Path, default=Path("results"), help="where records and leaderboards go")
    run.add_argument("--cache-dir", type=Path, default=None,
                     help="feature cache, compiled programs in its xla/ (default: $SER_BENCH_CACHE)")
    run.add_argument("--manifest", nargs="+", default=[], metavar="NAME=FILE",
                     help="add a corpus described by a CSV/TSV with columns path, speaker, emotion[, gender]")
    run.add_argument("--budget", type=_budget, default=None,
                     help="override the suite's budget factor (deep models' epochs and patience)")
    run.add_argument("--target", choices=["emotion", "gender"], default="emotion",
                     help="what to predict (gender: speaker gender from the corpus metadata)")
    run.add_argument("--storage", default=None,
                     help="Optuna storage URL for tuning studies (default: sqlite under results/<suite>/); "
                          "a shared PostgreSQL/MySQL URL lets several machines work on one study")
    run.add_argument("--scheduler", default=None, metavar="ADDRESS",
                     help="run the jobs on a Dask distributed cluster (needs `pip install -e .[dask]`)")
    run.add_argument("--device", choices=["auto", "cpu", "gpu"], default="auto",
                     help="where deep models train (JAX); gpu needs `pip install -e .[gpu]`")

    predict = commands.add_parser("predict", help="emotions of new audio files, with a model a run saved",
                                  parents=[plugins])
    predict.add_argument("files", nargs="+", type=Path, metavar="FILE",
                         help="audio files, or folders (their .wav and .flac files, searched recursively)")
    predict.add_argument("--suite", default="smoke", help="the suite whose saved models to use")
    predict.add_argument("--model", default=None,
                         help="a saved model: corpus name, model name or .joblib path (default: the best saved)")
    predict.add_argument("--results-dir", type=Path, default=Path("results"))

    download = commands.add_parser("download", help="fetch, verify and unpack a corpus (resumes a broken transfer)")
    download.add_argument("corpus", help=f"one of: {', '.join(ARCHIVES)}")
    download.add_argument("--to", type=Path, required=True, help="data root to unpack into (DIR/<corpus>/...)")
    download.add_argument("--url", default=None, help="a mirror of the official archive")
    download.add_argument("--md5", default=None, help="checksum to verify (the official one is known)")
    download.add_argument("--expect-files", type=int, default=None, help="audio files the archive must contain")

    listing = commands.add_parser("list", help="list corpora, models, feature sets or suites", parents=[plugins])
    listing.add_argument("what", choices=["corpora", "models", "features", "suites"])

    report = commands.add_parser("report", help="rebuild leaderboards from stored records (no training)",
                                 parents=[plugins])
    report.add_argument("--suite", default="smoke")
    report.add_argument("--results-dir", type=Path, default=Path("results"))
    return parser


def _list(what: str) -> None:
    if what == "corpora":
        for name in corpus_names():
            info = corpus_info(name)
            print(f"{name:12} {info.title}; {info.n_speakers} speakers; {', '.join(info.emotions)}")
            print(f"{'':12} layout: {info.layout}; licence: {info.license}")
            print(f"{'':12} cite: {info.citation}")
    elif what == "models":
        for name in model_names(every=True):
            spec = model_spec(name)
            print(f"{name:15} {spec.family:9} reads {spec.input:11} {spec.description}")
    elif what == "features":
        for name, factory in FEATURES.items():
            doc = ((factory.func if isinstance(factory, functools.partial) else factory).__doc__ or "").strip()
            print(f"{name:15} {doc.splitlines()[0] if doc else ''}")
    else:
        for name in suite_names():
            print(f"{name:8} {load_suite(name).description}")


def _run(args: argparse.Namespace) -> None:
    select_device(args.device)
    suite = load_suite(args.suite)
    if args.budget is not None:
        suite = dataclasses.replace(suite, budget=args.budget)
    data_root = args.data_root or (Path(os.environ["SER_DATA"]) if os.environ.get("SER_DATA") else None)
    manifests = {}
    for item in args.manifest:
        name, _, file = item.partition("=")
        if not name or not file:
            raise BenchError(f"--manifest takes NAME=FILE, got {item!r}")
        manifests[name] = file
    options = RunOptions(
        manifests=manifests, target=args.target, storage=args.storage, scheduler=args.scheduler,
        suite=suite, data_root=data_root, corpora=tuple(args.corpus), models=tuple(args.model),
        seeds=tuple(args.seed), jobs=max(1, args.jobs), fresh=args.fresh, results_dir=args.results_dir,
        cache_dir=args.cache_dir or default_cache_dir(),
    )
    start = time.perf_counter()
    summary = run_suite(options)
    print(f"\nsuite {summary.suite}: {summary.trained} fits run, {summary.reused} reused from records, "
          f"{summary.skipped_files} files skipped, {time.perf_counter() - start:.0f} s")
    for where, (model, uar) in summary.best.items():
        print(f"  best on {where}: {model} (pooled UAR {uar:.3f})")
    for corpus, model in summary.saved_models.items():
        print(f"  saved for `bench predict`: {model} refit on all of {corpus} ({summary.folder / 'models'})")
    if (summary.folder / "figures").is_dir():
        print(f"  figures: {summary.folder / 'figures'}")
    if summary.skipped_files:
        print(f"  skipped {summary.skipped_files} files, by reason (each file in {summary.folder / 'skipped.csv'}):")
        for reason, count in summary.skipped_by_reason.items():
            print(f"    {count:6d}  {reason}")
    print(f"  leaderboard: {summary.leaderboard}")
    if suite.publish:
        print(f"  published: {args.results_dir / 'leaderboard.md'}")


def _report(args: argparse.Namespace) -> None:
    suite = load_suite(args.suite)
    store = RecordStore(args.results_dir / suite.name)
    if not store.records_path.exists():
        raise BenchError(f"no records at {store.records_path}: run `python -m bench run --suite {args.suite}` first")
    paths = write_leaderboards(store, suite, publish_to=args.results_dir if suite.publish else None)
    print(f"leaderboard rebuilt from records: {paths['leaderboard']}")


def _audio_paths(paths: list[Path]) -> list[Path]:
    """The files as given, a folder replaced by the .wav/.flac files under it (kept when it holds none)."""
    return [file for path in paths for file in ((path.is_dir() and audio_files(path)) or [path])]


def _predict(args: argparse.Namespace) -> None:
    chosen = choose_model(args.results_dir / load_suite(args.suite).name, args.model)
    load_plugins(chosen.get("plugins", []))  # the model's own classes and feature set, before its file is read
    table = predict_files(chosen["path"], [str(f) for f in _audio_paths(args.files)])
    print(f"model: {chosen.get('model', '?')} trained on {chosen.get('corpus', '?')} "
          f"(cross-validated pooled UAR {chosen.get('cross_validated_uar', float('nan')):.3f}), {chosen['path']}")
    shown = table.drop(columns=["error"]).rename(columns=lambda c: c[2:] if c.startswith("p_") else c)
    good = table["error"].isna()
    if good.any():
        print(tabulate(shown[good], headers="keys", tablefmt="github", showindex=False, floatfmt=".3f"))
    for row in table[~good].itertuples():  # a folder is here when no audio file is under it
        why = "a folder with no .wav or .flac file under it" if Path(row.file).is_dir() else row.error
        print(f"skipped {row.file}: {why}", file=sys.stderr)
    if not good.any():
        raise BenchError("none of the files could be analysed")


def _download(args: argparse.Namespace) -> None:
    folder = download_corpus(args.corpus, args.to, url=args.url, md5=args.md5, expected_files=args.expect_files)
    print(f"{args.corpus}: ready in {folder}; run `python -m bench run --suite full --data-root {args.to}`")


def _terminate(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Entry point; user errors print one clear line and exit 2."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    in_main_thread = threading.current_thread() is threading.main_thread()
    # SIGTERM like Ctrl-C: finished folds are kept, and the message says how to continue.
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main_thread else None
    try:
        load_plugins(getattr(args, "plugin", []))
        commands = {"run": _run, "list": lambda a: _list(a.what), "report": _report, "predict": _predict,
                    "download": _download}
        commands[args.command](args)
    except SpeakerLeakError as error:
        print(f"error: speaker leak, refusing to report numbers: {error}", file=sys.stderr)
        return 3
    except USER_ERRORS as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: finished folds are recorded; run the same command again to continue", file=sys.stderr)
        return 130
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
    return 0
