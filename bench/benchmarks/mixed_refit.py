"""Inner-fold evidence for how the mixed ensembles refit their chosen members; never looks at an outer test fold.

    python -m bench.benchmarks.mixed_refit --data-root ../shared/data [--corpus ravdess urdu] [--seeds 0 1]
        [--folds 0 1 ...] [--variants mixed_vote mixed_stacking ...] [--refits candidate registered] [--jobs 2]

For every outer training fold of `speaker_folds`, its speakers are split into 3 speaker-grouped inner folds and
the first split is used: the ensemble trains on the inner training speakers exactly as the `full` suite's
mixed_vote and mixed_stacking train on an outer training fold (the suite's 16 candidates and parameters, greedy
selection on out-of-fold probabilities of 3 folds of those speakers), and is scored by UAR on the held-out inner
speakers. Two ways to refit the chosen members are compared on the same selection:
`candidate` (registered): as they were scored, a frame model as one early-stopped network;
`registered`: as their own rows, a frame model with its recipe of three refitted networks averaged.
`--variants` adds ensembles without selection over the same 16 candidates (a soft vote, or stacking, over all of
them). The outer test speakers are never loaded into a fit or scored. Prints the UAR per corpus, variant and refit
(mean over outer folds and seeds), the frame members chosen, and the seconds of the fits.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from joblib import Parallel, delayed

from bench.runner import default_cache_dir, model_params, select_device
from bench.suite import load_suite
from ser_models.corpora import corpus_info, load_corpus
from ser_models.ensembles import FRAME_MEMBERS, EnsembleClassifier, member_feature_set
from ser_models.feature_cache import extract_features
from ser_models.metrics import classification_metrics
from ser_models.model_inputs import ModelInputs
from ser_models.models import model_spec, recipe
from ser_models.protocols import assert_speaker_disjoint, make_folds
from ser_models.tuning import inner_speaker_folds

# variant -> (the suite row whose parameters it starts from, parameters changed)
VARIANTS = {
    "mixed_vote": ("mixed_vote", {}),
    "mixed_stacking": ("mixed_stacking", {}),
    "soft vote over all 16": ("mixed_vote", {"selection": "top_k", "top_k": 0}),
    "stacking over all 16": ("mixed_stacking", {"selection": "top_k", "top_k": 0}),
}
# the deep candidates (mlp and frame networks) trained with the best-epoch switches of deep_recipe.md, session 38
# (registered since: recipe.BEST_EPOCH), or with the rule before them (the earliest epoch of the best validation
# accuracy)
BEST_EPOCH_SWITCHES = recipe.BEST_EPOCH
ACCURACY_FIRST = {"monitor": "val_accuracy", "best_epoch_ties": "first"}
for _kind in ("mixed_vote", "mixed_stacking"):
    # a budget cut: the frame candidates' out-of-fold probabilities from 2 inner folds (each network trains on half the
    # speakers, two trainings instead of three); and, for scale, the candidates without any frame network
    VARIANTS[f"{_kind}, frame candidates on 2 inner folds"] = (_kind, {"member_folds": dict.fromkeys(FRAME_MEMBERS, 2)})
    VARIANTS[f"{_kind}, no frame candidates"] = (_kind, {"drop_members": FRAME_MEMBERS})
    VARIANTS[f"{_kind}, best-epoch switches"] = (_kind, {"deep_switches": BEST_EPOCH_SWITCHES})
    VARIANTS[f"{_kind}, accuracy-first epochs"] = (_kind, {"deep_switches": ACCURACY_FIRST})
METHODS = {"mixed_vote": "soft", "mixed_stacking": "stacking"}
REFITS = ("candidate", "registered")


def _scores(x, y, groups, inner_train, held_out, params: dict, seed: int, cache_dir: str, variants: list[str],
            refits: list[str]) -> list[dict]:
    """UAR on `held_out` of each ensemble variant with each refit, fitted on `inner_train` only."""
    assert_speaker_disjoint(groups[inner_train], groups[held_out])
    labels = sorted(set(y[held_out]))
    rows = []
    for refit in refits:  # "candidate" first: the selection's inner fits are then memoised for "registered"
        for variant in variants:
            kind, changes = VARIANTS[variant]
            kept = {k: v for k, v in params[kind].items() if k in EnsembleClassifier().get_params()}
            switches = changes.get("deep_switches", {})
            kept["members"] = [m for m in kept["members"] if m not in changes.get("drop_members", ())]
            changes = {k: v for k, v in changes.items() if k not in ("deep_switches", "drop_members")}
            if switches:  # as if they were the deep models' registered defaults
                given = kept.get("member_params") or {}
                kept["member_params"] = {n: {**given.get(n, {}), **switches}
                                         if model_spec(member_feature_set(n)[0]).family == "deep" else given.get(n, {})
                                         for n in kept["members"]}
            model = EnsembleClassifier(**{**kept, **changes, "method": METHODS[kind], "refit_members": refit,
                                          "seed": seed, "cache_dir": cache_dir})
            start = time.perf_counter()
            model.fit(x[inner_train], y[inner_train], groups[inner_train])
            seconds = time.perf_counter() - start
            with warnings.catch_warnings():  # a held-out inner fold may lack a class the members predict
                warnings.simplefilter("ignore", UserWarning)
                uar = classification_metrics(y[held_out], model.predict(x[held_out]), labels)["uar"]
            rows.append({"kind": variant, "refit": refit, "uar": uar, "fit_s": seconds,
                         "frame_members": sorted(set(model.chosen_) & set(FRAME_MEMBERS))})
    return rows


def _inputs(corpus: str, data_root: Path, jobs: int):
    """The suite's ensemble input for every utterance: librosa functionals and frames, ComParE and eGeMAPS."""
    suite = load_suite("full")
    manifest = load_corpus(corpus, data_root / corpus_info(corpus).folder)
    features = extract_features(manifest, suite.features, cache_dir=default_cache_dir(), n_jobs=jobs, progress=False)
    others = {name: extract_features(manifest, dataclasses.replace(suite.features, feature_set=name),
                                     cache_dir=default_cache_dir(), n_jobs=jobs, progress=False, frames=False)
              for name in ("compare", "egemaps")}
    inputs = ModelInputs(features, other_sets=others)
    every = inputs.training_set("mixed_vote", np.arange(len(features.manifest)))
    return every[0], every[1], every[2], features.manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=Path(os.environ.get("SER_DATA", "../shared/data")))
    parser.add_argument("--corpus", nargs="+", default=["ravdess", "urdu"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--folds", type=int, nargs="+", default=None, help="outer folds (default: all)")
    parser.add_argument("--cache-dir", default=str(default_cache_dir() / "mixed_refit"),
                        help="memo of the inner fits, shared by both refits (and by reruns)")
    parser.add_argument("--variants", nargs="+", default=["mixed_vote", "mixed_stacking"], choices=list(VARIANTS))
    parser.add_argument("--refits", nargs="+", default=list(REFITS), choices=REFITS)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    select_device("auto")  # as `bench run` does: one XLA thread per deep fit on the CPU
    suite = load_suite("full")
    params = {kind: model_params(suite, kind) for kind in METHODS}

    rows = []
    for corpus in args.corpus:
        x, y, speakers, manifest = _inputs(corpus, args.data_root, args.jobs)
        tasks = []
        for fold in make_folds("speaker_folds", manifest, seed=0):
            if args.folds is not None and fold.index not in args.folds:
                continue
            train, test = fold.split(manifest)
            assert_speaker_disjoint(speakers[train], speakers[test])  # only training speakers are used below
            for seed in args.seeds:
                a, b = inner_speaker_folds(y[train], speakers[train], 3, seed)[0]
                tasks.append((fold.index, seed, train[a], train[b]))
        results = Parallel(n_jobs=args.jobs)(
            delayed(_scores)(x, y, speakers, a, b, params, seed, args.cache_dir, args.variants, args.refits)
            for _, seed, a, b in tasks)
        for (fold, seed, _, _), result in zip(tasks, results, strict=True):
            rows += [{"corpus": corpus, "fold": fold, "seed": seed, **row} for row in result]
        print(f"{corpus}: {len(tasks)} inner splits scored", flush=True)

    frame = pd.DataFrame(rows)
    frame.to_csv(Path(args.cache_dir) / "scores.csv", index=False)
    table = frame.pivot_table(index=["corpus", "kind"], columns="refit", values="uar", aggfunc="mean")
    if len(args.refits) == 2:
        table["delta"] = table["registered"] - table["candidate"]
        wins = frame.pivot_table(index=["corpus", "kind", "fold", "seed"], columns="refit", values="uar")
        table["splits up/tied/down"] = (wins["registered"] - wins["candidate"]).groupby(["corpus", "kind"]).apply(
            lambda d: f"{(d > 1e-9).sum()}/{(d.abs() <= 1e-9).sum()}/{(d < -1e-9).sum()}")
    print(f"\nmean UAR on held-out inner speakers (first inner split of each outer training fold; seeds {args.seeds}):")
    print(table.round(3).to_string())
    with_frames = frame[frame["refit"] == args.refits[-1]].groupby(["corpus", "kind"])["frame_members"].apply(
        lambda m: f"{sum(bool(x) for x in m)} of {len(m)} splits")
    print("\nsplits whose selection kept a frame member:\n" + with_frames.to_string())
    print("\nmedian fit s per ensemble (the candidate refit pays the shared inner fits):")
    print(frame.pivot_table(index=["corpus", "kind"], columns="refit", values="fit_s", aggfunc="median").round(1)
          .to_string())


if __name__ == "__main__":
    main()
