"""One best row: tables, the `best` mark of the p column, the saved model and the cross-corpus views agree."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from bench.ranking import cross_corpus_table, model_table

RESULTS = Path(__file__).resolve().parents[1] / "results"


def _rows(entry: str, confusions: list[list[list[int]]]) -> list[dict]:
    out = []
    for fold, confusion in enumerate(confusions):
        matrix = np.array(confusion)
        recall = np.diag(matrix) / matrix.sum(axis=1)
        out.append({"entry": entry, "model": entry, "seed": 0, "fold": fold, "confusion": matrix,
                    "uar": recall.mean(), "accuracy": np.trace(matrix) / matrix.sum(), "macro_f1": 0.0,
                    "weighted_f1": 0.0, "auc": np.nan, "fit_seconds": 0.0})
    return out


def test_tables_rank_by_pooled_uar_where_the_fold_mean_disagrees():
    # "folds" is perfect on a tiny fold and poor on a large one: a high fold mean, a low pooled UAR.
    folds = _rows("folds", [[[2, 0], [0, 2]], [[30, 70], [70, 30]]])
    pooled = _rows("pooled", [[[1, 1], [1, 1]], [[60, 40], [40, 60]]])
    table = model_table(pd.DataFrame(folds + pooled))
    assert table.loc["folds", "uar_mean"] > table.loc["pooled", "uar_mean"]
    assert table.loc["folds", "uar_pooled"] < table.loc["pooled", "uar_pooled"]
    assert list(table.index) == ["pooled", "folds"]
    cross = pd.DataFrame([{**r, "corpus": "a->b"} for r in folds + pooled]).assign(model=lambda f: f["entry"])
    assert list(cross_corpus_table(cross).index) == ["pooled", "folds"]


def test_the_first_row_of_every_committed_table_is_the_one_marked_best():
    checked = 0
    for page in (RESULTS / "full" / "leaderboard.md", RESULTS / "gpu" / "leaderboard.md"):
        for section in re.split(r"\n(?=## )", page.read_text()):
            first = [line for line in section.splitlines() if line.startswith("| 1 ")]
            if first and "p vs best" in section:
                cells = [cell.strip() for cell in first[0].split("|")]
                assert cells[7] == "best", (page.name, section.splitlines()[0], cells[2])
                checked += 1
    assert checked >= 7
