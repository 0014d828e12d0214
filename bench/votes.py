"""Votes over stored predictions: rows that average the probabilities of models already run on the same fold.

A vote trains nothing. Its members are fixed in the suite (no member is chosen, so no test fold
can choose one); for each fold and seed it averages the out-of-fold probabilities that the member
records stored for the same test utterances, and is recorded like any other row, with the
members' config hashes in its own so that a retrained member redoes the vote.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ser_models.models.registry import model_names, model_spec, register_model

STORED = "stored"  # the input kind of a vote: stored member predictions


def is_vote(model: str) -> bool:
    return model_spec(model).input == STORED


def _never_trained(**_):
    raise TypeError("a vote over stored predictions is computed by the runner, not trained")


def vote_outcome(members: list[str], predictions: list[pd.DataFrame], records: list[dict],
                 labels: list[str]) -> dict:
    """The mean of the members' stored probabilities on one fold, as a fit outcome for the runner's record."""
    keys = predictions[0]["key"].astype(str).to_numpy()
    for name, table in zip(members, predictions, strict=True):
        if not np.array_equal(table["key"].astype(str).to_numpy(), keys):
            raise ValueError(f"member {name} stored predictions for other utterances of this fold")
    columns = [f"p_{label}" for label in labels]
    probabilities = np.mean([table[columns].to_numpy(dtype=float) for table in predictions], axis=0)
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    return {
        "predicted": np.asarray(labels)[probabilities.argmax(axis=1)], "probabilities": probabilities,
        "classes": list(labels),
        # the honest cost of a vote is its members' training
        "fit_seconds": float(sum(r["fit_seconds"] for r in records)),
        "predict_seconds": float(sum(r["predict_seconds"] for r in records)),
        "validation_speakers": sorted({s for r in records for s in r.get("validation_speakers", [])}),
        "inner_speakers": [],
        "tuning": None,
        "ensemble": {"members": list(members), "inner_uar": {}, "weights": [1 / len(members)] * len(members),
                     "member_hashes": [r["config_hash"] for r in records]},
        "curves": None,
    }


def _register(name: str, description: str, members: list[str]) -> None:
    register_model(name, family="ensemble", input=STORED, description=description,
                   defaults={"members": members})(_never_trained)


# Registered after every single model, so the lists below name them all.
DEEP_MEMBERS = list(model_names("deep"))
_register("deep_vote", "mean probabilities of every deep model's stored predictions on the fold", DEEP_MEMBERS)
_register("all_vote", "mean probabilities of every classical and deep model's stored predictions on the fold",
          [*model_names("classical"), *DEEP_MEMBERS])
