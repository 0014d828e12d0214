"""The leaderboard's figures, from stored records: UAR bars, the best rows' ROC curves and confusion matrices, and
the cross-corpus heatmap (each of the best row that the tables rank first)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bench.plots import confusion_figure, cross_corpus_heatmap, roc_curves, slug, uar_bars
from bench.ranking import cross_corpus_table, model_table, pooled_uar
from bench.tables import best_predictions, is_main_table, tables


def roc_figures(frame: pd.DataFrame, load_predictions, folder: Path) -> dict[tuple[str, str, str], Path]:
    """A ROC-curve figure for the best model of each corpus' main table."""
    figures = {}
    for target, corpus, protocol, group in tables(frame):
        if not is_main_table(frame, target, corpus, protocol, group):
            continue
        entry = model_table(group).index[0]
        predictions = best_predictions(group, entry, load_predictions)
        if predictions is not None:
            path = folder / f"roc-{slug(corpus)}-{protocol}-{slug(entry)}.png"
            figures[(corpus, protocol, f"ROC curves of {entry}")] = roc_curves(
                predictions, list(group.iloc[0]["labels"]), f"{entry} on {corpus} ({protocol}), out-of-fold", path)
    return figures


def summary_figures(frame: pd.DataFrame, folder: Path) -> dict[tuple[str, str, str], Path]:
    """UAR bars per table, the confusion matrix of each corpus' best model, the cross-corpus heatmap."""
    figures = {}
    for target, corpus, protocol, group in tables(frame):
        table = model_table(group)
        labels = list(group.iloc[0]["labels"])
        tag = f"{slug(corpus)}-{protocol}" + ("" if target == "emotion" else f"-{target}")
        key = corpus if target == "emotion" else f"{corpus} ({target})"
        figures[(key, protocol, "UAR per model")] = uar_bars(
            table, 1 / len(labels), f"{key}, {protocol}", folder / f"uar-{tag}.png")
        if is_main_table(frame, target, corpus, protocol, group):
            entry = table.index[0]
            rows = group[(group["entry"] == entry) & (group["seed"] == group["seed"].min())]
            figures[(key, protocol, f"confusion matrix of {entry}")] = confusion_figure(
                np.sum(list(rows["confusion"]), axis=0), labels, f"{entry} on {corpus} ({protocol}), all folds",
                folder / f"confusion-{tag}-{slug(entry)}.png")
    cross = frame[(frame["protocol"] == "cross_corpus") & (frame["target"] == "emotion")]
    if not cross.empty:
        cross = cross.assign(train=cross["train_corpora"].apply("+".join))
        best = cross_corpus_table(cross).index[0]
        cells = cross[cross["model"] == best].groupby(["train", "test_corpus"])[["seed", "confusion"]]
        matrix = cells.apply(pooled_uar).unstack("test_corpus")
        figures[("cross_corpus", "cross_corpus", f"UAR heatmap of {best}")] = cross_corpus_heatmap(
            matrix, f"cross-corpus UAR of {best}", folder / f"cross-corpus-{slug(best)}.png")
    return figures
