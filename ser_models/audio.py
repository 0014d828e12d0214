"""Load any supported audio file as 16 kHz mono float32, with silence trimmed."""

from __future__ import annotations

from pathlib import Path

import librosa
import numpy as np
import soundfile as sf

TARGET_RATE = 16_000


class AudioError(ValueError):
    """An audio file that cannot be used; the message says why."""


def load_audio(
    path: str | Path,
    *,
    sample_rate: int = TARGET_RATE,
    trim_db: float | None = 30.0,
    min_seconds: float = 0.1,
) -> np.ndarray:
    """Read `path`, downmix to mono, resample to `sample_rate`, trim edge silence."""
    try:
        data, native_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as error:
        if Path(path).is_dir():
            raise AudioError("a folder, not an audio file") from error
        if not Path(path).exists():
            raise AudioError("no such file") from error
        raise AudioError(f"unreadable audio: {error}") from error
    if data.size == 0:
        raise AudioError("empty audio (no samples)")
    if not np.all(np.isfinite(data)):
        raise AudioError("audio contains NaN or Inf samples")
    signal = data.mean(axis=1)
    if native_rate != sample_rate:
        signal = librosa.resample(signal, orig_sr=native_rate, target_sr=sample_rate, res_type="soxr_hq")
    if float(np.max(np.abs(signal))) < 1e-4:
        raise AudioError("silent audio (peak below -80 dBFS)")
    if trim_db is not None:
        signal, _ = librosa.effects.trim(signal, top_db=trim_db, frame_length=512, hop_length=128)
    if signal.size < min_seconds * sample_rate:
        raise AudioError(f"too short after trimming ({signal.size / sample_rate:.3f} s < {min_seconds} s)")
    return np.ascontiguousarray(signal, dtype=np.float32)
