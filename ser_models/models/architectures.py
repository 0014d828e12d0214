"""The deep models' networks: one builder per architecture (a registry, not an if-chain), and frame pooling."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import numpy as np

from ser_models.features import FeatureSpec

# The built-in frame matrices start with the spec's log-mel bands (LibrosaFeatures.frame_names, `mel_bands`).
N_MELS_IN_FRAMES = FeatureSpec().n_mels


def _masked_mean(keras, x, mask):
    ops = keras.ops
    weights = ops.expand_dims(mask, -1)
    return ops.sum(x * weights, axis=1) / ops.maximum(ops.sum(weights, axis=1), 1.0)


def _masked_max(keras, x, mask):
    ops = keras.ops
    return ops.max(x + (ops.expand_dims(mask, -1) - 1.0) * 1e4, axis=1)


def _masked_std(keras, x, mask):
    ops = keras.ops
    deviation = x - ops.expand_dims(_masked_mean(keras, x, mask), 1)
    return ops.sqrt(_masked_mean(keras, deviation * deviation, mask) + 1e-6)  # the epsilon keeps the gradient finite


def _attentive_mean(keras, x, mask):
    """A mean over the real frames weighted by a learned score per frame (softmax over time)."""
    ops = keras.ops
    scores = ops.squeeze(keras.layers.Dense(1)(x), -1) + (mask - 1.0) * 1e9
    return ops.sum(x * ops.expand_dims(ops.softmax(scores, axis=-1), -1), axis=1)


# Pooling over the real frames of a sequence, by name: mean and max (the default); mean, standard deviation
# and max, as in x-vector statistics pooling (the spread of pitch and energy over time carries arousal);
# or an attention-weighted mean and max (the frames that carry the emotion weigh more).
POOLINGS = {"mean_max": (_masked_mean, _masked_max), "mean_std_max": (_masked_mean, _masked_std, _masked_max),
            "attention_max": (_attentive_mean, _masked_max)}


def _pool(keras, x, mask, pooling: str):
    return keras.layers.Concatenate()([statistic(keras, x, mask) for statistic in POOLINGS[pooling]])


def pool_frames(values: np.ndarray, mask: np.ndarray, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """Coarser time steps: each run of `factor` frames becomes the mean of its real frames (padding is zeroed);
    a step is real when any of its frames is. `factor` 1 returns the frames masked as they are."""
    if factor <= 1:
        return values * mask[:, :, None], mask
    n, steps, dims = values.shape
    extra = -steps % factor
    values = np.pad(values * mask[:, :, None], ((0, 0), (0, extra), (0, 0)))
    mask = np.pad(mask, ((0, 0), (0, extra)))
    counts = mask.reshape(n, -1, factor).sum(axis=2)
    pooled = values.reshape(n, -1, factor, dims).sum(axis=2) / np.maximum(counts, 1.0)[:, :, None]
    return pooled.astype(np.float32), (counts > 0).astype(np.float32)


def _downsample(keras, x, mask, factor: int = 2):
    x = keras.layers.MaxPooling1D(factor, padding="same")(x)
    mask = keras.ops.squeeze(keras.layers.MaxPooling1D(factor, padding="same")(keras.ops.expand_dims(mask, -1)), -1)
    return x * keras.ops.expand_dims(mask, -1), mask


def _conv_block(keras, x, mask, filters: int, kernel: int = 5):
    x = keras.layers.Conv1D(filters, kernel, padding="same")(x)
    x = keras.layers.LayerNormalization()(x)
    x = keras.layers.Activation("relu")(x)
    return _downsample(keras, x * keras.ops.expand_dims(mask, -1), mask)


def _head(keras, pooled, n_classes: int, width: int, dropout: float):
    x = keras.layers.Dropout(dropout)(pooled)
    x = keras.layers.Dense(width, activation="relu")(x)
    x = keras.layers.Dropout(dropout)(x)
    # The class probabilities in float32 under any precision (the usual mixed-precision rule: softmax and loss in full
    # precision); under the default float32 policy this is the same layer as without the argument.
    return keras.layers.Dense(n_classes, activation="softmax", dtype="float32")(x)


def build_mlp(keras, inputs, n_classes, width, dropout):
    (vector,) = inputs
    x = keras.layers.Dense(2 * width, activation="relu")(keras.layers.Dropout(dropout / 2)(vector))
    return _head(keras, x, n_classes, width, dropout)


def build_layer_weighted(keras, inputs, n_classes, width, dropout):
    """An encoder's layers (batch, layers, features) summed with learned softmax weights, then the MLP's layers
    (the SUPERB / EmoBox downstream convention)."""
    (stack,) = inputs

    class LayerWeighting(keras.layers.Layer):
        def build(self, input_shape):
            self.logits = self.add_weight(shape=(input_shape[1],), initializer="zeros", name="layer_logits")

        def call(self, x):
            return keras.ops.einsum("blf,l->bf", x, keras.ops.softmax(self.logits))

    return build_mlp(keras, [LayerWeighting()(stack)], n_classes, width, dropout)


def build_cnn(keras, inputs, n_classes, width, dropout, pooling="mean_max"):
    frames, mask = inputs
    x, m = frames, mask
    for filters in (width, 2 * width, 2 * width):
        x, m = _conv_block(keras, x, m, filters)
    pooled = _pool(keras, x, m, pooling)
    return _head(keras, pooled, n_classes, width, dropout)


def build_cnn2d(keras, inputs, n_classes, width, dropout, head_width: int | None = None, pooling="mean_max",
                mask_before_pooling: bool = False, time_pool: int = 4):
    """`time_pool`: input steps per cell (4 at 40 ms steps: 160 ms cells). `mask_before_pooling`: padding cells
    are zeroed before each max pooling too, not only after it, so that an utterance's last real cell is never
    pooled with a padding cell (whose convolution output is not zero)."""
    frames, mask = inputs
    ops = keras.ops
    x = ops.expand_dims(frames[:, :, :N_MELS_IN_FRAMES], -1)  # (batch, time, mel, 1)
    # Pool first: cells of `time_pool` steps x 2 mel bands keep a RAVDESS fold cheap on 2 cores.
    x = keras.layers.AveragePooling2D((time_pool, 2), padding="same")(x)
    m = ops.squeeze(keras.layers.MaxPooling1D(time_pool, padding="same")(ops.expand_dims(mask, -1)), -1)
    def per_cell(m):  # the (batch, time) mask broadcast over a cell's mel bands and filters
        return ops.expand_dims(ops.expand_dims(m, -1), -1)

    for filters in (width, 2 * width, 4 * width):
        x = keras.layers.Conv2D(filters, 3, padding="same")(x)
        x = keras.layers.LayerNormalization(axis=[2, 3])(x)  # per frame: padding never enters the statistics
        x = keras.layers.Activation("relu")(x)
        if mask_before_pooling:
            x = x * per_cell(m)
        x = keras.layers.MaxPooling2D((2, 2), padding="same")(x)
        m = ops.squeeze(keras.layers.MaxPooling1D(2, padding="same")(ops.expand_dims(m, -1)), -1)
        x = x * per_cell(m)
    x = keras.layers.Reshape((-1, x.shape[2] * x.shape[3]))(x)  # (batch, time, freq x filters); time may be open
    pooled = _pool(keras, x, m, pooling)
    # A head as wide as the last filters (4 x width): a 16-wide one under dropout could not fit the training set.
    return _head(keras, pooled, n_classes, head_width or 4 * width, dropout)


def build_fusion(keras, inputs, n_classes, width, dropout, pooling="mean_max"):
    """SER-FusionNet style: a small CNN learns from the frames; its pooled output joins the utterance statistics."""
    frames, mask, utterance = inputs
    x, m = frames, mask
    for filters in (width, width):
        x, m = _conv_block(keras, x, m, filters)
    learned = _pool(keras, x, m, pooling)
    statistics = keras.layers.Dense(2 * width, activation="relu")(keras.layers.Dropout(dropout / 2)(utterance))
    return _head(keras, keras.layers.Concatenate()([learned, statistics]), n_classes, width, dropout)


def _recurrent(layer_name: str, bidirectional: bool = False, conv_front: bool = False):
    def build(keras, inputs, n_classes, width, dropout, pooling="mean_max"):
        frames, mask = inputs
        x, m = frames, mask
        if conv_front:
            for filters in (width, width):
                x, m = _conv_block(keras, x, m, filters)
        else:
            x = keras.layers.Dense(width, activation="relu")(x)
            x, m = _downsample(keras, x, m, 2)
        layer = getattr(keras.layers, layer_name)(width, return_sequences=True)
        if bidirectional:
            layer = keras.layers.Bidirectional(layer)
        x = layer(x, mask=keras.ops.cast(m, "bool"))
        pooled = _pool(keras, x, m, pooling)
        return _head(keras, pooled, n_classes, width, dropout)

    return build


def _position_embedding(keras):
    class PositionEmbedding(keras.layers.Layer):
        """Adds a learned vector per time step."""

        def build(self, input_shape):
            self.table = self.add_weight(shape=tuple(input_shape[1:]), initializer="zeros", name="positions")

        def call(self, x):
            return x + self.table[None]

    return PositionEmbedding()


def build_transformer(keras, inputs, n_classes, width, dropout, heads: int = 4, blocks: int = 2):
    frames, mask = inputs
    ops = keras.ops
    x = keras.layers.Dense(width)(frames)
    x, m = _downsample(keras, x, mask, 4)  # 40 ms steps: attention cost grows with the square of the length
    x = _position_embedding(keras)(x)
    attention_mask = ops.cast(ops.expand_dims(m, 1) * ops.expand_dims(m, 2), "bool")
    for _ in range(blocks):
        attended = keras.layers.MultiHeadAttention(heads, width // heads, dropout=dropout)(
            x, x, attention_mask=attention_mask
        )
        x = keras.layers.LayerNormalization()(x + attended)
        feed = keras.layers.Dense(2 * width, activation="relu")(x)
        x = keras.layers.LayerNormalization()(x + keras.layers.Dense(width)(feed))
    scores = ops.squeeze(keras.layers.Dense(1)(x), -1) + (m - 1.0) * 1e9  # attention pooling over real frames
    weights = ops.expand_dims(ops.softmax(scores, axis=-1), -1)
    return _head(keras, ops.sum(x * weights, axis=1), n_classes, width, dropout)


ARCHITECTURES: dict[str, Callable] = {
    "mlp": build_mlp,
    "layer_weighted": build_layer_weighted,
    "cnn": build_cnn,
    "cnn2d": build_cnn2d,
    "lstm": _recurrent("LSTM"),
    "gru": _recurrent("GRU"),
    "bilstm": _recurrent("LSTM", bidirectional=True),
    "cnn_lstm": _recurrent("LSTM", conv_front=True),
    "transformer": build_transformer,
    "fusion": build_fusion,
}


# Pooled input steps per a network's coarsest time step: a batch cut to a multiple of it (and past its longest
# utterance) pools the same windows over the same values as at the corpus-wide length, so its outputs are the same
# up to float rounding. The transformer is absent: its position table is as long as the corpus-wide input.
TIME_ALIGNMENT = {"cnn": 8, "cnn2d": 32, "fusion": 4, "lstm": 2, "gru": 2, "bilstm": 2, "cnn_lstm": 4}


def pooling_architectures() -> list[str]:
    """Architectures whose builder takes a `pooling` switch."""
    return sorted(n for n, b in ARCHITECTURES.items() if "pooling" in inspect.signature(b).parameters)
