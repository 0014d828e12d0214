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


def _sign_patterns(n: int, n_permutations: int, rng: np.random.Generator) -> tuple[np.ndarray, bool]:
    """Signs (patterns, n) to flip n speakers' shares by: every pattern when there are few enough (exact), else
    `n_permutations` random ones."""
    if 2**n <= n_permutations:
        return 1.0 - 2.0 * ((np.arange(2**n)[:, None] >> np.arange(n)) & 1), True
    return rng.choice([-1.0, 1.0], size=(n_permutations, n)), False


def tied_with_best(shares: np.ndarray, *, n_permutations: int = 2**14, seed: int = 0) -> np.ndarray:
    """Per row of `shares` (rows, speakers: each speaker's share of the row's pooled UAR), the p-value that the row is
    as good as the best row, which the same speakers chose (a step-down test; the model confidence set of Hansen,
    Lunde and Nason 2011, with sign flips over speakers in place of their bootstrap).

    While rows differ, the worst one leaves: the range of the rows' pooled UARs is compared with its range when each
    speaker's shares, centred on that speaker's mean over the rows, have their sign flipped (all rows of a speaker
    together, so rows that are near copies of one another stay so). A row's p is the largest p of the steps up to
    its leaving; the last row standing, the best, gets 1. Rows below 0.05 are outside the 95 % set of rows tied
    with the best. With two rows this is the paired sign-flip test of their difference."""
    shares = np.asarray(shares, dtype=float)
    signs, exact = _sign_patterns(shares.shape[1], n_permutations, np.random.default_rng(seed))
    p = np.ones(len(shares))
    remaining, running = list(range(len(shares))), 0.0
    while len(remaining) > 1:
        rows = shares[remaining]
        totals = rows.sum(axis=1)
        observed = totals.max() - totals.min()
        if observed <= 1e-12:
            break  # the rows left are level: all tied with the best
        null = np.ptp(signs @ (rows - rows.mean(axis=0)).T, axis=1)
        extreme = int((null >= observed - 1e-12).sum())
        running = max(running, extreme / len(null) if exact else (extreme + 1) / (len(null) + 1))
        worst = remaining.pop(int(np.argmin(totals)))
        p[worst] = running
    return p


def speaker_statistics(confusions: dict[str, np.ndarray], *, confidence: float = 0.95, n_resamples: int = 2000,
                       n_permutations: int = 2**14, seed: int = 0) -> dict[str, dict]:
    """Per model: pooled UAR, its confidence interval over test speakers, and the p-value that it is as good as the
    best model of the dict (`tied_with_best`; `best` marks the model with the highest pooled UAR).

    `confusions` maps each model to its per-speaker confusions, (n_speakers, L, L), or one such stack per training
    seed, (n_seeds, n_speakers, L, L), scored by the mean over seeds; same speakers in the same order throughout.
    The speakers are the sample: more utterances per speaker narrow neither the interval nor the test.
    - The interval is an expanded percentile bootstrap (Hesterberg 2015): speakers drawn with replacement, and the
      percentiles widened to what Student's t with n_speakers - 1 degrees of freedom asks of a sample that small
      (4 speakers: the 0.01 % and 99.99 % points; 24: 1.7 % and 98.3 %). The plain percentile bootstrap covered
      77 % at 4 balanced speakers and 85 % at 6 for a nominal 95 %; this one 85 % and 93 %
      (bench/benchmarks/speaker_statistics.md).
    - `p_vs_best` never claims more than the speakers allow (4 speakers: p >= 0.125), and it accounts for the best
      model being chosen by the same speakers: in simulated tables of 10 equally good models over 24 speakers, a
      test of each against the best starred some model in 57 % of tables; this test in 4 %, and in 2 % when 6 of the
      10 were near copies of one another (bench/benchmarks/speaker_statistics.md).
    """
    stacks = {model: np.asarray(c, dtype=float) for model, c in confusions.items()}
    stacks = {model: c if c.ndim == 4 else c[None] for model, c in stacks.items()}
    n = next(iter(stacks.values())).shape[1]
    rng = np.random.default_rng(seed)
    weights = np.zeros((n_resamples, n))
    np.add.at(weights, (np.arange(n_resamples)[:, None], rng.integers(0, n, size=(n_resamples, n))), 1)
    tail = stats.norm.cdf(-np.sqrt(n / (n - 1)) * stats.t.ppf(0.5 + confidence / 2, n - 1)) if n > 1 else np.nan
    models = list(stacks)
    shares = np.array([_recall_shares(stacks[model]) for model in models])
    p_values = tied_with_best(shares, n_permutations=n_permutations, seed=seed)
    best = models[int(np.argmax(shares.sum(axis=1)))]
    result = {}
    for model, p in zip(models, p_values, strict=True):
        stack = stacks[model]
        if n > 1:
            scores = _uar_of(np.einsum("bs,kslm->bklm", weights, stack)).mean(axis=1)
            low, high = (float(v) for v in np.quantile(scores, [tail, 1 - tail]))
        else:
            low = high = float("nan")  # one speaker: no spread over speakers to measure
        result[model] = {"uar": float(_uar_of(stack.sum(axis=1)).mean()), "ci_low": low, "ci_high": high,
                         "p_vs_best": float(p), "best": model == best, "speakers": n}
    return result
