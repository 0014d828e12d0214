"""Ablation of the deep training-recipe switches, scored on inner speaker folds only (never a test fold).

    python -m bench.benchmarks.deep_recipe --data-root ../shared/data [--corpus ravdess] [--model cnn cnn2d]
        [--outer-folds 0 1] [--seeds 0] [--variant baseline mixup ...] [--jobs 2]

For each named outer fold of `speaker_folds` (fold seed 0), the outer test speakers are set aside
and never used. The outer training speakers are split once into speaker-grouped inner train and
inner held-out parts (3 inner folds, the first one). Each model is trained on the inner training
part with each recipe variant (its registered defaults plus the switches of the variant; a variant
with `augment` also trains on audio copies of the inner-training utterances, never of held-out ones)
and scored by UAR on the inner held-out speakers' original audio. The table gives the mean inner UAR per model and
variant, its difference to the baseline, and the median fit seconds. The results so far, and
the settings they chose, are tabled in deep_recipe.md beside this file.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd
from joblib import Parallel, delayed

from bench.runner import default_cache_dir
from ser_models.augment import Augmentation
from ser_models.corpora import corpus_info, load_corpus
from ser_models.feature_cache import extract_features
from ser_models.metrics import classification_metrics
from ser_models.model_inputs import ModelInputs
from ser_models.models import architectures, model_spec
from ser_models.protocols import assert_speaker_disjoint, make_folds
from ser_models.tuning import inner_speaker_folds


def build_cnn2d_batchnorm(keras, inputs, n_classes, width, dropout):
    """Candidate cnn2d: batch normalisation per channel (over batch, time and frequency) instead of a
    layer norm over each frame, which also takes away the frame's overall level (loudness)."""
    frames, mask = inputs
    ops = keras.ops
    x = ops.expand_dims(frames[:, :, :architectures.N_MELS_IN_FRAMES], -1)
    x = keras.layers.AveragePooling2D((4, 2), padding="same")(x)
    m = ops.squeeze(keras.layers.MaxPooling1D(4, padding="same")(ops.expand_dims(mask, -1)), -1)
    for filters in (width, 2 * width, 4 * width):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.Activation("relu")(x)
        x = keras.layers.MaxPooling2D((2, 2), padding="same")(x)
        m = ops.squeeze(keras.layers.MaxPooling1D(2, padding="same")(ops.expand_dims(m, -1)), -1)
        x = x * ops.reshape(m, (-1, ops.shape(m)[1], 1, 1))
    x = ops.reshape(x, (-1, ops.shape(x)[1], ops.shape(x)[2] * ops.shape(x)[3]))
    pooled = keras.layers.Concatenate()([architectures._masked_mean(keras, x, m),
                                         architectures._masked_max(keras, x, m)])
    return architectures._head(keras, pooled, n_classes, max(width, 64), dropout)


def build_cnn2d_v3(keras, inputs, n_classes, width, dropout):
    """cnn2d as registered up to version 3: its head only as wide as its first filters (16)."""
    return architectures.build_cnn2d(keras, inputs, n_classes, width, dropout, head_width=width)


CANDIDATE_ARCHITECTURES = {"cnn2d_batchnorm": build_cnn2d_batchnorm, "cnn2d_v3": build_cnn2d_v3,
                           "cnn2d_masked": functools.partial(architectures.build_cnn2d, mask_before_pooling=True),
                           "cnn2d_time_pool_2": functools.partial(architectures.build_cnn2d, time_pool=2)}

