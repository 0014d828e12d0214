"""Content-addressed on-disk feature cache and the parallel extraction of a whole manifest."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from filelock import FileLock
from joblib import Parallel, delayed
from joblib.externals.loky.process_executor import BrokenProcessPool, TerminatedWorkerError
from tqdm.auto import tqdm

from ser_models.augment import Augmentation
from ser_models.extractors import UtteranceFeatures, option
from ser_models.feature_store import RaggedFrames, is_complete, is_whole, open_functionals, read_meta, write_store
from ser_models.features import (
    FeatureSpec,
    extract_signal,
    extract_signals,
    load_signal,
    stored_spec,
    view_functionals,
)
from ser_models.files import atomic_write, file_digest
from ser_models.plugins import ensure_plugins, loaded_plugins

log = logging.getLogger(__name__)

# Every process that compiles librosa's cached numba functions takes this lock first: numba's
# cache is not safe against two processes writing it at once (numba issue #10128: a mismatched
# .nbc pair segfaults every later run). tempfile's folder is per machine, like numba's cache.
NUMBA_LOCK = Path(tempfile.gettempdir()) / "ser-bench-numba-cache.lock"


def default_cache_dir() -> Path:
    """Feature and generated-corpus cache: $SER_BENCH_CACHE or ~/.cache/ser-bench."""
    return Path(os.environ.get("SER_BENCH_CACHE", Path.home() / ".cache" / "ser-bench")).expanduser()


class ExtractionCrashError(RuntimeError):
    """A worker process died (segfault, out of memory) while extracting features."""


@functools.cache
def warm_numba_cache(spec: FeatureSpec, augmentation: Augmentation | None = None) -> None:
    """Compile (or load) every cached numba function one extraction uses, one process at a time.

    Run once per process before extracting: the parent warms an empty cache alone, and a worker
    that still finds something to compile does it under the same lock instead of racing.
    """
    if spec.feature_set != "librosa" and augmentation is None:
        return  # numba is librosa's (the librosa set and the augmentations); another set compiles nothing of it
    signal = np.sin(2 * np.pi * 220.0 * np.arange(8000) / spec.sample_rate).astype(np.float32)
    signal += np.random.default_rng(0).normal(0, 0.01, signal.size).astype(np.float32)
    with FileLock(str(NUMBA_LOCK)):
        if augmentation is not None:
            signal = augmentation.apply(signal, spec.sample_rate)
        if spec.feature_set == "librosa":
            extract_signal(signal, spec)


def content_hash(path: str | Path) -> str:
    """SHA-256 of a file's bytes: the audio part of a cache key (read once per process per file version)."""
    stat = os.stat(path)
    return _content_hash(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=200_000)
def _content_hash(path: str, size: int, mtime_ns: int) -> str:
    return file_digest(path)[:32]


