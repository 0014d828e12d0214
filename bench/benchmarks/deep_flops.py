"""How far deep training runs from the machine's limit: per deep model, the FLOPs of its training steps (XLA's cost
analysis of the compiled forward and backward pass), the seconds they took, the achieved GFLOP/s, and this
machine's peak float32 GFLOP/s measured in the same run, under the same XLA thread setting.

    python -m bench.benchmarks.deep_flops --data-root ../shared/data [--model cnn lstm] [--fold 0]
        [--variant per-batch keras b8 compiled]

Each model is fitted once per variant (VARIANTS), side by side, in one process: Keras' `fit` over Python batches
reading and scaling each batch's rows (`per-batch`, the loop before issue 54) or indexing the fit's inputs computed
once (`keras`, `KEPT_BYTES`); the same with `length_buckets` 1 or 8 (`b1`, `b8`: each batch padded to its own
longest utterance; 8 also draws batches by length); and the compiled loop. Seconds per epoch: the fit's seconds over
its steps, times the batches of one epoch over the training fold (the fits train different epoch counts). Compile s:
what XLA spent compiling in the fit (programs the persistent cache did not hold); the fit seconds include it.
Speed-ups are against the first variant run. The FLOPs of `b1` and `b8` steps are counted at the corpus-wide length,
so their GFLOP/s is the rate of the padded work they stand in for.

Each model trains with its registered defaults on one EmoBox fold of RAVDESS (as `bench.benchmarks.deep_models`
does). Its training steps are counted from the fit itself: the early-stopped network's epochs over the training
speakers but the validation ones, then each refitted network's epochs over every training speaker. The FLOPs of one
step come from XLA's cost analysis of value_and_grad of the loss on one batch of the real inputs (the optimizer
update, the validation passes and the Python loop around the steps are left out, so the achieved figure is a lower
bound on what the device did and an upper bound on what the training loop wastes). Peak: a float32 matrix product
sized like a frame model's dense layer (batch x time rows, 128 wide) and a large one (2,048 square), best of 10.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import balanced_accuracy_score

from bench.runner import default_cache_dir
from ser_models.corpora import load_corpus
from ser_models.feature_cache import extract_features
from ser_models.model_inputs import MODEL_INPUTS
from ser_models.models import model_names, model_spec, network_inputs
from ser_models.models.architectures import TIME_ALIGNMENT
from ser_models.models.cpu_threads import xla_threads
from ser_models.models.keras_runtime import compile_counts, keras_module
from ser_models.models.network_inputs import KEPT_BYTES
from ser_models.protocols import make_folds

# variant: (loop, length_buckets, the fit's inputs computed once); "per-batch" reads and scales every batch's rows
VARIANTS = {"per-batch": ("keras", 0, False), "keras": ("keras", 0, True), "b1": ("keras", 1, True),
            "b8": ("keras", 8, True), "compiled": ("compiled", 0, True)}


def peak_gflops(rows: int, inner: int, columns: int, repeats: int = 10) -> float:
    """Best-of-`repeats` GFLOP/s of a float32 (rows x inner) @ (inner x columns) product, compiled once."""
    import jax
    import jax.numpy as jnp

    a = jnp.asarray(np.random.default_rng(0).standard_normal((rows, inner)), dtype=jnp.float32)
    b = jnp.asarray(np.random.default_rng(1).standard_normal((inner, columns)), dtype=jnp.float32)
    product = jax.jit(jnp.matmul)
    product(a, b).block_until_ready()
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        product(a, b).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2.0 * rows * inner * columns / best / 1e9


def step_flops(model, arrays: list[np.ndarray], n_classes: int) -> float:
    """XLA's FLOP count of one training step's forward and backward pass on one batch of `arrays`."""
    import jax

    keras = keras_module()
    network = model.model_
    batch = [np.asarray(a[: model.batch_size]) for a in arrays]
    targets = np.eye(n_classes, dtype=np.float32)[np.arange(len(batch[0])) % n_classes]
    trainable = [v.value for v in network.trainable_variables]
    fixed = [v.value for v in network.non_trainable_variables]

    def loss(trainable, fixed, inputs, targets):
        out, _ = network.stateless_call(trainable, fixed, inputs, training=True)
        return keras.ops.mean(keras.losses.categorical_crossentropy(targets, out))

    cost = jax.jit(jax.value_and_grad(loss)).lower(trainable, fixed, batch, targets).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return float(cost["flops"])


def training_steps(model, speakers: np.ndarray) -> int:
    """Steps the fit took (`speakers`: of its training rows): the early-stopped network on the training speakers but
    the validation ones, then each refitted network on all of them for the chosen epoch count."""
    first_rows = int((~np.isin(speakers, list(model.validation_speakers_))).sum())
    steps = model.epochs_trained_ * math.ceil(first_rows / model.batch_size)
    refits = model.history_.get("refit_epochs", [])
    if refits:
        networks = 1 + len(model.extra_models_)
        steps += networks * int(refits[0]) * math.ceil(len(speakers) / model.batch_size)
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=Path(os.environ.get("SER_DATA", "../shared/data")))
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument("--model", nargs="+", default=model_names("deep"))
    parser.add_argument("--variant", nargs="+", default=["per-batch", "keras", "b8", "compiled"], choices=VARIANTS)
    args = parser.parse_args()
    keras = keras_module()
    import jax

    manifest = load_corpus("ravdess", args.data_root / "ravdess")
    features = extract_features(manifest, cache_dir=default_cache_dir(), n_jobs=os.cpu_count() or 1, progress=False)
    y = features.manifest["emotion"].to_numpy()
    speakers = features.manifest["speaker"].to_numpy()
    train, test = make_folds("emobox", features.manifest)[args.fold].split(features.manifest)
    small, large = peak_gflops(32 * 80, 128, 128), peak_gflops(2048, 2048, 2048)
    print(f"keras {keras.__version__}, JAX devices {jax.devices()}, XLA threads {xla_threads() or 'default'}; "
          f"peak float32 GFLOP/s: {small:.1f} (2,560 x 128 @ 128 x 128), {large:.1f} (2,048 square)")
    print(f"{'model':12} {'variant':11} {'fit s':>6} {'compile s':>9} {'steps':>6} {'s/epoch':>7} {'GFLOP/step':>10} "
          f"{'GFLOP/s':>8} {'of small':>8} {'of large':>8} {'UAR':>6}")
    for name in args.model:
        spec = model_spec(name)
        x = MODEL_INPUTS[spec.input](features.functionals, features.frames, features.functional_names)
        per_epoch = {}
        for label in args.variant:
            loop, buckets, kept = VARIANTS[label]
            if buckets and name not in TIME_ALIGNMENT:  # networks read the corpus-wide length
                continue
            model = spec.build(seed=0, **spec.resolved_params(), loop=loop,
                               **({"length_buckets": buckets} if buckets else {}))
            network_inputs.KEPT_BYTES = KEPT_BYTES if kept else 0
            with compile_counts() as counts:
                start = time.perf_counter()
                model.fit(x[train], y[train], groups=speakers[train])
                seconds = time.perf_counter() - start
            network_inputs.KEPT_BYTES = KEPT_BYTES
            uar = balanced_accuracy_score(y[test], model.predict(x[test]))
            flops = step_flops(model, model._arrays(x[train]), len(model.classes_))
            steps = training_steps(model, speakers[train])
            achieved = flops * steps / seconds / 1e9
            per_epoch[label] = seconds / steps * math.ceil(len(train) / model.batch_size)
            print(f"{name:12} {label:11} {seconds:6.1f} {counts['compile_s']:9.1f} {steps:6d} {per_epoch[label]:7.2f} "
                  f"{flops / 1e9:10.3f} {achieved:8.2f} {achieved / small:8.1%} {achieved / large:8.1%} {uar:6.3f}",
                  flush=True)
        first, *others = per_epoch
        for label in others:
            print(f"{name:12} {label} speed-up per epoch over {first}: {per_epoch[first] / per_epoch[label]:.2f}x",
                  flush=True)


if __name__ == "__main__":
    main()
