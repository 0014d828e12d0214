"""How a deep model reads its inputs: frame values standardised with statistics of the training rows only, read
batch by batch from memory (FrameBatch) or from a feature store (StoredFrames), pooled to coarser steps."""

from __future__ import annotations

import numpy as np

from ser_models.models.architectures import TIME_ALIGNMENT, pool_frames
from ser_models.models.frames import FrameBatch

SCALER_VALUES = 1 << 27  # real frame values read at a time to fit the frame scaler (float64: 1 GiB; every
# committed frame row, copies included, fits one chunk)
PREDICT_ROWS = 4096  # and to predict (a multiple of the 256 rows predicted at once)
PREDICT_BATCH = 256
KEPT_BYTES = 1 << 30  # a fit computes every row's network inputs once when they take at most this (float32)
KEEP_CHUNK = 256  # rows computed at a time (at 320 frames of 161 values: 53 MB of float32 in between)
# With `length_buckets`, each batch is padded to its own longest utterance, rounded up to a step of about a fifth of
# the corpus-wide length: a network compiles for at most this many lengths (per batch size).
N_PADDED_LENGTHS = 5


def padded_length_step(full_steps: int, alignment: int) -> int:
    """The step a batch's padded length is rounded up to: about a fifth of `full_steps`, a multiple of the
    network's `alignment` (TIME_ALIGNMENT)."""
    step = -(-full_steps // N_PADDED_LENGTHS)
    return -(-step // alignment) * alignment


def cut_to_longest(values: np.ndarray, mask: np.ndarray, step: int) -> tuple[np.ndarray, np.ndarray]:
    """Pooled (batch, steps, ...) inputs cut after the batch's last real step, rounded up to a multiple of `step`
    (never past the corpus-wide length): only padding is cut."""
    real = np.flatnonzero(mask.any(axis=0))
    longest = int(real[-1]) + 1 if len(real) else 0
    keep = min(values.shape[1], max(step, -(-longest // step) * step))
    return values[:, :keep], mask[:, :keep]


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
        kept = getattr(self, "kept_", None)
        if kept is not None and X is kept[0]:
            return self._cut([a[rows] for a in kept[1]])
        return self._arrays(X.read(rows) if reads_frames(X) else X[rows])

    def _keep_inputs(self, X) -> None:
        """Compute the network inputs of every row of X once, before training, when X reads frames and they take
        at most KEPT_BYTES: batches, validation passes and refits then index them. A row's inputs do not depend
        on the rows read with it, so they are the values read per batch, to the bit; a larger X is read per batch.
        `fit` drops them when it ends (`_drop_kept_inputs`)."""
        self.kept_ = None
        if not reads_frames(X):
            return
        steps = -(-X.shape[1] // max(1, self.frame_pool))
        if len(X) * steps * X.shape[2] * 4 > KEPT_BYTES:
            return
        parts = [self._full_arrays(X.read(np.arange(start, min(len(X), start + KEEP_CHUNK))))
                 for start in range(0, len(X), KEEP_CHUNK)]
        self.kept_ = (X, [np.concatenate(arrays) for arrays in zip(*parts, strict=True)])

    def _drop_kept_inputs(self) -> None:
        self.__dict__.pop("kept_", None)

    def _cut(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """Frame inputs cut to the batch's longest utterance when batches are padded to their own length."""
        if getattr(self, "length_step_", None):
            arrays = [*cut_to_longest(arrays[0], arrays[1], self.length_step_), *arrays[2:]]
        return arrays

    def _arrays(self, X) -> list[np.ndarray]:
        return self._cut(self._full_arrays(X)) if isinstance(X, FrameBatch) else self._full_arrays(X)

    def _full_arrays(self, X) -> list[np.ndarray]:
        if isinstance(X, FrameBatch):
            values = (self._frame_values(X) - self.mean_) / self.scale_
            arrays = list(pool_frames(values, X.mask(), self.frame_pool))
            if X.utterance is not None:  # fusion: the utterance statistics, scaled by training rows too
                vectors = np.asarray(X.utterance, dtype=np.float32)
                arrays.append((vectors - self.utterance_mean_) / self.utterance_scale_)
            return arrays
        return [((np.asarray(X, dtype=np.float32) - self.mean_) / self.scale_)]

    def _set_input_shapes(self, X, train: np.ndarray) -> None:
        """The network's input shapes, from the corpus-wide padded rows; with `length_buckets` the frame inputs'
        time axis is left open (None) and each batch is cut to its own longest utterance (`cut_to_longest`)."""
        self.length_step_ = None
        shapes = [a.shape[1:] for a in self._rows(X, train[:1])]
        if self.length_buckets:
            self.length_step_ = padded_length_step(shapes[0][0], TIME_ALIGNMENT[self.architecture])
            shapes = [(None, *shape[1:]) if index < 2 else shape for index, shape in enumerate(shapes)]
        self.input_shapes_ = shapes

    def _sorted_by_length(self, X, rows: np.ndarray) -> np.ndarray:
        """`rows` from the shortest utterance to the longest when batches are cut to their own length (so that
        each batch is cut the most), else as given."""
        if not getattr(self, "length_step_", None):
            return rows
        return rows[np.argsort(np.asarray(X.lengths)[rows], kind="stable")]

    def _prediction_batches(self, X):
        """(rows, network inputs) covering every row of X once: PREDICT_ROWS in order, or, with batches cut to
        their own length, PREDICT_BATCH rows at a time from the shortest utterance to the longest."""
        if not getattr(self, "length_step_", None):
            for start in range(0, len(X), PREDICT_ROWS):
                rows = np.arange(start, min(len(X), start + PREDICT_ROWS))
                yield rows, self._rows(X, rows)
            return
        ordered = self._sorted_by_length(X, np.arange(len(X)))
        for start in range(0, len(X), PREDICT_BATCH):
            rows = ordered[start:start + PREDICT_BATCH]
            yield rows, self._rows(X, rows)

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

