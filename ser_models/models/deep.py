"""Deep baselines on Keras 3 with the JAX backend, behind the scikit-learn classifier API.

Every network is built by one function per architecture (a registry, not an
if-chain) and trained by the same `DeepClassifier`: standardisation from the
training rows, a validation set of whole training speakers for early stopping
and learning-rate reduction, class weights, fixed seeds, SpecAugment-style
masks on training batches only.
"""

from __future__ import annotations

import logging

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.preprocessing import LabelEncoder

from ser_models.models.architectures import ARCHITECTURES, N_MELS_IN_FRAMES, pooling_architectures
from ser_models.models.compiled_fit import CompiledFit, class_weights
from ser_models.models.keras_runtime import keras_module, own_random_draws, seed_keras
from ser_models.models.network_inputs import PREDICT_BATCH, NetworkInputs
from ser_models.models.recipe import BEST_EPOCH, FRAME_RECIPE, LOOP_DEFAULT, RECIPE_SWITCHES, check_choices
from ser_models.models.registry import register_model
from ser_models.models.training import (
    best_epoch,
    class_covering_draw,
    network_seed,
    ordered_batches,
    tie_breaking_early_stopping,
    training_batches,
    uar_metric,
    weight_averager,
)
from ser_models.protocols import assert_speaker_disjoint

log = logging.getLogger(__name__)


class DeepClassifier(CompiledFit, NetworkInputs, ClassifierMixin, BaseEstimator):
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
                 frame_pool=1, best_epoch_ties="first", validation_draw="random", precision="float32", loop="keras",
                 length_buckets=0, seed=0):
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
        self.loop = loop
        self.length_buckets = length_buckets
        self.seed = seed

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
        metrics = ["accuracy", *([uar_metric(keras)(n_classes)] if self.monitor == "val_uar" else [])]
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
        if self.pooling != "mean_max" and self.architecture not in pooling_architectures():
            raise ValueError(f"{self.architecture!r} does not pool frame statistics; "
                             f"pooling applies to {pooling_architectures()}")
        keras = keras_module()
        try:
            with own_random_draws():
                return self._fit(keras, X, y, groups)
        finally:
            self._drop_kept_inputs()

    def _fit(self, keras, X, y, groups):
        seed_keras(keras, self.seed)
        self.validation_speakers_ = []
        self.encoder_ = LabelEncoder().fit(y)
        self.classes_ = self.encoder_.classes_
        targets = self.encoder_.transform(y)
        train, val = self._split_validation(targets, groups)
        self._fit_scaler(X, train)
        self._keep_inputs(X)
        self._set_input_shapes(X, train)
        self.model_ = self._network(self.input_shapes_, len(self.classes_))
        if self.loop == "compiled":
            history = self._fit_compiled(keras, X, targets, train, val)
        else:
            history = self._fit_keras(keras, X, targets, train, val)
        self.history_ = history
        self.epochs_trained_ = len(history.get("loss", []))
        return self

    def _fit_keras(self, keras, X, targets, train, val) -> dict:
        """The loop before the compiled one: Keras' `fit` over batches drawn in Python, one network at a time."""
        history = self._train(keras, X, targets, train, val, self.epochs)
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
                seed_keras(keras, seed)
                self.model_ = self._network(self.input_shapes_, len(self.classes_))
                self._train(keras, X, targets, everyone, np.array([], dtype=int), best, seed=seed, rates=rates)
                networks.append(self.model_)
            self.model_, self.extra_models_ = networks[0], networks[1:]
            history["refit_epochs"] = [float(best)]
        return history

    def _replayed_rates(self, history: dict, epochs: int) -> list[float] | None:
        """With `refit_schedule="replay"`, the learning rate of each of the validation pass's first `epochs` epochs
        (halved on its plateaus), for the retrained networks; None: they train at the base rate throughout."""
        if self.refit_schedule == "constant" or self.schedule != "plateau":
            return None
        # the history logs each epoch's rate after the plateau callback, i.e. the rate of the next epoch
        return [float(self.learning_rate), *history.get("learning_rate", [])][:epochs]

    def _train(self, keras, X, targets, train, val, epochs: int, seed: int | None = None,
               rates: list[float] | None = None) -> dict[str, list[float]]:
        class_weight = class_weights(targets[train], len(self.classes_))
        one_hot = self._one_hot()
        def read(rows):
            return self._rows(X, rows)

        lengths = np.asarray(X.lengths)[train] if self.length_step_ else None
        batches = training_batches(keras)(
            read, train, targets[train], class_weight, self.batch_size, augment=self._augment,
            seed=self.seed if seed is None else seed, one_hot=one_hot, mix=self._mix, lengths=lengths,
            pool_batches=self.length_buckets,
        )
        val = self._sorted_by_length(X, val)
        val_targets = np.eye(len(self.classes_), dtype=np.float32)[targets[val]] if one_hot else targets[val]
        validation = ordered_batches(keras)(read, val, val_targets) if len(val) else None
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
            averager = weight_averager(keras)(self.monitor, self.average_epochs, validation is not None)
            callbacks.append(averager)
        if validation is not None and self.best_epoch_ties == "lowest_loss" and not self.monitor.endswith("loss"):
            callbacks.append(tie_breaking_early_stopping(keras)(self.monitor, self.patience,
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
        """Class probabilities, the networks' mean; rows read PREDICT_ROWS at a time (or a batch at a time, by
        length: `_prediction_batches`), predicted 256 at a time."""
        probabilities = np.zeros((len(X), len(self.classes_)))
        for rows, arrays in self._prediction_batches(X):
            probabilities[rows] = np.mean([np.asarray(network.predict(arrays, batch_size=PREDICT_BATCH, verbose=0),
                                                      dtype=np.float64)
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
        state.setdefault("precision", "float32")  # models saved before the switches existed
        state.setdefault("loop", "keras")
        state.setdefault("length_buckets", 0)
        weights, extra = state.get("model_"), state.get("extra_models_", [])
        self.__dict__.update(state)
        if weights is not None:
            self.model_ = self._network(self.input_shapes_, len(self.classes_))
            self.model_.set_weights(weights)
        self.extra_models_ = []
        for network_weights in extra:
            self.extra_models_.append(self._network(self.input_shapes_, len(self.classes_)))
            self.extra_models_[-1].set_weights(network_weights)


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
                   version=version, optional={k: v for k, v in {**RECIPE_SWITCHES, **LOOP_DEFAULT}.items()
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
# The encoder's layer-weighting head trains the MLP's recipe (above), as one model of its own.
_register("layer_weighted", "softmax-weighted sum of a speech encoder's layers, then an MLP (SUPERB, EmoBox)",
          "layers", width=128, dropout=0.5, epochs=100, patience=15, validation_speakers=0.2, refit_full=True,
          refit_networks=3, input_noise=0.3)
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
