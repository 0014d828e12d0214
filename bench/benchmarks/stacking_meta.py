"""Inner-fold evidence for the stacking meta-learner, on real corpora; never looks at an outer test fold.

    python -m bench.benchmarks.stacking_meta --data-root ../shared/data [--corpus ravdess urdu]
        [--members logreg svm xgboost] [--jobs 2]

For every outer training fold of `speaker_folds` (seed 0), its speakers are split into 3 speaker-grouped
inner folds. On each inner split, the members are fitted as the stacking row fits them on an outer
training fold (out-of-fold probabilities from 3 speaker-grouped folds of the inner training speakers,
then a refit on all of them), and every meta-learner below is scored by UAR on the held-out inner
speakers. The outer test speakers are never scored. Meta-learners: logistic regression, C = 1, on the
concatenated probabilities (registered until this benchmark chose the next one), the same with balanced class
weights (registered since), with C = 0.1, on log-probabilities, and the plain mean of the members'
probabilities (soft voting) for reference.
"""

from __future__ import annotations

import argparse
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.linear_model import LogisticRegression

from bench.runner import default_cache_dir
from ser_models.corpora import corpus_info, load_corpus
from ser_models.ensembles import fit_member, out_of_fold
from ser_models.feature_cache import extract_features
from ser_models.metrics import classification_metrics
from ser_models.protocols import assert_speaker_disjoint, make_folds
from ser_models.tuning import inner_speaker_folds

# name -> (C, class_weight, input transform); "soft vote" is the mean of the members' probabilities.
META = {"logreg C=1": (1.0, None, "p"), "logreg C=1 balanced (registered)": (1.0, "balanced", "p"),
        "logreg C=0.1": (0.1, None, "p"), "logreg C=1 on log p": (1.0, None, "log p")}


def _meta_input(probabilities: list[np.ndarray], transform: str) -> np.ndarray:
    stacked = np.hstack(probabilities)
    return np.log(stacked + 1e-6) if transform == "log p" else stacked


def _scores(x, y, groups, inner_train, held_out, members: list[str], seed: int) -> dict[str, float]:
    """UAR on `held_out` of every meta-learner over members fitted on `inner_train` only."""
    assert_speaker_disjoint(groups[inner_train], groups[held_out])
    classes, labels = np.unique(y), sorted(set(y[held_out]))
    x_a, y_a, g_a = x[inner_train], y[inner_train], groups[inner_train]
    splits = inner_speaker_folds(y_a, g_a, 3, seed)
    oof, held = [], []
    for name in members:
        oof.append(out_of_fold(name, {}, seed, x_a, y_a, g_a, splits, classes))
        member = fit_member(name, {}, seed, x_a, y_a, g_a)
        probabilities = np.zeros((len(held_out), len(classes)))
        probabilities[:, [list(classes).index(c) for c in member.classes_]] = member.predict_proba(x[held_out])
        held.append(probabilities)
    predictions = {"soft vote (reference)": classes[np.mean(held, axis=0).argmax(axis=1)]}
    for name, (c, class_weight, transform) in META.items():
        meta = LogisticRegression(C=c, class_weight=class_weight, max_iter=3000, random_state=seed)
        meta.fit(_meta_input(oof, transform), y_a)
        predictions[name] = meta.predict(_meta_input(held, transform))
    with warnings.catch_warnings():  # a held-out inner fold may lack a class the members predict
        warnings.simplefilter("ignore", UserWarning)
        return {name: classification_metrics(y[held_out], predicted, labels)["uar"]
                for name, predicted in predictions.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=Path(os.environ.get("SER_DATA", "../shared/data")))
    parser.add_argument("--corpus", nargs="+", default=["ravdess", "urdu"])
    parser.add_argument("--members", nargs="+", default=["logreg", "svm", "xgboost"])
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    rows = []
    for corpus in args.corpus:
        manifest = load_corpus(corpus, args.data_root / corpus_info(corpus).folder)
        features = extract_features(manifest, cache_dir=default_cache_dir(), n_jobs=args.jobs, progress=False,
                                    frames=False)
        x, y = features.functionals, features.manifest["emotion"].to_numpy()
        speakers = features.manifest["speaker"].to_numpy()
        tasks = []
        for fold in make_folds("speaker_folds", features.manifest, seed=0):
            train, test = fold.split(features.manifest)
            assert_speaker_disjoint(speakers[train], speakers[test])  # only training speakers are used below
            for split, (a, b) in enumerate(inner_speaker_folds(y[train], speakers[train], 3, fold.index)):
                tasks.append((fold.index, split, train[a], train[b]))
        scores = Parallel(n_jobs=args.jobs)(
            delayed(_scores)(x, y, speakers, a, b, args.members, fold) for fold, _, a, b in tasks)
        rows += [{"corpus": corpus, "fold": fold, "split": split, "meta": name, "uar": uar}
                 for (fold, split, _, _), result in zip(tasks, scores, strict=True) for name, uar in result.items()]
        print(f"{corpus}: {len(tasks)} inner splits scored", flush=True)

    frame = pd.DataFrame(rows)
    table = frame.groupby(["meta", "corpus"])["uar"].mean().unstack("corpus")
    worst = frame.groupby(["meta", "corpus", "fold"])["uar"].mean().groupby(["meta", "corpus"]).min()
    table = table.join(worst.unstack("corpus").add_suffix(" worst outer fold"))
    print(f"\nmembers {args.members}: mean UAR on held-out inner speakers (3 inner splits of each outer training "
          "fold), and the worst outer fold's mean:")
    print(table.round(3).to_string())


if __name__ == "__main__":
    main()
