"""Keras on JAX for the deep models: the backend, the thread limit and the on-disk cache of compiled programs."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import random
from pathlib import Path

from ser_models.feature_cache import default_cache_dir
from ser_models.models.cpu_threads import limit_xla_threads

log = logging.getLogger(__name__)

XLA_CACHE_MAX_BYTES = 1 << 30  # beyond this the least recently used compiled programs are dropped
XLA_CACHE_ENV = "SER_BENCH_XLA_CACHE"


def xla_cache_dir() -> Path | None:
    """Where compiled XLA programs are kept between fits and runs: $SER_BENCH_XLA_CACHE ("off" for nowhere),
    else xla/ in the feature cache ($SER_BENCH_CACHE, default ~/.cache/ser-bench)."""
    setting = os.environ.get(XLA_CACHE_ENV)
    if setting is not None:
        return None if setting.strip().lower() in ("", "0", "off", "none") else Path(setting).expanduser()
    return default_cache_dir() / "xla"


@functools.cache  # once per process: an unwritable folder warns once, not at every fit
def _use_compilation_cache() -> None:
    """Each fit builds a new network, and JAX would compile its ~15 programs (training step, validation
    step, the last short batch, initialisers) again for every fold and seed. The persistent cache reuses
    the compiled programs wherever the shapes match: across fits, folds, worker processes and runs.
    A cached program is the same machine code, so predictions are bit-identical."""
    import jax

    if jax.config.jax_compilation_cache_dir:  # the user's own JAX_COMPILATION_CACHE_DIR wins
        return
    path = xla_cache_dir()
    if path is None:
        return
    try:
        path.mkdir(parents=True, exist_ok=True)
        if not os.access(path, os.W_OK):
            raise PermissionError(f"{path} is not writable")
    except OSError as error:
        log.warning("compiled-program cache off (%s); set SER_BENCH_XLA_CACHE to a writable folder", error)
        return
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)  # the many small compiles add up too
    jax.config.update("jax_compilation_cache_max_size", XLA_CACHE_MAX_BYTES)


@contextlib.contextmanager
def compile_counts():
    """Count JAX's compilations inside the block: {"programs": requested, "cache_hits": served by the
    persistent cache, "compile_s": seconds XLA spent compiling}, filled in as it runs."""
    import jax

    counts = {"programs": 0, "cache_hits": 0, "compile_s": 0.0}
    events = {"/jax/compilation_cache/compile_requests_use_cache": "programs",
              "/jax/compilation_cache/cache_hits": "cache_hits"}

    def on_event(event: str, **_) -> None:
        if event in events:
            counts[events[event]] += 1

    def on_duration(event: str, seconds: float, **_) -> None:
        if event == "/jax/core/compile/backend_compile_duration":
            counts["compile_s"] += seconds

    jax.monitoring.register_event_listener(on_event)
    jax.monitoring.register_event_duration_secs_listener(on_duration)
    try:
        yield counts
    finally:
        jax.monitoring.unregister_event_listener(on_event)
        jax.monitoring.unregister_event_duration_listener(on_duration)


def keras_module():
    """Import Keras on the JAX backend (set here, so users never need KERAS_BACKEND)."""
    os.environ.setdefault("KERAS_BACKEND", "jax")
    _use_compilation_cache()
    limit_xla_threads()
    import keras

    if keras.backend.backend() != "jax":
        raise RuntimeError(
            f"Keras was already imported with the {keras.backend.backend()!r} backend; "
            "ser-bench's deep models need JAX: unset KERAS_BACKEND or import ser_models first"
        )
    return keras


@contextlib.contextmanager
def own_random_draws():
    """Inside, what Keras draws from Python's global `random` (the seeds of layers built without one, the order of
    a PyDataset's batches) comes from the generator `seed_keras` gives it: other threads of a process draw from the
    global one too (a Dask worker's), and a fit's weights then depended on them. Restored on the way out, so that
    `keras.utils.set_random_seed` outside a fit works as Keras documents it."""
    from keras.src.random import seed_generator
    from keras.src.trainers.data_adapters import py_dataset_adapter

    saved = seed_generator.python_random, py_dataset_adapter.random
    try:
        yield
    finally:
        seed_generator.python_random, py_dataset_adapter.random = saved


def seed_keras(keras, seed: int) -> None:
    """`keras.utils.set_random_seed(seed)`, and Keras' draws from `random` from a generator seeded alike: the same
    draws, in the same order, as from the global one where nothing else draws. Call it inside `own_random_draws`,
    which puts Keras' own generator back."""
    from keras.src.random import seed_generator
    from keras.src.trainers.data_adapters import py_dataset_adapter

    keras.utils.set_random_seed(seed)
    seed_generator.python_random = py_dataset_adapter.random = random.Random(seed)
