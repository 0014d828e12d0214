"""What a run is asked to do (a suite plus the command line), and the errors that stop it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bench.suite import Suite
from ser_models.feature_cache import default_cache_dir


class BenchError(RuntimeError):
    """A run that cannot go ahead; the message says what to change."""


class FitFailedError(BenchError):
    """One fit raised an error of its own (not a worker that died); the message names the fit."""


@dataclass
class RunOptions:
    """What the command line adds to a suite."""

    suite: Suite
    data_root: Path | None = None
    corpora: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    seeds: tuple[int, ...] = ()
    jobs: int = 1
    fresh: bool = False
    results_dir: Path = Path("results")
    cache_dir: Path = field(default_factory=default_cache_dir)
    progress: bool | None = None  # None: bars only on a terminal
    manifests: dict = field(default_factory=dict)  # corpus name -> CSV/TSV manifest (from --manifest)
    target: str = "emotion"  # what the suite's main tables predict (--target gender)
    save_models: bool = True  # refit and save each corpus' best model for `bench predict`
    storage: str | None = None  # Optuna storage URL (default: SQLite under results/<suite>/)
    scheduler: str | None = None  # Dask scheduler address: run the jobs on that cluster
    feature_store: bool = True  # tables read from memory-mapped feature stores (False: every array in memory)