VARIANTS: dict[str, dict] = {
    "baseline": {},
    # the best epoch: ties on validation accuracy broken by the lower validation loss; validation UAR as the monitor.
    # Both are registered since (recipe.BEST_EPOCH): "accuracy_first" is the recipe before them.
    "ties_lowest_loss": {"monitor": "val_accuracy", "best_epoch_ties": "lowest_loss"},
    "monitor_uar": {"monitor": "val_uar", "best_epoch_ties": "first"},
    "monitor_uar_ties": {"monitor": "val_uar", "best_epoch_ties": "lowest_loss"},
    "accuracy_first": {"monitor": "val_accuracy", "best_epoch_ties": "first"},
    "mixup": {"mixup": 0.4},
    "label_smoothing": {"label_smoothing": 0.1},
    "cosine": {"schedule": "cosine", "warmup_epochs": 2},
    "swa": {"averaging": "swa", "average_epochs": 5},
    "utterance_norm": {"utterance_norm": True},
    "stats_pooling": {"pooling": "mean_std_max"},
    "attention_pooling": {"pooling": "attention_max"},
    "monitor_loss": {"monitor": "val_loss"},
    "frame_pool_2": {"frame_pool": 2},  # registered since this ablation: "frame_pool_1" is the recipe before it
    "frame_pool_1": {"frame_pool": 1},
    "all": {"mixup": 0.4, "label_smoothing": 0.1, "schedule": "cosine", "warmup_epochs": 2, "averaging": "swa",
            "average_epochs": 5, "utterance_norm": True},
    # cnn2d diagnosis, first candidates (on cnn2d version 3, which underfit)
    "wide": {"architecture": "cnn2d_v3", "width": 32},
    "batchnorm": {"architecture": "cnn2d_batchnorm"},
    "batchnorm_wide": {"architecture": "cnn2d_batchnorm", "width": 32},
    # cnn2d version 3 (a 16-wide head, dropout 0.3) could not fit 4 actors' 240 utterances: training accuracy
    # 0.26 after 40 epochs; with dropout 0 it reached 0.94, with a 64-wide head 0.54. Version 4 (the baseline
    # now) has the 64-wide head and dropout 0.1.
    "v3": {"architecture": "cnn2d_v3", "dropout": 0.3},
    "v3_dropout_low": {"architecture": "cnn2d_v3", "dropout": 0.1},
    "dropout_0.3": {"dropout": 0.3},
    "dropout_0": {"dropout": 0.0},
    "dropout_0.2": {"dropout": 0.2},
    # mlp candidates (its defaults: width 128, dropout 0.5, input noise 0.3). RAVDESS inner folds of all 6 outer
    # folds, seeds 0-2 (18 fits each): baseline 0.539; every variant here and mixup, label_smoothing, cosine, swa
    # within -0.012..+0.004 of it, so none was adopted.
    "mixup_0.2": {"mixup": 0.2},
    "width_256": {"width": 256},
    # frame models (registered width 64): is a narrower one as good and cheaper, a wider one better?
    # RAVDESS inner folds of outer folds 0 and 1, seeds 0 and 1: width 32 cost 0.03-0.14 UAR on every model
    # but cnn_lstm (cnn 0.491 -> 0.354, gru 0.355 -> 0.278, transformer 0.431 -> 0.402), at 1.4-3.7x less time.
    "width_32": {"width": 32},
    "width_128": {"width": 128},
    "noise_0.5": {"input_noise": 0.5},
    # a longer budget: in the committed run 41 of 126 RAVDESS frame fits (30 epochs, patience 8) ran to the cap
    "epochs_60": {"epochs": 60},
    # mlp, second round: regularisation strength and optimiser settings
    "weight_decay_1e-3": {"weight_decay": 1e-3},
    "weight_decay_1e-2": {"weight_decay": 1e-2},
    "weight_decay_5e-2": {"weight_decay": 5e-2},
    "lr_3e-4": {"learning_rate": 3e-4},
    "batch_64": {"batch_size": 64},
    "batch_16": {"batch_size": 16},
    "dropout_0.6": {"dropout": 0.6},
    "no_refit": {"refit_full": False},
    # after the validation pass, several networks refitted on every training speaker, their probabilities averaged
    # (the mlp's registered count since version 2 is 3; "refit_networks_1" is version 1)
    "refit_networks_1": {"refit_networks": 1},
    "refit_networks_2": {"refit_networks": 2},
    "refit_networks_3": {"refit_networks": 3},
    "refit_networks_5": {"refit_networks": 5},
    # frame models: retrain on every training speaker for the chosen epoch count, and coarser (40 ms) steps
    # that would pay for it
    "refit_full": {"refit_full": True},
    "frame_pool_4": {"frame_pool": 4},
    "frame_pool_4_refit": {"frame_pool": 4, "refit_full": True},
    # the mlp's version-2 averaging (three refitted networks) at 40 ms steps, about the registered cnn's cost
    "frame_pool_4_refit_3": {"frame_pool": 4, "refit_full": True, "refit_networks": 3},
    # the early-stopped validation-pass network as the first of the three averaged (two retrained): 3 trainings, not 4
    "keep_validation": {"keep_validation_network": True},
    # the retrained networks follow the validation pass's learning rates (halved on its plateaus), not the base rate
    "refit_replay": {"refit_schedule": "replay"},
    # cnn2d: padding cells zeroed before each max pooling, so that no real cell is pooled with a padding cell
    "mask_before_pooling": {"architecture": "cnn2d_masked"},
    # cnn2d: 80 ms cells (2 input steps of 40 ms) instead of 160 ms, as fine as when its head was chosen (20 ms steps)
    "time_pool_2": {"architecture": "cnn2d_time_pool_2"},
    # validation speakers drawn so that they (and the rest) hold every class: URDU's speakers mostly voice one emotion
    "class_covering": {"validation_draw": "class_covering"},
    # issue 54/55: batches padded to their own longest utterance (1: same batches; 8: drawn by length in pools of 8)
    "length_cut": {"length_buckets": 1},
    "length_buckets": {"length_buckets": 8},
    # audio augmentation (session 44): one copy of each inner-training utterance, pitch shifted by up to 2 semitones
    # either way (drawn per utterance); with one refitted network instead of three, the same number of training passes
    # over the data as the registered recipe (a budget-neutral trade), and with three (the ceiling, 2x the time)
    "pitch_jitter_refit_1": {"augment": [Augmentation("pitch_jitter", 2.0)], "refit_networks": 1},
    "pitch_jitter": {"augment": [Augmentation("pitch_jitter", 2.0)]},
    # the same trade with white noise at 20 dB SNR instead (recording conditions rather than voices)
    "noise_refit_1": {"augment": [Augmentation("noise", 20.0)], "refit_networks": 1},
}
NOT_MODEL_PARAMS = ("architecture", "augment")


