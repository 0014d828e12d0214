"""Speaker-bootstrap confidence intervals and the paired test against the best model."""

from __future__ import annotations

import numpy as np
import pytest

from ser_models.metrics import speaker_bootstrap, speaker_confusions

LABELS = ["a", "b"]


def _predictions(n_speakers: int, per_speaker: int, accuracy_by_speaker, seed: int = 0):
    rng = np.random.default_rng(seed)
    truth, predicted, speakers = [], [], []
    for s in range(n_speakers):
        for i in range(per_speaker):
            label = LABELS[i % 2]
            correct = rng.random() < accuracy_by_speaker[s]
            truth.append(label)
            predicted.append(label if correct else LABELS[1 - i % 2])
            speakers.append(f"s{s}")
    return np.array(truth), np.array(predicted), np.array(speakers)


def test_perfect_model_has_a_point_interval_and_beats_chance():
    truth, _, speakers = _predictions(12, 10, [1.0] * 12)
    noisy = _predictions(12, 10, [0.5] * 12, seed=1)[1]
    _, perfect = speaker_confusions(truth, truth, speakers, LABELS)
    _, guess = speaker_confusions(truth, noisy, speakers, LABELS)
    result = speaker_bootstrap({"perfect": perfect, "guess": guess}, reference="perfect")
    assert result["perfect"]["ci_low"] == result["perfect"]["ci_high"] == 1.0
    assert result["perfect"]["p_vs_reference"] == 1.0
    assert result["guess"]["p_vs_reference"] < 0.05
    assert result["guess"]["ci_low"] < result["guess"]["uar"] < result["guess"]["ci_high"]


def test_resampling_is_by_speaker_not_utterance():
    """Repeating every speaker's utterances does not narrow the interval: speakers are the unit."""
    accuracy = np.linspace(0.3, 1.0, 8)
    widths = []
    for repeat in (1, 10):
        truth, predicted, speakers = _predictions(8, 10, accuracy)
        truth, predicted, speakers = (np.tile(a, repeat) for a in (truth, predicted, speakers))
        _, confusions = speaker_confusions(truth, predicted, speakers, LABELS)
        stats = speaker_bootstrap({"m": confusions}, reference="m")["m"]
        widths.append(stats["ci_high"] - stats["ci_low"])
    assert widths[0] == pytest.approx(widths[1], abs=1e-9) and widths[0] > 0.1


def test_same_predictions_are_not_significantly_different():
    truth, predicted, speakers = _predictions(10, 8, np.linspace(0.4, 0.9, 10))
    _, confusions = speaker_confusions(truth, predicted, speakers, LABELS)
    result = speaker_bootstrap({"best": confusions, "copy": confusions.copy()}, reference="best")
    assert result["copy"]["p_vs_reference"] == 1.0


def test_several_seeds_are_scored_by_their_mean_on_each_draw():
    """A (seeds, speakers, L, L) stack is scored by the mean over seeds: its interval holds that mean,
    not the first seed's score."""
    truth, _, speakers = _predictions(12, 10, [1.0] * 12)
    _, perfect = speaker_confusions(truth, truth, speakers, LABELS)
    _, guess = speaker_confusions(truth, _predictions(12, 10, [0.5] * 12, seed=3)[1], speakers, LABELS)
    seeds = np.stack([perfect, guess])
    stats = speaker_bootstrap({"seeds": seeds, "perfect": perfect}, reference="perfect")["seeds"]
    guess_uar = speaker_bootstrap({"g": guess}, reference="g")["g"]["uar"]
    assert stats["uar"] == pytest.approx((1.0 + guess_uar) / 2)
    assert stats["ci_low"] < stats["uar"] < stats["ci_high"] < 1.0
    assert stats["p_vs_reference"] < 0.05
