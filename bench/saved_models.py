"""The refit best model of each corpus, saved by `bench run` and used by `bench predict`."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import pickle
from dataclasses import asdict
from pathlib import Path

import joblib
import numpy as np
import pandas as pd

from bench.records import atomic_write_bytes, config_hash
from ser_models.audio import AudioError
from ser_models.feature_cache import FeatureSet
from ser_models.feature_store import resident
from ser_models.features import FeatureSpec, extract_file
from ser_models.files import file_digest
from ser_models.model_inputs import ModelInputs
from ser_models.models import model_spec
from ser_models.plugins import loaded_plugins

log = logging.getLogger(__name__)


class SavedModelError(RuntimeError):
    """No saved model matches the request; the message lists the ones there are."""


def models_folder(suite_folder: Path) -> Path:
    return Path(suite_folder) / "models"


def _read_meta(meta_path: Path) -> dict | None:
    """A saved model's metadata; None (with a warning) when the file is damaged."""
    try:
        meta = json.loads(meta_path.read_text())
        if isinstance(meta, dict) and isinstance(meta.get("cross_validated_uar", 0.0), (int, float)):
            return meta
    except (ValueError, OSError):
        pass
    log.warning("%s is damaged and is ignored: the next `bench run` of its suite saves that model again", meta_path)
    return None


def save_best_model(suite_folder: Path, corpus: str, model: str, params: dict, seed: int, uar: float,
                    inputs: ModelInputs, spec: FeatureSpec) -> Path | None:
    """Refit `model` on every utterance of the corpus and save it (skipped when already saved as is)."""
    features = inputs.features
    key = config_hash({"model": model, "params": params, "seed": seed, "spec": spec.key(),
                       "data": features.fingerprint(), "version": model_spec(model).version})
    path = models_folder(suite_folder) / f"{corpus}.joblib"
    meta_path = path.with_suffix(".json")
    meta = _read_meta(meta_path) if path.exists() and meta_path.exists() else None
    if meta and meta.get("key") == key:
        if meta.get("sha256") in (None, file_digest(path)):  # saved before the hash was kept, or intact
            return None
        log.warning("%s is damaged (its bytes are not the ones saved): it is saved again", path)
    rows = np.arange(len(features.manifest))
    x, y, groups, _ = inputs.training_set(model, rows, seed=seed)
    x = resident(x)  # rows of a feature store read here; frames stay stored and are read a batch at a time
    built = model_spec(model)
    estimator = built.build(seed=seed, **params)
    estimator.fit(x, y, **({"groups": groups} if built.fit_groups else {}))
    buffer = io.BytesIO()
    joblib.dump({"estimator": estimator, "model": model, "spec": asdict(spec), "plugins": loaded_plugins()}, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    meta = {"key": key, "sha256": hashlib.sha256(buffer.getvalue()).hexdigest(), "corpus": corpus, "model": model,
            "params": params, "seed": seed,
            "cross_validated_uar": uar, "classes": [str(c) for c in estimator.classes_],
            "trained_on_utterances": int(len(rows)), "feature_spec": asdict(spec),
            **({"plugins": list(loaded_plugins())} if loaded_plugins() else {})}
    atomic_write_bytes(meta_path, json.dumps(meta, indent=2, sort_keys=True).encode())
    return path


def saved_models(suite_folder: Path) -> list[dict]:
    """Metadata of every saved model of a suite, best cross-validated UAR first."""
    metas = []
    for meta_path in sorted(models_folder(suite_folder).glob("*.json")):
        if meta_path.with_suffix(".joblib").exists() and (meta := _read_meta(meta_path)) is not None:
            metas.append({**meta, "path": str(meta_path.with_suffix(".joblib"))})
    return sorted(metas, key=lambda m: -m.get("cross_validated_uar", 0.0))


def choose_model(suite_folder: Path, name: str | None = None) -> dict:
    """A saved model by corpus name, model name or file path; by default the best one."""
    metas = saved_models(suite_folder)
    if name and Path(name).suffix == ".joblib":
        if not Path(name).exists():
            raise SavedModelError(f"model file {name} does not exist")
        meta_path = Path(name).with_suffix(".json")
        return {**((meta_path.exists() and _read_meta(meta_path)) or {}), "path": name}
    if not metas:
        raise SavedModelError(f"no saved model under {models_folder(suite_folder)}: run `python -m bench run` first")
    if name is None:
        return metas[0]
    chosen = [m for m in metas if name in (m.get("corpus"), m.get("model"), f"{m.get('corpus')}-{m.get('model')}")]
    if not chosen:
        choices = ", ".join(f"{m.get('corpus', '?')} ({m.get('model', '?')})" for m in metas)
        raise SavedModelError(f"no saved model {name!r}; saved: {choices}")
    return chosen[0]


def predict_files(model_path: str | Path, files: list[str]) -> pd.DataFrame:
    """Emotion and class probabilities per file; unusable files get their reason instead."""
    try:
        saved = joblib.load(model_path)
        estimator, spec = saved["estimator"], FeatureSpec(**saved["spec"])
    except (OSError, EOFError, ValueError, KeyError, TypeError, AttributeError, ImportError, IndexError,
            pickle.UnpicklingError) as error:  # what unpickling a truncated or foreign file raises
        raise SavedModelError(f"the saved model {model_path} cannot be read ({type(error).__name__}: {error}); "
                              f"`bench run` the suite again: it saves the model again (its folds are reused, only the "
                              f"refit is redone)") from None
    rows = []
    for file in files:
        try:
            features = extract_file(file, spec)
        except (AudioError, ValueError, OSError) as error:
            rows.append({"file": file, "emotion": None, "error": str(error)})
            continue
        one = FeatureSet(pd.DataFrame({"path": [file]}), features.functionals[None, :],
                         None if features.frames is None else [features.frames], spec.functional_names(),
                         spec.frame_names(), [file])
        x = ModelInputs(one).test_set(saved["model"], np.arange(1))  # built as the run built its test rows
        probabilities = estimator.predict_proba(x)[0]
        rows.append({"file": file, "emotion": str(estimator.classes_[int(np.argmax(probabilities))]), "error": None,
                     **{f"p_{c}": float(p) for c, p in zip(estimator.classes_, probabilities, strict=True)}})
    return pd.DataFrame(rows)
