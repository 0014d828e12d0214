"""One XLA CPU thread per deep fit (ser_models.models.cpu_threads): the pool, the core slots, and the numbers."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from bench.runner import BenchError, select_device
from ser_models.models.cpu_threads import MAIN_PID_ENV, SLOTS_ENV, THREADS_ENV

pytestmark = pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="CPU affinity is Linux-only")

CORES = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []

# A sum XLA splits over its thread pool: its last bits depend on how many threads share it.
SUM = """
import hashlib, json, os, sys, time
import numpy as np
{before}
import jax, jax.numpy as jnp
values = jnp.asarray(np.random.default_rng(0).standard_normal(4_000_000, dtype=np.float32))
total = np.asarray(jax.jit(jnp.sum)(values))
from ser_models.models.cpu_threads import xla_threads
print(json.dumps({{"sum": hashlib.sha1(total.tobytes()).hexdigest(), "threads": xla_threads(),
                  "cores": sorted(os.sched_getaffinity(0))}}), flush=True)
time.sleep({hold})
"""

LIMIT = "from ser_models.models.cpu_threads import limit_xla_threads\nlimit_xla_threads()"


def _start(before: str, env: dict, hold: float = 0.0) -> subprocess.Popen:
    clean = {k: v for k, v in os.environ.items() if k not in (THREADS_ENV, SLOTS_ENV, MAIN_PID_ENV)}
    return subprocess.Popen([sys.executable, "-c", SUM.format(before=before, hold=hold)], env=clean | env,
                            stdout=subprocess.PIPE, text=True)


def _result(process: subprocess.Popen) -> dict:
    out, _ = process.communicate(timeout=120)
    assert process.returncode == 0
    return json.loads(out.strip().splitlines()[-1])


def test_one_thread_gives_the_numbers_of_a_one_core_machine():
    one_core = _result(_start(f"os.sched_setaffinity(0, {{{CORES[0]}}})", {}))
    limited = _result(_start(LIMIT, {THREADS_ENV: "1"}))
    assert limited["threads"] == 1
    assert limited["sum"] == one_core["sum"]
    assert limited["cores"] == CORES  # no slot folder: every core given back


@pytest.mark.skipif(len(CORES) < 2, reason="needs 2 cores to pin two workers apart")
def test_workers_hold_a_core_each_and_the_main_process_none(tmp_path):
    env = {THREADS_ENV: "1", SLOTS_ENV: str(tmp_path), MAIN_PID_ENV: "1"}
    workers = [_start(LIMIT, env, hold=3.0) for _ in range(2)]  # each holds its slot while the other claims one
    cores = [_result(worker)["cores"] for worker in workers]
    assert sorted(cores) == [[CORES[0]], [CORES[1]]]
    # The process that asked for the limit (its own MAIN_PID) gets one thread but is never pinned.
    main = _result(_start("from ser_models.models.cpu_threads import request_xla_threads\n"
                          f"request_xla_threads(1, __import__('pathlib').Path({str(tmp_path)!r}))\n" + LIMIT, {}))
    assert main["threads"] == 1 and main["cores"] == CORES


def test_a_limit_set_too_late_is_reported_as_the_real_pool():
    result = _result(_start("import jax; jax.devices()\n" + LIMIT, {THREADS_ENV: "1"}))
    assert result["threads"] == len(CORES)


def test_bad_thread_setting_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(THREADS_ENV, "two")
    with pytest.raises(BenchError, match=f"{THREADS_ENV} must be a whole number of threads"):
        select_device("cpu")
