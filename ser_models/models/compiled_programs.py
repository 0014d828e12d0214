"""The compiled programs of the deep models' training loop: STEPS_PER_CALL training steps as one XLA program
(unrolled), with SpecAugment masks and mixup drawn on the device inside each step, the same program mapped over
several networks at once (`vmap`), and the prediction of a chunk of rows. Built once per network configuration and
input shape, and reused by every later fit of the process (other folds, seeds and networks): a new network of the
same configuration only brings new weights, which the programs take as arguments (Keras' stateless API)."""

from __future__ import annotations

import threading
from typing import NamedTuple

from ser_models.models.keras_runtime import keras_module

STEPS_PER_CALL = 16  # training steps per compiled call: a RAVDESS epoch (about 32 batches) takes 2 or 3 calls
TAIL_STEPS = 4  # an epoch's batches past the last full call go in calls of this many steps (less padding computed)
PREDICT_CHUNK = 256  # validation rows per compiled prediction call
DEVICE_ROWS = 512  # a fit's rows on the device are padded to a multiple of this, so that folds share programs

_cache: dict[tuple, Programs] = {}
_lock = threading.Lock()


class NetworkState(NamedTuple):
    """One network's training state as arrays: trainable weights, other variables (the seed generators' states of
    dropout and noise layers), the optimizer's variables (its step count, learning rate, moments)."""

    trainable: list
    fixed: list
    optimizer: list


class Programs(NamedTuple):
    train: object  # (state, data, batches, learning_rate) -> (state, sums): one network, its batches' steps over
    # the rows of `data` the batches name (rows, labels, class weights, 1 for a real row, random keys); the sums:
    # loss x rows, rows, class-weighted right answers, class weights, then right answers and rows per class
    train_many: object  # the same over a leading axis of networks (stacked states and batches)
    predict: object  # (trainable, fixed, data, rows) -> class probabilities of those rows of `data`
    learning_rate_index: int  # where the learning rate sits among the optimizer's variables


def network_state(network) -> NetworkState:
    """The arrays of a compiled Keras network, its optimizer built."""
    optimizer = network.optimizer
    if not optimizer.built:
        optimizer.build(network.trainable_variables)
    return NetworkState([v.value for v in network.trainable_variables],
                        [v.value for v in network.non_trainable_variables], [v.value for v in optimizer.variables])


def programs_for(key: tuple, network, *, n_classes: int, n_mels: int, spec_augment: bool, mixup: float,
                 label_smoothing: float) -> Programs:
    """The programs for networks like `network` (same configuration, as `key` says), built on the first call."""
    with _lock:
        if key not in _cache:
            _cache[key] = _build(network, n_classes=n_classes, n_mels=n_mels, spec_augment=spec_augment,
                                 mixup=mixup, label_smoothing=label_smoothing)
        return _cache[key]


def masked_spectrum(values, mask, key, n_mels: int):
    """SpecAugment on the device: per row, one time mask of up to an eighth of its real steps and one mask of up to
    8 of the first `n_mels` feature columns (the log-mel bands), set to zero (the training mean once standardised).
    The draws follow the host version's ranges: width in [0, max(1, length // 8)), start in [0, length - width)."""
    import jax
    import jax.numpy as jnp

    n, steps, dims = values.shape
    k_width, k_start, k_band, k_low = jax.random.split(key, 4)
    length = jnp.sum(mask, axis=1)
    width = jnp.floor(jax.random.uniform(k_width, (n,)) * jnp.maximum(1.0, jnp.floor(length / 8)))
    start = jnp.floor(jax.random.uniform(k_start, (n,)) * jnp.maximum(1.0, length - width))
    band = jax.random.randint(k_band, (n,), 0, 9).astype(jnp.float32)
    low = jnp.floor(jax.random.uniform(k_low, (n,)) * (n_mels - band))
    time = jnp.arange(steps, dtype=jnp.float32)[None, :]
    column = jnp.arange(dims, dtype=jnp.float32)[None, :]
    in_time = (time >= start[:, None]) & (time < (start + width)[:, None])
    in_band = (column >= low[:, None]) & (column < (low + band)[:, None])
    return jnp.where(in_time[:, :, None] | in_band[:, None, :], 0.0, values)


