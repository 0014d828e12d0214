"""Published speech encoders' architectures, built with random weights: for timing where no model hub is reachable.

The arithmetic of a forward pass, hence its time and memory, is the real model's; the features are meaningless.
"""

from __future__ import annotations

from pathlib import Path

# Each: (config class, model class, feature extractor class, the published config's values that differ from the
# config class' defaults). WavLMConfig's and Wav2Vec2Config's defaults are the base models' (768 wide, 12 layers).
BASE_SIZES = {
    "wavlm-base-plus": ("WavLMConfig", "WavLMModel", "Wav2Vec2FeatureExtractor", {}),
    "wav2vec2-base": ("Wav2Vec2Config", "Wav2Vec2Model", "Wav2Vec2FeatureExtractor", {}),
    "hubert-base-ls960": ("HubertConfig", "HubertModel", "Wav2Vec2FeatureExtractor", {}),
    "whisper-base": ("WhisperConfig", "WhisperModel", "WhisperFeatureExtractor",
                     {"d_model": 512, "encoder_layers": 6, "encoder_attention_heads": 8, "encoder_ffn_dim": 2048,
                      "decoder_layers": 6, "decoder_attention_heads": 8, "decoder_ffn_dim": 2048,
                      "vocab_size": 51865, "num_mel_bins": 80}),
}


def save_random_encoder(name: str, folder: Path) -> Path:
    """`name`'s architecture with random weights (seed 0), saved with save_pretrained into `folder`."""
    import torch
    import transformers

    config_class, model_class, extractor_class, values = BASE_SIZES[name]
    torch.manual_seed(0)
    model = getattr(transformers, model_class)(getattr(transformers, config_class)(**values))
    model.save_pretrained(folder)
    extractor = getattr(transformers, extractor_class)
    (extractor(feature_size=80) if extractor_class.startswith("Whisper") else
     extractor(feature_size=1, sampling_rate=16_000, do_normalize=True, return_attention_mask=False)
     ).save_pretrained(folder)
    return folder
