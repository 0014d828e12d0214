"""Length buckets: batches padded to their own longest utterance train the same networks; drawn by length, they
group similar lengths and still hold every row once; the settings that cannot use them are refused."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from deep_toy_data import LABELS, SPEAKERS, N

from ser_models.models import get_model
from ser_models.models.deep import check_choices
from ser_models.models.frames import pad_frames
from ser_models.models.network_inputs import cut_to_longest, padded_length_step
from ser_models.models.training import epoch_batches

# 1 frame per step (no pooling), so that 64-step inputs leave room for the coarsest alignment (cnn2d: 32 steps)
SMALL = {"epochs": 2, "width": 4, "batch_size": 16, "frame_pool": 1, "refit_full": False}


def spread_frames(seed: int = 0):
    """72 toy utterances of 10 to 59 frames, padded to 64: many batches end well before the padded length."""
    rng = np.random.default_rng(seed)
    return pad_frames([(rng.normal(size=(10 + (i * 7) % 50, 161)) + (i % 3) * 0.8).astype(np.float16)
                       for i in range(N)], max_frames=64)


@pytest.mark.parametrize("name", ["cnn2d", "bilstm"])
def test_batches_cut_to_their_own_length_train_the_same_network(name):
    """length_buckets=1 draws today's batches and cuts only padding, so the network and its predictions are the
    ones of the corpus-wide padded batches (up to float rounding); the cut model pickles and predicts the same."""
    x = spread_frames()
    train, test = np.arange(60), np.arange(60, N)
    padded = get_model(name, seed=0, **SMALL).fit(x[train], LABELS[train], groups=SPEAKERS[train])
    cut = get_model(name, seed=0, **SMALL, length_buckets=1).fit(x[train], LABELS[train], groups=SPEAKERS[train])
    assert cut.input_shapes_[0][0] is None and padded.input_shapes_[0][0] == 64
    short = np.flatnonzero(x.lengths <= cut.length_step_)[:3]
    assert cut._rows(x, short)[0].shape[1] == cut.length_step_ < 64  # a batch is cut after its longest utterance
    proba = cut.predict_proba(x[test])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(proba, padded.predict_proba(x[test]), atol=1e-5)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(cut)).predict_proba(x[test]), proba)


def test_buckets_group_similar_lengths_and_cover_every_row():
    lengths = np.random.default_rng(1).integers(10, 300, size=1000)
    random = epoch_batches(np.random.default_rng(0), 1000, 32, lengths, 1)
    bucketed = epoch_batches(np.random.default_rng(0), 1000, 32, lengths, 8)
    for batches in (random, bucketed):
        rows = np.concatenate(batches)
        assert len(rows) == 1000 and len(np.unique(rows)) == 1000
        assert max(len(b) for b in batches) == 32
    def padded_work(batches):
        return sum(len(b) * lengths[b].max() for b in batches)

    assert padded_work(bucketed) < 0.8 * padded_work(random)  # shorter padding: the work that buckets save
    assert [b[0] for b in random] == [b[0] for b in epoch_batches(np.random.default_rng(0), 1000, 32)]
    again = epoch_batches(np.random.default_rng(0), 1000, 32, lengths, 8)
    assert all(np.array_equal(a, b) for a, b in zip(bucketed, again, strict=True))  # a seed fixes them
    other = epoch_batches(np.random.default_rng(1), 1000, 32, lengths, 8)
    assert not all(np.array_equal(a, b) for a, b in zip(bucketed, other, strict=True))


def test_cut_keeps_every_real_step_at_an_aligned_length():
    mask = np.zeros((3, 80), np.float32)
    for row, length in enumerate((5, 33, 17)):
        mask[row, :length] = 1
    values = np.random.default_rng(0).normal(size=(3, 80, 4)) * mask[:, :, None]
    step = padded_length_step(80, 8)
    kept, kept_mask = cut_to_longest(values, mask, step)
    assert step == 16 and kept.shape[1] == 48 and kept_mask.shape == (3, 48)
    np.testing.assert_array_equal(kept.sum(axis=1), values.sum(axis=1))  # only padding was cut
    assert cut_to_longest(values, np.ones((3, 80), np.float32), step)[0].shape[1] == 80  # never past the padded length
    assert padded_length_step(80, 32) == 32 and padded_length_step(320, 2) == 64


@pytest.mark.parametrize("params, message", [
    ({"length_buckets": -1}, "whole number"),
    ({"length_buckets": 2.5}, "whole number"),
    ({"length_buckets": 8, "loop": "compiled"}, "loop=keras"),
    ({"length_buckets": 8, "architecture": "transformer"}, "corpus-wide length"),
    ({"length_buckets": 8, "architecture": "mlp"}, "corpus-wide length"),
])
def test_settings_that_cannot_cut_batches_are_refused(params, message):
    with pytest.raises(ValueError, match=message):
        check_choices(params)
    check_choices({**params, "length_buckets": 0})  # today's padding is always allowed


def test_a_suite_asking_buckets_of_the_transformer_is_refused_at_load():
    from bench.suite import SuiteError, _model_params

    with pytest.raises(SuiteError, match=r"model_params.transformer.*corpus-wide length"):
        _model_params({"transformer": {"length_buckets": 8}}, "mine")
    assert _model_params({"cnn": {"length_buckets": 8}}, "mine") == {"cnn": {"length_buckets": 8}}
