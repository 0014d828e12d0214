"""Frame sequences as one padded array plus lengths, so they travel and slice like a matrix."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_MAX_FRAMES = 320  # 3.2 s at a 10 ms hop: longer than 99 % of silence-trimmed RAVDESS and URDU files


@dataclass
class FrameBatch:
    """Utterance frame matrices padded to a common length; `lengths` says where each one ends."""

    values: np.ndarray  # (n, max_frames, n_features) float16, zero after each utterance's end
    lengths: np.ndarray  # (n,) int
    utterance: np.ndarray | None = None  # (n, n_functionals): utterance statistics for fusion models

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, rows) -> FrameBatch:
        return FrameBatch(self.values[rows], self.lengths[rows],
                          None if self.utterance is None else self.utterance[rows])

    @property
    def shape(self) -> tuple[int, ...]:
        return self.values.shape

    @staticmethod
    def concatenate(batches: Sequence[FrameBatch]) -> FrameBatch:
        """Rows of several batches (same padded length) stacked into one."""
        utterance = None if batches[0].utterance is None else np.concatenate([b.utterance for b in batches])
        return FrameBatch(np.concatenate([b.values for b in batches]), np.concatenate([b.lengths for b in batches]),
                          utterance)

    def with_utterance(self, utterance: np.ndarray | None) -> FrameBatch:
        return FrameBatch(self.values, self.lengths, utterance)

    def read(self, rows=None) -> FrameBatch:
        """The rows asked for (all when None), in memory: the interface of a stored batch (StoredFrames)."""
        return self if rows is None else self[rows]

    def mask(self) -> np.ndarray:
        """(n, max_frames) float32: 1 on real frames, 0 on padding."""
        return (np.arange(self.values.shape[1])[None, :] < self.lengths[:, None]).astype(np.float32)


def pad_frames(frames: Sequence[np.ndarray], max_frames: int = DEFAULT_MAX_FRAMES) -> FrameBatch:
    """Pad (or centre-crop) each (t, d) matrix to `max_frames` rows."""
    n_features = frames[0].shape[1] if len(frames) else 0
    values = np.zeros((len(frames), max_frames, n_features), dtype=np.float16)
    lengths = np.zeros(len(frames), dtype=np.int64)
    for row, matrix in enumerate(frames):
        start = max(0, (len(matrix) - max_frames) // 2)
        clip = matrix[start:start + max_frames]
        values[row, : len(clip)] = clip
        lengths[row] = len(clip)
    return FrameBatch(values, lengths)
