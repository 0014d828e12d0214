"""Pretrained speech encoders as a feature set: any Hugging Face WavLM, wav2vec 2.0, HuBERT or Whisper encoder.

`feature_set = "encoder"` with `[feature_options.encoder] model = "microsoft/wavlm-base-plus"` (a hub id, found in
the local Hugging Face cache or fetched) or `model = "/path/to/a/save_pretrained/folder"`. Needs the `encoders`
extra (torch, transformers). Each file is cut into chunks of at most `chunk_seconds`, every layer's hidden states
(the input embedding and each transformer layer) are pooled over the real frames (mean and standard deviation),
and the cache keeps that whole (layers + 1) x 2 x dim stack per file, keyed by the weights' digest.

What the models read is a view of the stack (`layer`, not part of the cache entry): "average" (the default, fixed
and documented rather than chosen: the mean over layers of each layer's pooled statistics), one layer's number,
or "all" (every layer, for `layer_weighted`, the head that learns a softmax weighting of the layers, as SUPERB and
EmoBox do). `frames_layer = K` also caches layer K's frame sequence (float16, for the frame models).

Whisper runs its encoder only, on its 30 s input, with the hidden states trimmed to the frames of real audio, as
EmoBox does. The weights are read as safetensors, or as a PyTorch file through torch's weights-only loader;
no code from a model folder is ever run (trust_remote_code stays off).
"""

from __future__ import annotations

import functools
import math
import warnings
from pathlib import Path

import numpy as np

from ser_models.extractors import ExtractorDefaults, register_features
from ser_models.opensmile_features import MissingExtraError

INSTALL = "pip install -e '.[encoders]' (torch and transformers; see the README's encoder section)"
WEIGHT_FILES = ("*.safetensors", "*.bin")
CONFIG_FILES = ("config.json", "preprocessor_config.json")
WHISPER_SECONDS, WHISPER_FRAME_SAMPLES = 30.0, 320  # 30 s input; one encoder frame per 20 ms
LAYER_VIEWS = ("average", "all")


class EncoderUnavailableError(MissingExtraError):
    """The encoder's weights cannot be found or fetched; the message says what to do (a suite's variant rows on it
    are then left out with a warning, as for a missing extra; main features stop the run with one line)."""


def resolve_model(model: str, revision: str | None = None) -> Path:
    """A local folder with the encoder's config and weights: `model` itself, or the hub snapshot it names."""
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise EncoderUnavailableError(f"{path} has no config.json: save the encoder there with save_pretrained()")
        return path
    if model.startswith((".", "/", "~")) or path.suffix:
        raise EncoderUnavailableError(f"encoder folder {path} does not exist")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(model, revision=revision,
                                      allow_patterns=[*CONFIG_FILES, "model.safetensors", "pytorch_model.bin"]))
    except Exception as error:  # noqa: BLE001  -- offline, unknown id, no access: one message for all
        reason = (str(error).splitlines() or [""])[0].split(". ")[0][:160]
        raise EncoderUnavailableError(
            f"encoder {model!r} cannot be fetched ({type(error).__name__}: {reason}). Download it where the hub is "
            f"reachable (`hf download {model} --local-dir DIR`), copy DIR here and set "
            "[feature_options.encoder] model = \"DIR\"") from None


def weights_digest(folder: Path) -> str:
    """One hash of the folder's config and weight files' contents: the cache key's part for the model."""
    import hashlib

    from ser_models.feature_cache import content_hash

    files = sorted({p for pattern in (*CONFIG_FILES, *WEIGHT_FILES) for p in folder.glob(pattern)})
    if not any(p.suffix in (".safetensors", ".bin") for p in files):
        raise EncoderUnavailableError(f"{folder} holds no model.safetensors or pytorch_model.bin")
    return hashlib.sha256("\n".join(f"{p.name}:{content_hash(p)}" for p in files).encode()).hexdigest()[:32]