class FeatureCache:
    """One .npz per (audio content, feature spec); writes are atomic, damaged entries recomputed.

    The librosa set stores functionals and frames in one entry (one pass makes both). An openSMILE
    set keeps its frames (a second, optional pass) in entries of their own, under frames-<key>.
    """

    def __init__(self, root: str | Path, spec: FeatureSpec, augmentation: Augmentation | None = None):
        self.root = Path(root)
        self.spec = spec
        suffix = f"-aug-{augmentation.key()}" if augmentation else ""
        self.folder = self.root / f"features-{spec.key()}{suffix}"
        self.separate_frames = not option(spec.extractor(), "frames_free")
        self.frames_folder = self.root / f"frames-{spec.key()}{suffix}" if self.separate_frames else self.folder

    def entry(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.npz"

    def frames_entry(self, key: str) -> Path:
        return self.frames_folder / key[:2] / f"{key}.npz"

    def has(self, key: str, frames: bool = True) -> bool:
        """Whether entries for `key` exist (not whether they are whole: `load` checks that)."""
        return self.entry(key).exists() and (not (frames or not self.separate_frames)
                                             or self.frames_entry(key).exists())

    def load(self, key: str, frames: bool = True) -> UtteranceFeatures | None:
        """The cached features for `key` (with frames when asked), or None when absent or damaged.

        A damaged file is removed, so it is recomputed.
        """
        functionals = self._read(self.entry(key), "functionals", (len(self.spec.functional_names()),))
        if functionals is None:
            return None
        matrix = None
        if frames or not self.separate_frames:
            matrix = self._read(self.frames_entry(key), "frames", (None, len(self.spec.frame_names())))
            if matrix is None:
                return None
        return UtteranceFeatures(functionals=functionals, frames=matrix)

    @staticmethod
    def _read(path: Path, name: str, shape: tuple) -> np.ndarray | None:
        if not path.exists():
            return None
        try:
            with np.load(path) as data:
                values = data[name]
            fits = values.ndim == len(shape) and all(w in (None, g) for w, g in zip(shape, values.shape, strict=True))
            if not fits:
                raise ValueError(f"{name} have shape {values.shape}")
            return values
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
            log.warning("damaged cache entry %s (%s): recomputing", path, error)
            path.unlink(missing_ok=True)
            return None

    def save(self, key: str, features: UtteranceFeatures) -> None:
        """Write atomically: a reader sees the old state or the complete new file, never half of one."""
        if not self.separate_frames:
            _atomic_savez(self.entry(key), functionals=features.functionals, frames=features.frames)
            return
        if features.frames is not None:  # frames first: a functionals entry never promises missing frames
            _atomic_savez(self.frames_entry(key), frames=features.frames)
        _atomic_savez(self.entry(key), functionals=features.functionals)


def _atomic_savez(path: Path, **arrays: np.ndarray) -> None:
    atomic_write(path, lambda stream: np.savez(stream, **arrays))


@dataclass
class FeatureSet:
    """Features of every usable utterance of a manifest, rows aligned with `manifest`."""

    manifest: pd.DataFrame
    functionals: np.ndarray  # (n, n_functionals) float32
    frames: list[np.ndarray] | None  # n arrays of (n_frames_i, n_frame_features) float16; None: not extracted
    functional_names: list[str]
    frame_names: list[str]
    keys: list[str]  # content hashes, aligned with rows
    skipped: list[dict] = field(default_factory=list)  # {path, reason} for files that failed
    store: str | None = None  # the feature store (ser_models.feature_store) the rows are read from, if any
    store_rows: np.ndarray | None = None  # each row's row in the store

    def subset(self, rows: np.ndarray) -> FeatureSet:
        """The rows at positions `rows` (e.g. the utterances of some classes)."""
        rows = np.asarray(rows, dtype=int)
        return FeatureSet(
            manifest=self.manifest.iloc[rows].reset_index(drop=True), functionals=self.functionals[rows],
            frames=None if self.frames is None else
            self.frames[rows] if isinstance(self.frames, RaggedFrames) else [self.frames[i] for i in rows],
            functional_names=self.functional_names,
            frame_names=self.frame_names, keys=[self.keys[i] for i in rows], skipped=list(self.skipped),
            store=self.store, store_rows=None if self.store_rows is None else self.store_rows[rows],
        )

    @staticmethod
    def concat(sets: list[FeatureSet]) -> FeatureSet:
        """Several corpora's features as one set (same feature spec required)."""
        if len({tuple(s.functional_names) for s in sets}) != 1:
            raise ValueError("feature sets of different feature specs cannot be merged")
        return FeatureSet(
            manifest=pd.concat([s.manifest for s in sets], ignore_index=True),
            functionals=np.concatenate([s.functionals for s in sets]),
            frames=None if any(s.frames is None for s in sets) else [f for s in sets for f in s.frames],
            functional_names=sets[0].functional_names,
            frame_names=sets[0].frame_names, keys=[k for s in sets for k in s.keys],
            skipped=[item for s in sets for item in s.skipped],
        )

    def fingerprint(self) -> str:
        """A hash of exactly which audio contents are in the set (for record config hashes)."""
        return hashlib.sha256("\n".join(sorted(self.keys)).encode()).hexdigest()[:16]


def _extract_chunk(paths: list[str], keys: list[str], cache: FeatureCache | None, spec: FeatureSpec, augmentation,
                   frames: bool, plugins: tuple[str, ...] = (), give_back: bool = True
                   ) -> list[tuple[UtteranceFeatures | bool | None, str | None]]:
    """Features of a few files in one call of the extractor (a GPU encoder batches them), each cached; a file that
    fails alone gets its reason, and a failing batch is retried file by file to find which. Without `give_back`
    a file's features stay in the cache only (True in their place)."""
    ensure_plugins(plugins)  # a worker process: the parent's feature sets registered here too
    warm_numba_cache(spec, augmentation)
    out: list = [None] * len(paths)
    signals = {}
    for i, path in enumerate(paths):
        try:
            signals[i] = load_signal(path, spec, augmentation)
        except Exception as error:  # noqa: BLE001  -- one bad file must never sink a run
            out[i] = (None, f"{type(error).__name__}: {error}")
    try:
        done = dict(zip(signals, extract_signals(list(signals.values()), spec, frames=frames), strict=True))
    except Exception:  # noqa: BLE001  -- find the file that failed the batch
        done = {}
        for i, signal in signals.items():
            try:
                done[i] = extract_signals([signal], spec, frames=frames)[0]
            except Exception as error:  # noqa: BLE001
                out[i] = (None, f"{type(error).__name__}: {error}")
    for i, features in done.items():
        if cache is not None:
            cache.save(keys[i], features)
        out[i] = (features if give_back or cache is None else True, None)
    return out


def extract_features(
    manifest: pd.DataFrame,
    spec: FeatureSpec = FeatureSpec(),
    *,
    cache_dir: str | Path | None = None,
    n_jobs: int = 1,
    progress: bool | None = None,
    augmentation: Augmentation | None = None,
    frames: bool = True,
    store: bool = True,
) -> FeatureSet:
    """Extract (or read from the cache) the features of every file in `manifest`, optionally augmented.

    Files that cannot be read or analysed are left out and listed in `skipped`. `frames=False` skips a frame pass
    that does not come free with the functionals (an openSMILE set's: `frames` is then None). With a cache (and
    `store`), the table is written once to a memory-mapped feature store beside it and read from there: the
    frames are then a RaggedFrames, never all in memory; without, every array is in memory.
    """
    extractor = spec.extractor()
    frames = (frames or option(extractor, "frames_free")) and "frames" in option(extractor, "produces")
    spec.check_available()
    paths = manifest["path"].tolist()
    keys = [content_hash(p) for p in paths]
    if hasattr(extractor, "read_rows"):  # features from a file: no audio analysis, no cache
        if augmentation is not None:
            raise ValueError(f"the {spec.feature_set} feature set reads no audio, so it cannot make augmented "
                             f"copies ({augmentation.kind}); leave out the suite's augmentation for it")
        results = extractor.read_rows(manifest, frames=frames)
    elif cache_dir is not None and store:
        return _stored_features(manifest, keys, spec, augmentation, frames=frames, cache_dir=Path(cache_dir),
                                n_jobs=n_jobs, progress=progress)
    else:
        results = _extract_all(paths, keys, stored_spec(spec), augmentation, frames=frames, cache_dir=cache_dir,
                               n_jobs=n_jobs, progress=progress)
    ok = [i for i, (r, _) in enumerate(results) if r is not None]
    skipped = [{"path": paths[i], "reason": reason} for i, (r, reason) in enumerate(results) if r is None]
    for item in skipped:
        log.warning("skipped %s: %s", item["path"], item["reason"])
    n_functionals = len(spec.functional_names())
    return FeatureSet(
        manifest=manifest.iloc[ok].reset_index(drop=True),
        functionals=view_functionals(spec, np.stack([results[i][0].functionals for i in ok])) if ok else
        np.zeros((0, n_functionals), np.float32),
        frames=[results[i][0].frames for i in ok] if frames else None,
        functional_names=spec.functional_names(),
        frame_names=spec.frame_names(),
        keys=[keys[i] for i in ok],
        skipped=skipped,
    )


def _stored_features(manifest: pd.DataFrame, keys: list[str], spec: FeatureSpec, augmentation, *, frames: bool,
                     cache_dir: Path, n_jobs: int, progress: bool | None) -> FeatureSet:
    """The table from its feature store, which is built first (from the cache, extracting what it lacks) unless a
    store of exactly these contents, spec, augmentation and frame choice is there."""
    paths = manifest["path"].tolist()
    identity = json.dumps([spec.key(), augmentation.key() if augmentation else None, frames, keys])
    folder = cache_dir / "stores" / hashlib.sha256(identity.encode()).hexdigest()[:24]
    with FileLock(f"{folder}.lock"):
        if is_complete(folder) and not is_whole(folder):
            log.warning("feature store %s is damaged (a file is missing or truncated): rebuilding it from the cache",
                        folder)
            shutil.rmtree(folder)
        if not is_complete(folder):
            _build_store(folder, paths, keys, spec, augmentation, frames=frames, cache_dir=cache_dir, n_jobs=n_jobs,
                         progress=progress)
    meta = read_meta(folder)
    unusable = set(meta["unusable"])
    kept = [row for row in range(meta["rows"]) if row not in unusable]
    ok = [meta["manifest_rows"][row] for row in kept]
    skipped = [{"path": paths[i], "reason": reason} for i, reason in sorted(meta["skipped"])]
    for item in skipped:
        log.warning("skipped %s: %s", item["path"], item["reason"])
    functionals = open_functionals(folder)
    return FeatureSet(
        manifest=manifest.iloc[ok].reset_index(drop=True),
        functionals=functionals if len(kept) == meta["rows"] else functionals[kept],
        frames=(RaggedFrames(folder, np.asarray(kept, dtype=np.int64)) if kept else []) if frames else None,
        functional_names=spec.functional_names(), frame_names=spec.frame_names(), keys=[keys[i] for i in ok],
        skipped=skipped, store=str(folder), store_rows=np.asarray(kept, dtype=np.int64),
    )


def _build_store(folder: Path, paths: list[str], keys: list[str], spec: FeatureSpec, augmentation, *, frames: bool,
                 cache_dir: Path, n_jobs: int, progress: bool | None) -> None:
    """Extract what the cache lacks (kept in the cache, not in memory), then stream every usable file's features
    from the cache into the store in manifest order. An entry found damaged now is extracted again in this
    process; a file that still fails is marked unusable in the store (skipped, with its reason)."""
    stored = stored_spec(spec)
    results = _extract_all(paths, keys, stored, augmentation, frames=frames, cache_dir=cache_dir, n_jobs=n_jobs,
                           progress=progress, give_back=False)
    skipped = [[i, reason] for i, (r, reason) in enumerate(results) if r is None]
    rows = [i for i, (r, _) in enumerate(results) if r is not None]
    cache, unusable = FeatureCache(cache_dir, stored, augmentation), []

    def features():
        for position, i in enumerate(rows):
            found = cache.load(keys[i], frames)
            if found is None:  # damaged since: once more, here
                (found, reason), = _extract_chunk([paths[i]], [keys[i]], cache, stored, augmentation, frames)
                if found is None:
                    unusable.append(position)
                    skipped.append([i, reason])
                    yield np.zeros(len(spec.functional_names()), np.float32), \
                        np.zeros((0, len(spec.frame_names())), np.float16) if frames else None
                    continue
            yield view_functionals(spec, found.functionals[None])[0], found.frames if frames else None

    write_store(folder, features(), n_rows=len(rows), n_functionals=len(spec.functional_names()),
                info={"manifest_rows": rows, "unusable": unusable, "skipped": skipped})


def _extract_all(paths: list[str], keys: list[str], spec: FeatureSpec, augmentation, *, frames: bool, cache_dir,
                 n_jobs: int, progress: bool | None, give_back: bool = True
                 ) -> list[tuple[UtteranceFeatures | bool | None, str | None]]:
    """(features, None) or (None, reason) per path: cached entries read, the rest extracted in parallel chunks.
    Without `give_back` nothing is read: (True, None) for a file whose entries are cached (whole or not)."""
    cache = FeatureCache(cache_dir, spec, augmentation) if cache_dir is not None else None
    if give_back or cache is None:
        results = [(cache.load(k, frames) if cache else None, None) for k in keys]
    else:
        results = [(True if cache.has(k, frames) else None, None) for k in keys]
    todo = [i for i, (r, _) in enumerate(results) if r is None]
    if not todo:
        return results
    warm_numba_cache(spec, augmentation)  # before any worker starts: the workers then only read the cache
    size = max(1, int(option(spec.extractor(), "batch_size")))
    chunks = [todo[start:start + size] for start in range(0, len(todo), size)]
    jobs = (delayed(_extract_chunk)([paths[i] for i in chunk], [keys[i] for i in chunk], cache, spec, augmentation,
                                    frames, loaded_plugins(), give_back) for chunk in chunks)
    label = f"features ({augmentation.kind})" if augmentation else "features"
    bar = tqdm(total=len(todo), desc=label, unit="file", disable=None if progress is None else not progress)
    finished = 0
    try:
        for chunk, outcome in zip(chunks, Parallel(n_jobs=n_jobs, return_as="generator")(jobs), strict=True):
            for i, result in zip(chunk, outcome, strict=True):
                results[i] = result
            finished += len(chunk)
            bar.update(len(chunk))
    except (TerminatedWorkerError, BrokenProcessPool) as error:
        pending = todo[finished:]
        kept = "; the files finished so far are cached and will be reused" if cache else ""
        raise ExtractionCrashError(
            f"feature extraction ({label}): a worker process died ({_cause(error)}) with {len(pending)} of "
            f"{len(todo)} files to go, near {paths[pending[0]]}{kept}. Run the same command again; if it "
            "happens again, try --jobs 1 or more memory"
        ) from None
    finally:
        bar.close()
    return results


def _cause(error: BaseException) -> str:
    """The exit code or signal of a dead worker, from loky's message, in a few words."""
    text = str(error)
    for word in ("SIGSEGV", "SIGKILL", "SIGBUS", "SIGABRT"):
        if word in text:
            return {"SIGSEGV": "segmentation fault", "SIGKILL": "killed, e.g. out of memory"}.get(word, word)
    return type(error).__name__
