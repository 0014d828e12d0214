"""The deep models' training recipe: its switches, their choices, and what every model uses by default."""

from __future__ import annotations

from ser_models.models.architectures import ARCHITECTURES, POOLINGS, TIME_ALIGNMENT

# Training-recipe switches, off by default (see bench/benchmarks/deep_recipe.py for their ablation):
# mixup (Beta alpha), label smoothing, a warm-up + cosine schedule instead of halving on plateaus,
# averaging of the weights of the epochs up to the best one ("swa"), per-utterance frame normalisation,
# the statistics pooled over the frames (POOLINGS), length buckets (below), the number of retrained networks
# averaged, the early-stopped network kept as the first of them, and the retrained networks replaying the validation
# pass's learning rates.
RECIPE_SWITCHES = {"mixup": 0.0, "label_smoothing": 0.0, "schedule": "plateau", "warmup_epochs": 0,
                   "averaging": "none", "average_epochs": 5, "utterance_norm": False, "pooling": "mean_max",
                   "refit_networks": 1, "keep_validation_network": False, "refit_schedule": "constant",
                   "best_epoch_ties": "first", "validation_draw": "random", "length_buckets": 0}
SCHEDULES, AVERAGING, REFIT_SCHEDULES = ("plateau", "cosine"), ("none", "swa"), ("constant", "replay")
MONITORS = ("val_accuracy", "val_loss", "val_uar")  # the validation speakers' score that picks the best epoch
EPOCH_TIES = ("first", "lowest_loss")  # which of the epochs tied on the best validation score is the best
# How the validation speakers are drawn from the training speakers: at random, or at random among the draws whose
# validation and training sides both hold every class (the first such draw; the random draw itself when it does).
VALIDATION_DRAWS = ("random", "class_covering")
# Keras dtype policies a network may train in. "mixed_bfloat16": layers compute in bfloat16 and keep float32 weights
# (the class probabilities and the loss stay float32); meant for GPUs with bfloat16 units. Not a recipe switch: on the
# 2-core CPU it is slower (bench/benchmarks/deep_models.py --param precision=mixed_bfloat16 measures it).
PRECISIONS = ("float32", "mixed_bfloat16")
# How the networks train: the compiled loop (several steps per XLA call, augmentation on the device, the refitted
# networks as one program; see compiled_loop.py), or Keras' `fit` over batches drawn in Python (the loop before it).
LOOPS = ("compiled", "keras")
# Not yet the registered models' default: the committed deep rows were trained by the Keras loop, and a model version
# that trains on the compiled loop comes with those rows retrained (issue 54). `--param loop=compiled` selects it.
LOOP_DEFAULT = {"precision": "float32", "loop": "keras"}
# Every network reading frames sees 40 ms steps (4 frames averaged, `pool_frames`), and averages three networks:
# validation speakers pick the epoch count, then three networks retrain on every training speaker and
# `predict_proba` averages their probabilities (the mlp's recipe). Chosen on inner folds (all outer folds, seeds 0
# and 1) against each model's earlier recipe at 20 ms steps, one network: RAVDESS +0.004 (lstm) to +0.056 (bilstm),
# URDU +0.029 (transformer) to +0.096 (cnn2d), at 1.0x to 1.8x the fit time. 40 ms steps alone lose on 6 of 8 models
# (mean -0.015); the averaging adds about +0.04 on top. (20 ms against 10 ms steps, earlier: -0.003 on RAVDESS, +0.038
# on URDU, at a third of the fit time.) See bench/benchmarks/deep_recipe.md, "Averaging refitted frame models".
FRAME_RECIPE = {"frame_pool": 4, "refit_full": True, "refit_networks": 3}
# Every deep model picks its best epoch (early stopping, plateau halving, the refit epoch count) by the validation
# speakers' UAR, and among epochs tied on it takes the one with the lowest validation loss. Before (to the versions
# below), it took the earliest epoch with the best validation accuracy: URDU's four validation speakers often lack
# emotions, accuracy there rewards the majority class, and refitted networks trained a median of 2-7 epochs, often 1.
# Inner folds (first inner split of every outer training fold, seeds 0 and 1): URDU +0.024 over the 9 deep models
# (each >= 0; cnn +0.087), RAVDESS +0.002 (cnn_lstm -0.014 the most lost), inside the rule fixed before the RAVDESS
# runs (mean >= -0.005, none below -0.02). See bench/benchmarks/deep_recipe.md, "Which epoch is the best".
BEST_EPOCH = {"monitor": "val_uar", "best_epoch_ties": "lowest_loss"}


# `length_buckets`: 0, every batch padded to the corpus-wide length; k >= 1, each batch padded only to its own longest
# utterance (rounded up, `padded_length_step`), the validation and predicted rows taken in order of length; with
# k >= 2 the training batches are also drawn by length: each run of k batches of the shuffled rows sorted by length,
# then cut (`epoch_batches`). k = 1 trains the same batches as 0, so the same network up to float rounding.


def _check_length_buckets(params: dict) -> None:
    buckets = params.get("length_buckets", 0)
    if isinstance(buckets, bool) or not isinstance(buckets, int) or buckets < 0:
        raise ValueError(f"length_buckets must be a whole number >= 0, not {buckets!r}")
    if not buckets:
        return
    if params.get("loop") == "compiled":
        raise ValueError("length_buckets needs loop=keras: the compiled loop pads batches to the corpus-wide length")
    architecture = params.get("architecture")
    if architecture in ARCHITECTURES and architecture not in TIME_ALIGNMENT:
        raise ValueError(f"{architecture!r} reads inputs of the corpus-wide length; length_buckets applies to "
                         f"{', '.join(sorted(TIME_ALIGNMENT))}")


def check_choices(params: dict) -> None:
    """Refuse a deep model's setting outside its choices (schedule, monitor, ...): at a suite's load, before any fit,
    and again in `fit`."""
    choices = {"schedule": SCHEDULES, "averaging": AVERAGING, "precision": PRECISIONS, "loop": LOOPS,
               "monitor": MONITORS,
               "refit_schedule": REFIT_SCHEDULES, "best_epoch_ties": EPOCH_TIES,
               "validation_draw": VALIDATION_DRAWS, "pooling": tuple(POOLINGS)}
    for key, allowed in choices.items():
        if key in params and params[key] not in allowed:
            raise ValueError(f"{key} must be one of {', '.join(allowed)}, not {params[key]!r}")
    _check_length_buckets(params)
