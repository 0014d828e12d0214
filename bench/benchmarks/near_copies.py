"""How far a re-saved copy of a recording lies from its original, and how near two different recordings come.

For each corpus: the smallest distance (`ser_models.copies`: median |difference| of the functionals in interquartile
ranges) between two recordings of one speaker and of two speakers, computed exactly over every pair. Then copies of
`--files` random files, re-saved as a corpus bundle or a conversion would (resampled, rescaled, re-encoded, padded),
are extracted afresh: per kind of copy, its distance to its original, whether the original is its nearest row, and
the share within NEAR_COPY_DISTANCE. Last, the seconds the suite's check takes per corpus. No model is trained and
no fold is scored.

    python -m bench.benchmarks.near_copies --data-root DIR [--files 40]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import librosa
import numpy as np
import pandas as pd
import soundfile as sf

from ser_models import copies
from ser_models.copies import NEAR_COPY_DISTANCE, first_copies, near_copy_pairs
from ser_models.corpora import load_corpus
from ser_models.feature_cache import default_cache_dir, extract_features

CORPORA = {"ravdess": "ravdess", "urdu": "urdu"}
COPIES = {  # kind -> (audio, rate) -> (audio, rate, format, subtype)
    "FLAC -> WAV 16-bit": lambda y, r: (y, r, "WAV", "PCM_16"),
    "WAV 24-bit": lambda y, r: (y, r, "WAV", "PCM_24"),
    "stereo": lambda y, r: (np.stack([y, y], axis=1), r, "WAV", "PCM_16"),
    "resampled to 44.1 kHz": lambda y, r: (librosa.resample(y, orig_sr=r, target_sr=44_100), 44_100, "WAV", "PCM_16"),
    "resampled to 22.05 kHz": lambda y, r: (librosa.resample(y, orig_sr=r, target_sr=22_050, res_type="polyphase"),
                                            22_050, "WAV", "PCM_16"),
    "-6 dB": lambda y, r: (0.5 * y, r, "WAV", "PCM_16"),
    "peak-normalised": lambda y, r: (0.99 * y / np.abs(y).max(), r, "WAV", "PCM_16"),
    "0.5 s + 0.25 s of silence added": lambda y, r: (np.concatenate([np.zeros(r // 2, y.dtype), y,
                                                                     np.zeros(r // 4, y.dtype)]), r, "WAV", "PCM_16"),
    "MP3 (lossy)": lambda y, r: (y, r, "MP3", None),
    "mu-law 8-bit (lossy)": lambda y, r: (y, r, "WAV", "ULAW"),
}


def _scaled(functionals: np.ndarray) -> np.ndarray:
    """The rows as the suite's check compares them (interquartile ranges from the median, clipped)."""
    return copies.scaled_rows(functionals, *copies.robust_scale([functionals]))


