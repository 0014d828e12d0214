"""Classification metrics every SER paper reports, from labels (and probabilities)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from scipy import stats
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


def _recall_shares(confusions: np.ndarray) -> np.ndarray:
    """Per speaker, the part of the pooled UAR that its utterances make (they sum to the pooled UAR), with the
    seeds of a (n_seeds, n_speakers, L, L) stack averaged."""
    confusions = confusions if confusions.ndim == 4 else confusions[None]
    totals = confusions.sum(axis=(1, 3))  # (seeds, L)
    correct = np.diagonal(confusions, axis1=-2, axis2=-1)  # (seeds, speakers, L)
    present = totals > 0
    per_class = np.divide(correct, totals[:, None, :], out=np.zeros_like(correct), where=present[:, None, :])
    return (per_class.sum(axis=-1) / np.maximum(present.sum(axis=-1), 1)[:, None]).mean(axis=0)


def speaker_statistics(confusions: dict[str, np.ndarray], *, reference: str, confidence: float = 0.95,
                       n_resamples: int = 2000, n_permutations: int = 2**14, seed: int = 0) -> dict[str, dict]:
    """Per model: pooled UAR, its confidence interval over test speakers, and a paired test against `reference`.

    `confusions` maps each model to its per-speaker confusions, (n_speakers, L, L), or one such stack per training
    seed, (n_seeds, n_speakers, L, L), scored by the mean over seeds; same speakers in the same order throughout.
    The speakers are the sample: more utterances per speaker narrow neither the interval nor the test.
    - The interval is an expanded percentile bootstrap (Hesterberg 2015): speakers drawn with replacement, and the
      percentiles widened to what Student's t with n_speakers - 1 degrees of freedom asks of a sample that small
      (4 speakers: the 0.01 % and 99.99 % points; 24: 1.7 % and 98.3 %). The plain percentile bootstrap covered
      77 % at 4 balanced speakers and 85 % at 6 for a nominal 95 %; this one 85 % and 93 %
      (bench/benchmarks/speaker_statistics.md).
    - `p_vs_reference` is the two-sided paired permutation test over speakers: each speaker makes a share of the
      difference in pooled UAR, and under "no difference" the two models' predictions on a speaker could be swapped,
      which flips the sign of that share. Every sign pattern is counted up to log2(n_permutations) speakers (exact),
      else `n_permutations` random ones. It never claims more than the speakers allow (4 speakers: p >= 0.125),
      where the bootstrap test said p < 0.05 for 15 % of 4-speaker corpora with no difference at all.
    """
    stacks = {model: np.asarray(c, dtype=float) for model, c in confusions.items()}
    stacks = {model: c if c.ndim == 4 else c[None] for model, c in stacks.items()}
    n = next(iter(stacks.values())).shape[1]
    rng = np.random.default_rng(seed)
    weights = np.zeros((n_resamples, n))
    np.add.at(weights, (np.arange(n_resamples)[:, None], rng.integers(0, n, size=(n_resamples, n))), 1)
    tail = stats.norm.cdf(-np.sqrt(n / (n - 1)) * stats.t.ppf(0.5 + confidence / 2, n - 1)) if n > 1 else np.nan
    reference_shares = _recall_shares(stacks[reference])
    result = {}
    for model, stack in stacks.items():
        uar = float(_uar_of(stack.sum(axis=1)).mean())
        if n > 1:
            scores = _uar_of(np.einsum("bs,kslm->bklm", weights, stack)).mean(axis=1)
            low, high = (float(v) for v in np.quantile(scores, [tail, 1 - tail]))
        else:
            low = high = float("nan")  # one speaker: no spread over speakers to measure
        difference = reference_shares - _recall_shares(stack)
        if model == reference or not np.any(np.abs(difference) > 1e-12):
            p = 1.0
        else:
            test = stats.permutation_test((difference,), lambda d, axis: d.sum(axis=axis), vectorized=True,
                                          permutation_type="samples", n_resamples=n_permutations,
                                          rng=np.random.default_rng(seed))
            p = float(test.pvalue)
        result[model] = {"uar": uar, "ci_low": low, "ci_high": high, "p_vs_reference": p, "speakers": n}
    return result
