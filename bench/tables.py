"""The tables a leaderboard has, and the stored predictions behind their rows."""

from __future__ import annotations

import logging
from functools import cache

import pandas as pd

log = logging.getLogger(__name__)


def read_predictions(rows: pd.DataFrame, load_predictions) -> pd.DataFrame | None:
    """The stored out-of-fold predictions of these records, concatenated; None when one cannot be read."""
    frames = []
    for key, n_test in zip(rows["config_hash"], rows["n_test"], strict=True):
        try:
            frames.append(load_predictions(key))
            if len(frames[-1]) != n_test:
                raise ValueError(f"{len(frames[-1])} rows where the record has {n_test} test utterances")
        except (OSError, ValueError, EOFError) as error:
            unreadable_predictions(key, f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")
            return None
    return pd.concat(frames, ignore_index=True)


@cache  # once per file and report, however many tables and entries read it
def unreadable_predictions(key: str, reason: str) -> None:
    log.warning("the stored predictions of record %s cannot be read (%s): the CI and p-values its rows take part in "
                "are left out (—). Delete predictions/%s.csv.gz if it is there, and run the same suite again: it "
                "refits that fold", key, reason, key)


def best_predictions(group: pd.DataFrame, entry: str, load_predictions) -> pd.DataFrame | None:
    """An entry's out-of-fold predictions from its first seed."""
    rows = group[(group["entry"] == entry) & (group["seed"] == group["seed"].min())]
    return read_predictions(rows, load_predictions)


def tables(frame: pd.DataFrame):
    """(target, corpus, protocol, rows) of every ranked table: emotion first, cross-corpus rows excluded."""
    ranked = frame[frame["protocol"] != "cross_corpus"]
    targets = sorted(ranked["target"].unique(), key=lambda t: (t != "emotion", t))
    for target in targets:
        for (corpus, protocol), group in ranked[ranked["target"] == target].groupby(["corpus", "protocol"]):
            yield target, corpus, protocol, group


def is_main_table(frame: pd.DataFrame, target: str, corpus: str, protocol: str, group: pd.DataFrame) -> bool:
    """The table of a single corpus whose best model gets the per-speaker table and the ROC figure."""
    if target != "emotion" or ("corpora" in group.columns and group["corpora"].notna().any()):
        return False
    protocols = set(frame[(frame["corpus"] == corpus) & (frame["target"] == target)]["protocol"])
    return protocol == ("speaker_folds" if "speaker_folds" in protocols else min(protocols))
