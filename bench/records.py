"""Records: one JSON line per (suite, corpus, protocol, model, fold, seed), plus per-utterance predictions."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import os
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

from ser_models.files import atomic_write_bytes

log = logging.getLogger(__name__)

VERSIONED_PACKAGES = ("ser-bench", "numpy", "scikit-learn", "xgboost", "librosa", "keras", "jax", "optuna")


def config_hash(config: dict) -> str:
    """Stable hash of everything that decides a row's numbers."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:20]


def record_identity(record: dict) -> tuple:
    """What a row measures: (corpus, protocol, model, fold, seed, target, variant); one current row each."""
    return (record["corpus"], record["protocol"], record["model"], record["fold"], record["seed"],
            record.get("target", "emotion"), json.dumps(record.get("variant", {}), sort_keys=True))


def package_versions() -> dict[str, str]:
    """Installed versions of the packages whose behaviour affects results."""
    versions = {}
    for package in VERSIONED_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "absent"
    return versions


PREDICTION_COLUMNS = {"speaker", "key", "true", "predicted"}  # and p_<label> per class


class RecordStore:
    """A folder holding records.jsonl and predictions/<config_hash>.csv.gz."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.records_path = self.folder / "records.jsonl"
        self.superseded_path = self.folder / "records.superseded.jsonl"
        self.predictions_dir = self.folder / "predictions"

    def load(self) -> list[dict]:
        """Every intact record; a damaged line (e.g. cut by a kill) is reported and ignored."""
        if not self.records_path.exists():
            return []
        records, seen = [], set()
        for number, line in enumerate(self.records_path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict) or "config_hash" not in record:
                    raise ValueError("not a record object")
            except ValueError as error:
                log.warning("ignoring damaged record line %d of %s (%s)", number, self.records_path, error)
                continue
            if record["config_hash"] in seen:  # the same fit recorded twice (runs of older versions, run at once)
                log.warning("ignoring record line %d of %s: its fit is recorded above", number, self.records_path)
                continue
            seen.add(record["config_hash"])
            records.append(record)
        return records

    def recorded_hashes(self) -> set[str]:
        """Config hashes of complete records whose predictions file exists."""
        return {r["config_hash"] for r in self.load() if self.prediction_path(r["config_hash"]).exists()}

    def prediction_path(self, key: str) -> Path:
        return self.predictions_dir / f"{key}.csv.gz"

    def inner_path(self, key: str) -> Path:
        """A greedy ensemble's inner out-of-fold probabilities per candidate, and the targets (class indices)."""
        return self.predictions_dir / f"{key}.inner.npz"

    def append(self, record: dict, predictions: pd.DataFrame, inner: dict[str, np.ndarray] | None = None) -> None:
        """Store predictions first (and a greedy ensemble's inner out-of-fold probabilities), then the record line:
        a record always has its predictions."""
        if inner is not None:
            atomic_write_bytes(self.inner_path(record["config_hash"]), _npz(inner))
        buffer = predictions.to_csv(index=False, float_format="%.6g").encode()
        atomic_write_bytes(self.prediction_path(record["config_hash"]), gzip.compress(buffer, mtime=0))
        self.folder.mkdir(parents=True, exist_ok=True)
        line = json.dumps(record, sort_keys=True) + "\n"
        with open(self.records_path, "a+b") as stream:
            stream.seek(0, os.SEEK_END)
            if stream.tell() > 0:
                stream.seek(-1, os.SEEK_END)
                if stream.read(1) != b"\n":  # a line cut short by a kill: start on a fresh line
                    stream.write(b"\n")
            stream.write(line.encode())
            stream.flush()
            os.fsync(stream.fileno())

    def supersede(self, planned: dict[tuple, str]) -> int:
        """Move out records whose identity (see record_identity) is now planned with another config.

        The table then holds one row per identity, always of the current configuration; the old
        rows stay auditable in records.superseded.jsonl.
        """
        keep, old = [], []
        for record in self.load():
            identity = record_identity(record)
            stale = identity in planned and planned[identity] != record["config_hash"]
            (old if stale else keep).append(record)
        if old:
            with open(self.superseded_path, "a") as stream:
                stream.writelines(json.dumps(r, sort_keys=True) + "\n" for r in old)
            atomic_write_bytes(self.records_path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in keep).encode())
        return len(old)

    def retire_stale_votes(self) -> list[dict]:
        """Move out votes over stored predictions whose members have since been retrained (a run that named the
        members without the vote); they would show a mean of predictions the table no longer holds."""
        records = self.load()
        current = {r["config_hash"] for r in records}
        stale = [r for r in records
                 if any(h not in current for h in (r.get("ensemble") or {}).get("member_hashes", ()))]
        self.supersede({record_identity(r): "" for r in stale})
        return stale

    def load_predictions(self, key: str) -> pd.DataFrame:
        """The per-utterance predictions of one record; ValueError when the file does not hold them."""
        table = pd.read_csv(self.prediction_path(key))
        missing = sorted(PREDICTION_COLUMNS - set(table.columns))
        if missing or table.empty or not any(str(c).startswith("p_") for c in table.columns):
            raise ValueError(f"predictions/{key}.csv.gz is damaged: {len(table)} rows, "
                             f"{'no columns ' + str(missing) if missing else 'no probability columns or no rows'}")
        return table

    def clear(self) -> None:
        """Forget every record and prediction (for --fresh)."""
        self.records_path.unlink(missing_ok=True)
        if self.predictions_dir.exists():
            for path in [*self.predictions_dir.glob("*.csv.gz"), *self.predictions_dir.glob("*.inner.npz")]:
                path.unlink()


def _npz(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()
