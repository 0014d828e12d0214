"""One extraction pass per utterance: frame-level descriptors and their functionals.

Every model sees the same numbers: classical models and the MLP read the
utterance functionals, sequence models read the frame matrix, and both come
from the same low-level descriptors (LLDs) computed here once.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import librosa
import numpy as np
import scipy.fft

from ser_models import encoders, ge2e, opensmile_features, precomputed  # noqa: F401  (register their feature sets)
from ser_models.audio import load_audio
from ser_models.augment import Augmentation
from ser_models.extractors import (
    BUILT_IN,
    FEATURES,
    ExtractorDefaults,
    UtteranceFeatures,
    as_features,
    extractor_for,
    option,
    register_features,
)

# Bump whenever the numbers this module produces change: it invalidates the cache.
FEATURE_CODE_VERSION = 4  # 4: F0 from the voicing autocorrelation, fixed chroma tuning

PERCENTILES = (1, 10, 25, 50, 75, 90, 99)
FUNCTIONALS = ("mean", "std", "skew", "kurtosis", *(f"p{p}" for p in PERCENTILES), "range", "iqr", "slope")
OCTAVE_COST = 0.03  # per octave, as a fraction of the frame energy (chosen by agreement with YIN, no labels)
SPECTRAL_LLDS = ("centroid", "bandwidth", "flatness", "rolloff85", "flux", "zcr", "rms_db", "f0_semitones", "voicing")


@dataclass(frozen=True)
class FeatureSpec:
    """Everything that decides the feature values; its key names a cache entry."""

    sample_rate: int = 16_000
    trim_db: float | None = 30.0
    n_fft: int = 512
    hop_length: int = 160
    n_mels: int = 64
    n_mfcc: int = 20
    n_chroma: int = 12
    n_contrast_bands: int = 6
    fmin_f0: float = 60.0
    fmax_f0: float = 500.0
    mel_functionals: bool = True
    feature_set: str = "librosa"  # or "egemaps" / "compare" (openSMILE, the opensmile extra), or a registered one
    options: tuple = ()  # the feature set's own options (its constructor's keywords), as sorted (name, value) pairs

    def __post_init__(self) -> None:
        if self.feature_set not in FEATURES:
            raise ValueError(f"unknown feature_set {self.feature_set!r}; choose from {', '.join(FEATURES.names())}")
        object.__setattr__(self, "options", _frozen(dict(self.options)))

    def key(self) -> str:
        """A short stable hash of the spec, the feature-code version and a registered extractor's own fields."""
        fields = asdict(self)
        del fields["options"]  # in the extractor's fields below: built-in keys predate options
        if self.feature_set == "librosa":
            del fields["feature_set"]  # librosa keys predate openSMILE support
        payload = {**fields, "code_version": FEATURE_CODE_VERSION}
        if self.feature_set not in BUILT_IN:
            extractor = self.extractor()
            payload["extractor"] = {"version": option(extractor, "version"), "options": [list(o) for o in self.options],
                                    **option(extractor, "key_fields")()}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]

    def extractor(self):
        """The FeatureExtractor this spec names (built once per process)."""
        return extractor_for(self)

    def check_available(self) -> None:
        """Raise MissingExtraError (with the install command) when the spec needs an absent extra."""
        option(self.extractor(), "check_available")()

    def lld_names(self) -> list[str]:
        """Names of the frame-level descriptors, in row order of the LLD matrix."""
        mfcc = [f"mfcc{i}" for i in range(self.n_mfcc)]
        names = [
            *mfcc,
            *(f"d_{n}" for n in mfcc),
            *(f"dd_{n}" for n in mfcc),
            *(f"chroma{i}" for i in range(self.n_chroma)),
            *(f"contrast{i}" for i in range(self.n_contrast_bands + 1)),
            *SPECTRAL_LLDS,
            *(f"d_{n}" for n in SPECTRAL_LLDS),
        ]
        return names

    def frame_names(self) -> list[str]:
        """Columns of the frame matrix given to sequence models (librosa: log-mel, then the LLDs)."""
        return list(option(self.extractor(), "frame_names")())

    def functional_names(self) -> list[str]:
        """Names of the utterance-level vector, in order."""
        return list(self.extractor().functional_names())

    def mel_bands(self) -> int:
        """How many leading frame columns are log-mel bands (the 2-D CNN's image); 0: none."""
        return int(option(self.extractor(), "mel_bands"))


def _frozen(options: dict) -> tuple:
    """Options as sorted (name, value) pairs, lists as tuples: hashable, and the same however they were given."""
    def freeze(value):
        return tuple(freeze(v) for v in value) if isinstance(value, list | tuple) else value
    return tuple(sorted((str(k), freeze(v)) for k, v in options.items()))


