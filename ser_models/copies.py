"""Copies of one recording under two names: byte-identical files (one content key) and near copies, the same audio
re-encoded, resampled, rescaled or padded with silence, found by their utterance functionals."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# The median |difference| of two utterances' functionals, each functional in units of its interquartile range over
# the rows compared. Chosen on distances alone, no model scored (bench/benchmarks/near_copies.md): copies of 40
# RAVDESS and URDU files re-saved losslessly, resampled, peak-normalised or padded lie within 0.09 of their originals,
# at -6 dB 39 of 40 within 0.12; lossy ones (MP3, mu-law) at a median 0.11; two recordings of different speakers
# never closer than 0.24 (RAVDESS alone 0.29, URDU 0.27, the synthetic corpus 0.27).
NEAR_COPY_DISTANCE = 0.12
_CANDIDATES = 10  # nearest rows by Euclidean distance, then checked by the median
_BLOCK = 512


def _scaled(rows: np.ndarray, centre: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return np.clip(np.nan_to_num((rows - centre) / scale), -20.0, 20.0).astype(np.float32)


def near_copy_pairs(a: np.ndarray, b: np.ndarray | None = None, *,
                    threshold: float = NEAR_COPY_DISTANCE) -> list[tuple[int, int, float]]:
    """Pairs (i, j, distance) of a row of `a` and a row of `b` (or two rows of `a`, i < j) that hold nearly the same
    audio: the median |difference| of their functionals, scaled by the interquartile range of all rows compared, is
    at most `threshold`."""
    a = np.asarray(a, dtype=np.float64)
    other = a if b is None else np.asarray(b, dtype=np.float64)
    if len(a) == 0 or len(other) == 0 or (b is None and len(a) < 2):
        return []
    pooled = a if b is None else np.vstack([a, other])
    centre = np.median(pooled, axis=0)
    scale = np.subtract(*np.percentile(pooled, [75, 25], axis=0))
    scale[~(scale > 0)] = 1.0
    za, zb = _scaled(a, centre, scale), _scaled(other, centre, scale)
    norms_b = (zb**2).sum(axis=1)
    k = min(_CANDIDATES, len(zb) - (b is None))
    pairs: set[tuple[int, int, float]] = set()
    for start in range(0, len(za), _BLOCK):
        block = za[start:start + _BLOCK]
        squared = (block**2).sum(axis=1)[:, None] + norms_b[None, :] - 2.0 * block @ zb.T
        if b is None:  # a row is no copy of itself
            squared[np.arange(len(block)), np.arange(start, start + len(block))] = np.inf
        nearest = np.argpartition(squared, k - 1, axis=1)[:, :k]
        differences = np.abs(zb[nearest] - block[:, None, :])
        # the median is at most the threshold only where half the differences are: count first, sort the few
        close = (differences <= threshold).sum(axis=2) >= -(-za.shape[1] // 2)
        for offset, column in zip(*np.nonzero(close), strict=True):
            i, j = start + int(offset), int(nearest[offset, column])
            median = np.median(differences[offset, column])  # float32, compared as before
            if median <= threshold:
                distance = round(float(median), 4)
                pairs.add((min(i, j), max(i, j), distance) if b is None else (i, j, distance))
    return sorted((int(i), int(j), d) for i, j, d in pairs)


def first_copies(keys: Sequence[str], functionals: np.ndarray) -> np.ndarray:
    """Per row, the first row (lowest index) holding the same recording, byte for byte or nearly; itself when none
    before it does. Copies of copies count (A ~ B ~ C: C's first is A)."""
    parent = list(range(len(keys)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def join(i: int, j: int) -> None:
        i, j = root(i), root(j)
        parent[max(i, j)] = min(i, j)

    first: dict[str, int] = {}
    for index, key in enumerate(keys):
        join(first.setdefault(key, index), index)
    for i, j, _ in near_copy_pairs(functionals):
        join(i, j)
    return np.array([root(i) for i in range(len(keys))], dtype=int)


def copies_in(keys: Sequence[str], functionals: np.ndarray, other_keys: Sequence[str],
              other_functionals: np.ndarray) -> np.ndarray:
    """Per row of the first set, the row of the other set holding the same recording (byte for byte or nearly), or
    -1 where none does."""
    found = np.full(len(keys), -1, dtype=int)
    for i, j, _ in near_copy_pairs(functionals, other_functionals):
        if found[i] < 0:
            found[i] = j
    index = {key: j for j, key in reversed(list(enumerate(other_keys)))}
    for i, key in enumerate(keys):
        if key in index:
            found[i] = index[key]
    return found
