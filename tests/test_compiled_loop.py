"""The compiled training loop (issue 54): same rules as the Keras loop, training rows only, both ways of reading rows,
the refitted networks trained together or one at a time alike, device-side augmentation within its ranges."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from deep_toy_data import LABELS, SPEAKERS, N, toy_frames, toy_vectors
from sklearn.metrics import balanced_accuracy_score

from ser_models.models import compiled_fit, compiled_loop, get_model
from ser_models.models.compiled_loop import epoch_calls
from ser_models.models.compiled_programs import masked_spectrum, mixed_rows
from ser_models.models.epoch_rules import EpochRules

SMALL = {"epochs": 3, "width": 8, "batch_size": 16, "loop": "compiled"}
TRAIN = np.flatnonzero(~np.isin(SPEAKERS, ["toy:00", "toy:01", "toy:02"]))
TEST = np.setdiff1d(np.arange(N), TRAIN)


def _fit(name: str, x, seed: int = 0, **params):
    return get_model(name, seed=seed, **{**SMALL, **params}).fit(x[TRAIN], LABELS[TRAIN], groups=SPEAKERS[TRAIN])


def test_compiled_loop_learns_held_out_speakers_with_the_keras_loop_rules():
    x = toy_vectors()
    model = _fit("mlp", x, epochs=30, patience=30)
    assert set(model.validation_speakers_) <= set(SPEAKERS[TRAIN])
    assert {"loss", "val_loss", "val_uar", "refit_epochs"} <= set(model.history_)
    assert len(model.extra_models_) == 2  # three refitted networks, averaged
    assert balanced_accuracy_score(LABELS[TEST], model.predict(x[TEST])) > 0.6  # chance: 0.33; the Keras loop: 0.67


def test_same_seed_same_predictions_and_another_seed_others():
    x = toy_frames()
    a, b, c = (_fit("cnn", x, seed=s).predict_proba(x[TEST]) for s in (4, 4, 5))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_rows_read_per_call_train_as_rows_kept_on_the_device(monkeypatch):
    x = toy_frames()
    kept = _fit("cnn", x).predict_proba(x[TEST])
    monkeypatch.setattr(compiled_loop, "KEEP_BYTES", 0)  # as a corpus too large to keep: rows read for every call
    reads = []
    original = compiled_loop.RowReader.__call__
    monkeypatch.setattr(compiled_loop.RowReader, "__call__", lambda self, p: reads.append(len(p)) or original(self, p))
    read = _fit("cnn", x).predict_proba(x[TEST])
    assert reads and max(reads) <= compiled_loop.STEPS_PER_CALL * SMALL["batch_size"]
    np.testing.assert_allclose(read, kept, atol=1e-5)


def test_refitted_networks_trained_together_match_them_trained_one_at_a_time(monkeypatch):
    x = toy_vectors()
    monkeypatch.setattr(compiled_fit, "networks_together", lambda: False)
    alone = _fit("mlp", x, epochs=4).predict_proba(x[TEST])
    monkeypatch.setattr(compiled_fit, "networks_together", lambda: True)
    together = _fit("mlp", x, epochs=4).predict_proba(x[TEST])
    np.testing.assert_allclose(together, alone, atol=1e-4)


def test_training_reads_training_rows_only(monkeypatch):
    seen = []
    original = compiled_loop.RowReader.__init__

    def spy(self, read, rows):
        seen.append(np.asarray(rows))
        original(self, read, rows)

    monkeypatch.setattr(compiled_loop.RowReader, "__init__", spy)
    frames = toy_frames()
    model = _fit("cnn", frames)
    model.predict_proba(frames[TEST])
    assert len(seen) == 1 and sorted(seen[0]) == list(range(len(TRAIN)))  # the fit's own rows, all of them


@pytest.mark.parametrize(("rows", "expected"), [(72, [(0, 4), (64, 4)]), (16 * 40, [(0, 16), (256, 16), (512, 4),
                                                                                     (576, 4)])])
def test_an_epoch_runs_every_batch_once_in_calls_of_16_then_4_steps(rows, expected):
    calls = epoch_calls(rows, 16)
    assert calls == expected
    assert sum(steps for _, steps in calls) * 16 - rows < 4 * 16  # less than one tail call of padding


def test_device_masks_stay_within_their_ranges():
    values = np.ones((64, 40, 20), dtype=np.float32)
    lengths = np.arange(64) % 30 + 10
    mask = (np.arange(40)[None] < lengths[:, None]).astype(np.float32)
    masked = np.asarray(masked_spectrum(values * mask[:, :, None], mask, jax.random.key(0), n_mels=12))
    zero_steps = (masked[:, :, 12:] == 0).all(axis=2) & (mask > 0)  # steps zeroed across the non-mel columns
    assert (zero_steps.sum(axis=1) <= np.maximum(1, lengths // 8)).all() and zero_steps.any()
    full_steps = np.flatnonzero((mask[0] > 0) & ~zero_steps[0])
    zero_bands = (masked[0, full_steps] == 0).all(axis=0)
    assert not zero_bands[12:].any() and zero_bands.sum() <= 8  # only log-mel bands, at most 8
    assert (masked[mask == 0] == 0).all()  # padding stays zero


def test_device_mixup_blends_real_rows_only():
    n = 16
    valid = (np.arange(n) < 11).astype(np.float32)
    values = np.arange(n, dtype=np.float32)[:, None, None] * np.ones((n, 4, 3), np.float32)
    mask = np.ones((n, 4), np.float32)
    targets = np.eye(3, dtype=np.float32)[np.arange(n) % 3]
    (mixed, _), soft, weights = mixed_rows([values, mask], targets, np.ones(n, np.float32), valid,
                                           jax.random.key(1), 0.4)
    mixed, soft, weights = np.asarray(mixed), np.asarray(soft), np.asarray(weights)
    assert (weights[11:] == 0).all() and (weights[:11] > 0).all()
    assert (mixed[:11, 0, 0] <= 10 + 1e-5).all()  # a real row's partner is a real row (values 0 to 10)
    assert (soft.max(axis=1) >= 0.5 - 1e-6).all()


def test_epoch_rules_halve_on_plateaus_stop_and_keep_the_best_epoch():
    model = get_model("cnn", seed=0, patience=4, monitor="val_uar", best_epoch_ties="lowest_loss")
    rules = EpochRules(model, epochs=20, has_validation=True)
    scores = [0.5, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6]  # epoch 1 best, then no progress
    stopped = None
    for epoch, score in enumerate(scores):
        if rules.end_epoch(epoch, {"val_uar": score, "val_loss": 1.0}, f"state {epoch}"):
            stopped = epoch
            break
    assert stopped == 5  # four epochs without progress
    assert rules.final("last") == "state 1"
    assert rules.learning_rate == pytest.approx(model.learning_rate / 4)  # halved after each two flat epochs
