"""Deep baselines on Keras 3 with the JAX backend, behind the scikit-learn classifier API.

Every network is built by one function per architecture (a registry, not an
if-chain) and trained by the same `DeepClassifier`: standardisation from the
training rows, a validation set of whole training speakers for early stopping
and learning-rate reduction, class weights, fixed seeds, SpecAugment-style
masks on training batches only.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.class_weight import compute_class_weight

from ser_models.feature_cache import default_cache_dir
from ser_models.models.cpu_threads import limit_xla_threads
from ser_models.models.frames import FrameBatch
from ser_models.models.registry import register_model
from ser_models.protocols import assert_speaker_disjoint

log = logging.getLogger(__name__)
N_MELS_IN_FRAMES = 64  # frame matrices start with the log-mel bands (see FeatureSpec.frame_names)


XLA_CACHE_MAX_BYTES = 1 << 30  # beyond this the least recently used compiled programs are dropped
XLA_CACHE_ENV = "SER_BENCH_XLA_CACHE"


def xla_cache_dir() -> Path | None:
    """Where compiled XLA programs are kept between fits and runs: $SER_BENCH_XLA_CACHE ("off" for nowhere),
    else xla/ in the feature cache ($SER_BENCH_CACHE, default ~/.cache/ser-bench)."""
    setting = os.environ.get(XLA_CACHE_ENV)
    if setting is not None:
        return None if setting.strip().lower() in ("", "0", "off", "none") else Path(setting).expanduser()
    return default_cache_dir() / "xla"


@functools.cache  # once per process: an unwritable folder warns once, not at every fit
def _use_compilation_cache() -> None:
    """Each fit builds a new network, and JAX would compile its ~15 programs (training step, validation
    step, the last short batch, initialisers) again for every fold and seed. The persistent cache reuses
    the compiled programs wherever the shapes match: across fits, folds, worker processes and runs.
    A cached program is the same machine code, so predictions are bit-identical."""
    import jax

    if jax.config.jax_compilation_cache_dir:  # the user's own JAX_COMPILATION_CACHE_DIR wins
        return
    path = xla_cache_dir()
    if path is None:
        return
    try:
        path.mkdir(parents=True, exist_ok=True)
        if not os.access(path, os.W_OK):
            raise PermissionError(f"{path} is not writable")
    except OSError as error:
        log.warning("compiled-program cache off (%s); set SER_BENCH_XLA_CACHE to a writable folder", error)
        return
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)  # the many small compiles add up too
    jax.config.update("jax_compilation_cache_max_size", XLA_CACHE_MAX_BYTES)


@contextlib.contextmanager
def compile_counts():
    """Count JAX's compilations inside the block: {"programs": requested, "cache_hits": served by the
    persistent cache, "compile_s": seconds XLA spent compiling}, filled in as it runs."""
    import jax

    counts = {"programs": 0, "cache_hits": 0, "compile_s": 0.0}
    events = {"/jax/compilation_cache/compile_requests_use_cache": "programs",
              "/jax/compilation_cache/cache_hits": "cache_hits"}

    def on_event(event: str, **_) -> None:
        if event in events:
            counts[events[event]] += 1

    def on_duration(event: str, seconds: float, **_) -> None:
        if event == "/jax/core/compile/backend_compile_duration":
            counts["compile_s"] += seconds

    jax.monitoring.register_event_listener(on_event)
    jax.monitoring.register_event_duration_secs_listener(on_duration)
    try:
        yield counts
    finally:
        jax.monitoring.unregister_event_listener(on_event)
        jax.monitoring.unregister_event_duration_listener(on_duration)


def keras_module():
    """Import Keras on the JAX backend (set here, so users never need KERAS_BACKEND)."""
    os.environ.setdefault("KERAS_BACKEND", "jax")
    _use_compilation_cache()
    limit_xla_threads()
    import keras

    if keras.backend.backend() != "jax":
        raise RuntimeError(
            f"Keras was already imported with the {keras.backend.backend()!r} backend; "
            "ser-bench's deep models need JAX: unset KERAS_BACKEND or import ser_models first"
        )
    return keras


# ---------------------------------------------------------------- architectures

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
        return ops.reshape(m, (-1, ops.shape(m)[1], 1, 1))

    for filters in (width, 2 * width, 4 * width):
        x = keras.layers.Conv2D(filters, 3, padding="same")(x)
        x = keras.layers.LayerNormalization(axis=[2, 3])(x)  # per frame: padding never enters the statistics
        x = keras.layers.Activation("relu")(x)
        if mask_before_pooling:
            x = x * per_cell(m)
        x = keras.layers.MaxPooling2D((2, 2), padding="same")(x)
        m = ops.squeeze(keras.layers.MaxPooling1D(2, padding="same")(ops.expand_dims(m, -1)), -1)
        x = x * per_cell(m)
    x = ops.reshape(x, (-1, ops.shape(x)[1], ops.shape(x)[2] * ops.shape(x)[3]))  # (batch, time, freq x filters)
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
    "cnn": build_cnn,
    "cnn2d": build_cnn2d,
    "lstm": _recurrent("LSTM"),
    "gru": _recurrent("GRU"),
    "bilstm": _recurrent("LSTM", bidirectional=True),
    "cnn_lstm": _recurrent("LSTM", conv_front=True),
    "transformer": build_transformer,
    "fusion": build_fusion,
}


def _pooling_architectures() -> list[str]:
    """Architectures whose builder takes a `pooling` switch."""
    return sorted(n for n, b in ARCHITECTURES.items() if "pooling" in inspect.signature(b).parameters)


# ---------------------------------------------------------------- estimator

def network_seed(seed: int, index: int) -> int:
    """Seed of the `index`-th network refitted by a model run with `seed`: `seed` itself for the first, then
    values drawn from (seed, index), so that the networks of seed 0 and of seed 1 never share a seed."""
    return seed if index == 0 else int(np.random.SeedSequence([seed, index]).generate_state(1)[0] >> 1)


def class_covering_draw(chosen: np.ndarray, rng: np.random.Generator, targets, groups,
                        tries: int = 1000) -> np.ndarray:
    """Validation speakers whose rows hold every class, while the other training speakers still hold every class:
    `chosen` itself when it does, else the first such redraw of as many speakers (uniform among the covering draws).
    Where none of `tries` covers every class, the draw covering the most (training still holding every class)."""
    targets, groups = np.asarray(targets), np.asarray(groups)
    speakers = np.unique(groups)
    held = {s: frozenset(targets[groups == s].tolist()) for s in speakers}
    n_classes = len(np.unique(targets))

    def covered(draw) -> tuple[int, bool]:
        drawn = set(draw)
        on_val = frozenset().union(*(held[s] for s in drawn))
        on_train = frozenset().union(*(held[s] for s in speakers if s not in drawn))
        return len(on_val), len(on_train) == n_classes

    best, best_count = chosen, -1
    draw = chosen
    for _ in range(tries):
        count, train_complete = covered(draw)
        if train_complete and count == n_classes:
            return draw
        if train_complete and count > best_count:
            best, best_count = draw, count
        draw = rng.choice(speakers, size=len(chosen), replace=False)
    return best


def _training_batches(keras):
    class TrainingBatches(keras.utils.PyDataset):
        """Shuffled training batches, augmentation redrawn for every batch, class weights as sample weights."""

        def __init__(self, arrays, targets, class_weight, batch_size, *, augment, seed, one_hot=False, mix=None):
            super().__init__()
            self.arrays, self.targets, self.class_weight = arrays, targets, class_weight
            self.batch_size, self.augment = batch_size, augment
            self.one_hot, self.mix = one_hot, mix
            self.rng = np.random.default_rng(seed)
            self.order = self.rng.permutation(len(targets))

        def __len__(self):
            return int(np.ceil(len(self.targets) / self.batch_size))

        def __getitem__(self, index):
            rows = self.order[index * self.batch_size:(index + 1) * self.batch_size]
            inputs = self.augment([a[rows] for a in self.arrays], self.rng)
            labels = self.targets[rows]
            weights = self.class_weight[labels]
            if self.one_hot:
                targets = np.eye(len(self.class_weight), dtype=np.float32)[labels]
                inputs, targets, weights = self.mix(inputs, targets, weights, self.rng)
                return tuple(inputs), targets, weights
            return tuple(inputs), labels, weights

        def on_epoch_end(self):
            self.order = self.rng.permutation(len(self.targets))

    return TrainingBatches



def best_epoch(history: dict[str, list[float]], monitor: str, ties: str = "first") -> int:
    """Index of the best epoch by the validation `monitor`. Among epochs that tie on the best score, "first"
    takes the earliest; "lowest_loss" the one with the lowest validation loss (a few validation speakers give
    coarse scores that often tie, sometimes at 1.0 from the first epoch on)."""
    values = np.asarray(history[monitor])
    if monitor.endswith("loss"):
        return int(np.argmin(values))
    if ties == "first" or "val_loss" not in history:
        return int(np.argmax(values))
    tied = np.flatnonzero(values == values.max())
    return int(tied[np.argmin(np.asarray(history["val_loss"])[tied])])


def _uar_metric(keras):
    ops = keras.ops

    class UnweightedAverageRecall(keras.metrics.Metric):
        """UAR (balanced accuracy) over the classes present in what was seen since the last reset: the validation
        monitor `val_uar`. Unlike accuracy it does not reward predicting a validation set's majority class (a few
        validation speakers of a small corpus can hold mostly one emotion). Sample weights are ignored."""

        def __init__(self, n_classes: int, name: str = "uar", **kwargs):
            super().__init__(name=name, **kwargs)
            self.n_classes = n_classes
            self.hits = self.add_variable(shape=(n_classes,), initializer="zeros", name="hits")
            self.counts = self.add_variable(shape=(n_classes,), initializer="zeros", name="counts")

        def update_state(self, y_true, y_pred, sample_weight=None):
            truth = (ops.argmax(y_true, axis=-1) if len(y_true.shape) == len(y_pred.shape) and y_true.shape[-1] > 1
                     else ops.reshape(ops.cast(y_true, "int32"), (-1,)))
            rows = ops.one_hot(truth, self.n_classes)
            right = ops.cast(ops.equal(ops.argmax(y_pred, axis=-1), truth), "float32")
            self.hits.assign_add(ops.sum(rows * right[:, None], axis=0))
            self.counts.assign_add(ops.sum(rows, axis=0))

        def result(self):
            present = ops.cast(self.counts > 0, "float32")
            recall = self.hits / ops.maximum(self.counts, 1.0)
            return ops.sum(recall * present) / ops.maximum(ops.sum(present), 1.0)

        def reset_state(self):
            self.hits.assign(ops.zeros((self.n_classes,)))
            self.counts.assign(ops.zeros((self.n_classes,)))

    return UnweightedAverageRecall


def _tie_breaking_early_stopping(keras):
    class TieBreakingEarlyStopping(keras.callbacks.Callback):
        """Keras' EarlyStopping on a validation score, where an epoch that ties the best score with a lower
        validation loss also counts as an improvement (`best_epoch(..., "lowest_loss")` picks the same epoch)."""

        def __init__(self, monitor: str, patience: int, restore: bool):
            super().__init__()
            self.monitor, self.patience, self.restore = monitor, patience, restore

        def on_train_begin(self, logs=None):
            self.best, self.wait, self.best_weights, self.best_epoch = None, 0, None, 0

        def on_epoch_end(self, epoch, logs=None):
            key = (float(logs[self.monitor]), -float(logs["val_loss"]))
            if self.best is None or key > self.best:
                self.best, self.wait, self.best_epoch = key, 0, epoch
                if self.restore:
                    self.best_weights = self.model.get_weights()
                return
            self.wait += 1
            if self.wait >= self.patience:
                self.model.stop_training = True

        def on_train_end(self, logs=None):
            if self.best_weights is not None:
                self.model.set_weights(self.best_weights)

    return TieBreakingEarlyStopping


def _weight_averager(keras):
    class WeightAverager(keras.callbacks.Callback):
        """Stochastic weight averaging: the mean of the weights of the `window` epochs ending at the best one
        (by the validation monitor; the last epoch without validation), set on the model when training ends."""

        def __init__(self, monitor: str, window: int, has_validation: bool):
            super().__init__()
            self.monitor, self.window, self.has_validation = monitor, max(1, int(window)), has_validation
            self.recent, self.best_score, self.average, self.averaged_epochs = [], -np.inf, None, []

        def on_epoch_end(self, epoch, logs=None):
            self.recent = [*self.recent, (epoch, [np.asarray(w, dtype=np.float64) for w in self.model.get_weights()])]
            self.recent = self.recent[-self.window:]
            value = (logs or {}).get(self.monitor) if self.has_validation else None
            score = float(epoch) if value is None else (-value if self.monitor.endswith("loss") else value)
            if score > self.best_score:  # a new best epoch: keep the mean of the window ending here
                self.best_score = score
                self.averaged_epochs = [e for e, _ in self.recent]
                self.average = [np.mean([w[i] for _, w in self.recent], axis=0) for i in range(len(self.recent[0][1]))]

        def on_train_end(self, logs=None):
            if self.average is not None:
                self.model.set_weights([a.astype(np.float32) for a in self.average])

    return WeightAverager


class DeepClassifier(ClassifierMixin, BaseEstimator):
    """A Keras network trained with speaker-held-out early stopping; scikit-learn API.

    `fit(X, y, groups=speakers)`: X is a 2-D array (utterance functionals) for
    `mlp`, or a FrameBatch for the sequence architectures. `groups` gives each
    training row's speaker so the validation set is made of whole speakers.
    """

    def __init__(self, *, architecture="cnn", epochs=40, batch_size=32, learning_rate=1e-3, width=64,
                 dropout=0.3, weight_decay=1e-4, patience=8, monitor="val_loss", validation_speakers=0.15,
                 refit_full=False, refit_networks=1, keep_validation_network=False, refit_schedule="constant",
                 spec_augment=True, input_noise=0.0, mixup=0.0, label_smoothing=0.0, schedule="plateau",
                 warmup_epochs=0, averaging="none", average_epochs=5, utterance_norm=False, pooling="mean_max",
                 frame_pool=1, best_epoch_ties="first", validation_draw="random", precision="float32", seed=0):
        self.architecture = architecture
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.width = width
        self.dropout = dropout
        self.patience = patience
        self.monitor = monitor
        self.weight_decay = weight_decay
        self.refit_full = refit_full
        self.refit_networks = refit_networks
        self.keep_validation_network = keep_validation_network
        self.refit_schedule = refit_schedule
        self.validation_speakers = validation_speakers
        self.spec_augment = spec_augment
        self.input_noise = input_noise
        self.mixup = mixup
        self.label_smoothing = label_smoothing
        self.schedule = schedule
        self.warmup_epochs = warmup_epochs
        self.averaging = averaging
        self.average_epochs = average_epochs
        self.utterance_norm = utterance_norm
        self.pooling = pooling
        self.frame_pool = frame_pool
        self.best_epoch_ties = best_epoch_ties
        self.validation_draw = validation_draw
        self.precision = precision
        self.seed = seed

    # -- data plumbing
    def _frame_values(self, X: FrameBatch) -> np.ndarray:
        """Frame values, each utterance standardised over its own real frames when `utterance_norm`."""
        values = X.values.astype(np.float32)
        if not self.utterance_norm:
            return values
        mask = X.mask()[:, :, None]
        count = np.maximum(mask.sum(axis=1, keepdims=True), 1.0)
        mean = (values * mask).sum(axis=1, keepdims=True) / count
        std = np.sqrt((((values - mean) * mask) ** 2).sum(axis=1, keepdims=True) / count)
        return (values - mean) / np.maximum(std, 1e-3) * mask

    def _arrays(self, X) -> list[np.ndarray]:
        if isinstance(X, FrameBatch):
            values = (self._frame_values(X) - self.mean_) / self.scale_
            arrays = list(pool_frames(values, X.mask(), self.frame_pool))
            if X.utterance is not None:  # fusion: the utterance statistics, scaled by training rows too
                vectors = np.asarray(X.utterance, dtype=np.float32)
                arrays.append((vectors - self.utterance_mean_) / self.utterance_scale_)
            return arrays
        return [((np.asarray(X, dtype=np.float32) - self.mean_) / self.scale_)]

    def _fit_scaler(self, X) -> None:
        """Standardisation statistics from the rows given (the training rows only)."""
        if isinstance(X, FrameBatch):
            mask = X.mask().astype(bool)
            real = self._frame_values(X)[mask].astype(np.float64)  # training frames only, padding excluded
            if X.utterance is not None:
                vectors = np.asarray(X.utterance, dtype=np.float64)
                self.utterance_mean_ = vectors.mean(axis=0).astype(np.float32)
                self.utterance_scale_ = np.maximum(vectors.std(axis=0), 1e-6).astype(np.float32)
        else:
            real = np.asarray(X, dtype=np.float64)
        self.mean_ = real.mean(axis=0).astype(np.float32)
        self.scale_ = np.maximum(real.std(axis=0), 1e-6).astype(np.float32)

    def _split_validation(self, targets: np.ndarray, groups) -> tuple[np.ndarray, np.ndarray]:
        n_rows = len(targets)
        if groups is None or self.validation_speakers <= 0:
            return np.arange(n_rows), np.array([], dtype=int)
        groups = np.asarray(groups)
        speakers = np.unique(groups)
        n_val = int(round(len(speakers) * self.validation_speakers))
        if len(speakers) < 3 or n_val < 1:
            return np.arange(n_rows), np.array([], dtype=int)
        rng = np.random.default_rng(self.seed)
        chosen = rng.choice(speakers, size=n_val, replace=False)
        if self.validation_draw == "class_covering":
            chosen = class_covering_draw(chosen, rng, targets, groups)
        is_val = np.isin(groups, chosen)
        train, val = np.flatnonzero(~is_val), np.flatnonzero(is_val)
        assert_speaker_disjoint(groups[train], groups[val])
        self.validation_speakers_ = sorted(str(s) for s in chosen)
        return train, val

    def _network(self, input_shapes, n_classes: int):
        keras = keras_module()
        previous = keras.config.dtype_policy()
        keras.config.set_dtype_policy(self.precision)  # the layers built now compute in it; restored below
        try:
            return self._build_network(keras, input_shapes, n_classes)
        finally:
            keras.config.set_dtype_policy(previous)

    def _build_network(self, keras, input_shapes, n_classes: int):
        inputs = [keras.Input(shape=shape) for shape in input_shapes]
        # Gaussian noise on the standardised first input while training (a regulariser for the small corpora).
        noisy = [keras.layers.GaussianNoise(self.input_noise)(inputs[0]), *inputs[1:]] if self.input_noise else inputs
        options = {} if self.pooling == "mean_max" else {"pooling": self.pooling}  # the default graph as before
        outputs = ARCHITECTURES[self.architecture](keras, noisy, n_classes, self.width, self.dropout, **options)
        model = keras.Model(inputs, outputs, name=self.architecture)
        optimizer = keras.optimizers.AdamW(self.learning_rate, weight_decay=self.weight_decay)
        loss = (keras.losses.CategoricalCrossentropy(label_smoothing=self.label_smoothing) if self._one_hot()
                else "sparse_categorical_crossentropy")
        # validation UAR only where it is monitored: the registered graph and its metrics stay as they were
        metrics = ["accuracy", *([_uar_metric(keras)(n_classes)] if self.monitor == "val_uar" else [])]
        model.compile(optimizer=optimizer, loss=loss, metrics=metrics)
        return model

    def _mode(self) -> str:
        """Whether the monitor improves downwards (a loss) or upwards (accuracy, UAR); Keras cannot tell for UAR."""
        return "min" if self.monitor.endswith("loss") else "max"

    def _one_hot(self) -> bool:
        """Soft targets (mixup, label smoothing) need one-hot labels; otherwise the sparse loss as before."""
        return self.mixup > 0 or self.label_smoothing > 0

    def _mix(self, arrays, targets, weights, rng: np.random.Generator):
        """Mixup of a training batch: each row blended with another row of the same batch, targets alike."""
        if self.mixup <= 0:
            return arrays, targets, weights
        n = len(targets)
        lam = rng.beta(self.mixup, self.mixup, size=n).astype(np.float32)
        lam = np.maximum(lam, 1 - lam)  # the row keeps the larger share, so its own length and mask still apply
        partner = rng.permutation(n)
        mixed = []
        for index, a in enumerate(arrays):
            if index == 1 and arrays[0].ndim == 3:  # frame inputs are (values, mask[, utterance vector])
                mixed.append(np.maximum(a, a[partner]))  # the frame mask: real where either row is
                continue
            share = lam.reshape((n,) + (1,) * (a.ndim - 1))
            mixed.append(share * a + (1 - share) * a[partner])
        targets = lam[:, None] * targets + (1 - lam[:, None]) * targets[partner]
        return mixed, targets, lam * weights + (1 - lam) * weights[partner]

    def _augment(self, arrays: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
        """SpecAugment-style time and frequency masks on a copy of the training inputs."""
        if not self.spec_augment or len(arrays) == 1:
            return arrays
        values, mask, rest = arrays[0].copy(), arrays[1], arrays[2:]
        n, t, d = values.shape
        for row in range(n):
            length = int(mask[row].sum())
            width_t = int(rng.integers(0, max(1, length // 8)))
            start_t = int(rng.integers(0, max(1, length - width_t)))
            values[row, start_t:start_t + width_t] = 0.0
            width_f = int(rng.integers(0, 9))
            start_f = int(rng.integers(0, N_MELS_IN_FRAMES - width_f))
            values[row, :, start_f:start_f + width_f] = 0.0
        return [values, mask, *rest]

    # -- scikit-learn API
    def fit(self, X, y, groups=None):
        """Train; `groups` (speaker per row) makes the early-stopping set speaker-disjoint."""
        check_choices(self.get_params())
        if self.pooling != "mean_max" and self.architecture not in _pooling_architectures():
            raise ValueError(f"{self.architecture!r} does not pool frame statistics; "
                             f"pooling applies to {_pooling_architectures()}")
        keras = keras_module()
        keras.utils.set_random_seed(self.seed)
        self.validation_speakers_ = []
        self.encoder_ = LabelEncoder().fit(y)
        self.classes_ = self.encoder_.classes_
        targets = self.encoder_.transform(y)
        train, val = self._split_validation(targets, groups)
        self._fit_scaler(X[train])
        arrays = self._arrays(X)
        self.input_shapes_ = [a.shape[1:] for a in arrays]
        self.model_ = self._network(self.input_shapes_, len(self.classes_))
        history = self._train(keras, arrays, targets, train, val, self.epochs)
        self.extra_models_ = []
        if self.refit_full and len(val):
            # The held-out speakers chose the epoch count; now train afresh on every training speaker: one network,
            # or `refit_networks` of them (the first on `seed`) whose probabilities predict_proba averages.
            best = best_epoch(history, self.monitor, self.best_epoch_ties) + 1
            # With `keep_validation_network`, the early-stopped network (best epoch restored) is the first of them.
            everyone = np.concatenate([train, val])
            rates = self._replayed_rates(history, best)
            networks = [self.model_] if self.keep_validation_network else []
            for index in range(len(networks), max(1, int(self.refit_networks))):
                seed = network_seed(self.seed, index)
                keras.utils.set_random_seed(seed)
                self.model_ = self._network(self.input_shapes_, len(self.classes_))
                self._train(keras, arrays, targets, everyone, np.array([], dtype=int), best, seed=seed, rates=rates)
                networks.append(self.model_)
            self.model_, self.extra_models_ = networks[0], networks[1:]
            history["refit_epochs"] = [float(best)]
        self.history_ = history
        self.epochs_trained_ = len(history.get("loss", []))
        return self

    def _replayed_rates(self, history: dict, epochs: int) -> list[float] | None:
        """With `refit_schedule="replay"`, the learning rate of each of the validation pass's first `epochs` epochs
        (halved on its plateaus), for the retrained networks; None: they train at the base rate throughout."""
        if self.refit_schedule == "constant" or self.schedule != "plateau":
            return None
        # the history logs each epoch's rate after the plateau callback, i.e. the rate of the next epoch
        return [float(self.learning_rate), *history.get("learning_rate", [])][:epochs]

    def _train(self, keras, arrays, targets, train, val, epochs: int, seed: int | None = None,
               rates: list[float] | None = None) -> dict[str, list[float]]:
        weights = compute_class_weight("balanced", classes=np.unique(targets[train]), y=targets[train])
        class_weight = np.zeros(len(self.classes_), dtype=np.float32)
        class_weight[np.unique(targets[train])] = weights
        one_hot = self._one_hot()
        batches = _training_batches(keras)(
            [a[train] for a in arrays], targets[train], class_weight, self.batch_size,
            augment=self._augment, seed=self.seed if seed is None else seed, one_hot=one_hot, mix=self._mix,
        )
        val_targets = np.eye(len(self.classes_), dtype=np.float32)[targets[val]] if one_hot else targets[val]
        validation = ([a[val] for a in arrays], val_targets) if len(val) else None
        callbacks = []
        if self.schedule == "cosine":
            callbacks.append(keras.callbacks.LearningRateScheduler(self._cosine(epochs)))
        elif rates:
            callbacks.append(keras.callbacks.LearningRateScheduler(lambda e, _lr: rates[min(e, len(rates) - 1)]))
        elif validation is not None:
            callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor=self.monitor, factor=0.5, mode=self._mode(),
                                                               patience=max(1, self.patience // 2)))
        averager = None
        if self.averaging == "swa":
            averager = _weight_averager(keras)(self.monitor, self.average_epochs, validation is not None)
            callbacks.append(averager)
        if validation is not None and self.best_epoch_ties == "lowest_loss" and not self.monitor.endswith("loss"):
            callbacks.append(_tie_breaking_early_stopping(keras)(self.monitor, self.patience,
                                                                 restore=averager is None))
        elif validation is not None:
            callbacks.append(keras.callbacks.EarlyStopping(monitor=self.monitor, patience=self.patience,
                                                           mode=self._mode(), restore_best_weights=averager is None))
        result = self.model_.fit(batches, epochs=epochs, validation_data=validation, callbacks=callbacks,
                                 verbose=0)
        history = {key: [float(v) for v in values] for key, values in result.history.items()}
        if averager is not None:
            history["averaged_epochs"] = [float(e) for e in averager.averaged_epochs]
        return history

    def _cosine(self, epochs: int):
        """Linear warm-up over `warmup_epochs`, then cosine decay to zero at the last epoch."""
        base, warmup = self.learning_rate, self.warmup_epochs

        def rate(epoch: int, _current=None) -> float:
            if epoch < warmup:
                return base * (epoch + 1) / (warmup + 1)
            progress = (epoch - warmup) / max(1, epochs - warmup)
            return float(base * 0.5 * (1 + np.cos(np.pi * progress)))

        return rate

    def predict_proba(self, X) -> np.ndarray:
        arrays = self._arrays(X)
        probabilities = np.mean([np.asarray(network.predict(arrays, batch_size=256, verbose=0), dtype=np.float64)
                                 for network in [self.model_, *self.extra_models_]], axis=0)
        return probabilities / probabilities.sum(axis=1, keepdims=True)

    def predict(self, X) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    # -- pickling: weights as arrays, the network rebuilt from the parameters
    def __getstate__(self):
        state = self.__dict__.copy()
        if "model_" in state:
            state["model_"] = [np.asarray(w) for w in self.model_.get_weights()]
        state["extra_models_"] = [[np.asarray(w) for w in m.get_weights()] for m in state.get("extra_models_", [])]
        return state

    def __setstate__(self, state):
        state.setdefault("precision", "float32")  # models saved before the switch existed
        weights, extra = state.get("model_"), state.get("extra_models_", [])
        self.__dict__.update(state)
        if weights is not None:
            self.model_ = self._network(self.input_shapes_, len(self.classes_))
            self.model_.set_weights(weights)
        self.extra_models_ = []
        for network_weights in extra:
            self.extra_models_.append(self._network(self.input_shapes_, len(self.classes_)))
            self.extra_models_[-1].set_weights(network_weights)


# Training-recipe switches, off by default (see bench/benchmarks/deep_recipe.py for their ablation):
# mixup (Beta alpha), label smoothing, a warm-up + cosine schedule instead of halving on plateaus,
# averaging of the weights of the epochs up to the best one ("swa"), per-utterance frame normalisation,
# the statistics pooled over the frames (POOLINGS), the number of retrained networks averaged, the early-stopped
# network kept as the first of them, and the retrained networks replaying the validation pass's learning rates.
RECIPE_SWITCHES = {"mixup": 0.0, "label_smoothing": 0.0, "schedule": "plateau", "warmup_epochs": 0,
                   "averaging": "none", "average_epochs": 5, "utterance_norm": False, "pooling": "mean_max",
                   "refit_networks": 1, "keep_validation_network": False, "refit_schedule": "constant",
                   "best_epoch_ties": "first", "validation_draw": "random"}
SCHEDULES, AVERAGING, REFIT_SCHEDULES = ("plateau", "cosine"), ("none", "swa"), ("constant", "replay")
MONITORS = ("val_accuracy", "val_loss", "val_uar")  # the validation speakers' score that picks the best epoch
EPOCH_TIES = ("first", "lowest_loss")  # which of the epochs tied on the best validation score is the best
# How the validation speakers are drawn from the training speakers: at random, or at random among the draws whose
# validation and training sides both hold every class (the first such draw; the random draw itself when it does).
VALIDATION_DRAWS = ("random", "class_covering")
# Keras dtype policies a network may train in. "mixed_bfloat16": layers compute in bfloat16 and keep float32 weights
# (the class probabilities and the loss stay float32); meant for GPUs with bfloat16 units. Not a recipe switch: on the
# 2-core CPU it is slower (bench/benchmarks/deep_models.py --param precision=mixed_bfloat16 measures it).
PRECISIONS = ("float32", "mixed_bfloat16")
# Every network reading frames sees 40 ms steps (4 frames averaged, `pool_frames`), and averages three networks:
# validation speakers pick the epoch count, then three networks retrain on every training speaker and
# `predict_proba` averages their probabilities (the mlp's recipe). Chosen on inner folds (all outer folds, seeds 0
# and 1) against each model's earlier recipe at 20 ms steps, one network: RAVDESS +0.004 (lstm) to +0.056 (bilstm),
# URDU +0.029 (transformer) to +0.096 (cnn2d), at 1.0x to 1.8x the fit time. 40 ms steps alone lose on 6 of 8 models
# (mean -0.015); the averaging adds about +0.04 on top. (20 ms against 10 ms steps, earlier: -0.003 on RAVDESS, +0.038
# on URDU, at a third of the fit time.) See bench/benchmarks/deep_recipe.md, "Averaging refitted frame models".
FRAME_RECIPE = {"frame_pool": 4, "refit_full": True, "refit_networks": 3}
# Every deep model picks its best epoch (early stopping, plateau halving, the refit epoch count) by the validation
# speakers' UAR, and among epochs tied on it takes the one with the lowest validation loss. Before (to the versions
# below), it took the earliest epoch with the best validation accuracy: URDU's four validation speakers often lack
# emotions, accuracy there rewards the majority class, and refitted networks trained a median of 2-7 epochs, often 1.
# Inner folds (first inner split of every outer training fold, seeds 0 and 1): URDU +0.024 over the 9 deep models
# (each >= 0; cnn +0.087), RAVDESS +0.002 (cnn_lstm -0.014 the most lost), inside the rule fixed before the RAVDESS
# runs (mean >= -0.005, none below -0.02). See bench/benchmarks/deep_recipe.md, "Which epoch is the best".
BEST_EPOCH = {"monitor": "val_uar", "best_epoch_ties": "lowest_loss"}


def check_choices(params: dict) -> None:
    """Refuse a deep model's setting outside its choices (schedule, monitor, ...): at a suite's load, before any fit,
    and again in `fit`."""
    choices = {"schedule": SCHEDULES, "averaging": AVERAGING, "precision": PRECISIONS, "monitor": MONITORS,
               "refit_schedule": REFIT_SCHEDULES, "best_epoch_ties": EPOCH_TIES,
               "validation_draw": VALIDATION_DRAWS, "pooling": tuple(POOLINGS)}
    for key, allowed in choices.items():
        if key in params and params[key] not in allowed:
            raise ValueError(f"{key} must be one of {', '.join(allowed)}, not {params[key]!r}")


def _register(name: str, description: str, input: str, version: int = 1, **defaults) -> None:
    # Sized for the 2-core CPU: a RAVDESS fold (1,200 training utterances) in about a minute or two.
    reads_frames = input in ("frames", "fusion")
    params = {"epochs": 30, "batch_size": 32, "learning_rate": 1e-3, "width": 64, "dropout": 0.3, "patience": 8,
              "weight_decay": 1e-4, "validation_speakers": 0.15, "refit_full": False, "spec_augment": reads_frames,
              "input_noise": 0.0} | BEST_EPOCH | (FRAME_RECIPE if reads_frames else {}) | defaults

    def factory(*, seed: int, **kwargs) -> DeepClassifier:
        return DeepClassifier(architecture=name, seed=seed, **kwargs)

    def search_space(trial) -> dict:
        return {
            "learning_rate": trial.suggest_float("learning_rate", 1e-4, 3e-3, log=True),
            "width": trial.suggest_categorical("width", [32, 64, 128]),
            "dropout": trial.suggest_float("dropout", 0.1, 0.5),
        }

    register_model(name, family="deep", input=input, description=description, defaults=params,
                   search_space=search_space, fit_groups=True, budget_params=("epochs", "patience"),
                   version=version, optional={k: v for k, v in {**RECIPE_SWITCHES, "precision": "float32"}.items()
                                              if k not in params})(factory)


# The MLP is cheap, so it can afford a second pass: validation speakers pick the epoch
# count, then it retrains on every training speaker (measured +0.02 UAR on RAVDESS).
# Gaussian noise (0.3 of a standard deviation) on its inputs: +0.018 UAR on RAVDESS, +0.047 on URDU.
# version 2: three networks retrained (`network_seed`), their probabilities averaged. Inner folds (all outer folds,
# seeds 0-2): RAVDESS +0.018, on every fold (5 networks +0.021); URDU -0.009 (5: -0.005; +0.008 under a first
# seeding: inside its noise); at 1.7x the fit time (5: 2.5x, which the full suite's 120-minute budget cannot pay).
# See bench/benchmarks/deep_recipe.md. version 3 (every deep model's next version): BEST_EPOCH.
_register("mlp", "multilayer perceptron on the utterance functionals", "functionals", version=3, width=128,
          dropout=0.5, epochs=100, patience=15, validation_speakers=0.2, refit_full=True, refit_networks=3,
          input_noise=0.3)
# version 2: FRAME_RECIPE (40 ms steps, three refitted networks averaged; above); 3: BEST_EPOCH.
_register("cnn", "1-D convolutions over time on the frame features", "frames", version=3)
# version 2: pooled input, per-frame layer norm, frequency flattened instead of averaged; 3: 40 ms input cells;
# 4: a 64-wide head and dropout 0.1 (v3's 16-wide head under dropout 0.3 reached 0.26 training accuracy;
# inner-fold UAR 0.268 -> 0.463 on RAVDESS, see bench/benchmarks/deep_recipe.py); 5: FRAME_RECIPE; 6: BEST_EPOCH.
_register("cnn2d", "2-D convolutions on the log-mel spectrogram", "frames", version=6, width=16, dropout=0.1)
# version 2: 128 wide. On RAVDESS inner folds (20 ms steps) width 128 gave +0.042 over all 6 outer folds (seeds 0 and 1;
# folds 0 and 1 also seed 2: +0.056) and +0.050 on URDU's inner folds, at 3.5x the fit time; cnn_lstm gained on
# RAVDESS but lost 0.048 on URDU, so it stays 64 wide (bench/benchmarks/deep_recipe.md, "At 20 ms steps").
# version 3: FRAME_RECIPE; a tie on RAVDESS (+0.004, 3 of 6 folds), +0.043 on URDU, kept so that every frame model
# trains one recipe. version 4: BEST_EPOCH.
_register("lstm", "LSTM over the frame features", "frames", version=4, width=128)
# version 2: 128 wide. On RAVDESS inner folds (outer folds 0 and 1, seeds 0 and 1) width 128 gave 0.457 against
# 0.355 at 64 (both folds gained), at 3.8x the fit time; URDU inner folds: 0.562 against 0.571 (no gain, no loss
# beyond its spread). Width 32 lost 0.08. (cnn: 128 gave nothing, 0.490 against 0.491.)
# version 3: FRAME_RECIPE; 4: BEST_EPOCH.
_register("gru", "GRU over the frame features", "frames", version=4, width=128)
# version 2 (each): FRAME_RECIPE; 3: BEST_EPOCH.
_register("bilstm", "bidirectional LSTM over the frame features", "frames", version=3)
_register("cnn_lstm", "convolutional front end feeding an LSTM", "frames", version=3)
_register("transformer", "small Transformer encoder with attention pooling", "frames", version=3)
_register("fusion", "feature fusion: CNN on the frames joined with the utterance functionals", "fusion", version=3)
