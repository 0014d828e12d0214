"""bench: the ser-bench harness (suites, runner, records, leaderboards, CLI)."""

from bench import votes  # noqa: F401  (registers the votes over stored predictions)
