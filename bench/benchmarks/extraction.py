"""Feature-extraction and quick-suite timings on real RAVDESS; prints medians over repeats.

    python -m bench.benchmarks.extraction --data-root ../shared/data [--repeats 3] [--jobs 2] [--suite-runs 1]

Cold: an empty cache each repeat (every file decoded and analysed). Warm: the same
cache again (hashing + loading only). Quick suite: `bench run --suite quick` from
a warm feature cache and empty results, i.e. the training and scoring wall time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from bench.runner import RunOptions, run_suite
from bench.suite import load_suite
from ser_models.corpora import load_corpus
from ser_models.feature_cache import extract_features
from ser_models.features import FeatureSpec


def _timed(action) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=Path(os.environ.get("SER_DATA", "../shared/data")))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--suite-runs", type=int, default=1, help="quick-suite repeats (0 to skip)")
    args = parser.parse_args()

    manifest = load_corpus("ravdess", args.data_root / "ravdess")
    spec = FeatureSpec()
    print(f"RAVDESS: {len(manifest)} files, {args.jobs} jobs, {os.cpu_count()} cores, spec {spec.key()}")
    cold, warm = [], []
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(args.repeats):
            cache = Path(scratch) / f"cache{repeat}"
            cold.append(_timed(lambda c=cache: extract_features(manifest, spec, cache_dir=c, n_jobs=args.jobs,
                                                                progress=False)))
            warm.append(_timed(lambda c=cache: extract_features(manifest, spec, cache_dir=c, n_jobs=args.jobs,
                                                                progress=False)))
            print(f"  repeat {repeat + 1}: cold {cold[-1]:.1f} s, warm {warm[-1]:.2f} s", flush=True)
        print(f"extraction cold: median {statistics.median(cold):.1f} s "
              f"({len(manifest) / statistics.median(cold):.0f} files/s), target <= 60 s")
        print(f"extraction warm: median {statistics.median(warm):.2f} s, target <= 5 s")

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
