"""How a deep model reads its inputs: frame values standardised with statistics of the training rows only, read
batch by batch from memory (FrameBatch) or from a feature store (StoredFrames), pooled to coarser steps."""

from __future__ import annotations

import numpy as np

from ser_models.models.architectures import pool_frames
from ser_models.models.frames import FrameBatch

SCALER_VALUES = 1 << 27  # real frame values read at a time to fit the frame scaler (float64: 1 GiB; every
# committed frame row, copies included, fits one chunk)
PREDICT_ROWS = 4096  # and to predict (a multiple of the 256 rows predicted at once)


def reads_frames(X) -> bool:
    """A frame input: a FrameBatch in memory or one read from a feature store (both have `read(rows)`)."""
    return hasattr(X, "read") and hasattr(X, "lengths")


def _chunks(rows: np.ndarray, sizes: np.ndarray, budget: int) -> list[np.ndarray]:
    """`rows` in consecutive chunks whose `sizes` add up to at most `budget` (a row larger than it alone)."""
    chunks, start, filled = [], 0, 0
    for end, size in enumerate(sizes):
        if filled + size > budget and end > start:
            chunks.append(rows[start:end])
            start, filled = end, 0
        filled += int(size)
    return [*chunks, rows[start:]] if len(rows) else []


def _summed(blocks) -> tuple[np.ndarray, int]:
    """Column sums (kept 2-D) and the row count of a stream of 2-D blocks."""
    total, count = None, 0
    for block in blocks:
        part = block.sum(axis=0, keepdims=True)
        total, count = (part if total is None else total + part), count + len(block)
    return total, count


class NetworkInputs:
    """The input plumbing of DeepClassifier (a mixin: it reads `utterance_norm`, `frame_pool` and sets the
    scaler's statistics)."""

    def _frame_values(self, X: FrameBatch) -> np.ndarray:
        """Frame values, each utterance standardised over its own real frames when `utterance_norm`."""
        values = X.values.astype(np.float32)
        if not self.utterance_norm:
            return values
        mask = X.mask()[:, :, None]
        count = np.maximum(mask.sum(axis=1, keepdims=True), 1.0)
        mean = (values * mask).sum(axis=1, keepdims=True) / count
        std = np.sqrt((((values - mean) * mask) ** 2).sum(axis=1, keepdims=True) / count)
        return (values - mean) / np.maximum(std, 1e-3) * mask

    def _rows(self, X, rows: np.ndarray) -> list[np.ndarray]:
        """The network inputs of `rows` of X, scaled; a stored frame input (StoredFrames) reads only those rows."""
        return self._arrays(X.read(rows) if reads_frames(X) else X[rows])

    def _arrays(self, X) -> list[np.ndarray]:
        if isinstance(X, FrameBatch):
            values = (self._frame_values(X) - self.mean_) / self.scale_
            arrays = list(pool_frames(values, X.mask(), self.frame_pool))
            if X.utterance is not None:  # fusion: the utterance statistics, scaled by training rows too
                vectors = np.asarray(X.utterance, dtype=np.float32)
                arrays.append((vectors - self.utterance_mean_) / self.utterance_scale_)
            return arrays
        return [((np.asarray(X, dtype=np.float32) - self.mean_) / self.scale_)]

    def _fit_scaler(self, X, rows: np.ndarray) -> None:
        """Standardisation statistics from `rows` (the training rows only). Frames are read in chunks of at most
        SCALER_VALUES real values, summed in float64: one chunk for a corpus the size of RAVDESS, where this is
        numpy's mean and std of all training frames to the last bit."""
        if not reads_frames(X):
            real = np.asarray(X[rows], dtype=np.float64)
            self.mean_ = real.mean(axis=0).astype(np.float32)
            self.scale_ = np.maximum(real.std(axis=0), 1e-6).astype(np.float32)
            return
        chunks = _chunks(rows, np.asarray(X.lengths)[rows] * X.shape[2], SCALER_VALUES)

        def real_frames():  # training frames only, padding excluded
            for chunk in chunks:
                batch = X.read(chunk)
                yield self._frame_values(batch)[batch.mask().astype(bool)].astype(np.float64)

        def squared_deviations(mean):  # in place, as numpy's std computes them
            for real in real_frames():
                np.subtract(real, mean, out=real)
                yield np.multiply(real, real, out=real)

        total, count = _summed(real_frames())
        mean = total / count
        squares, _ = _summed(squared_deviations(mean))
        self.mean_ = mean[0].astype(np.float32)
        self.scale_ = np.maximum(np.sqrt(squares / count)[0], 1e-6).astype(np.float32)
        if X.utterance is not None:
            vectors = np.asarray(X.utterance, dtype=np.float64)[rows]
            self.utterance_mean_ = vectors.mean(axis=0).astype(np.float32)
            self.utterance_scale_ = np.maximum(vectors.std(axis=0), 1e-6).astype(np.float32)

