"""Wall time of a suite run and the time of each stage.

    python -m bench.benchmarks.suite_timing --suite full --data-root DIR --results-dir /tmp/timing --jobs 2

Give an empty results folder to time a fresh run (an existing one resumes). Prints the wall time,
the time spent extracting features, writing the leaderboards and refitting the saved models,
and for the fits the summed fit + predict seconds per (protocol, kind of row); with N jobs
the fits' wall time is about their sum divided by N. Votes over stored predictions train nothing
and count 0 s here (the leaderboard's fit s/fold for a vote is its members' summed time).
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

from bench import runner
from bench.records import RecordStore
from bench.suite import load_suite
from bench.votes import is_vote


@contextmanager
def _timed(module, name: str, totals: dict, stage: str):
    original = getattr(module, name)

    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            totals[stage] += time.perf_counter() - start

    setattr(module, name, wrapper)
    try:
        yield
    finally:
        setattr(module, name, original)


def fit_seconds_by_kind(records: list[dict], since: str = "") -> tuple[dict[str, float], dict[str, int]]:
    """Summed fit + predict (+ tuning) seconds and the fit count per (protocol, kind of row), over the
    records finished at or after `since`. A vote over stored predictions trains nothing: its recorded
    fit seconds are its members' (the leaderboard shows that cost), so here it counts 0 s; so does a row whose fit
    an ensemble's member refit had already trained (`fit_reused`: its recorded seconds are that fit's)."""
    fits: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    for record in records:
        if record.get("finished_at", "") < since:
            continue  # written by an earlier run
        variant = record.get("variant") or {}
        kind = ("tuned " if variant.get("tuned") else "") + record.get("family", "?")
        vote = is_vote(record["model"])
        if vote:
            kind = "votes over stored predictions"
        elif record.get("target", "emotion") != "emotion":
            kind += f" ({record['target']})"
        elif variant and not variant.get("tuned"):
            kind += f" ({json.dumps(variant, sort_keys=True)})"
        key = f"{record['protocol']}: {kind}"
        counts[key] += 1
        fits[key] += 0.0 if vote else ((0.0 if record.get("fit_reused") else record["fit_seconds"])
                                       + record["predict_seconds"]
                                       + (record.get("tuning") or {}).get("seconds", 0))
    return fits, counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", default="full")
    parser.add_argument("--data-root", type=Path, default=None)
    parser.add_argument("--results-dir", type=Path, required=True)
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--device", choices=["auto", "cpu", "gpu"], default="auto")
    args = parser.parse_args()
    runner.select_device(args.device)  # as `bench run` does: one XLA thread per deep fit on the CPU
    suite = load_suite(args.suite)
    options = runner.RunOptions(suite=suite, data_root=args.data_root, jobs=args.jobs, results_dir=args.results_dir,
                                cache_dir=args.cache_dir or runner.default_cache_dir(), progress=False)
    stages: dict[str, float] = defaultdict(float)
    started_at = time.time()
    start = time.perf_counter()
    with _timed(runner, "_load_features", stages, "features (corpora and variants)"), \
            _timed(runner, "_training_copies", stages, "features (augmented copies)"), \
            _timed(runner, "write_leaderboards", stages, "leaderboards and figures"), \
            _timed(runner, "_save_best_models", stages, "refit and save best models"):
        summary = runner.run_suite(options)
    wall = time.perf_counter() - start
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(started_at))
    fits, counts = fit_seconds_by_kind(RecordStore(summary.folder).load(), since)
    print(f"suite {suite.name}: {summary.trained} fits, {summary.reused} reused; wall time {wall / 60:.1f} min "
          f"with {args.jobs} jobs")
    for stage, seconds in stages.items():
        print(f"  {stage:40} {seconds:8.1f} s")
    print("  fits (summed over jobs; tuning included in its rows):")
    for key in sorted(fits, key=lambda k: -fits[k]):
        print(f"    {key:60} {counts[key]:4d} fits {fits[key]:8.1f} s")


if __name__ == "__main__":
    main()
