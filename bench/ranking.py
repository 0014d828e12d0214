"""The one definition of "the best row": every table, the `best` mark, the saved model and the cross-corpus
table and heatmap rank by pooled UAR (all folds' test predictions scored at once, averaged over seeds), the
statistic the interval and the p values are computed on; ties go to the fold-mean UAR, then accuracy."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ser_models.metrics import uar_from_confusion

RANKING = ["uar_pooled", "uar_mean", "accuracy"]


def pooled_uar(rows: pd.DataFrame) -> float:
    """UAR of all folds' test predictions pooled (confusions summed), averaged over seeds."""
    per_seed = rows.groupby("seed")["confusion"].apply(lambda c: uar_from_confusion(np.sum(list(c), axis=0)))
    return float(per_seed.mean())


def _seed_spread(group: pd.DataFrame) -> pd.DataFrame:
    """Per entry: the mean over seeds of the fold-mean UAR, the std over folds (mean over seeds), the
    number of seeds and the std over seeds of the fold-mean UAR (0 with one seed)."""
    per_seed = group.groupby(["entry", "seed"])["uar"].agg(["mean", "std"]).fillna({"std": 0.0})
    by_entry = per_seed.groupby("entry")
    return pd.DataFrame({
        "uar_mean": by_entry["mean"].mean(), "uar_std": by_entry["std"].mean(),
        "seeds": by_entry.size(), "seed_std": by_entry["mean"].std().fillna(0.0),
    })


def model_table(group: pd.DataFrame) -> pd.DataFrame:
    """One row per entry of a table (its records, with an `entry` column), best first."""
    pooled = group.groupby("entry")[["seed", "confusion"]].apply(pooled_uar).rename("uar_pooled")
    summary = group.groupby("entry").agg(
        accuracy=("accuracy", "mean"), macro_f1=("macro_f1", "mean"), weighted_f1=("weighted_f1", "mean"),
        auc=("auc", "mean"), fit_seconds=("fit_seconds", "mean"), rows=("uar", "size"),
    )
    summary = _seed_spread(group).join(summary).join(pooled)
    return summary.sort_values(RANKING, ascending=False, kind="stable")


def cross_corpus_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Pooled UAR of every model on every train->test pair, and their mean: the cross-corpus ranking, best first."""
    per_pair = frame.groupby(["model", "corpus"])[["seed", "confusion"]].apply(pooled_uar).unstack("corpus")
    return per_pair.assign(mean=per_pair.mean(axis=1)).sort_values("mean", ascending=False, kind="stable")
