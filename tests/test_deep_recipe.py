"""Training-recipe switches of the deep models: mixup, label smoothing, cosine schedule, weight averaging,
per-utterance normalisation, statistics and attention pooling, coarser time steps.
Each touches training batches only, and the averaged weights are the ones used."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from deep_toy_data import LABELS, SPEAKERS, N, toy_frames, toy_vectors
from sklearn.metrics import balanced_accuracy_score

from ser_models.models import architectures, deep, get_model, model_names, model_spec, recipe, training
from ser_models.models.deep import DeepClassifier, keras_module

SMALL = {"epochs": 3, "width": 8, "batch_size": 16}
RECIPE = {"mixup": 0.4, "label_smoothing": 0.1, "schedule": "cosine", "warmup_epochs": 1, "averaging": "swa",
          "average_epochs": 2, "utterance_norm": True, "pooling": "mean_std_max"}


def test_switches_are_off_by_default_and_stay_out_of_recorded_parameters():
    spec = model_spec("lstm")
    # old rows keep their config hashes: only the switch its registration sets is recorded
    assert set(recipe.RECIPE_SWITCHES) & set(spec.resolved_params()) == {"refit_networks", "best_epoch_ties"}
    assert set(spec.resolved_params({"mixup": 0.2})) >= {"mixup"}  # a suite that sets one records it
    model = spec.build(seed=0, mixup=0.2)
    assert model.mixup == 0.2 and model.label_smoothing == 0.0
    with pytest.raises(ValueError, match="no parameters"):
        spec.build(seed=0, mixpu=0.2)


def test_mixup_blends_rows_targets_and_weights_of_one_batch():
    model = DeepClassifier(mixup=0.4)
    rng = np.random.default_rng(0)
    values = rng.normal(size=(8, 10, 4)).astype(np.float32)
    mask = (np.arange(10)[None] < np.array([10, 5, 7, 3, 10, 9, 2, 6])[:, None]).astype(np.float32)
    targets = np.eye(3, dtype=np.float32)[np.arange(8) % 3]
    weights = np.linspace(1, 2, 8).astype(np.float32)
    (mixed, mixed_mask), soft, mixed_weights = model._mix([values, mask], targets, weights, rng)
    np.testing.assert_allclose(soft.sum(axis=1), 1.0, rtol=1e-6)
    assert (soft.max(axis=1) >= 0.5 - 1e-6).all()  # each row keeps the larger share
    assert ((mixed_mask == 1) >= (mask == 1)).all()  # real frames of either row stay real
    assert mixed.shape == values.shape and not np.allclose(mixed, values)
    assert mixed_weights.min() >= 1 - 1e-6 and mixed_weights.max() <= 2 + 1e-6


def test_mixup_and_masks_touch_training_batches_only(monkeypatch):
    seen, calls = [], {"predict": False, "during_predict": 0}
    original = DeepClassifier._mix

    def spy(self, arrays, targets, weights, rng):
        if calls["predict"]:
            calls["during_predict"] += 1
        seen.extend(arrays[1].sum(axis=1).astype(int).tolist())
        return original(self, arrays, targets, weights, rng)

    monkeypatch.setattr(DeepClassifier, "_mix", spy)
    frames = toy_frames()
    test_rows = np.flatnonzero(frames.lengths == 56)  # a length only these rows have
    train_rows = np.setdiff1d(np.arange(N), test_rows)
    # 10 ms steps (frame_pool 1), so that a batch row's step count is its utterance's frame count; no refit, so that
    # the validation speakers' rows never enter a batch
    model = get_model("cnn", seed=0, **SMALL, mixup=0.4, frame_pool=1, refit_full=False).fit(
        frames[train_rows], LABELS[train_rows], groups=SPEAKERS[train_rows])
    calls["predict"] = True
    model.predict_proba(frames[test_rows])
    assert seen and 56 not in seen and calls["during_predict"] == 0
    validation = np.isin(SPEAKERS[train_rows], model.validation_speakers_)
    fitted = frames.lengths[train_rows][~validation]
    assert len(seen) >= SMALL["epochs"] * len(fitted)  # every epoch (Keras may fetch one batch more to build)
    assert set(seen) <= set(fitted.tolist())  # lengths of the non-validation training rows only


def test_averaged_weights_are_the_ones_predict_proba_uses(monkeypatch):
    recorded = []
    make = deep.weight_averager

    def recording(keras):
        class Recording(make(keras)):
            def on_epoch_end(self, epoch, logs=None):
                recorded.append([np.asarray(w, dtype=np.float64) for w in self.model.get_weights()])
                super().on_epoch_end(epoch, logs)

        return Recording

    monkeypatch.setattr(deep, "weight_averager", recording)
    frames = toy_frames()
    model = get_model("cnn", seed=0, **{**SMALL, "epochs": 4}, averaging="swa", average_epochs=3,
                      validation_speakers=0.0, refit_full=False).fit(frames[:60], LABELS[:60])
    assert len(recorded) == 4 and model.history_["averaged_epochs"] == [1.0, 2.0, 3.0]
    expected = [np.mean([epoch[i] for epoch in recorded[1:]], axis=0) for i in range(len(recorded[0]))]
    for used, average in zip(model.model_.get_weights(), expected, strict=True):
        np.testing.assert_allclose(used, average, rtol=1e-5, atol=1e-6)
    keras = keras_module()
    fresh = model._network(model.input_shapes_, len(model.classes_))
    fresh.set_weights([w.astype(np.float32) for w in expected])
    manual = np.asarray(fresh.predict(model._arrays(frames[60:]), verbose=0), dtype=np.float64)
    np.testing.assert_allclose(model.predict_proba(frames[60:]), manual / manual.sum(axis=1, keepdims=True),
                               rtol=1e-4, atol=1e-6)
    assert keras.backend.backend() == "jax"


def test_cosine_schedule_warms_up_then_decays_to_zero():
    rate = DeepClassifier(learning_rate=1e-3, warmup_epochs=2)._cosine(10)
    assert rate(0) < rate(1) < rate(2) == pytest.approx(1e-3)
    assert rate(9) < rate(5) < rate(2) and rate(10) == pytest.approx(0.0, abs=1e-12)


def test_utterance_normalisation_uses_each_utterance_alone():
    frames = toy_frames()
    model = DeepClassifier(utterance_norm=True)
    values = model._frame_values(frames)
    mask = frames.mask().astype(bool)
    for row in (0, 5, 30):
        real = values[row][mask[row]]
        np.testing.assert_allclose(real.mean(axis=0), 0.0, atol=1e-3)
        assert not values[row][~mask[row]].any()
    np.testing.assert_allclose(model._frame_values(frames[[5]])[0], values[5], rtol=1e-6)  # no other row matters


def test_same_seed_same_predictions_with_every_switch_on_cpu():
    x = toy_frames()
    runs = [get_model("cnn", seed=7, **SMALL, **RECIPE).fit(x[:60], LABELS[:60], groups=SPEAKERS[:60])
            .predict_proba(x[60:]) for _ in range(2)]
    np.testing.assert_array_equal(runs[0], runs[1])


def test_unknown_schedule_is_a_clear_error():
    with pytest.raises(ValueError, match="schedule must be one of"):
        get_model("cnn", seed=0, **SMALL, schedule="onecycle").fit(toy_frames()[:30], LABELS[:30])


def test_statistics_pooling_reads_real_frames_only():
    keras = keras_module()
    rng = np.random.default_rng(3)
    lengths = np.array([7, 3, 10])
    mask = (np.arange(10)[None] < lengths[:, None]).astype(np.float32)
    x = rng.normal(size=(3, 10, 4)).astype(np.float32) * 5  # padding filled with large values on purpose
    pooled = np.asarray(architectures._pool(keras, x, mask, "mean_std_max"))
    assert pooled.shape == (3, 12)
    for row, length in enumerate(lengths):
        real = x[row, :length]
        expected = np.concatenate([real.mean(axis=0), real.std(axis=0), real.max(axis=0)])
        np.testing.assert_allclose(pooled[row], expected, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(np.asarray(architectures._pool(keras, x, mask, "mean_max")),
                               np.delete(pooled, np.s_[4:8], axis=1), rtol=1e-6)


def test_coarser_time_steps_average_real_frames_only():
    rng = np.random.default_rng(5)
    lengths = np.array([7, 2, 9])
    mask = (np.arange(9)[None] < lengths[:, None]).astype(np.float32)
    values = rng.normal(size=(3, 9, 4)).astype(np.float32) * 5  # padding filled on purpose
    pooled, steps = architectures.pool_frames(values, mask, 2)
    assert pooled.shape == (3, 5, 4) and steps.shape == (3, 5)  # 9 frames: the last step holds one
    np.testing.assert_array_equal(steps.sum(axis=1), np.ceil(lengths / 2))
    for row, length in enumerate(lengths):
        for step in range(5):
            real = values[row, 2 * step:min(2 * step + 2, length)]
            expected = real.mean(axis=0) if len(real) else np.zeros(4)
            np.testing.assert_allclose(pooled[row, step], expected, rtol=1e-5, atol=1e-6)
    same, same_mask = architectures.pool_frames(values, mask, 1)
    np.testing.assert_array_equal(same, values * mask[:, :, None])
    np.testing.assert_array_equal(same_mask, mask)
    assert model_spec("lstm").defaults["frame_pool"] == 4 and "frame_pool" not in model_spec("mlp").defaults
    model = get_model("lstm", seed=0, **SMALL).fit(toy_frames()[:36], LABELS[:36])
    assert model.input_shapes_[0] == (16, 161)  # 64 padded frames in 16 steps
    assert get_model("lstm", seed=0, **SMALL, frame_pool=1).fit(toy_frames()[:36], LABELS[:36]).input_shapes_[0] == (
        64, 161)


def test_pooling_switch_is_refused_where_a_network_has_no_frame_statistics():
    x = toy_frames()
    with pytest.raises(ValueError, match="does not pool frame statistics"):
        get_model("transformer", seed=0, **SMALL, pooling="mean_std_max").fit(x[:30], LABELS[:30])
    with pytest.raises(ValueError, match="pooling must be one of"):
        get_model("cnn", seed=0, **SMALL, pooling="median").fit(x[:30], LABELS[:30])


def test_attention_pooling_gives_padding_no_weight():
    keras = keras_module()
    rng = np.random.default_rng(4)
    mask = (np.arange(10)[None] < np.array([6, 2])[:, None]).astype(np.float32)
    x = rng.normal(size=(2, 10, 4)).astype(np.float32)
    changed = np.where(mask[:, :, None] == 1, x, 100.0).astype(np.float32)  # padding rewritten, real frames kept

    def pooled(values, frame_mask):
        keras.utils.set_random_seed(0)  # the same scoring layer weights for each call
        return np.asarray(architectures._pool(keras, values, frame_mask, "attention_max"))

    np.testing.assert_allclose(pooled(x, mask), pooled(changed, mask), rtol=1e-6)
    assert not np.allclose(pooled(x, mask), pooled(x, np.ones_like(mask)))  # with the padding counted, it differs
    assert pooled(x, mask).shape == (2, 8)


@pytest.mark.parametrize("name", ["mlp", "cnn"])  # registered with three networks (cnn: frames at 40 ms steps)
def test_refitted_networks_are_distinct_and_predict_proba_averages_them(name):
    x = toy_vectors() if name == "mlp" else toy_frames()
    model = get_model(name, seed=0, epochs=4, width=8).fit(x[:60], LABELS[:60], groups=SPEAKERS[:60])
    networks = [model.model_, *model.extra_models_]
    assert len(networks) == 3 and model.history_["refit_epochs"]
    first_layers = [n.get_weights()[0] for n in networks]
    assert not np.allclose(first_layers[0], first_layers[1]) and not np.allclose(first_layers[1], first_layers[2])
    inputs = model._arrays(x[60:])
    each = [np.asarray(n.predict(inputs, verbose=0), dtype=np.float64) for n in networks]
    np.testing.assert_allclose(model.predict_proba(x[60:]), np.mean(each, axis=0), rtol=1e-6)
    assert not np.allclose(each[0], each[1])  # so the mean is not any single network's output
    loaded = pickle.loads(pickle.dumps(model))  # every network travels with a saved model
    np.testing.assert_allclose(loaded.predict_proba(x[60:]), model.predict_proba(x[60:]), atol=1e-6)


def test_one_refitted_network_is_the_recipe_before_the_switch():
    x = toy_vectors()
    one = get_model("mlp", seed=0, epochs=4, width=8, refit_networks=1).fit(x, LABELS, groups=SPEAKERS)
    three = get_model("mlp", seed=0, epochs=4, width=8, refit_networks=3).fit(x, LABELS, groups=SPEAKERS)
    assert one.extra_models_ == []
    for a, b in zip(one.model_.get_weights(), three.model_.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)  # the first network is the single one, on the same seed
    assert {model_spec(m).resolved_params()["refit_networks"] for m in model_names("deep")} == {3}


def test_kept_validation_network_is_the_first_of_the_averaged_networks():
    x, small = toy_vectors(), {"seed": 0, "epochs": 4, "width": 8}
    kept = get_model("mlp", keep_validation_network=True, **small).fit(x, LABELS, groups=SPEAKERS)
    early_stopped = get_model("mlp", refit_full=False, **small).fit(x, LABELS, groups=SPEAKERS)
    retrained = get_model("mlp", **small).fit(x, LABELS, groups=SPEAKERS)
    assert len(kept.extra_models_) == 2 and kept.validation_speakers_ == early_stopped.validation_speakers_
    for a, b in zip(kept.model_.get_weights(), early_stopped.model_.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)  # trained once, on the training speakers less the validation ones
    for mine, theirs in zip(kept.extra_models_, retrained.extra_models_, strict=True):
        for a, b in zip(mine.get_weights(), theirs.get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)  # the second and third retrained networks, on the same seeds
    each = [np.asarray(n.predict(kept._arrays(x), verbose=0), dtype=np.float64)
            for n in [kept.model_, *kept.extra_models_]]
    np.testing.assert_allclose(kept.predict_proba(x), np.mean(each, axis=0), rtol=1e-6)


def test_replayed_refit_follows_the_validation_pass_learning_rates(monkeypatch):
    replay = DeepClassifier(refit_schedule="replay", learning_rate=1e-3)
    # the history logs each epoch's rate after the plateau callback: the rate the next epoch runs at
    history = {"learning_rate": [1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4]}
    assert replay._replayed_rates(history, 4) == [1e-3, 1e-3, 1e-3, 5e-4]
    assert DeepClassifier(refit_schedule="constant")._replayed_rates(history, 4) is None
    assert DeepClassifier(refit_schedule="replay", schedule="cosine")._replayed_rates(history, 4) is None

    chosen = {}

    def halving(self, history, epochs):  # a rate per refit epoch that halves every epoch, whatever the toy data did
        chosen["rates"] = [1e-3 / 2 ** e for e in range(epochs)]
        return chosen["rates"]

    monkeypatch.setattr(DeepClassifier, "_replayed_rates", halving)
    small = {"seed": 0, "epochs": 3, "width": 8, "refit_networks": 1, "monitor": "val_loss"}
    model = get_model("mlp", refit_schedule="replay", **small).fit(toy_vectors(), LABELS, groups=SPEAKERS)
    assert len(chosen["rates"]) == model.history_["refit_epochs"][0] > 1  # so the last rate is not the base one
    final = float(np.asarray(model.model_.optimizer.learning_rate))
    assert final == pytest.approx(chosen["rates"][-1])  # the retrained network ran its last epoch at that rate
    with pytest.raises(ValueError, match="refit_schedule"):
        get_model("mlp", seed=0, refit_schedule="cosine").fit(toy_vectors(), LABELS, groups=SPEAKERS)


def test_runs_with_different_seeds_never_share_a_refitted_network_seed():
    seeds = [{training.network_seed(run, index) for index in range(5)} for run in range(10)]
    assert all(len(s) == 5 for s in seeds)
    assert all(not seeds[a] & seeds[b] for a in range(10) for b in range(a + 1, 10))
    assert training.network_seed(7, 0) == 7


def test_tied_validation_accuracies_go_to_the_epoch_with_the_lowest_validation_loss():
    history = {"val_accuracy": [1.0, 0.9, 1.0, 1.0, 0.95], "val_loss": [0.6, 0.5, 0.3, 0.4, 0.2]}
    assert training.best_epoch(history, "val_accuracy") == 0  # the rule before recipe.BEST_EPOCH: the first tied epoch
    assert training.best_epoch(history, "val_accuracy", "lowest_loss") == 2
    assert training.best_epoch(history, "val_loss", "lowest_loss") == 4  # a loss monitor has no ties to break
    for name in ("mlp", "cnn", "cnn2d", "lstm", "gru", "bilstm", "cnn_lstm", "transformer", "fusion"):
        assert model_spec(name).resolved_params().items() >= recipe.BEST_EPOCH.items()  # registered and recorded
    with pytest.raises(ValueError, match="best_epoch_ties"):
        get_model("mlp", seed=0, best_epoch_ties="last").fit(toy_vectors(), LABELS, groups=SPEAKERS)


class _Weights:
    """A stand-in for a Keras model: its weights are the number of the epoch that last set them."""

    def __init__(self):
        self.epoch, self.stop_training = None, False

    def get_weights(self):
        return self.epoch

    def set_weights(self, weights):
        self.epoch = weights


def test_tie_breaking_early_stopping_counts_a_lower_loss_at_the_best_accuracy_as_progress():
    keras = keras_module()
    model = _Weights()
    stopper = training.tie_breaking_early_stopping(keras)("val_accuracy", patience=2, restore=True)
    stopper.set_model(model)
    stopper.on_train_begin()
    history = {"val_accuracy": [1.0, 1.0, 1.0, 0.9, 1.0, 1.0], "val_loss": [0.5, 0.4, 0.3, 0.2, 0.35, 0.3]}
    for epoch, (accuracy, loss) in enumerate(zip(*history.values(), strict=True)):
        model.epoch = epoch
        stopper.on_epoch_end(epoch, {"val_accuracy": accuracy, "val_loss": loss})
        if model.stop_training:
            break
    # Keras' EarlyStopping would have stopped after epoch 2 and restored epoch 0; the loss kept falling until epoch 2
    assert (epoch, stopper.best_epoch) == (4, 2)
    stopper.on_train_end()
    assert model.epoch == 2 == training.best_epoch({k: v[:epoch + 1] for k, v in history.items()}, "val_accuracy",
                                                "lowest_loss")


def test_tie_breaking_refit_trains_the_epoch_count_the_rule_picks():
    x, small = toy_vectors(), {"seed": 0, "epochs": 6, "width": 8, "refit_networks": 1, "patience": 2}
    model = get_model("mlp", monitor="val_accuracy", best_epoch_ties="lowest_loss", **small).fit(x, LABELS,
                                                                                                 groups=SPEAKERS)
    picked = training.best_epoch(model.history_, "val_accuracy", "lowest_loss") + 1
    assert model.history_["refit_epochs"] == [float(picked)]
    steps = int(np.ceil(len(x) / model.batch_size))
    assert int(model.model_.optimizer.iterations) == picked * steps  # the refitted network trained that many epochs


def test_validation_uar_is_the_mean_recall_over_the_classes_present():
    keras = keras_module()
    metric = training.uar_metric(keras)(4)
    truth = np.array([0, 0, 0, 0, 0, 0, 2, 2])  # mostly class 0; classes 1 and 3 absent
    guess = np.eye(4)[[0, 0, 0, 0, 0, 0, 0, 2]]
    metric.update_state(truth[:5], guess[:5])  # two batches accumulate
    metric.update_state(truth[5:], guess[5:])
    assert float(metric.result()) == pytest.approx((6 / 6 + 1 / 2) / 2)  # accuracy would be 7/8
    metric.reset_state()
    metric.update_state(np.eye(4)[truth], np.eye(4)[[0] * 8])  # one-hot targets (mixup, label smoothing)
    assert float(metric.result()) == pytest.approx(0.5)


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")  # UAR over the classes present
def test_validation_uar_monitor_picks_the_best_epoch_by_uar():
    x, small = toy_vectors(), {"seed": 0, "epochs": 4, "width": 8, "refit_networks": 1, "best_epoch_ties": "first"}
    model = get_model("mlp", monitor="val_uar", **small).fit(x, LABELS, groups=SPEAKERS)
    uar = model.history_["val_uar"]
    assert len(uar) == len(model.history_["val_accuracy"]) and all(0 <= u <= 1 for u in uar)
    assert model.history_["refit_epochs"] == [float(np.argmax(uar) + 1)]
    # the early-stopped network (best epoch restored) scores its best val_uar on the validation speakers
    stopped = get_model("mlp", monitor="val_uar", refit_full=False, **small).fit(x, LABELS, groups=SPEAKERS)
    val = np.isin(SPEAKERS, stopped.validation_speakers_)
    expected = balanced_accuracy_score(np.asarray(LABELS)[val], stopped.predict(x[val]))
    assert max(stopped.history_["val_uar"]) == pytest.approx(expected, abs=1e-6)
    with pytest.raises(ValueError, match="monitor"):
        get_model("mlp", seed=0, monitor="val_f1").fit(x, LABELS, groups=SPEAKERS)


def test_same_seed_same_predictions_with_the_best_epoch_switches_on_cpu():
    x, switches = toy_frames(), {"monitor": "val_uar", "best_epoch_ties": "lowest_loss"}
    runs = [get_model("cnn", seed=7, **SMALL, **switches).fit(x[:60], LABELS[:60], groups=SPEAKERS[:60])
            .predict_proba(x[60:]) for _ in range(2)]
    np.testing.assert_array_equal(runs[0], runs[1])


def test_class_covering_draw_keeps_a_covering_draw_and_redraws_one_that_is_not():
    speakers_of = {s: LABELS[SPEAKERS == s][0] for s in np.unique(SPEAKERS)}  # each toy speaker voices one class
    rng = np.random.default_rng(0)
    covering = np.array(["toy:00", "toy:01", "toy:02"])
    assert list(training.class_covering_draw(covering, rng, LABELS, SPEAKERS)) == list(covering)
    one_class = np.array(["toy:00", "toy:03", "toy:06"])  # all angry
    draw = training.class_covering_draw(one_class, rng, LABELS, SPEAKERS)
    assert len(draw) == 3 and len(set(draw)) == 3
    assert {speakers_of[s] for s in draw} == set(LABELS)
    assert {speakers_of[s] for s in set(speakers_of) - set(draw)} == set(LABELS)


def test_class_covering_draw_never_takes_a_class_away_from_training():
    # "sad" has one speaker: validation cannot hold it without training losing it, so the draw covers the other two
    keep = ~np.isin(SPEAKERS, ["toy:05", "toy:08", "toy:11"])
    labels, speakers = LABELS[keep], SPEAKERS[keep]
    draw = training.class_covering_draw(np.array(["toy:00", "toy:03"]), np.random.default_rng(0), labels, speakers)
    assert "toy:02" not in draw
    assert set(labels[np.isin(speakers, draw)]) == {"angry", "neutral"}


@pytest.mark.parametrize("draw", ["random", "class_covering"])
def test_validation_draw_picks_training_speakers_only_and_covering_ones_when_asked(draw):
    train = np.flatnonzero(~np.isin(SPEAKERS, ["toy:00", "toy:01"]))
    covered = []
    for seed in range(4):
        model = get_model("mlp", seed=seed, **SMALL, refit_full=False, validation_speakers=0.3,
                          validation_draw=draw).fit(toy_vectors()[train], LABELS[train], groups=SPEAKERS[train])
        assert set(model.validation_speakers_) <= set(SPEAKERS[train]) - {"toy:00", "toy:01"}
        covered.append(set(LABELS[np.isin(SPEAKERS, model.validation_speakers_)]) == set(LABELS))
    assert all(covered) if draw == "class_covering" else not all(covered)  # seeds whose random draw misses a class