def _score(model: str, variant: str, seed: int, x, y, groups, train, held_out, labels) -> tuple[float, float]:
    architectures.ARCHITECTURES.update(CANDIDATE_ARCHITECTURES)  # (in each worker process too)
    spec = model_spec(model)
    params = spec.resolved_params({k: v for k, v in VARIANTS[variant].items() if k not in NOT_MODEL_PARAMS})
    estimator = spec.build(seed=seed, **params)
    if "architecture" in VARIANTS[variant]:
        estimator.set_params(architecture=VARIANTS[variant]["architecture"])
    start = time.perf_counter()
    estimator.fit(x[train], y[train], groups=groups[train])
    seconds = time.perf_counter() - start
    return classification_metrics(y[held_out], estimator.predict(x[held_out]), labels)["uar"], seconds


def _rows(stacked: tuple, train, held_out) -> tuple:
    """(x, y, speakers) of every utterance then every augmented copy, and the rows that train and score: the
    inner-training utterances plus their copies, and the held-out utterances themselves."""
    x, y, groups, source = stacked
    assert (source[held_out] == held_out).all()  # the originals come first, in manifest order
    rows = np.flatnonzero(np.isin(source, train))  # no held-out or outer-test utterance, nor a copy of one
    assert_speaker_disjoint(groups[rows], groups[held_out])
    return x, y, groups, rows, held_out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=Path(os.environ.get("SER_DATA", "../shared/data")))
    parser.add_argument("--corpus", default="ravdess")
    parser.add_argument("--model", nargs="+", default=["cnn", "cnn2d"])
    parser.add_argument("--variant", nargs="+", default=list(VARIANTS)[:7], choices=list(VARIANTS))
    parser.add_argument("--outer-folds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    manifest = load_corpus(args.corpus, args.data_root / corpus_info(args.corpus).folder)
    features = extract_features(manifest, cache_dir=default_cache_dir(), n_jobs=args.jobs, progress=False)
    y = features.manifest["emotion"].to_numpy()
    groups = features.manifest["speaker"].to_numpy()
    labels = sorted(set(y))
    folds = make_folds("speaker_folds", features.manifest, seed=0)
    tasks = []
    for index in args.outer_folds:
        outer_train, outer_test = folds[index].split(features.manifest)
        train, held_out = inner_speaker_folds(y[outer_train], groups[outer_train], 3, 0)[0]
        train, held_out = outer_train[train], outer_train[held_out]
        assert_speaker_disjoint(groups[train], groups[held_out])
        assert not set(groups[held_out]) & set(groups[outer_test])  # outer test speakers are never scored
        for model in args.model:
            for variant in args.variant:
                for seed in args.seeds:
                    tasks.append((index, model, variant, seed, train, held_out))
    # Per augmentation list, the inputs with those copies aligned to the utterances they were made from.
    inputs = {augment: ModelInputs(features, [extract_features(
        features.manifest, cache_dir=default_cache_dir(), n_jobs=args.jobs, progress=False, augmentation=a)
        for a in augment]) for augment in {tuple(VARIANTS[v].get("augment", ())) for v in args.variant}}
    everything = np.arange(len(features.manifest))
    stacked = {(augment, m): data.training_set(m, everything) for augment, data in inputs.items() for m in args.model}
    print(f"{args.corpus}: {len(tasks)} fits ({len(args.outer_folds)} outer training folds x {len(args.model)} "
          f"models x {len(args.variant)} variants x {len(args.seeds)} seeds)", flush=True)
    results = Parallel(n_jobs=args.jobs, verbose=5)(
        delayed(_score)(model, variant, seed, *_rows(stacked[tuple(VARIANTS[variant].get("augment", ())), model],
                                                     train, held_out), labels)
        for _, model, variant, seed, train, held_out in tasks)
    rows = pd.DataFrame([{"fold": f, "model": m, "variant": v, "seed": s, "inner_uar": u, "fit_s": t}
                         for (f, m, v, s, _, _), (u, t) in zip(tasks, results, strict=True)])
    table = rows.groupby(["model", "variant"]).agg(inner_uar=("inner_uar", "mean"), spread=("inner_uar", "std"),
                                                   fit_s=("fit_s", statistics.median))
    base = table.xs("baseline", level="variant")["inner_uar"] if "baseline" in args.variant else None
    if base is not None:
        table["vs_baseline"] = [r.inner_uar - base[m] for (m, _), r in table.iterrows()]
    print(f"\nMean inner-fold UAR on {args.corpus} (inner held-out speakers of outer training folds "
          f"{args.outer_folds}; spread: std over folds and seeds):")
    print(table.round(3).to_string())
    print("\nPer fold:\n" + rows.pivot_table(index=["model", "variant"], columns="fold", values="inner_uar")
          .round(3).to_string())


if __name__ == "__main__":
    main()
