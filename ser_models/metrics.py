"""Classification metrics every SER paper reports, from labels (and probabilities)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)


def classification_metrics(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str]) -> dict:
    """Accuracy, UAR (balanced accuracy), macro/weighted F1, macro precision/recall, per-class F1, confusion."""
    labels = list(labels)
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    with warnings.catch_warnings():  # a test fold may lack some classes: recall is over the classes present
        warnings.simplefilter("ignore", UserWarning)
        return _metrics(y_true, y_pred, labels)


def uar_from_confusion(confusion: np.ndarray) -> float:
    """Unweighted average recall over the classes present (rows with any sample) of a confusion matrix."""
    confusion = np.asarray(confusion, dtype=float)
    support = confusion.sum(axis=1)
    present = support > 0
    return float(np.mean(np.diag(confusion)[present] / support[present]))


def _metrics(y_true: np.ndarray, y_pred: np.ndarray, labels: list[str]) -> dict:
    # Macro scores average over the classes that occur (in truth or prediction) in this fold,
    # so a fold without, say, 'angry' speakers is not charged a zero F1 for it.
    per_class = f1_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
    present = set(y_true)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "uar": float(balanced_accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(y_true, y_pred, average="weighted", zero_division=0)),
        "macro_precision": float(precision_score(y_true, y_pred, average="macro", zero_division=0)),
        "macro_recall": float(recall_score(y_true, y_pred, average="macro", zero_division=0)),
        # None: the class has no test utterance in this fold (F1 undefined, not zero).
        "per_class_f1": {label: float(v) if label in present else None
                         for label, v in zip(labels, per_class, strict=True)},
        "confusion": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


def roc_auc(y_true: Sequence[str], probabilities: np.ndarray, labels: Sequence[str]) -> dict:
    """One-vs-rest ROC AUC per class (columns of `probabilities` follow `labels`) and their macro mean.

    A class without positives or without negatives in `y_true` has no AUC (None) and is left
    out of the mean, like UAR's classes that are absent from a fold.
    """
    y_true, probabilities = np.asarray(y_true), np.asarray(probabilities, dtype=float)
    per_class = {}
    for column, label in enumerate(labels):
        positives = y_true == label
        per_class[label] = (float(roc_auc_score(positives, probabilities[:, column]))
                            if 0 < positives.sum() < len(y_true) else None)
    scores = [v for v in per_class.values() if v is not None]
    return {"auc_macro": float(np.mean(scores)) if scores else None, "auc_per_class": per_class}


def roc_auc_from_predictions(predictions, labels: Sequence[str]) -> dict:
    """roc_auc from a stored predictions table (columns true and p_<label>)."""
    return roc_auc(predictions["true"].astype(str), predictions[[f"p_{label}" for label in labels]].to_numpy(), labels)


def speaker_confusions(truth, predicted, speakers, labels: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """(speaker ids, (n_speakers, n_labels, n_labels) confusion matrix of each speaker's utterances)."""
    index = {label: i for i, label in enumerate(labels)}
    truth, predicted, speakers = (np.asarray(a).astype(str) for a in (truth, predicted, speakers))
    ids = sorted(set(speakers))
    row = {s: i for i, s in enumerate(ids)}
    confusions = np.zeros((len(ids), len(labels), len(labels)))
    np.add.at(confusions, ([row[s] for s in speakers], [index[t] for t in truth], [index[p] for p in predicted]), 1)
    return ids, confusions


def _uar_of(confusions: np.ndarray) -> np.ndarray:
    """UAR of each (..., L, L) confusion matrix over the classes present."""
    support = confusions.sum(axis=-1)
    recall = np.divide(np.diagonal(confusions, axis1=-2, axis2=-1), support, out=np.zeros_like(support),
                       where=support > 0)
    return recall.sum(axis=-1) / np.maximum((support > 0).sum(axis=-1), 1)


def speaker_bootstrap(confusions: dict[str, np.ndarray], *, reference: str, n_resamples: int = 2000,
                      seed: int = 0) -> dict[str, dict]:
    """95 % bootstrap CI of pooled UAR per model, resampling speakers (not utterances), and a paired test.

    `confusions` maps each model to its per-speaker confusions, (n_speakers, L, L), or to one such
    stack per training seed, (n_seeds, n_speakers, L, L), whose score is the mean over seeds of the
    pooled UAR (same speakers, same order throughout). Every resample draws speakers with
    replacement and scores all models and seeds on the same draw, so the difference to `reference`
    is paired; `p_vs_reference` is the two-sided bootstrap p-value of that difference being zero.
    """
    confusions = {model: c if c.ndim == 4 else c[None] for model, c in confusions.items()}
    n_speakers = next(iter(confusions.values())).shape[1]
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_speakers, size=(n_resamples, n_speakers))
    weights = np.zeros((n_resamples, n_speakers))
    np.add.at(weights, (np.arange(n_resamples)[:, None], draws), 1)
    scores = {model: _uar_of(np.einsum("bs,kslm->bklm", weights, c)).mean(axis=1) for model, c in confusions.items()}
    result = {}
    for model, values in scores.items():
        difference = scores[reference] - values
        p = 1.0 if model == reference else float(min(1.0, 2 * min((difference <= 0).mean(), (difference >= 0).mean())))
        result[model] = {"uar": float(_uar_of(confusions[model].sum(axis=1)).mean()),
                         "ci_low": float(np.percentile(values, 2.5)), "ci_high": float(np.percentile(values, 97.5)),
                         "p_vs_reference": p}
    return result
