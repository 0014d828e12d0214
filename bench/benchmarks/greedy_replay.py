"""Replay every greedy ensemble selection of a suite from its stored inner out-of-fold probabilities.

    python -m bench.benchmarks.greedy_replay [--suite full] [--results-dir results]

For each record with a selection trace (mixed_vote, mixed_stacking; version 2 on), reads
predictions/<config_hash>.inner.npz, checks its digest against the record's, runs the library's greedy
forward selection on it over the record's candidates in their order, and compares the additions, the inner
UAR after each, and the members with the record's. Prints one line per mismatch and a summary; exits 1 on any.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from bench.records import RecordStore
from ser_models.ensembles import greedy_selection, oof_digest


def replay(record: dict, stored: dict[str, np.ndarray]) -> list[str]:
    """What in the record the replay does not reproduce (empty: all of it)."""
    selection = record["ensemble"]
    candidates = selection["candidates"]
    if oof_digest(stored, candidates) != selection["oof_digest"]:
        return ["the stored probabilities are not the ones the selection read (digest differs)"]
    classes = np.asarray(record["labels"])
    targets = classes[stored["targets"]]
    trace: list = []
    counts = greedy_selection({n: stored[n].astype(np.float64) for n in candidates}, targets, classes, candidates,
                              len(selection["trace"]) + 1, trace)
    problems = []
    if [name for name, _ in trace] != [name for name, _ in selection["trace"]]:
        problems.append(f"additions {[n for n, _ in trace]} != recorded {[n for n, _ in selection['trace']]}")
    elif not np.allclose([u for _, u in trace], [u for _, u in selection["trace"]], rtol=0, atol=1e-12):
        problems.append("the inner UAR after an addition differs")
    if list(counts) != selection["members"]:
        problems.append(f"members {list(counts)} != recorded {selection['members']}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="full")
    parser.add_argument("--results-dir", type=Path, default=Path("results"))
    args = parser.parse_args(argv)
    store = RecordStore(args.results_dir / args.suite)
    greedy = [r for r in store.load() if r["params"].get("selection") == "greedy" and r.get("ensemble")]
    records = [r for r in greedy if "trace" in r["ensemble"]]
    failures = 0
    for record in records:
        path = store.inner_path(record["config_hash"])
        if not path.exists():
            problems = [f"{path.name} is missing"]
        else:
            with np.load(path) as data:
                problems = replay(record, dict(data))
        for problem in problems:
            failures += 1
            print(f"{record['corpus']} {record['protocol']} {record['model']} fold {record['fold']} seed "
                  f"{record['seed']}: {problem}")
    untraced = len(greedy) - len(records)
    print(f"{args.suite}: {len(records)} greedy selections replayed, {failures} mismatches"
          + (f"; {untraced} records predate traces (version 1)" if untraced else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
