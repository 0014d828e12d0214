"""Seconds per file of a feature set's extraction on a corpus, cold cache, median over repeats.

    python -m bench.benchmarks.encoder_extraction --data-root ../shared/data --feature-set ge2e --files 300

Each repeat extracts the first N files of the corpus into a new empty cache with --jobs processes; the warm pass
reads them back. Prints the medians and files/s; results for this machine go in encoder_extraction.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from ser_models.corpora import load_corpus
from ser_models.feature_cache import extract_features
from ser_models.features import FeatureSpec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=Path(os.environ.get("SER_DATA", "../shared/data")))
    parser.add_argument("--corpus", default="ravdess")
    parser.add_argument("--feature-set", default="ge2e")
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    manifest = load_corpus(args.corpus, args.data_root / args.corpus).iloc[: args.files].reset_index(drop=True)
    spec = FeatureSpec(feature_set=args.feature_set)
    spec.check_available()
    print(f"{args.corpus}: {len(manifest)} files, feature set {args.feature_set} ({len(spec.functional_names())} "
          f"values), {args.jobs} jobs, {os.cpu_count()} cores")
    cold, warm = [], []
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory() as cache:
            start = time.perf_counter()
            extract_features(manifest, spec, cache_dir=cache, n_jobs=args.jobs, progress=False)
            cold.append(time.perf_counter() - start)
            start = time.perf_counter()
            extract_features(manifest, spec, cache_dir=cache, n_jobs=args.jobs, progress=False)
            warm.append(time.perf_counter() - start)
        print(f"  repeat {repeat + 1}: cold {cold[-1]:.2f} s, warm {warm[-1]:.2f} s", flush=True)
    median = statistics.median(cold)
    print(f"median cold {median:.2f} s: {median / len(manifest) * 1000:.1f} ms per file, "
          f"{len(manifest) / median:.1f} files/s ({args.jobs} jobs); median warm {statistics.median(warm):.2f} s")


if __name__ == "__main__":
    main()
