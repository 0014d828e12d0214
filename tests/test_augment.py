"""Audio augmentations: each changes the signal as its name says, deterministically."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import tone

from ser_models.augment import Augmentation

RATE = 16_000


@pytest.fixture
def signal():
    return tone(seconds=1.0, freq=200.0).astype(np.float32)


def test_noise_reaches_the_requested_snr(signal):
    noisy = Augmentation("noise", 10.0).apply(signal, RATE)
    snr = 10 * np.log10(np.mean(signal**2) / np.mean((noisy - signal) ** 2))
    assert snr == pytest.approx(10.0, abs=0.5)


def test_time_stretch_changes_duration(signal):
    assert Augmentation("time_stretch", 1.25).apply(signal, RATE).size == pytest.approx(signal.size / 1.25, rel=0.02)


def test_pitch_shift_moves_the_spectrum_up(signal):
    shifted = Augmentation("pitch_shift", 12.0).apply(signal, RATE)
    peak = lambda x: np.argmax(np.abs(np.fft.rfft(x)))  # noqa: E731
    assert peak(shifted) == pytest.approx(2 * peak(signal), rel=0.05)


def test_pitch_jitter_draws_a_shift_within_its_range_per_utterance(signal):
    peak = lambda x: np.argmax(np.abs(np.fft.rfft(x))) / x.size * RATE  # noqa: E731
    shifts = []
    for freq in (180.0, 200.0, 220.0, 240.0, 260.0, 280.0):
        tone_ = tone(seconds=1.0, freq=freq).astype(np.float32)
        copy = Augmentation("pitch_jitter", 2.0).apply(tone_, RATE)
        assert np.array_equal(copy, Augmentation("pitch_jitter", 2.0).apply(tone_, RATE))  # deterministic
        shifts.append(12 * np.log2(peak(copy) / peak(tone_)))
    assert all(abs(s) <= 2.1 for s in shifts)
    assert min(shifts) < -0.2 and max(shifts) > 0.2  # up for some utterances, down for others


def test_lowpass_removes_high_frequencies(signal):
    filtered = Augmentation("lowpass", 500.0).apply(signal, RATE)
    spectrum = np.abs(np.fft.rfft(filtered))
    freqs = np.fft.rfftfreq(filtered.size, 1 / RATE)
    assert spectrum[freqs > 1500].max() < 0.01 * spectrum.max()


def test_same_seed_same_copy_other_seed_other_copy(signal):
    a = Augmentation("noise", 20.0, seed=1).apply(signal, RATE)
    assert np.array_equal(a, Augmentation("noise", 20.0, seed=1).apply(signal, RATE))
    assert not np.array_equal(a, Augmentation("noise", 20.0, seed=2).apply(signal, RATE))


def test_unknown_kind_lists_choices():
    with pytest.raises(ValueError, match="pitch_shift"):
        Augmentation("reverb", 1.0)


def test_recipe_ablation_trains_on_inner_training_rows_and_their_copies_only():
    from bench.benchmarks.deep_recipe import _rows
    from ser_models.protocols import SpeakerLeakError

    source = np.array([0, 1, 2, 3, 0, 1, 3])  # four utterances, then copies (row 2's copy failed)
    speakers = np.array(["a", "a", "b", "c", "a", "a", "c"])
    stacked = (np.arange(7)[:, None], np.array(list("xyxyxyy")), speakers, source)
    *_, rows, held_out = _rows(stacked, train=np.array([0, 1]), held_out=np.array([3]))
    assert rows.tolist() == [0, 1, 4, 5] and held_out.tolist() == [3]  # held-out row 3 and its copy (6) never train
    with pytest.raises(SpeakerLeakError):
        _rows(stacked, train=np.array([0, 3]), held_out=np.array([2, 3]))
