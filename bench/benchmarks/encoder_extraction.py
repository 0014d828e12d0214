"""Seconds per file of a feature set's extraction on a corpus, cold cache, median over repeats.

    python -m bench.benchmarks.encoder_extraction --data-root ../shared/data --feature-set ge2e --files 300
    python -m bench.benchmarks.encoder_extraction --feature-set encoder --base-size wavlm-base-plus --files 60 --jobs 1
    python -m bench.benchmarks.encoder_extraction --feature-set encoder --option model=/path/to/wavlm-base-plus

Each repeat extracts the first N files of the corpus into a new empty cache with --jobs processes; the warm pass
reads them back. Prints the medians, files/s and the cache's size per 1,000 files; results for this machine go in
encoder_extraction.md. `--base-size` times an encoder of a published model's exact architecture with random weights
(no hub here): the arithmetic, hence the time, is the real model's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from ser_models.corpora import load_corpus
from ser_models.encoder_configs import BASE_SIZES, save_random_encoder
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
    parser.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                        help="a feature-set option (numbers as numbers), e.g. model=DIR, frames_layer=6")
    parser.add_argument("--base-size", choices=sorted(BASE_SIZES), help="random weights of this published encoder")
    args = parser.parse_args()
    manifest = load_corpus(args.corpus, args.data_root / args.corpus).iloc[: args.files].reset_index(drop=True)
    options = dict(_option(text) for text in args.option)
    with tempfile.TemporaryDirectory() as folder:
        if args.base_size:
            options["model"] = str(save_random_encoder(args.base_size, Path(folder) / args.base_size))
        spec = FeatureSpec(feature_set=args.feature_set, options=options)
        spec.check_available()
        _time(args, manifest, spec)


def _option(text: str) -> tuple[str, object]:
    name, _, value = text.partition("=")
    try:
        return name, int(value)
    except ValueError:
        try:
            return name, float(value)
        except ValueError:
            return name, value


def _size(folder: str) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def _time(args, manifest, spec: FeatureSpec) -> None:
    print(f"{args.corpus}: {len(manifest)} files, feature set {args.feature_set} ({len(spec.functional_names())} "
          f"values), {args.jobs} jobs, {os.cpu_count()} cores")
    cold, warm, sizes = [], [], []
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory() as cache:
            start = time.perf_counter()
            extract_features(manifest, spec, cache_dir=cache, n_jobs=args.jobs, progress=False)
            cold.append(time.perf_counter() - start)
            sizes.append(_size(cache))
            start = time.perf_counter()
            extract_features(manifest, spec, cache_dir=cache, n_jobs=args.jobs, progress=False)
            warm.append(time.perf_counter() - start)
        print(f"  repeat {repeat + 1}: cold {cold[-1]:.2f} s, warm {warm[-1]:.2f} s", flush=True)
    median = statistics.median(cold)
    print(f"median cold {median:.2f} s: {median / len(manifest) * 1000:.1f} ms per file, "
          f"{len(manifest) / median:.1f} files/s ({args.jobs} jobs); median warm {statistics.median(warm):.2f} s; "
          f"cache {statistics.median(sizes) / len(manifest) * 1000 / 2**20:.1f} MiB per 1,000 files")


if __name__ == "__main__":
    main()