def mixed_rows(inputs: list, targets, weights, valid, key, alpha: float):
    """Mixup on the device: each real row blended with another real row of its batch (the larger share its own),
    targets and weights alike; frame masks are real where either row is. Padding rows stay weightless."""
    import jax
    import jax.numpy as jnp

    n = targets.shape[0]
    k_share, k_partner = jax.random.split(key)
    share = jax.random.beta(k_share, alpha, alpha, (n,))
    share = jnp.maximum(share, 1.0 - share)
    # a random order of the real rows, which come first in a batch: row i's partner is the i-th of them
    partner = jnp.argsort(jnp.where(valid > 0, jax.random.uniform(k_partner, (n,)), 2.0))
    mixed = []
    for index, a in enumerate(inputs):
        if index == 1 and inputs[0].ndim == 3:
            mixed.append(jnp.maximum(a, a[partner]))
            continue
        s = share.reshape((n,) + (1,) * (a.ndim - 1))
        mixed.append(s * a + (1.0 - s) * a[partner])
    targets = share[:, None] * targets + (1.0 - share[:, None]) * targets[partner]
    return mixed, targets, (share * weights + (1.0 - share) * weights[partner]) * valid


def _build(network, *, n_classes: int, n_mels: int, spec_augment: bool, mixup: float,
           label_smoothing: float) -> Programs:
    import jax
    import jax.numpy as jnp

    keras = keras_module()
    optimizer = network.optimizer
    if not optimizer.built:
        optimizer.build(network.trainable_variables)
    rate_index = next(i for i, v in enumerate(optimizer.variables) if v is optimizer._learning_rate)

    def loss_of(trainable, fixed, inputs, targets, weights, count):
        probabilities, fixed = network.stateless_call(trainable, fixed, inputs, training=True)
        rows = keras.losses.categorical_crossentropy(targets, probabilities, label_smoothing=label_smoothing)
        return jnp.sum(rows * weights) / jnp.maximum(count, 1.0), (fixed, probabilities)

    gradient = jax.value_and_grad(loss_of, has_aux=True)

    def step(state: NetworkState, batch, data):
        rows, labels, weights, valid, key = batch
        k_mask, k_mix = jax.random.split(key)
        inputs = [jnp.take(a, rows, axis=0) for a in data]
        if spec_augment and len(inputs) > 1:
            inputs[0] = masked_spectrum(inputs[0], inputs[1], k_mask, n_mels)
        targets = jax.nn.one_hot(labels, n_classes, dtype=jnp.float32)
        hard_weights = weights * valid
        if mixup > 0:
            inputs, targets, weights = mixed_rows(inputs, targets, weights, valid, k_mix, mixup)
        else:
            weights = hard_weights
        count = jnp.sum(valid)
        (loss, (fixed, probabilities)), grads = gradient(state.trainable, state.fixed, inputs, targets, weights, count)
        trainable, moments = optimizer.stateless_apply(state.optimizer, grads, state.trainable)
        stepped = NetworkState(list(trainable), list(fixed), list(moments))
        # a batch of padding only (the end of an epoch's last call) leaves the network as it was
        state = jax.tree.map(lambda new, old: jnp.where(count > 0, new, old), stepped, state)
        right = (jnp.argmax(probabilities, axis=-1) == labels).astype(jnp.float32)
        rows = jax.nn.one_hot(labels, n_classes, dtype=jnp.float32) * valid[:, None]
        return state, jnp.concatenate([jnp.stack([loss * count, count, jnp.sum(right * hard_weights),
                                                  jnp.sum(hard_weights)]), rows.T @ right, jnp.sum(rows, axis=0)])

    def train(state: NetworkState, data, batches, learning_rate):
        moments = list(state.optimizer)
        moments[rate_index] = jnp.asarray(learning_rate, dtype=moments[rate_index].dtype)
        state, total = NetworkState(state.trainable, state.fixed, moments), 0.0
        # the steps one after another in the program, not a loop (lax.scan): XLA's CPU backend runs a convolution
        # inside a while loop about 30x slower than outside one
        for index in range(batches[0].shape[0]):
            state, sums = step(state, jax.tree.map(lambda a, i=index: a[i], batches), data)
            total = total + sums
        return state, total

    def predict(trainable, fixed, data, rows):
        inputs = [jnp.take(a, rows, axis=0) for a in data]
        probabilities, _ = network.stateless_call(trainable, fixed, inputs, training=False)
        return probabilities

    return Programs(jax.jit(train), jax.jit(jax.vmap(train, in_axes=(0, None, 0, None))), jax.jit(predict),
                    rate_index)
