"""Inner-fold evidence for the SVM's default C and gamma, on real corpora; never looks at a test fold.

    python -m bench.benchmarks.svm_defaults --data-root ../shared/data [--corpus ravdess urdu] [--jobs 2]

For every outer training fold of `speaker_folds` (seed 0), each (C, gamma) of a small grid is
scored by UAR on 3 speaker-grouped inner folds of that training fold's speakers only. The table
is the mean inner UAR per corpus and over corpora; the outer test speakers are never scored.
The grid uses the plain RBF SVC decision (argmax of its scores), not the Platt-calibrated
probabilities of the registered model: calibration moves little and costs 3 more fits.
"""

from __future__ import annotations

import argparse
import itertools
import os
from pathlib import Path

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from bench.runner import default_cache_dir
from ser_models.corpora import corpus_info, load_corpus
from ser_models.feature_cache import extract_features
from ser_models.features import FeatureSpec
from ser_models.metrics import classification_metrics
from ser_models.protocols import assert_speaker_disjoint, make_folds
from ser_models.tuning import inner_speaker_folds

GRID_C = (1.0, 3.0, 10.0, 30.0, 100.0)
GRID_GAMMA = ("scale", 1e-4, 3e-4, 1e-3)


def _inner_uar(x, y, groups, C, gamma, seed: int) -> float:
    labels = sorted(set(y))
    scores = []
    for train, validation in inner_speaker_folds(y, groups, 3, seed):
        model = make_pipeline(StandardScaler(), SVC(C=C, gamma=gamma, kernel="rbf")).fit(x[train], y[train])
        scores.append(classification_metrics(y[validation], model.predict(x[validation]), labels)["uar"])
    return float(np.mean(scores))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=Path(os.environ.get("SER_DATA", "../shared/data")))
    parser.add_argument("--corpus", nargs="+", default=["ravdess", "urdu"])
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--feature-set", default="librosa", help="librosa, egemaps or compare")
    parser.add_argument("--C", type=float, nargs="+", default=list(GRID_C))
    parser.add_argument("--gamma", nargs="+", default=[str(g) for g in GRID_GAMMA], help="'scale' or numbers")
    args = parser.parse_args()
    gammas = [g if g == "scale" else float(g) for g in args.gamma]
    spec = FeatureSpec(feature_set=args.feature_set)

    rows = []
    for corpus in args.corpus:
        manifest = load_corpus(corpus, args.data_root / corpus_info(corpus).folder)
        features = extract_features(manifest, spec, cache_dir=default_cache_dir(), n_jobs=args.jobs, progress=False,
                                    frames=False)
        y = features.manifest["emotion"].to_numpy()
        speakers = features.manifest["speaker"].to_numpy()
        folds = make_folds("speaker_folds", features.manifest, seed=0)
        tasks = []
        for fold in folds:
            train, test = fold.split(features.manifest)
            assert_speaker_disjoint(speakers[train], speakers[test])  # only training speakers are scored below
            for C, gamma in itertools.product(args.C, gammas):
                tasks.append((fold.index, C, gamma, train))
        scores = Parallel(n_jobs=args.jobs)(
            delayed(_inner_uar)(features.functionals[train], y[train], speakers[train], C, gamma, fold)
            for fold, C, gamma, train in tasks)
        rows += [{"corpus": corpus, "fold": fold, "C": C, "gamma": str(gamma), "inner_uar": score}
                 for (fold, C, gamma, _), score in zip(tasks, scores, strict=True)]
        print(f"{corpus}: {len(folds)} outer folds x {len(args.C) * len(gammas)} settings scored", flush=True)

    table = pd.DataFrame(rows).groupby(["C", "gamma", "corpus"])["inner_uar"].mean().unstack("corpus")
    table["mean"] = table.mean(axis=1)
    print(f"\n{args.feature_set} features, mean inner-fold UAR (3 speaker-grouped inner folds of each outer "
          "training fold):")
    print(table.sort_values("mean", ascending=False).round(3).to_string())


if __name__ == "__main__":
    main()
