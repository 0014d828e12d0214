"""Toy data shared by the deep-model tests: 72 utterances, 3 separable classes, 12 speakers."""

from __future__ import annotations

import numpy as np

from ser_models.models.frames import pad_frames

N = 72
LABELS = np.array(["angry", "neutral", "sad"])[np.arange(N) % 3]
SPEAKERS = np.array([f"toy:{i % 12:02d}" for i in range(N)])


def toy_frames(seed: int = 0):
    rng = np.random.default_rng(seed)
    frames = [(rng.normal(size=(40 + i % 17, 161)) + (i % 3) * 0.8).astype(np.float16) for i in range(N)]
    return pad_frames(frames, max_frames=64)


def toy_vectors(seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(N, 20)) + (np.arange(N) % 3)[:, None] * 0.8
