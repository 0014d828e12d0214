"""The deep models' training loop on compiled programs (`compiled_programs`): each call runs STEPS_PER_CALL batches
on the device, augmentation included; Python only shuffles, gathers the next call's rows, and applies the epoch rules
(`epoch_rules`) once per epoch. Several networks of one fit (the refitted ones) train as one program over stacked
weights, each with its own seed, batch order and augmentation draws."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ser_models.models.compiled_programs import (
    DEVICE_ROWS,
    PREDICT_CHUNK,
    STEPS_PER_CALL,
    TAIL_STEPS,
    NetworkState,
    network_state,
)
from ser_models.models.epoch_rules import EpochRules

KEEP_BYTES = 1 << 30  # a fit's scaled inputs are kept in memory up to this size, else read again for every call


class RowReader:
    """The network inputs of a fit's rows by position in `rows`. When they fit KEEP_BYTES they are read and scaled
    once and put on the device (padded to a multiple of DEVICE_ROWS rows, so that folds share compiled programs),
    and a call names its batches' rows; else every call reads its rows from the source (a feature store)."""

    def __init__(self, read: Callable[[np.ndarray], list[np.ndarray]], rows: np.ndarray):
        self.read, self.rows = read, np.asarray(rows)
        first = read(self.rows[:1])
        self.device = None
        if sum(a.nbytes for a in first) * len(self.rows) <= KEEP_BYTES:
            import jax

            size = -(-len(self.rows) // DEVICE_ROWS) * DEVICE_ROWS
            self.device = tuple(jax.device_put(a) for a in padded_rows(read(self.rows), size))

    def __call__(self, positions: np.ndarray) -> list[np.ndarray]:
        return self.read(self.rows[positions])


def padded_rows(arrays: list[np.ndarray], size: int) -> list[np.ndarray]:
    """Each array with zero rows appended up to `size` rows (float32)."""
    out = []
    for a in arrays:
        full = np.zeros((size,) + a.shape[1:], dtype=np.float32)
        full[: len(a)] = a
        out.append(full)
    return out


def _padded(values: np.ndarray, size: int, dtype) -> np.ndarray:
    out = np.zeros(size, dtype=dtype)
    out[: len(values)] = values
    return out


def epoch_calls(rows: int, batch_size: int) -> list[tuple[int, int]]:
    """(first row, steps) of each call of an epoch over `rows` rows: calls of STEPS_PER_CALL batches, then calls
    of TAIL_STEPS for the rest (the last one padded), so that at most TAIL_STEPS - 1 batches of padding are computed
    and every fold's epoch runs on the same two programs."""
    batches = -(-rows // batch_size)
    full = batches // STEPS_PER_CALL
    calls = [(i * STEPS_PER_CALL * batch_size, STEPS_PER_CALL) for i in range(full)]
    done = full * STEPS_PER_CALL
    calls += [(b * batch_size, TAIL_STEPS) for b in range(done, batches, TAIL_STEPS)]
    return calls


def call_batches(reader: RowReader, positions: np.ndarray, labels: np.ndarray, weights: np.ndarray,
                 batch_size: int, key, steps: int) -> tuple:
    """(data, batches) of one call: `steps` batches of the rows at `positions` in order, padding rows after them
    (weightless). `batches` = (rows of `data`, labels, class weights, 1 for a real row, random keys), each with
    leading axes (steps, batch); `data` is the fit's rows on the device, or this call's rows read from the source."""
    import jax

    size, real = steps * batch_size, len(positions)
    shape = (steps, batch_size)
    if reader.device is not None:
        data, rows = reader.device, _padded(positions, size, np.int32)
    else:
        data, rows = tuple(padded_rows(reader(positions), size)), np.arange(size, dtype=np.int32)
    batches = (rows.reshape(shape), _padded(labels[positions], size, np.int32).reshape(shape),
               _padded(weights[labels[positions]], size, np.float32).reshape(shape),
               (np.arange(size) < real).astype(np.float32).reshape(shape), jax.random.split(key, steps))
    return data, batches


def _stacked(items: list):
    import jax
    import jax.numpy as jnp

    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *items)


def _epoch(programs, state, reader, orders: list[np.ndarray], labels, weights, batch_size, keys, rate):
    """One epoch of every network (one order and key each); the summed (loss * rows, rows, right, weight, ...)."""
    import jax

    together = len(orders) > 1
    sums = []
    for call, (start, steps) in enumerate(epoch_calls(len(orders[0]), batch_size)):
        size = steps * batch_size
        parts = [call_batches(reader, order[start:start + size], labels, weights, batch_size,
                              jax.random.fold_in(key, call), steps) for order, key in zip(orders, keys, strict=True)]
        if together:  # the networks' rows on the device, or the rows each one's batches read, one after another
            on_device = reader.device is not None
            data = parts[0][0] if on_device else tuple(map(np.concatenate, zip(*[d for d, _ in parts], strict=True)))
            batches = [b if on_device else (b[0] + n * size, *b[1:]) for n, (_, b) in enumerate(parts)]
            state, part = programs.train_many(state, data, _stacked(batches), rate)
        else:
            state, part = programs.train(state, *parts[0], rate)
        sums.append(part)
    return state, np.sum(np.asarray(jax.device_get(sums), dtype=np.float64), axis=0)


def predict_rows(programs, state: NetworkState, chunks: list) -> np.ndarray:
    """Class probabilities of the validation chunks ((data, rows) each; padding rows included)."""
    import jax

    return np.concatenate([np.asarray(jax.device_get(programs.predict(state.trainable, state.fixed, data, rows)),
                                      dtype=np.float64) for data, rows in chunks])


def training_logs(sums: np.ndarray, *, uar: bool) -> dict:
    """An epoch's loss (mean over its rows), class-weighted accuracy and, with `uar`, UAR over the classes seen."""
    logs = {"loss": sums[0] / max(sums[1], 1.0), "accuracy": sums[2] / max(sums[3], 1e-12)}
    if uar:
        hits, counts = np.split(sums[4:], 2)
        logs["uar"] = float(np.mean(hits[counts > 0] / counts[counts > 0]))
    return logs


def validation_logs(probabilities: np.ndarray, labels: np.ndarray, *, smoothing: float, uar: bool) -> dict:
    """val_loss (cross-entropy, label smoothing as in training, Keras' clipping), val_accuracy and val_uar."""
    n_classes = probabilities.shape[1]
    targets = np.eye(n_classes)[labels] * (1 - smoothing) + smoothing / n_classes
    clipped = np.clip(probabilities, 1e-7, 1 - 1e-7)
    clipped = clipped / clipped.sum(axis=1, keepdims=True)
    predicted = probabilities.argmax(axis=1)
    logs = {"val_loss": float(np.mean(-(targets * np.log(clipped)).sum(axis=1))),
            "val_accuracy": float(np.mean(predicted == labels))}
    if uar:
        logs["val_uar"] = float(np.mean([np.mean(predicted[labels == c] == c) for c in np.unique(labels)]))
    return logs


def validation_chunks(reader: RowReader, positions: np.ndarray) -> list:
    """The validation rows as (data, rows) chunks of PREDICT_CHUNK rows, the last one padded (dropped later)."""
    chunks = []
    for start in range(0, len(positions), PREDICT_CHUNK):
        part = positions[start:start + PREDICT_CHUNK]
        if reader.device is not None:
            chunks.append((reader.device, _padded(part, PREDICT_CHUNK, np.int32)))
        else:
            chunks.append((tuple(padded_rows(reader(part), PREDICT_CHUNK)), np.arange(PREDICT_CHUNK, dtype=np.int32)))
    return chunks


def train_states(model, programs, states: list[NetworkState], reader: RowReader, train: np.ndarray,
                 labels: np.ndarray, class_weight: np.ndarray, epochs: int, seeds: list[int],
                 val: np.ndarray | None = None, rates: list[float] | None = None) -> tuple[list, dict]:
    """Train the networks whose `states` are given (one per seed; validation rows only with one network) for up to
    `epochs` epochs over the positions `train`; (their final states, the history of the epochs' logs)."""
    import jax

    has_validation = val is not None and len(val) > 0
    rules = EpochRules(model, epochs, has_validation, rates)
    rngs = [np.random.default_rng(seed) for seed in seeds]
    orders = [rng.permutation(len(train)) for rng in rngs]
    base_keys = [jax.random.key(seed) for seed in seeds]
    state = _stacked(states) if len(states) > 1 else states[0]
    chunks = validation_chunks(reader, val) if has_validation else []
    history: dict[str, list[float]] = {}
    for epoch in range(epochs):
        keys = [jax.random.fold_in(key, epoch) for key in base_keys]
        state, sums = _epoch(programs, state, reader, [train[o] for o in orders], labels, class_weight,
                             model.batch_size, keys, rules.rate(epoch))
        logs = training_logs(sums[0] if sums.ndim > 1 else sums, uar=model.monitor == "val_uar")
        if has_validation:
            probabilities = predict_rows(programs, state, chunks)[: len(val)]
            logs |= validation_logs(probabilities, labels[val], smoothing=model.label_smoothing,
                                    uar=model.monitor == "val_uar")
        stop = rules.end_epoch(epoch, logs, state)
        for name, value in logs.items():
            history.setdefault(name, []).append(float(value))
        orders = [rng.permutation(len(train)) for rng in rngs]
        if stop:
            break
    state = rules.final(state)
    if rules.averaging:
        history["averaged_epochs"] = [float(e) for e in rules.averaged_epochs]
    if len(states) == 1:
        return [state], history
    return [jax.tree.map(lambda leaf, i=i: leaf[i], state) for i in range(len(states))], history


def set_state(network, state: NetworkState) -> None:
    """Put trained arrays back into a Keras network (for predict, get_weights and pickling)."""
    for variable, value in zip(network.trainable_variables, state.trainable, strict=True):
        variable.assign(np.asarray(value))
    for variable, value in zip(network.non_trainable_variables, state.fixed, strict=True):
        variable.assign(np.asarray(value))


__all__ = ["RowReader", "network_state", "set_state", "train_states"]
