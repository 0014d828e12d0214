"""A deep fit computes its rows' network inputs once and indexes them: the same values, to the bit, as reading and
scaling each batch's rows; dropped when the fit ends; a fit whose inputs exceed the budget reads per batch."""

from __future__ import annotations

import pickle

import numpy as np
from deep_toy_data import LABELS, SPEAKERS, N, toy_frames

from ser_models.models import get_model, network_inputs
from ser_models.models.deep import DeepClassifier

SMALL = {"epochs": 2, "width": 4, "batch_size": 16, "refit_full": False}


def test_inputs_computed_once_train_the_network_that_per_batch_reads_train(monkeypatch):
    x = toy_frames().with_utterance(np.random.default_rng(0).normal(size=(N, 20)))
    computed: list[int] = []
    original = DeepClassifier._full_arrays

    def spy(self, X):
        computed.append(len(X))
        return original(self, X)

    monkeypatch.setattr(DeepClassifier, "_full_arrays", spy)
    kept = get_model("fusion", seed=0, **SMALL).fit(x[:60], LABELS[:60], groups=SPEAKERS[:60])
    assert computed == [60]  # every row once, before training; then only indexed
    assert "kept_" not in kept.__dict__ and b"kept_" not in pickle.dumps(kept)  # dropped when the fit ends
    computed.clear()
    monkeypatch.setattr(network_inputs, "KEPT_BYTES", 1000)  # too small: every batch read and scaled
    read = get_model("fusion", seed=0, **SMALL).fit(x[:60], LABELS[:60], groups=SPEAKERS[:60])
    assert len(computed) > 2 and max(computed) <= 16  # batches of 16 (and the validation speakers' rows)
    np.testing.assert_array_equal(kept.predict_proba(x[60:]), read.predict_proba(x[60:]))