@register_features("librosa")
class LibrosaFeatures(ExtractorDefaults):
    """The built-in set: MFCCs, deltas, chroma, contrast, spectral shape, F0 and voicing, log-mel; one pass."""

    produces = ("functionals", "frames")
    frames_free = True

    def __init__(self, spec: FeatureSpec):
        self.spec = spec
        self.mel_bands = spec.n_mels

    def functional_names(self) -> list[str]:
        spec = self.spec
        names = [f"{lld}__{fn}" for lld in spec.lld_names() for fn in FUNCTIONALS]
        if spec.mel_functionals:
            names += [f"logmel{i}__{fn}" for i in range(spec.n_mels) for fn in ("mean", "std", "p90")]
        names += ["duration_s", "voiced_fraction", "onset_rate"]
        return names

    def frame_names(self) -> list[str]:
        return [f"logmel{i}" for i in range(self.spec.n_mels)] + self.spec.lld_names()

    def extract(self, signals: list[np.ndarray], sample_rate: int, *, frames: bool = True) -> list[UtteranceFeatures]:
        return [librosa_features(y, self.spec) for y in signals]


def _functionals(matrix: np.ndarray) -> np.ndarray:
    """Statistics over time for each row of `matrix` (rows = descriptors); NaN-aware, vectorised."""
    matrix = matrix.astype(np.float64)
    valid = np.isfinite(matrix)
    count = valid.sum(axis=1)
    enough = count >= 2
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nanmean(np.where(enough[:, None], matrix, 0.0), axis=1)
        centred = np.where(valid, matrix - mean[:, None], 0.0)
        m2 = (centred**2).sum(axis=1) / np.maximum(count, 1)
        m3 = (centred**3).sum(axis=1) / np.maximum(count, 1)
        m4 = (centred**4).sum(axis=1) / np.maximum(count, 1)
        flat = m2 < 1e-16
        skew = np.where(flat, 0.0, m3 / m2**1.5)
        kurt = np.where(flat, 0.0, m4 / m2**2 - 3.0)
        pct = _percentiles(np.where(enough[:, None], matrix, 0.0), ~valid.all(axis=1))
        # Least-squares slope over normalised time, using valid frames only.
        t = np.where(valid, np.arange(matrix.shape[1]) / matrix.shape[1], 0.0)
        t_mean = t.sum(axis=1) / np.maximum(count, 1)
        t_centred = np.where(valid, t - t_mean[:, None], 0.0)
        t_var = (t_centred**2).sum(axis=1)
        slope = np.where(t_var > 0, (t_centred * centred).sum(axis=1) / np.where(t_var > 0, t_var, 1.0), 0.0)
    out = np.column_stack([mean, np.sqrt(m2), skew, kurt, *pct, pct[-1] - pct[0], pct[4] - pct[2], slope])
    out[~enough] = 0.0
    return out.ravel()


def _percentiles(matrix: np.ndarray, has_nan: np.ndarray) -> np.ndarray:
    """PERCENTILES of each row, (len(PERCENTILES), rows); the slow NaN-aware path only for rows with NaN."""
    out = np.empty((len(PERCENTILES), matrix.shape[0]))
    out[:, ~has_nan] = np.percentile(matrix[~has_nan], PERCENTILES, axis=1)
    if has_nan.any():
        out[:, has_nan] = np.nanpercentile(matrix[has_nan], PERCENTILES, axis=1)
    return out


@functools.lru_cache(maxsize=4)
def _window_autocorrelation(frame_length: int, n_fft: int) -> tuple[np.ndarray, np.ndarray]:
    window = np.hanning(frame_length)
    acf = scipy.fft.irfft(np.abs(scipy.fft.rfft(window, n=n_fft)) ** 2, n=n_fft)
    return window.astype(np.float32), acf / acf[0]


@functools.lru_cache(maxsize=4)
def _filterbanks(sample_rate: int, n_fft: int, n_mels: int, n_chroma: int) -> tuple[np.ndarray, np.ndarray]:
    """Mel and chroma filterbanks (librosa's), built once per process instead of once per file."""
    mel = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels)
    chroma = librosa.filters.chroma(sr=sample_rate, n_fft=n_fft, n_chroma=n_chroma, tuning=0.0)
    return mel, chroma


