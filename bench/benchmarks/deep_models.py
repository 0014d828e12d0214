"""Median fit seconds per fold of each deep model on real RAVDESS (and the device JAX sees).

    python -m bench.benchmarks.deep_models --data-root ../shared/data [--folds 0 1 2] [--model cnn lstm ...]
        [--xla-cache DIR | --xla-cache off] [--param precision=mixed_bfloat16 ...] [--json OUT.json]

Trains each model with its registered defaults on the given EmoBox folds (20 training
actors, speaker-held-out early stopping) and prints fit seconds per fold, their
median, the epochs trained, the test UAR, and per fit the programs JAX compiled, how
many of them the persistent cache served and the seconds XLA spent compiling. Runs on
whatever device JAX picks: a GPU when one is visible, else the CPU. `--xla-cache off`
times fits that compile everything; an empty DIR starts the cache cold. `--param KEY=VALUE` sets a
parameter of every model timed (a number, true/false or a word), e.g. `precision=mixed_bfloat16`. `--json` also
stores the figures (with the date, device, host and commit), which a suite's results page reads (`[report] timings`).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import statistics
import subprocess
import time
from datetime import date
from pathlib import Path

from sklearn.metrics import balanced_accuracy_score

from bench.runner import default_cache_dir
from ser_models.corpora import load_corpus
from ser_models.feature_cache import extract_features
from ser_models.model_inputs import MODEL_INPUTS
from ser_models.models import model_names, model_spec
from ser_models.models.keras_runtime import compile_counts, keras_module
from ser_models.protocols import make_folds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=Path(os.environ.get("SER_DATA", "../shared/data")))
    parser.add_argument("--folds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--model", nargs="+", default=model_names("deep"))
    parser.add_argument("--budget", type=float, default=1.0, help="scale epochs and patience")
    parser.add_argument("--xla-cache", default=None, help="compiled-program cache folder, or off (default: "
                        "$SER_BENCH_XLA_CACHE, else xla/ in the feature cache)")
    parser.add_argument("--param", nargs="+", default=[], metavar="KEY=VALUE",
                        help="set a parameter of every model timed, e.g. precision=mixed_bfloat16")
    parser.add_argument("--json", type=Path, help="also store the figures in this file")
    args = parser.parse_args()
    overrides = dict(_parse_param(item, parser) for item in args.param)
    if args.xla_cache is not None:
        os.environ["SER_BENCH_XLA_CACHE"] = args.xla_cache

    keras = keras_module()
    import jax

    print(f"keras {keras.__version__} on {keras.backend.backend()}; JAX devices: {jax.devices()}; "
          f"compiled-program cache: {jax.config.jax_compilation_cache_dir or 'off'}; "
          f"parameters set: {overrides or 'none'}")
    manifest = load_corpus("ravdess", args.data_root / "ravdess")
    features = extract_features(manifest, cache_dir=default_cache_dir(), n_jobs=os.cpu_count() or 1)
    y = features.manifest["emotion"].to_numpy()
    speakers = features.manifest["speaker"].to_numpy()
    folds = make_folds("emobox", features.manifest)
    stored = {}
    for name in args.model:
        spec = model_spec(name)
        x = MODEL_INPUTS[spec.input](features.functionals, features.frames, features.functional_names)
        seconds, scores, epochs, compiles = [], [], [], []
        for index in args.folds:
            train, test = folds[index].split(features.manifest)
            model = spec.build(seed=0, **spec.resolved_params(overrides, budget=args.budget))
            with compile_counts() as counts:
                start = time.perf_counter()
                model.fit(x[train], y[train], groups=speakers[train])
                seconds.append(time.perf_counter() - start)
            scores.append(balanced_accuracy_score(y[test], model.predict(x[test])))
            epochs.append(model.epochs_trained_)
            compiles.append(f"{counts['programs']}/{counts['cache_hits']}/{counts['compile_s']:.0f}s")
        stored[name] = {"fit_seconds": [round(s, 2) for s in seconds], "epochs": epochs, "uar": statistics.mean(scores),
                        "seconds_per_epoch": round(sum(seconds) / max(sum(epochs), 1), 3)}
        print(f"{name:12} fit s/fold median {statistics.median(seconds):6.1f} "
              f"(folds: {', '.join(f'{s:.0f}' for s in seconds)}); epochs {epochs}; "
              f"UAR {statistics.mean(scores):.3f}; compiled/cached/compile s per fit: {', '.join(compiles)}",
              flush=True)
    if args.json:
        args.json.write_text(json.dumps({"date": date.today().isoformat(), "device": str(jax.devices()[0]),
                                         "host": f"{platform.processor() or platform.machine()}, {os.cpu_count()} "
                                                 "cores", "commit": _commit(), "folds": args.folds,
                                         "parameters": overrides, "budget": args.budget, "models": stored}, indent=2))


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _parse_param(item: str, parser: argparse.ArgumentParser) -> tuple[str, object]:
    key, equals, text = item.partition("=")
    if not equals or not key:
        parser.error(f"--param takes KEY=VALUE, not {item!r}")
    try:
        return key, ast.literal_eval({"true": "True", "false": "False"}.get(text, text))
    except (ValueError, SyntaxError):
        return key, text  # a word, e.g. mixed_bfloat16


if __name__ == "__main__":
    main()
