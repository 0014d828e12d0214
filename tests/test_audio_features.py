"""Audio loading and the single extraction pass."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from conftest import tone, write_tone

from ser_models.audio import AudioError, load_audio
from ser_models.features import FeatureSpec, extract_file, extract_signal


def test_stereo_48k_becomes_16k_mono(tmp_path):
    path = write_tone(tmp_path / "a.wav", rate=48_000, channels=2, seconds=1.0)
    signal = load_audio(path, trim_db=None)
    assert signal.dtype == np.float32 and signal.ndim == 1
    assert abs(signal.size - 16_000) <= 2


def test_edge_silence_is_trimmed(tmp_path):
    padded = np.concatenate([np.zeros(16_000), tone(seconds=0.5), np.zeros(16_000)])
    sf.write(tmp_path / "p.wav", padded, 16_000)
    trimmed = load_audio(tmp_path / "p.wav")
    assert 0.45 * 16_000 < trimmed.size < 0.7 * 16_000


@pytest.mark.parametrize(
    ("samples", "message"),
    [(np.zeros(16_000), "silent"), (np.array([]), "empty"), (tone(seconds=0.02), "too short")],
)
def test_bad_audio_gets_a_reason(tmp_path, samples, message):
    sf.write(tmp_path / "bad.wav", samples, 16_000)
    with pytest.raises(AudioError, match=message):
        load_audio(tmp_path / "bad.wav")


def test_corrupt_file_gets_a_reason(tmp_path):
    (tmp_path / "junk.wav").write_bytes(b"RIFF not really audio")
    with pytest.raises(AudioError, match="unreadable"):
        load_audio(tmp_path / "junk.wav")


def test_one_pass_gives_functionals_and_frames(tmp_path):
    spec = FeatureSpec()
    features = extract_file(write_tone(tmp_path / "t.wav", seconds=1.0), spec)
    assert features.functionals.shape == (len(spec.functional_names()),)
    assert features.frames.shape[1] == len(spec.frame_names())
    assert 90 <= features.frames.shape[0] <= 110  # 10 ms hop over ~1 s
    assert np.all(np.isfinite(features.functionals))
    assert np.all(np.isfinite(features.frames.astype(np.float32)))


def test_pitch_follows_the_voice():
    spec = FeatureSpec()
    names = spec.functional_names()
    low = extract_signal(tone(freq=120.0).astype(np.float32), spec).functionals
    high = extract_signal(tone(freq=240.0).astype(np.float32), spec).functionals
    f0 = names.index("f0_semitones__p50")
    assert high[f0] - low[f0] == pytest.approx(12.0, abs=0.5)  # one octave


def test_spec_key_changes_with_any_field():
    assert FeatureSpec().key() == FeatureSpec().key()
    assert FeatureSpec(n_mfcc=13).key() != FeatureSpec().key()