def nearest_distances(functionals: np.ndarray, speakers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the exact smallest distance to another row of its speaker and to a row of another speaker."""
    scaled = _scaled(functionals)
    same, other = np.full(len(scaled), np.inf), np.full(len(scaled), np.inf)
    for i, row in enumerate(scaled):
        distances = np.median(np.abs(scaled - row), axis=1)
        distances[i] = np.inf
        mine = speakers == speakers[i]
        same[i] = distances[mine].min() if mine.sum() > 1 else np.inf
        other[i] = distances[~mine].min()
    return same, other


def copy_distances(functionals: np.ndarray, paths: list[str], picks: np.ndarray, folder: Path,
                   cache_dir: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """Per copy of each picked file: its distance to the original and whether that is its nearest row; and the
    copies' functionals."""
    rows = []
    for i in picks:
        audio, rate = sf.read(paths[i], dtype="float32")
        for n, (kind, make) in enumerate(COPIES.items()):
            signal, new_rate, kind_format, subtype = make(audio, rate)
            target = folder / f"{i}_{n}.{'mp3' if kind_format == 'MP3' else 'wav'}"
            sf.write(target, signal, new_rate, format=kind_format, subtype=subtype)
            rows.append({"path": str(target), "original": int(i), "kind": kind})
    table = pd.DataFrame(rows)
    manifest = table.assign(corpus="copies", speaker="copies:x", gender="unknown", emotion="neutral", label_raw="x")
    found = extract_features(manifest, cache_dir=cache_dir)
    table = table.set_index("path").loc[found.manifest["path"]].reset_index()
    pooled = _scaled(np.vstack([functionals, found.functionals]))
    corpus, copies = pooled[: len(functionals)], pooled[len(functionals):]
    distance, nearest = [], []
    for row, original in zip(copies, table["original"], strict=True):
        distances = np.median(np.abs(corpus - row), axis=1)
        distance.append(distances[original])
        nearest.append(int(np.argmin(distances)) == original)
    return table.assign(distance=distance, nearest=nearest), found.functionals


def exact_and_indexed(functionals: np.ndarray) -> None:
    """The pairs the exact search and the graph index find among these rows, and the seconds each takes."""
    found, seconds = {}, {}
    for indexed in (False, True):
        start = time.perf_counter()
        found[indexed] = near_copy_pairs(functionals, indexed=indexed)
        seconds[indexed] = time.perf_counter() - start
    only = sorted(set(found[False]) ^ set(found[True]))
    print(f"\nnear pairs among the {len(functionals)} rows with the copies: exact {len(found[False])} "
          f"({seconds[False]:.2f} s), indexed {len(found[True])} ({seconds[True]:.2f} s); "
          f"{'the same pairs' if not only else f'found by one only: {only}'}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--files", type=int, default=40, help="random files re-saved per kind of copy")
    parser.add_argument("--cache-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    cache_dir = args.cache_dir or default_cache_dir()
    sets = {name: extract_features(load_corpus(name, args.data_root / folder), cache_dir=cache_dir, n_jobs=2)
            for name, folder in CORPORA.items() if (args.data_root / folder).is_dir()}
    print(f"distances between different recordings (NEAR_COPY_DISTANCE = {NEAR_COPY_DISTANCE})")
    for name, features in sets.items():
        same, other = nearest_distances(features.functionals, features.manifest["speaker"].to_numpy())
        finite = same[np.isfinite(same)]
        exact = int((finite == 0).sum())
        print(f"  {name} ({len(same)} files): one speaker min {finite[finite > 0].min():.3f}, 1st percentile "
              f"{np.percentile(finite, 1):.3f} ({exact} byte- or sample-identical); two speakers min {other.min():.3f},"
              f" 1st percentile {np.percentile(other, 1):.3f}")
    functionals = np.vstack([s.functionals for s in sets.values()])
    paths = [p for s in sets.values() for p in s.manifest["path"]]
    picks = np.random.default_rng(1).choice(len(paths), min(args.files, len(paths)), replace=False)
    with tempfile.TemporaryDirectory() as folder:
        table, copies = copy_distances(functionals, paths, picks, Path(folder), Path(folder) / "cache")
    summary = table.groupby("kind", sort=False).agg(
        files=("distance", "size"), median=("distance", "median"), max=("distance", "max"),
        nearest_is_original=("nearest", "mean"), within=("distance", lambda d: (d <= NEAR_COPY_DISTANCE).mean()))
    print(f"\ncopies of {len(picks)} random files of {' and '.join(sets)} (distance to the original)")
    print(summary.round(3).to_string())
    exact_and_indexed(np.vstack([functionals, copies]))
    print("\nthe suite's check (first_copies: a copy of an earlier file; byte or near), seconds, median of 3")
    for name, features in sets.items():
        seconds = []
        for _ in range(3):
            start = time.perf_counter()
            groups = first_copies(features.keys, features.functionals)
            seconds.append(time.perf_counter() - start)
        pairs = near_copy_pairs(features.functionals)
        assert pairs == near_copy_pairs(features.functionals, indexed=True), "the graph index found other pairs"
        print(f"  {name}: {np.median(seconds):.2f} s; {int((groups != np.arange(len(groups))).sum())} files a copy "
              f"of an earlier one, near pairs {[(i, j, d) for i, j, d in pairs]}")


if __name__ == "__main__":
    main()
