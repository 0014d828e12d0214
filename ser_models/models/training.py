"""Pieces of the deep models' training: seeds, validation draws, batches, the best epoch, weight averaging."""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)


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


def epoch_batches(rng: np.random.Generator, n_rows: int, batch_size: int, lengths: np.ndarray | None = None,
                  pool_batches: int = 0) -> list[np.ndarray]:
    """One epoch's batches of row positions: a random permutation cut into batches. With `pool_batches` > 1 (length
    buckets), each run of that many batches of the permutation is sorted by `lengths` before it is cut, so a batch
    holds utterances of similar lengths, and the batches are then shuffled. Every row is in exactly one batch."""
    order = rng.permutation(n_rows)
    if lengths is None or pool_batches <= 1:
        return [order[start:start + batch_size] for start in range(0, n_rows, batch_size)]
    pool, batches = pool_batches * batch_size, []
    for start in range(0, n_rows, pool):
        part = order[start:start + pool]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches += [part[first:first + batch_size] for first in range(0, len(part), batch_size)]
    return [batches[index] for index in rng.permutation(len(batches))]


def training_batches(keras):
    class TrainingBatches(keras.utils.PyDataset):
        """Shuffled training batches, augmentation redrawn for every batch, class weights as sample weights.
        `read(rows)` gives the network inputs of those rows of `rows`' source, so only a batch is in memory."""

        def __init__(self, read, rows, targets, class_weight, batch_size, *, augment, seed, one_hot=False, mix=None,
                     lengths=None, pool_batches=0):
            super().__init__()
            self.read, self.rows, self.targets, self.class_weight = read, rows, targets, class_weight
            self.batch_size, self.augment = batch_size, augment
            self.one_hot, self.mix = one_hot, mix
            self.lengths, self.pool_batches = lengths, pool_batches
            self.rng = np.random.default_rng(seed)
            self.batches = self._drawn()

        def _drawn(self):
            return epoch_batches(self.rng, len(self.targets), self.batch_size, self.lengths, self.pool_batches)

        def __len__(self):
            return int(np.ceil(len(self.targets) / self.batch_size))

        def __getitem__(self, index):
            rows = self.batches[index]
            inputs = self.augment(self.read(self.rows[rows]), self.rng)
            labels = self.targets[rows]
            weights = self.class_weight[labels]
            if self.one_hot:
                targets = np.eye(len(self.class_weight), dtype=np.float32)[labels]
                inputs, targets, weights = self.mix(inputs, targets, weights, self.rng)
                return tuple(inputs), targets, weights
            return tuple(inputs), labels, weights

        def on_epoch_end(self):
            self.batches = self._drawn()

    return TrainingBatches


def ordered_batches(keras):
    class OrderedBatches(keras.utils.PyDataset):
        """`rows` in order, `batch_size` at a time (the last batch shorter), read when asked: validation data with
        the batches Keras makes of arrays (32 rows), read one batch at a time."""

        def __init__(self, read, rows, targets, batch_size: int = 32):
            super().__init__()
            self.read, self.rows, self.targets, self.batch_size = read, rows, targets, batch_size

        def __len__(self):
            return int(np.ceil(len(self.rows) / self.batch_size))

        def __getitem__(self, index):
            part = slice(index * self.batch_size, (index + 1) * self.batch_size)
            return tuple(self.read(self.rows[part])), self.targets[part]

    return OrderedBatches


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


def uar_metric(keras):
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


def tie_breaking_early_stopping(keras):
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


def weight_averager(keras):
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
