"""Shared fixtures: small generated audio, never the real corpora (those are opt-in via SER_DATA)."""

from __future__ import annotations

import os
import sys
from dataclasses import asdict
from pathlib import Path

# Under pytest-xdist each worker keeps its own numba cache, so two workers never write one file at once.
if worker := os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("NUMBA_CACHE_DIR", str(Path(sys.prefix) / f".numba-cache-{worker}"))
# Compiled XLA programs are kept in the test environment (the workers share it behind JAX's file lock).
os.environ.setdefault("SER_BENCH_XLA_CACHE", str(Path(sys.prefix) / ".xla-cache"))

import numpy as np
import pytest
import soundfile as sf

from ser_models.corpora import SyntheticConfig, generate_synthetic, load_corpus

SMALL_SYNTHETIC = SyntheticConfig(seed=0, n_speakers=8, utterances_per_emotion=3, emotions=("angry", "neutral", "sad"))


def tone(seconds: float = 0.8, rate: int = 16_000, freq: float = 220.0, channels: int = 1) -> np.ndarray:
    """A harmonic tone with a little noise: enough signal for every feature."""
    t = np.arange(int(seconds * rate)) / rate
    wave = sum(np.sin(2 * np.pi * freq * k * t) / k for k in range(1, 6)) * 0.2
    wave = wave + np.random.default_rng(0).normal(0, 0.01, t.size)
    return np.repeat(wave[:, None], channels, axis=1) if channels > 1 else wave


def write_tone(path: Path, **kwargs) -> Path:
    rate = kwargs.pop("rate", 16_000)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, tone(rate=rate, **kwargs), rate)
    return path


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    return generate_synthetic(tmp_path_factory.mktemp("synthetic"), SMALL_SYNTHETIC)


@pytest.fixture(scope="session")
def synthetic_manifest(synthetic_root):
    return load_corpus("synthetic", synthetic_root, **asdict(SMALL_SYNTHETIC))


@pytest.fixture
def cache_dir(tmp_path) -> Path:
    return tmp_path / "cache"


@pytest.fixture(scope="session")
def real_data() -> Path:
    root = os.environ.get("SER_DATA")
    if not root or not Path(root).is_dir():
        pytest.skip("real corpora not available: set SER_DATA to the folder holding ravdess/ and urdu/")
    return Path(root)
