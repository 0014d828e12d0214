"""Median fit seconds per fold of each deep model on real RAVDESS (and the device JAX sees).

    python -m bench.benchmarks.deep_models --data-root ../shared/data [--folds 0 1 2] [--model cnn lstm ...]

Trains each model with its registered defaults on the given EmoBox folds (20 training
actors, speaker-held-out early stopping) and prints fit seconds per fold, their
median, the epochs trained and the test UAR. Runs on whatever device JAX picks:
a GPU when one is visible, else the CPU.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from sklearn.metrics import balanced_accuracy_score

from bench.inputs import MODEL_INPUTS
from bench.runner import default_cache_dir
from ser_models.corpora import load_corpus
from ser_models.feature_cache import extract_features
from ser_models.models import model_names, model_spec
from ser_models.models.deep import keras_module
from ser_models.protocols import make_folds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=Path(os.environ.get("SER_DATA", "../shared/data")))
    parser.add_argument("--folds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--model", nargs="+", default=model_names("deep"))
    parser.add_argument("--budget", type=float, default=1.0, help="scale epochs and patience")
    args = parser.parse_args()

    keras = keras_module()
    import jax

    print(f"keras {keras.__version__} on {keras.backend.backend()}; JAX devices: {jax.devices()}")
    manifest = load_corpus("ravdess", args.data_root / "ravdess")
    features = extract_features(manifest, cache_dir=default_cache_dir(), n_jobs=os.cpu_count() or 1)
    y = features.manifest["emotion"].to_numpy()
    speakers = features.manifest["speaker"].to_numpy()
    folds = make_folds("emobox", features.manifest)
    for name in args.model:
        spec = model_spec(name)
        x = MODEL_INPUTS[spec.input](features.functionals, features.frames)
        seconds, scores, epochs = [], [], []
        for index in args.folds:
            train, test = folds[index].split(features.manifest)
            model = spec.build(seed=0, **spec.resolved_params(budget=args.budget))
            start = time.perf_counter()
            model.fit(x[train], y[train], groups=speakers[train])
            seconds.append(time.perf_counter() - start)
            scores.append(balanced_accuracy_score(y[test], model.predict(x[test])))
            epochs.append(model.epochs_trained_)
        print(f"{name:12} fit s/fold median {statistics.median(seconds):6.1f} "
              f"(folds: {', '.join(f'{s:.0f}' for s in seconds)}); epochs {epochs}; "
              f"UAR {statistics.mean(scores):.3f}", flush=True)


if __name__ == "__main__":
    main()