def _voicing_and_f0(y: np.ndarray, spec: FeatureSpec, n_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame voicing strength (peak normalised autocorrelation) and F0 in semitones (NaN when unvoiced).

    One autocorrelation per frame gives both: F0 is its highest peak in the pitch range after
    dividing out the window's own autocorrelation (Boersma 1993), refined by a parabola.
    """
    frame_length = 1024
    hi = int(spec.sample_rate / spec.fmin_f0)
    n_fft = scipy.fft.next_fast_len(frame_length + hi + 2, real=True)  # no circular wrap up to lag hi + 1
    window, window_acf = _window_autocorrelation(frame_length, n_fft)
    padded = np.pad(y, frame_length // 2)
    framed = librosa.util.frame(padded, frame_length=frame_length, hop_length=spec.hop_length)
    lo = int(spec.sample_rate / spec.fmax_f0)
    spectrum = scipy.fft.rfft(framed * window[:, None], n=n_fft, axis=0)
    acf = scipy.fft.irfft(spectrum.real**2 + spectrum.imag**2, n=n_fft, axis=0)[: hi + 2]
    energy = np.maximum(acf[0], 1e-10)
    voicing = np.clip(acf[lo:hi].max(axis=0) / energy, 0.0, 1.0)
    lags = np.arange(lo - 1, hi + 2)
    corrected = acf[lo - 1 : hi + 2] / window_acf[lo - 1 : hi + 2, None]
    # Praat's octave cost: a multiple of the period scores as high as the period; favour the shortest.
    octave_cost = OCTAVE_COST * np.log2(lags / lo)[:, None] * energy
    peak = np.argmax((corrected - octave_cost)[1:-1], axis=0) + 1
    columns = np.arange(corrected.shape[1])
    left, centre, right = corrected[peak - 1, columns], corrected[peak, columns], corrected[peak + 1, columns]
    curvature = left - 2 * centre + right
    with np.errstate(invalid="ignore", divide="ignore"):
        shift = np.where(curvature < 0, 0.5 * (left - right) / curvature, 0.0)
    lag = lo - 1 + peak + np.clip(shift, -0.5, 0.5)
    voicing = _fit_length(voicing, n_frames)
    semitones = _fit_length(12.0 * np.log2(spec.sample_rate / lag / 27.5), n_frames)
    semitones[voicing < 0.45] = np.nan
    return voicing, semitones


def _fit_length(values: np.ndarray, n_frames: int) -> np.ndarray:
    if values.shape[-1] >= n_frames:
        return values[..., :n_frames]
    pad = [(0, 0)] * (values.ndim - 1) + [(0, n_frames - values.shape[-1])]
    return np.pad(values, pad, mode="edge")


def extract_signal(y: np.ndarray, spec: FeatureSpec, *, frames: bool = True) -> UtteranceFeatures:
    """The spec's features of one mono signal at `spec.sample_rate` (frames only when asked, or when free)."""
    stored = stored_spec(spec)
    features = extract_signals([y], stored, frames=frames)[0]
    if stored is spec:
        return features
    return UtteranceFeatures(functionals=view_functionals(spec, features.functionals[None])[0], frames=features.frames)


def stored_spec(spec: FeatureSpec) -> FeatureSpec:
    """The spec the cache entries are made with: `spec` itself, or, for an extractor whose options partly only
    choose a view of what it computes (an encoder's layer), the spec with its `stored_options`."""
    stored = option(spec.extractor(), "stored_options")
    return replace(spec, options=tuple({**dict(spec.options), **stored}.items())) if stored else spec


def view_functionals(spec: FeatureSpec, stored: np.ndarray) -> np.ndarray:
    """The utterance vectors `spec` gives, from (n, width) rows made under `stored_spec(spec)`."""
    extractor = spec.extractor()
    if not option(extractor, "stored_options"):
        return stored
    vectors = np.asarray(extractor.view(stored), dtype=np.float32)
    if vectors.shape != (len(stored), len(spec.functional_names())):
        raise ValueError(f"feature set {spec.feature_set!r}: its view gave {vectors.shape}, not "
                         f"({len(stored)}, {len(spec.functional_names())})")
    return vectors


def extract_signals(signals: list[np.ndarray], spec: FeatureSpec, *, frames: bool = True) -> list[UtteranceFeatures]:
    """The spec's features of a batch of signals, in one call of its extractor; widths checked against its names."""
    extractor = spec.extractor()
    wants_frames = frames and "frames" in option(extractor, "produces")
    out = [as_features(value, frames=wants_frames)
           for value in extractor.extract(signals, spec.sample_rate, frames=wants_frames)]
    width = len(spec.functional_names())
    if len(out) != len(signals) or any(f.functionals.size != width for f in out):
        sizes = sorted({f.functionals.size for f in out})
        raise ValueError(f"feature set {spec.feature_set!r} gave {len(out)} results of {sizes} values for "
                         f"{len(signals)} signals; its functional_names() has {width}")
    return out


def librosa_features(y: np.ndarray, spec: FeatureSpec) -> UtteranceFeatures:
    """Compute LLDs, frame matrix and functionals for a mono signal at `spec.sample_rate`; frames come free."""
    sr, hop = spec.sample_rate, spec.hop_length
    stft = np.abs(librosa.stft(y, n_fft=spec.n_fft, hop_length=hop))
    power = stft**2
    n_frames = stft.shape[1]
    mel_basis, chroma_basis = _filterbanks(sr, spec.n_fft, spec.n_mels, spec.n_chroma)
    mel = mel_basis @ power  # = librosa.feature.melspectrogram(S=power, sr=sr, n_mels=spec.n_mels)
    log_mel = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None)
    mfcc = librosa.feature.mfcc(S=log_mel, n_mfcc=spec.n_mfcc)
    if n_frames < 3:
        raise ValueError("utterance shorter than three analysis frames")
    delta_width = min(9, n_frames - (1 - n_frames % 2))
    d_mfcc = librosa.feature.delta(mfcc, width=delta_width, mode="nearest")
    dd_mfcc = librosa.feature.delta(mfcc, order=2, width=delta_width, mode="nearest")
    # = chroma_stft(S=power, tuning=0.0): a fixed tuning, since estimating it per file (piptrack) is slow
    # and meaningless for speech.
    chroma = librosa.util.normalize(chroma_basis @ power, norm=np.inf, axis=0)
    contrast = librosa.feature.spectral_contrast(S=stft, sr=sr, n_bands=spec.n_contrast_bands, fmin=100.0)
    centroid = librosa.feature.spectral_centroid(S=stft, sr=sr)[0]
    bandwidth = librosa.feature.spectral_bandwidth(S=stft, sr=sr)[0]
    flatness = librosa.feature.spectral_flatness(S=stft)[0]
    rolloff = librosa.feature.spectral_rolloff(S=stft, sr=sr, roll_percent=0.85)[0]
    flux = librosa.onset.onset_strength(S=log_mel, sr=sr)
    zcr = librosa.feature.zero_crossing_rate(y, frame_length=spec.n_fft, hop_length=hop)[0]
    rms_db = librosa.amplitude_to_db(librosa.feature.rms(S=stft, frame_length=spec.n_fft)[0], ref=1.0, amin=1e-6)
    voicing, f0 = _voicing_and_f0(y, spec, n_frames)
    spectral = np.vstack([
        centroid / 1000.0, bandwidth / 1000.0, np.log10(flatness + 1e-10), rolloff / 1000.0,
        _fit_length(flux, n_frames), _fit_length(zcr, n_frames), rms_db, f0, voicing,
    ])
    filled = np.where(np.isfinite(spectral), spectral, np.nanmean(spectral, axis=1, keepdims=True))
    filled = np.nan_to_num(filled)
    d_spectral = librosa.feature.delta(filled, width=delta_width, mode="nearest")
    d_spectral[7, ~np.isfinite(f0)] = np.nan  # F0 deltas only where voiced
    llds = np.vstack([mfcc, d_mfcc, dd_mfcc, chroma, contrast, spectral, d_spectral])

    parts = [_functionals(llds)]
    if spec.mel_functionals:
        mel_stats = np.stack([log_mel.mean(axis=1), log_mel.std(axis=1), np.percentile(log_mel, 90, axis=1)], axis=1)
        parts.append(mel_stats.ravel())
    onsets = librosa.onset.onset_detect(onset_envelope=flux, sr=sr, hop_length=hop)
    duration = y.size / sr
    parts.append(np.array([duration, float(np.mean(voicing >= 0.45)), len(onsets) / max(duration, 1e-3)]))
    functionals = np.nan_to_num(np.concatenate(parts), nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)

    frame_llds = np.vstack([log_mel, np.nan_to_num(llds, nan=0.0)])
    frames = np.clip(frame_llds.T, -6e4, 6e4).astype(np.float16)
    return UtteranceFeatures(functionals=functionals, frames=frames)


def extract_file(path: str | Path, spec: FeatureSpec, augmentation: Augmentation | None = None, *,
                 frames: bool = True) -> UtteranceFeatures:
    """Load one audio file as the spec says, optionally augment it, and extract its features."""
    return extract_signal(load_signal(path, spec, augmentation), spec, frames=frames)


def load_signal(path: str | Path, spec: FeatureSpec, augmentation: Augmentation | None = None) -> np.ndarray:
    """One audio file as the spec's extractor reads it: mono at its rate, trimmed, optionally augmented."""
    y = load_audio(path, sample_rate=spec.sample_rate, trim_db=spec.trim_db)
    return y if augmentation is None else augmentation.apply(y, spec.sample_rate)
