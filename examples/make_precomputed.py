"""Write precomputed features for a corpus, as a researcher's own pipeline would: one row per file, keyed by path.

    python examples/make_precomputed.py --corpus synthetic --out precomputed_features.npz
    python -m bench run --suite examples/precomputed_suite.toml

Any tool may write the file (numpy, pandas): `paths` (relative to the corpus folder) and `functionals` (n, d), and
optionally `names`, and frame sequences as `frames` (all rows stacked) with `lengths`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import tomllib

from bench.load import corpus_root
from ser_models.audio import load_audio
from ser_models.corpora import load_corpus
from ser_models.feature_cache import default_cache_dir


def spectral_summary(y: np.ndarray) -> np.ndarray:
    """A stand-in for one's own features: log band energies of 16 bands, mean and std over 25 ms frames."""
    frames = np.lib.stride_tricks.sliding_window_view(y, 400)[::160]
    bands = np.abs(np.fft.rfft(frames * np.hanning(400), axis=1))[:, 1:193].reshape(len(frames), 16, 12).sum(axis=2)
    energy = np.log(bands + 1e-6)
    return np.concatenate([energy.mean(axis=0), energy.std(axis=0)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default=str(Path(__file__).with_name("precomputed_suite.toml")))
    parser.add_argument("--corpus", default="synthetic")
    parser.add_argument("--data-root", type=Path, default=None, help="for a real corpus")
    parser.add_argument("--out", type=Path, default=Path("precomputed_features.npz"))
    args = parser.parse_args()
    # the suite's corpus options, read as plain TOML (the suite itself needs the file this script writes)
    options = tomllib.loads(Path(args.suite).read_text()).get("corpus_options", {}).get(args.corpus, {})
    manifest = load_corpus(args.corpus, corpus_root(args.corpus, options, args.data_root, default_cache_dir()),
                           **options)
    vectors = np.stack([spectral_summary(load_audio(path, sample_rate=16_000)) for path in manifest["path"]])
    np.savez(args.out, paths=manifest["relpath"].to_numpy(str), functionals=vectors.astype(np.float32),
             names=np.array([f"band{i}_{s}" for s in ("mean", "std") for i in range(16)]))
    print(f"{len(vectors)} rows of {vectors.shape[1]} features written to {args.out}")


if __name__ == "__main__":
    main()
