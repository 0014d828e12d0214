"""One XLA CPU thread per deep fit: faster when worker processes share the cores, and the same numbers on any machine.

XLA sizes its CPU thread pool by the cores the process may run on when JAX's backend starts, and offers no flag for
it. How many threads split a matrix product changes its rounding, so a model trained with two threads ends elsewhere
than one trained with one: without a limit the deep rows depend on the machine's core count. And two workers on two
cores, each with a pool of two, spend their time contending for the cores.

`limit_xla_threads` narrows the process to THREADS_ENV cores while the backend starts, so the pool has that many
threads. A worker process then holds one slot of cores (a lock file in SLOTS_ENV, released when the process ends) and
runs on those alone; a process without a slot gets every core back. Either way the pool, and so the numbers, are the
same.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import IO

THREADS_ENV = "SER_BENCH_XLA_THREADS"  # threads in XLA's CPU pool; unset or 0: XLA's default (every core)
SLOTS_ENV = "SER_BENCH_CPU_SLOTS"  # folder of per-slot lock files shared by one run's worker processes
MAIN_PID_ENV = "SER_BENCH_MAIN_PID"  # the process that set the limit: it is never pinned to a slot

log = logging.getLogger(__name__)

_slot: IO | None = None  # the open, locked slot file: held for the life of the process
_pool_threads: int | None = None  # threads in this process' XLA CPU pool, once JAX's backend has started


def request_xla_threads(threads: int = 1, slots: Path | None = None) -> None:
    """Ask every deep fit of this process and the worker processes it starts to use `threads` XLA CPU threads
    (a user's own SER_BENCH_XLA_THREADS wins), with worker processes pinned to free core slots from `slots`."""
    os.environ.setdefault(THREADS_ENV, str(threads))
    _threads_setting()  # a bad setting fails here, not in every worker
    os.environ[MAIN_PID_ENV] = str(os.getpid())
    if slots is not None:
        try:
            slots.mkdir(parents=True, exist_ok=True)
        except OSError as error:  # no pinning: still one thread per fit, the same numbers
            log.warning("worker processes not pinned to cores: cannot make %s (%s)", slots, error)
            return
        os.environ[SLOTS_ENV] = str(slots)


def limit_xla_threads() -> None:
    """Start JAX's backend with the thread pool THREADS_ENV asks for; call before anything starts it."""
    global _pool_threads
    if _pool_threads is not None:
        return
    import jax
    from jax._src import xla_bridge

    linux = hasattr(os, "sched_setaffinity")
    allowed = sorted(os.sched_getaffinity(0)) if linux else list(range(os.cpu_count() or 1))
    threads = _threads_setting()
    if xla_bridge.backends_are_initialized() or not linux or threads <= 0 or threads >= len(allowed):
        # Started too early, no affinity outside Linux, or no limit asked: XLA's pool has a thread per core.
        jax.devices()
        _pool_threads = len(allowed)
        return
    os.sched_setaffinity(0, allowed[:threads])
    try:
        jax.devices()  # starts the backend: its pool sees `threads` cores
    finally:
        cores = _claim_slot(threads, allowed) or allowed
        for thread in os.listdir("/proc/self/task"):  # the threads started meanwhile inherited the narrow mask
            with contextlib.suppress(OSError):
                os.sched_setaffinity(int(thread), cores)
    _pool_threads = threads


def xla_threads() -> int | None:
    """Threads in this process' XLA CPU pool; None when no deep model has run in it."""
    return _pool_threads


def _threads_setting() -> int:
    setting = os.environ.get(THREADS_ENV) or "0"
    if not setting.isdigit():
        raise ValueError(f"{THREADS_ENV} must be a whole number of threads (0: XLA's default), not {setting!r}")
    return int(setting)


def _claim_slot(threads: int, allowed: list[int]) -> list[int] | None:
    """The cores of the first slot no other live worker holds, or None (the main process, or all slots taken)."""
    import fcntl

    global _slot
    folder = os.environ.get(SLOTS_ENV)
    if not folder or os.environ.get(MAIN_PID_ENV) == str(os.getpid()):
        return None
    for index in range(len(allowed) // threads):
        try:
            handle = open(Path(folder) / f"slot{index}", "a")  # noqa: SIM115  -- kept open: the lock is the claim
        except OSError:  # the run that made the folder has removed it
            return None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            continue
        _slot = handle
        return allowed[index * threads:(index + 1) * threads]
    return None
