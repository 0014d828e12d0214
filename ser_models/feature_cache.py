"""Content-addressed on-disk feature cache and the parallel extraction of a whole manifest."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from tqdm.auto import tqdm

from ser_models.augment import Augmentation
from ser_models.features import FeatureSpec, UtteranceFeatures, extract_file

log = logging.getLogger(__name__)


def content_hash(path: str | Path) -> str:
    """SHA-256 of a file's bytes: the audio part of a cache key."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:32]


class FeatureCache:
    """One .npz per (audio content, feature spec); writes are atomic, damaged entries recomputed."""

    def __init__(self, root: str | Path, spec: FeatureSpec, augmentation: Augmentation | None = None):
        self.root = Path(root)
        self.spec = spec
        suffix = f"-aug-{augmentation.key()}" if augmentation else ""
        self.folder = self.root / f"features-{spec.key()}{suffix}"

    def entry(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.npz"

    def load(self, key: str) -> UtteranceFeatures | None:
        """The cached features for `key`, or None when absent or damaged (a damaged file is removed)."""
        path = self.entry(key)
        if not path.exists():
            return None
        try:
            with np.load(path) as data:
                features = UtteranceFeatures(functionals=data["functionals"], frames=data["frames"])
            if features.functionals.shape != (len(self.spec.functional_names()),):
                raise ValueError(f"functionals have shape {features.functionals.shape}")
            if features.frames.ndim != 2 or features.frames.shape[1] != len(self.spec.frame_names()):
                raise ValueError(f"frames have shape {features.frames.shape}")
            return features
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
            log.warning("damaged cache entry %s (%s): recomputing", path, error)
            path.unlink(missing_ok=True)
            return None

    def save(self, key: str, features: UtteranceFeatures) -> None:
        """Write atomically: a reader sees the old state or the complete new file, never half of one."""
        path = self.entry(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as stream:
                np.savez(stream, functionals=features.functionals, frames=features.frames)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


@dataclass
class FeatureSet:
    """Features of every usable utterance of a manifest, rows aligned with `manifest`."""

    manifest: pd.DataFrame
    functionals: np.ndarray  # (n, n_functionals) float32
    frames: list[np.ndarray]  # n arrays of (n_frames_i, n_frame_features) float16
    functional_names: list[str]
    frame_names: list[str]
    keys: list[str]  # content hashes, aligned with rows
    skipped: list[dict] = field(default_factory=list)  # {path, reason} for files that failed

    def subset(self, rows: np.ndarray) -> FeatureSet:
        """The rows at positions `rows` (e.g. the utterances of some classes)."""
        rows = np.asarray(rows, dtype=int)
        return FeatureSet(
            manifest=self.manifest.iloc[rows].reset_index(drop=True), functionals=self.functionals[rows],
            frames=[self.frames[i] for i in rows], functional_names=self.functional_names,
            frame_names=self.frame_names, keys=[self.keys[i] for i in rows], skipped=list(self.skipped),
        )

    @staticmethod
    def concat(sets: list[FeatureSet]) -> FeatureSet:
        """Several corpora's features as one set (same feature spec required)."""
        if len({tuple(s.functional_names) for s in sets}) != 1:
            raise ValueError("feature sets of different feature specs cannot be merged")
        return FeatureSet(
            manifest=pd.concat([s.manifest for s in sets], ignore_index=True),
            functionals=np.concatenate([s.functionals for s in sets]),
            frames=[f for s in sets for f in s.frames], functional_names=sets[0].functional_names,
            frame_names=sets[0].frame_names, keys=[k for s in sets for k in s.keys],
            skipped=[item for s in sets for item in s.skipped],
        )

    def fingerprint(self) -> str:
        """A hash of exactly which audio contents are in the set (for record config hashes)."""
        return hashlib.sha256("\n".join(sorted(self.keys)).encode()).hexdigest()[:16]


def _extract_and_store(path: str, key: str, cache: FeatureCache | None, spec: FeatureSpec, augmentation):
    try:
        features = extract_file(path, spec, augmentation)
    except Exception as error:  # noqa: BLE001  -- one bad file must never sink a run
        return None, f"{type(error).__name__}: {error}"
    if cache is not None:
        cache.save(key, features)
    return features, None


def extract_features(
    manifest: pd.DataFrame,
    spec: FeatureSpec = FeatureSpec(),
    *,
    cache_dir: str | Path | None = None,
    n_jobs: int = 1,
    progress: bool | None = None,
    augmentation: Augmentation | None = None,
) -> FeatureSet:
    """Extract (or read from the cache) the features of every file in `manifest`, optionally augmented.

    Files that cannot be read or analysed are left out and listed in `skipped`.
    """
    spec.check_available()
    cache = FeatureCache(cache_dir, spec, augmentation) if cache_dir is not None else None
    paths = manifest["path"].tolist()
    keys = [content_hash(p) for p in paths]
    results: list[UtteranceFeatures | None] = [cache.load(k) if cache else None for k in keys]
    reasons: dict[int, str] = {}
    todo = [i for i, r in enumerate(results) if r is None]
    if todo:
        disable = None if progress is None else not progress
        jobs = (delayed(_extract_and_store)(paths[i], keys[i], cache, spec, augmentation) for i in todo)
        runner = Parallel(n_jobs=n_jobs, return_as="generator", batch_size=8)
        label = f"features ({augmentation.kind})" if augmentation else "features"
        bar = tqdm(runner(jobs), total=len(todo), desc=label, unit="file", disable=disable)
        for i, (features, reason) in zip(todo, bar, strict=True):
            results[i] = features
            if reason:
                reasons[i] = reason
    ok = [i for i, r in enumerate(results) if r is not None]
    skipped = [{"path": paths[i], "reason": reason} for i, reason in sorted(reasons.items())]
    for item in skipped:
        log.warning("skipped %s: %s", item["path"], item["reason"])
    n_functionals = len(spec.functional_names())
    return FeatureSet(
        manifest=manifest.iloc[ok].reset_index(drop=True),
        functionals=np.stack([results[i].functionals for i in ok]) if ok else np.zeros((0, n_functionals), np.float32),
        frames=[results[i].frames for i in ok],
        functional_names=spec.functional_names(),
        frame_names=spec.frame_names(),
        keys=[keys[i] for i in ok],
        skipped=skipped,
    )
