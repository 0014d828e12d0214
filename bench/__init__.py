"""bench: the ser-bench harness (suites, runner, records, leaderboards, CLI)."""
