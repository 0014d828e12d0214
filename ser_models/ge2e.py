"""A pretrained speaker encoder as a feature set: GE2E (Wan et al. 2018) with Resemblyzer's published weights.

`feature_set = "ge2e"`: a 3-layer LSTM of 256 over 40 mel bands, trained to tell speakers apart (Resemblyzer 0.1.4,
Apache-2.0), run here in numpy. An utterance is cut into 1.6 s partials (1.3 a second), each embedded, and the
L2-normed mean is its 256-value vector, as Resemblyzer's `embed_utterance` does. Its voice-activity trimming
(webrtcvad) is left out: the suite's own trimming (`trim_db`) applies, as for every feature set.

The weights are read from the installed package's `pretrained.pt` (`pip install --no-deps resemblyzer==0.1.4`:
17 MB; neither its torch nor its own code is used) or from `[feature_options.ge2e] weights = PATH`; the published
file's SHA-256 is checked, and the checkpoint is read weights-only (ser_models.torch_weights).

A speaker embedding carries who is speaking: it is an honest row only on speaker-disjoint folds, as every
ser-bench protocol but speaker_dependent is. On a split that shares speakers it would score speaker identity.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import librosa
import numpy as np

from ser_models.extractors import ExtractorDefaults, register_features
from ser_models.opensmile_features import MissingExtraError
from ser_models.torch_weights import read_legacy_checkpoint

PUBLISHED_SHA256 = "39373b86598fa3da9fcddee6142382efe09777e8d37dc9c0561f41f0070f134e"  # resemblyzer 0.1.4
SAMPLE_RATE, N_MELS, N_FFT, HOP = 16_000, 40, 400, 160  # 25 ms windows, 10 ms steps
PARTIAL_FRAMES, LAYERS, HIDDEN = 160, 3, 256
TARGET_DBFS = -30.0
INT16_MAX = 2**15 - 1


def published_weights() -> Path | None:
    """Resemblyzer's pretrained.pt where the package is installed (found without importing it), else None."""
    spec = importlib.util.find_spec("resemblyzer")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "pretrained.pt"
    return path if path.is_file() else None


@functools.lru_cache(maxsize=2)
def load_encoder(path: str, sha256: str | None) -> dict[str, np.ndarray]:
    """The encoder's weights by name (lstm.*, linear.*), checked and read weights-only."""
    return read_legacy_checkpoint(path, sha256=sha256)["model_state"]


def _volume_normalised(wav: np.ndarray) -> np.ndarray:
    """Raised (never lowered) to -30 dBFS, as Resemblyzer's preprocessing does."""
    rms = np.sqrt(np.mean((wav.astype(np.float64) * INT16_MAX) ** 2))
    change = TARGET_DBFS - 20 * np.log10(max(rms, 1e-12) / INT16_MAX)
    return wav if change < 0 else wav * (10 ** (change / 20))


def partial_slices(n_samples: int, rate: float = 1.3, min_coverage: float = 0.75) -> list[slice]:
    """Mel-frame ranges of the 1.6 s partials covering an utterance (Resemblyzer's compute_partial_slices)."""
    n_frames = int(np.ceil((n_samples + 1) / HOP))
    frame_step = int(np.round((SAMPLE_RATE / rate) / HOP))
    steps = max(1, n_frames - PARTIAL_FRAMES + frame_step + 1)
    slices = [slice(i, i + PARTIAL_FRAMES) for i in range(0, steps, frame_step)]
    last = slices[-1]
    coverage = (n_samples - last.start * HOP) / (PARTIAL_FRAMES * HOP)
    return slices[:-1] if coverage < min_coverage and len(slices) > 1 else slices


