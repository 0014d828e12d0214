"""Feature extraction side by side on real RAVDESS: the librosa set, plain openSMILE, the suite's ComParE path.

    python -m bench.benchmarks.extraction --data-root ../shared/data [--files 480] [--repeats 3] [--jobs 2]

Every extractor reads the same files with the same decode and silence trim (`load_audio`) and the
same number of worker processes, in one invocation, so the machine's load is shared alike:

- librosa: `extract_features` with the suite's default spec (functionals and frames, one pass);
- opensmile: `opensmile.Smile(ComParE_2016, Functionals).process_signal`, as a user would call it;
- suite compare: `extract_features` with `feature_set = "compare"` and no frame model (functionals only).

Cold: an empty cache each repeat (every file decoded and analysed); warm: the same cache again.
Prints the median over repeats and the files/s ratios. Optionally times the quick suite (warm).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import tempfile
import time
from pathlib import Path

from joblib import Parallel, delayed

from bench.runner import RunOptions, run_suite
from bench.suite import load_suite
from ser_models import feature_cache
from ser_models.audio import load_audio
from ser_models.corpora import load_corpus
from ser_models.feature_cache import extract_features
from ser_models.features import FeatureSpec
from ser_models.opensmile_features import MissingExtraError, opensmile_module


def _timed(action) -> float:
    feature_cache._content_hash.cache_clear()  # each measurement reads and hashes the audio itself
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def _plain_opensmile(paths: list[str], spec: FeatureSpec):
    """What a user would write: decode and trim as the suite does, then openSMILE's ComParE functionals."""
    opensmile = opensmile_module()
    smile = opensmile.Smile(feature_set=opensmile.FeatureSet.ComParE_2016,
                            feature_level=opensmile.FeatureLevel.Functionals)
    return [smile.process_signal(load_audio(p, sample_rate=spec.sample_rate, trim_db=spec.trim_db),
                                 spec.sample_rate).to_numpy()[0] for p in paths]


def plain_opensmile(paths: list[str], spec: FeatureSpec, jobs: int) -> None:
    chunks = [paths[i::jobs] for i in range(jobs)]
    Parallel(n_jobs=jobs)(delayed(_plain_opensmile)(chunk, spec) for chunk in chunks)


def _print_medians(times: dict[str, list[float]], n: int, repeats: int, jobs: int) -> None:
    medians = {k: statistics.median(v) for k, v in times.items()}
    print(f"\nmedians over {repeats} repeats ({n} files, {jobs} jobs):")
    for name, seconds in medians.items():
        rate = f"{n / seconds:7.1f} files/s" if "cold" in name else ""
        print(f"  {name:20} {seconds:7.2f} s {rate}")
    if "opensmile cold" in medians:
        ratio = medians["opensmile cold"] / medians["librosa cold"]
        print(f"librosa / plain openSMILE ComParE (files/s): {ratio:.2f}x (target >= 2)")
        print(f"suite compare path / plain openSMILE (time): "
              f"{medians['suite compare cold'] / medians['opensmile cold']:.2f} (target <= 1.10)")
    print(f"librosa warm: {medians['librosa warm']:.2f} s (target <= 5 s for all of RAVDESS)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=Path(os.environ.get("SER_DATA", "../shared/data")))
    parser.add_argument("--files", type=int, default=0, help="the first N RAVDESS files (0: all 1,440)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--suite-runs", type=int, default=0, help="quick-suite repeats on the warm cache")
    args = parser.parse_args()

    manifest = load_corpus("ravdess", args.data_root / "ravdess")
    if args.files:
        manifest = manifest.iloc[: args.files].reset_index(drop=True)
    n = len(manifest)
    spec = FeatureSpec()
    compare = dataclasses.replace(spec, feature_set="compare")
    try:
        opensmile_module()
        have_opensmile = True
    except MissingExtraError as error:
        have_opensmile = False
        print(f"openSMILE is not installed, so only the librosa set is timed ({error})")
    print(f"RAVDESS: {n} files, {args.jobs} jobs, {os.cpu_count()} cores, librosa spec {spec.key()}")

    times: dict[str, list[float]] = {"librosa cold": [], "librosa warm": []}
    if have_opensmile:
        times |= {"opensmile cold": [], "suite compare cold": [], "suite compare warm": []}
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(args.repeats):
            cache = Path(scratch) / f"cache{repeat}"
            suite_run = {"cache_dir": cache, "n_jobs": args.jobs, "progress": False}
            times["librosa cold"].append(_timed(lambda s=suite_run: extract_features(manifest, spec, **s)))
            times["librosa warm"].append(_timed(lambda s=suite_run: extract_features(manifest, spec, **s)))
            if have_opensmile:
                times["opensmile cold"].append(
                    _timed(lambda: plain_opensmile(manifest["path"].tolist(), spec, args.jobs)))
                times["suite compare cold"].append(
                    _timed(lambda s=suite_run: extract_features(manifest, compare, frames=False, **s)))
                times["suite compare warm"].append(
                    _timed(lambda s=suite_run: extract_features(manifest, compare, frames=False, **s)))
            print(f"  repeat {repeat + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()), flush=True)

        _print_medians(times, n, args.repeats, args.jobs)
        suite_times = []
        for repeat in range(args.suite_runs):
            options = RunOptions(suite=load_suite("quick"), data_root=args.data_root, jobs=args.jobs,
                                 results_dir=Path(scratch) / f"results{repeat}", cache_dir=Path(scratch) / "cache0",
                                 progress=False)
            suite_times.append(_timed(lambda o=options: run_suite(o)))
            print(f"  quick suite run {repeat + 1}: {suite_times[-1]:.0f} s (warm features)", flush=True)
        if suite_times:
            print(f"quick suite wall time (warm features): median {statistics.median(suite_times):.0f} s")


if __name__ == "__main__":
    main()