@functools.lru_cache(maxsize=2)
def load_encoder(folder: str, device: str):
    """(network in eval mode, feature extractor, is_whisper) from a local folder; weights only, no remote code."""
    import torch
    from transformers import AutoConfig, AutoFeatureExtractor, AutoModel
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # the harness shows its own, in files/s
    config = AutoConfig.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
    use_safetensors = any(Path(folder).glob("*.safetensors")) or None
    network = AutoModel.from_pretrained(folder, local_files_only=True, trust_remote_code=False,
                                        use_safetensors=use_safetensors)
    whisper = config.model_type == "whisper"
    network = network.get_encoder() if whisper else network
    processor = AutoFeatureExtractor.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
    return network.to(torch.device(device)).eval(), processor, whisper


def _chunks(wav: np.ndarray, samples: int) -> list[np.ndarray]:
    """Nearly equal pieces of at most `samples` (no short tail a convolution front end could not read)."""
    pieces = max(1, math.ceil(len(wav) / samples))
    size = math.ceil(len(wav) / pieces)
    return [wav[start:start + size] for start in range(0, len(wav), size)]


@register_features("encoder")
class SpeechEncoder(ExtractorDefaults):
    """Every layer's hidden states of a pretrained speech encoder, mean- and std-pooled over the real frames."""

    version = 1
    stored_options = {"layer": "all"}  # the cache keeps every layer; `layer` only chooses the view

    def __init__(self, model: str | None = None, revision: str | None = None, layer: str | int = "average",
                 frames_layer: int | None = None, chunk_seconds: float = 20.0, batch_size: int = 8,
                 device: str = "auto"):
        if not model:
            raise ValueError("the encoder feature set needs [feature_options.encoder] model = a hub id or a folder")
        if not (isinstance(layer, int) or layer in LAYER_VIEWS):
            raise ValueError(f"encoder layer must be a layer number or one of {LAYER_VIEWS}, not {layer!r}")
        self.model, self.revision, self.layer, self.frames_layer = model, revision, layer, frames_layer
        self.chunk_seconds, self.batch_size, self.device_name = float(chunk_seconds), int(batch_size), device
        self.produces = ("functionals",) if frames_layer is None else ("functionals", "frames")
        self.frames_free = frames_layer is not None  # one pass gives both

    # -- what it is
    def check_available(self) -> None:
        try:
            import torch  # noqa: F401
            import transformers  # noqa: F401
        except ImportError as error:
            raise MissingExtraError(f"the encoder feature set needs {error.name}: {INSTALL}") from None
        self.folder()

    @functools.cached_property
    def _folder(self) -> Path:
        return resolve_model(self.model, self.revision)

    def folder(self) -> Path:
        return self._folder

    @functools.cached_property
    def shape(self) -> tuple[int, int]:
        """(layers + 1, hidden size), from the model's config."""
        import json

        config = json.loads((self.folder() / "config.json").read_text())
        if config.get("model_type") == "whisper":
            return config["encoder_layers"] + 1, config["d_model"]
        return config["num_hidden_layers"] + 1, config["hidden_size"]

    def key_fields(self) -> dict:
        self.check_available()
        options = {"layer": self.layer, "frames_layer": self.frames_layer, "chunk_seconds": self.chunk_seconds}
        return {"options": options, "weights": weights_digest(self.folder())}  # the weights, wherever they lie

    def functional_names(self) -> list[str]:
        layers, dim = self.shape
        per_layer = [f"mean{i}" for i in range(dim)] + [f"std{i}" for i in range(dim)]
        if self.layer == "all":
            return [f"layer{k}.{name}" for k in range(layers) for name in per_layer]
        return per_layer

    def frame_names(self) -> list[str]:
        return [] if self.frames_layer is None else [f"h{i}" for i in range(self.shape[1])]

    def view(self, stacks: np.ndarray) -> np.ndarray:
        """The models' vectors from cached (n, (layers + 1) x 2 x dim) stacks."""
        layers, dim = self.shape
        if self.layer == "all":
            return stacks
        per_layer = stacks.reshape(len(stacks), layers, 2 * dim)
        if self.layer == "average":
            return per_layer.mean(axis=1)
        if not 0 <= self.layer < layers:
            raise ValueError(f"encoder layer {self.layer} does not exist: {self.model} has layers 0 to {layers - 1}")
        return per_layer[:, self.layer]

    # -- running it
    def _device(self) -> str:
        import torch

        if self.device_name != "auto":
            return self.device_name
        return "cuda" if torch.cuda.is_available() else "cpu"

    def extract(self, signals: list[np.ndarray], sample_rate: int, *, frames: bool = False) -> list:
        """Per signal: the pooled stack (and layer `frames_layer`'s frames), chunks of a long file joined in time."""
        if sample_rate != 16_000:
            raise ValueError(f"speech encoders read 16 kHz audio; the suite's sample_rate is {sample_rate}")
        self.check_available()
        network, processor, whisper = load_encoder(str(self.folder()), self._device())
        limit = WHISPER_SECONDS if whisper else self.chunk_seconds
        pieces, owners = [], []
        for index, wav in enumerate(signals):
            for piece in _chunks(np.asarray(wav, dtype=np.float32), int(min(limit, self.chunk_seconds) * 16_000)):
                pieces.append(piece)
                owners.append(index)
        run = self._whisper_states if whisper else self._wav2vec_states
        states = run(network, processor, pieces)  # per piece: (layers + 1, real frames, dim)
        out = []
        for index in range(len(signals)):
            hidden = np.concatenate([s for s, o in zip(states, owners, strict=True) if o == index], axis=1)
            stack = np.concatenate([hidden.mean(axis=1), hidden.std(axis=1)], axis=1).ravel()
            frame_matrix = hidden[self.frames_layer] if frames and self.frames_layer is not None else None
            out.append((stack, frame_matrix))
        return out

    def _wav2vec_states(self, network, processor, pieces: list[np.ndarray]) -> list[np.ndarray]:
        """WavLM / wav2vec 2.0 / HuBERT. Batched (with an attention mask) only where the network's convolutions
        normalise per frame (feat_extract_norm "layer"); a group-normed front end sees one piece at a time,
        since its statistics would run over the padding."""
        import torch

        minimum = _receptive_field(network)
        for piece in pieces:
            if len(piece) < minimum:
                raise ValueError(f"{len(piece) / 16_000:.3f} s of audio is shorter than the encoder's "
                                 f"{minimum / 16_000:.3f} s window")
        batched = getattr(network.config, "feat_extract_norm", "group") == "layer"
        order = sorted(range(len(pieces)), key=lambda i: len(pieces[i]))
        groups = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)] if batched else \
            [[i] for i in order]
        out: list = [None] * len(pieces)
        device = next(network.parameters()).device
        for group in groups:
            inputs = processor([pieces[i] for i in group], sampling_rate=16_000, padding=True,
                               return_attention_mask=True, return_tensors="pt")
            mask = inputs["attention_mask"].to(device)
            with torch.inference_mode(), warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Support for mismatched key_padding_mask")  # WavLM
                result = network(inputs["input_values"].to(device), attention_mask=mask if batched else None,
                                 output_hidden_states=True)
            real = network._get_feat_extract_output_lengths(mask.sum(dim=1)).cpu().numpy()
            hidden = torch.stack(result.hidden_states, dim=1).float().cpu().numpy()  # (batch, layers, frames, dim)
            for row, i in enumerate(group):
                out[i] = hidden[row, :, :int(real[row])]
        return out

    def _whisper_states(self, network, processor, pieces: list[np.ndarray]) -> list[np.ndarray]:
        """Whisper's encoder: every piece padded to 30 s by its own feature extractor, the states trimmed to
        the frames of real audio (so a batch's padding is each piece's own, whatever it is batched with)."""
        import torch

        device = next(network.parameters()).device
        out = []
        for start in range(0, len(pieces), self.batch_size):
            group = pieces[start:start + self.batch_size]
            inputs = processor(group, sampling_rate=16_000, return_tensors="pt")
            with torch.inference_mode():
                result = network(inputs["input_features"].to(device), output_hidden_states=True)
            hidden = torch.stack(result.hidden_states, dim=1).float().cpu().numpy()
            for row, piece in enumerate(group):
                real = max(1, min(hidden.shape[2], math.ceil(len(piece) / WHISPER_FRAME_SAMPLES)))
                out.append(hidden[row, :, :real])
        return out


def _receptive_field(network) -> int:
    """The fewest samples that give the convolutional front end one frame."""
    samples = 1
    for kernel, stride in zip(reversed(network.config.conv_kernel), reversed(network.config.conv_stride),
                              strict=True):
        samples = (samples - 1) * stride + kernel
    return samples