def _lstm(weights: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """The last layer's final hidden state of PyTorch's LSTM (gates i, f, g, o) over x (batch, time, 40)."""
    for layer in range(LAYERS):
        w_hh = weights[f"lstm.weight_hh_l{layer}"].T
        projected = x @ weights[f"lstm.weight_ih_l{layer}"].T + (weights[f"lstm.bias_ih_l{layer}"]
                                                                  + weights[f"lstm.bias_hh_l{layer}"])
        h = np.zeros((x.shape[0], HIDDEN), np.float32)
        c = np.zeros_like(h)
        outputs = np.empty((x.shape[0], x.shape[1], HIDDEN), np.float32)
        for t in range(x.shape[1]):
            gates = projected[:, t] + h @ w_hh
            i, f, g, o = np.split(gates, 4, axis=1)
            c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
            h = _sigmoid(o) * np.tanh(c)
            outputs[:, t] = h
        x = outputs
    return h


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # = 1 / (1 + exp(-x)), without overflow


@register_features("ge2e")
class GE2ESpeakerEncoder(ExtractorDefaults):
    """GE2E speaker encoder (Resemblyzer's pretrained 3 x 256 LSTM): 256-value utterance embeddings, in numpy."""

    produces = ("functionals",)
    batch_size = 16
    version = 1

    def __init__(self, weights: str | None = None, rate: float = 1.3, min_coverage: float = 0.75):
        self.weights = Path(weights).expanduser() if weights else published_weights()
        self.sha256 = PUBLISHED_SHA256 if weights is None else None  # a file of one's own: read weights-only
        self.rate, self.min_coverage = rate, min_coverage

    def check_available(self) -> None:
        if self.weights is None or not self.weights.is_file():
            raise MissingExtraError(
                "the ge2e feature set reads Resemblyzer's pretrained weights: pip install --no-deps "
                "resemblyzer==0.1.4 (17 MB; its torch is not needed), or set [feature_options.ge2e] weights = PATH"
                + (f" ({self.weights} does not exist)" if self.weights else ""))

    def key_fields(self) -> dict:
        self.check_available()
        from ser_models.feature_cache import content_hash  # cached per file version

        return {"weights": content_hash(self.weights), "rate": self.rate, "min_coverage": self.min_coverage}

    def functional_names(self) -> list[str]:
        return [f"ge2e{i}" for i in range(HIDDEN)]

    def extract(self, signals: list[np.ndarray], sample_rate: int, *, frames: bool = False) -> list[np.ndarray]:
        """Every partial of the batch through the LSTM at once; each utterance's L2-normed mean embedding."""
        if sample_rate != SAMPLE_RATE:
            raise ValueError(f"the ge2e encoder reads 16 kHz audio; the suite's sample_rate is {sample_rate}")
        self.check_available()
        weights = load_encoder(str(self.weights), self.sha256)
        partials, owners = [], []
        for index, wav in enumerate(signals):
            mel = self.partials(np.asarray(wav, dtype=np.float32))
            partials.append(mel)
            owners += [index] * len(mel)
        hidden = _lstm(weights, np.concatenate(partials))
        embeddings = np.maximum(hidden @ weights["linear.weight"].T + weights["linear.bias"], 0.0)
        embeddings /= np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
        owners = np.asarray(owners)
        out = []
        for index in range(len(signals)):
            mean = embeddings[owners == index].mean(axis=0)
            out.append(mean / max(float(np.linalg.norm(mean)), 1e-12))
        return out

    def partials(self, wav: np.ndarray) -> np.ndarray:
        """(n_partials, 160, 40) mel power spectra of an utterance, zero-padded to cover its last partial."""
        wav = _volume_normalised(wav)
        slices = partial_slices(len(wav), self.rate, self.min_coverage)
        needed = slices[-1].stop * HOP
        if needed >= len(wav):
            wav = np.pad(wav, (0, needed - len(wav)))
        mel = librosa.feature.melspectrogram(y=wav, sr=SAMPLE_RATE, n_fft=N_FFT, hop_length=HOP,
                                             n_mels=N_MELS).astype(np.float32).T
        return np.stack([mel[s] for s in slices])
