"""Audio augmentations for training folds: noise, time stretch, pitch shift (fixed or drawn), low-pass.

An augmentation is a small frozen spec; its key joins the feature-cache key, so
augmented features are cached like the originals. The runner adds augmented
copies of training-fold utterances only; test-fold utterances are never used.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass

import librosa
import numpy as np
from scipy.signal import butter, sosfiltfilt


@dataclass(frozen=True)
class Augmentation:
    """One augmentation: `kind` names a registered transform, `amount` its strength."""

    # "noise" (amount = SNR dB), "time_stretch" (rate), "pitch_shift" (semitones), "pitch_jitter" (at most this
    # many semitones up or down, drawn per utterance), "lowpass" (Hz)
    kind: str
    amount: float
    seed: int = 0

    def __post_init__(self):
        if self.kind not in AUGMENTATIONS:
            raise ValueError(f"unknown augmentation {self.kind!r}; choose from {', '.join(AUGMENTATIONS)}")

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]

    def apply(self, signal: np.ndarray, sample_rate: int) -> np.ndarray:
        """The augmented copy of `signal` (float32); deterministic for a given signal and seed."""
        digest = hashlib.sha256(signal[:4096].tobytes()).digest()[:8]
        rng = np.random.default_rng([self.seed, int.from_bytes(digest, "little")])
        out = AUGMENTATIONS[self.kind](signal, sample_rate, self.amount, rng)
        return np.ascontiguousarray(out, dtype=np.float32)


def add_noise(signal, sample_rate, snr_db, rng):
    power = float(np.mean(signal**2))
    noise = rng.standard_normal(signal.size) * np.sqrt(power / 10 ** (snr_db / 10))
    return signal + noise


def time_stretch(signal, sample_rate, rate, rng):
    return librosa.effects.time_stretch(signal, rate=rate)


def pitch_shift(signal, sample_rate, semitones, rng):
    return librosa.effects.pitch_shift(signal, sr=sample_rate, n_steps=semitones, res_type="soxr_hq")


def pitch_jitter(signal, sample_rate, max_semitones, rng):
    """Pitch shifted by a semitone count drawn uniformly from [-max, +max] for each utterance."""
    return pitch_shift(signal, sample_rate, float(rng.uniform(-max_semitones, max_semitones)), rng)


def lowpass(signal, sample_rate, cutoff_hz, rng):
    sos = butter(6, cutoff_hz, btype="lowpass", fs=sample_rate, output="sos")
    return sosfiltfilt(sos, signal)


AUGMENTATIONS: dict[str, Callable] = {
    "noise": add_noise,
    "time_stretch": time_stretch,
    "pitch_shift": pitch_shift,
    "pitch_jitter": pitch_jitter,
    "lowpass": lowpass,
}
