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
# From this many rows compared on, the nearest rows come from a graph index (HNSW, faiss) over the rows' principal
# axes, re-ranked in full, not from every distance: its cost per row stays flat (bench/benchmarks/scaling.md).
INDEX_ROWS = 5_000
_INDEX_DIMS, _INDEX_CANDIDATES = 128, 32  # the graph's principal axes; its nearest rows, re-ranked in full


def scaled_rows(rows: np.ndarray, centre: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Rows in interquartile ranges from the median, clipped, as float32 (computed in float64, 4,096 rows at a time)."""
    scaled = np.empty(rows.shape, dtype=np.float32)
    for start in range(0, len(rows), 4096):
        block = np.asarray(rows[start:start + 4096], dtype=np.float64)
        scaled[start:start + 4096] = np.clip(np.nan_to_num((block - centre) / scale), -20.0, 20.0)
    return scaled


def robust_scale(pooled: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per functional, the median and interquartile range over all rows compared, a column block at a time."""
    columns = pooled[0].shape[1]
    centre, scale = np.empty(columns), np.empty(columns)
    for start in range(0, columns, 64):
        block = np.vstack([rows[:, start:start + 64] for rows in pooled]).astype(np.float64)
        centre[start:start + 64] = np.median(block, axis=0)
        scale[start:start + 64] = np.subtract(*np.percentile(block, [75, 25], axis=0))
    scale[~(scale > 0)] = 1.0
    return centre, scale


def _nearest_exact(za: np.ndarray, zb: np.ndarray, k: int, same: bool) -> np.ndarray:
    """Per row of `za`, the `k` rows of `zb` nearest by Euclidean distance (itself left out when `same`)."""
    norms_b = (zb**2).sum(axis=1)
    nearest = np.empty((len(za), k), dtype=np.int64)
    for start in range(0, len(za), _BLOCK):
        block = za[start:start + _BLOCK]
        squared = (block**2).sum(axis=1)[:, None] + norms_b[None, :] - 2.0 * block @ zb.T
        if same:  # a row is no copy of itself
            squared[np.arange(len(block)), np.arange(start, start + len(block))] = np.inf
        nearest[start:start + len(block)] = np.argpartition(squared, k - 1, axis=1)[:, :k]
    return nearest


def _projected(za: np.ndarray, zb: np.ndarray, same: bool) -> tuple[np.ndarray, np.ndarray]:
    """Both row sets on the first _INDEX_DIMS principal axes of (at most 5,000 fixed-seed rows of) `zb`."""
    import faiss

    sample = np.sort(np.random.default_rng(0).choice(len(zb), min(len(zb), 5000), replace=False))
    pca = faiss.PCAMatrix(zb.shape[1], min(_INDEX_DIMS, zb.shape[1], len(sample)))
    pca.train(np.ascontiguousarray(zb[sample]))
    yb = pca.apply(np.ascontiguousarray(zb))
    return (yb if same else pca.apply(np.ascontiguousarray(za))), yb


def _nearest_indexed(za: np.ndarray, zb: np.ndarray, k: int, same: bool) -> np.ndarray:
    """`_nearest_exact` through an HNSW graph (faiss) over the rows' principal axes: its _INDEX_CANDIDATES nearest,
    re-ranked by their full Euclidean distance. The graph is built on one thread: the same rows, the same graph."""
    import faiss

    ya, yb = _projected(za, zb, same)
    index = faiss.IndexHNSWFlat(yb.shape[1], 16)
    index.hnsw.efConstruction, index.hnsw.efSearch = 40, max(32, _INDEX_CANDIDATES)
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        index.add(yb)
    finally:
        faiss.omp_set_num_threads(threads)
    found = index.search(ya, min(_INDEX_CANDIDATES, len(zb) - same) + same)[1]
    unusable = (found < 0) | (found == np.arange(len(za))[:, None]) if same else found < 0  # none, or itself
    found = np.where(unusable, 0, found)
    nearest = np.empty((len(za), k), dtype=np.int64)
    for start in range(0, len(za), _BLOCK):
        block, rows = found[start:start + _BLOCK], slice(start, start + _BLOCK)
        squared = ((zb[block] - za[rows, None, :]) ** 2).sum(axis=2)
        squared[unusable[rows]] = np.inf
        nearest[rows] = np.take_along_axis(block, np.argsort(squared, axis=1, kind="stable")[:, :k], axis=1)
    return nearest


def near_copy_pairs(a: np.ndarray, b: np.ndarray | None = None, *, threshold: float = NEAR_COPY_DISTANCE,
                    indexed: bool | None = None) -> list[tuple[int, int, float]]:
    """Pairs (i, j, distance) of a row of `a` and a row of `b` (or two rows of `a`, i < j) that hold nearly the same
    audio: the median |difference| of their functionals, scaled by the interquartile range of all rows compared, is
    at most `threshold`. Each row is checked against its nearest rows, found exactly or (`indexed`; by default from
    INDEX_ROWS rows compared on) from a graph index."""
    a = np.asarray(a)
    other = a if b is None else np.asarray(b)
    if len(a) == 0 or len(other) == 0 or (b is None and len(a) < 2):
        return []
    centre, scale = robust_scale([a] if b is None else [a, other])
    za = scaled_rows(a, centre, scale)
    zb = za if b is None else scaled_rows(other, centre, scale)
    k = min(_CANDIDATES, len(zb) - (b is None))
    rows = len(za) if b is None else len(za) + len(zb)
    nearest_rows = _nearest_indexed if (rows >= INDEX_ROWS if indexed is None else indexed) else _nearest_exact
    nearest_all = nearest_rows(za, zb, k, b is None)
    pairs: set[tuple[int, int, float]] = set()
    for start in range(0, len(za), _BLOCK):
        block, nearest = za[start:start + _BLOCK], nearest_all[start:start + _BLOCK]
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
