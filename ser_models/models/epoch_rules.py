"""What the Keras callbacks of the deep models did between epochs, for the compiled training loop: the learning rate
of each epoch (halved on plateaus of the validation monitor, a warm-up and cosine schedule, or replayed rates), early
stopping with the best epoch's weights restored, and the average of the weights of the epochs up to the best one.
They act on a network's state as arrays (or several networks' states stacked), never on a Keras model."""

from __future__ import annotations

import numpy as np

PLATEAU_FACTOR = 0.5
PLATEAU_MIN_DELTA = 1e-4  # Keras' ReduceLROnPlateau default, as the Keras loop used


class EpochRules:
    """The rules of one training run. `rate(epoch)` before an epoch; `end_epoch(epoch, logs, state)` after it says
    whether to stop; `final(state)` is the state to keep (the best epoch's, or the averaged weights)."""

    def __init__(self, model, epochs: int, has_validation: bool, rates: list[float] | None = None):
        self.model, self.has_validation = model, has_validation
        self.monitor, self.patience = model.monitor, model.patience
        self.lower_is_better = model.monitor.endswith("loss")
        self.cosine = model._cosine(epochs) if model.schedule == "cosine" else None
        self.rates = rates if self.cosine is None else None
        self.plateau = self.cosine is None and not rates and has_validation
        self.learning_rate = float(model.learning_rate)
        self.plateau_best, self.plateau_wait = None, 0
        self.stop_best, self.stop_wait, self.best_state = None, 0, None
        self.tie_breaking = model.best_epoch_ties == "lowest_loss" and not self.lower_is_better
        self.averaging = model.averaging == "swa"
        self.window = max(1, int(model.average_epochs))
        self.recent, self.average_score, self.average, self.averaged_epochs = [], -np.inf, None, []

    def rate(self, epoch: int) -> float:
        if self.cosine is not None:
            return float(self.cosine(epoch))
        if self.rates:
            return float(self.rates[min(epoch, len(self.rates) - 1)])
        return self.learning_rate

    def _better(self, value: float, best: float | None, delta: float = 0.0) -> bool:
        if best is None:
            return True
        return value < best - delta if self.lower_is_better else value > best + delta

    def end_epoch(self, epoch: int, logs: dict, state) -> bool:
        """Apply the rules after `epoch` (its `logs`: loss, val_loss, the monitor); True: stop training."""
        if self.averaging:
            self._average(epoch, logs, state)
        if self.plateau:
            self._plateau(float(logs[self.monitor]))
        logs["learning_rate"] = self.rate(epoch + 1)  # the rate the next epoch trains at
        if not self.has_validation:
            return False
        return self._early_stop(epoch, logs, state)

    def _plateau(self, value: float) -> None:
        if self._better(value, self.plateau_best, PLATEAU_MIN_DELTA):
            self.plateau_best, self.plateau_wait = value, 0
            return
        self.plateau_wait += 1
        if self.plateau_wait >= max(1, self.patience // 2):
            self.learning_rate *= PLATEAU_FACTOR
            self.plateau_wait = 0

    def _early_stop(self, epoch: int, logs: dict, state) -> bool:
        """Keras' EarlyStopping (patience, best weights kept); with tie-breaking, an epoch tied on the best monitor
        value with a lower validation loss counts as progress (`training.best_epoch` picks the same epoch)."""
        value = float(logs[self.monitor])
        if self.tie_breaking:
            key = (value, -float(logs["val_loss"]))
            improved = self.stop_best is None or key > self.stop_best
        else:
            key = value
            improved = self._better(value, self.stop_best)
        if self.best_state is None or improved:
            self.best_state = state
        if improved:
            self.stop_best, self.stop_wait = key, 0
            return False
        self.stop_wait += 1
        return self.stop_wait >= self.patience and epoch > 0

    def _average(self, epoch: int, logs: dict, state) -> None:
        trainable = [np.asarray(w, dtype=np.float64) for w in state.trainable]
        self.recent = [*self.recent, (epoch, trainable)][-self.window:]
        value = logs.get(self.monitor) if self.has_validation else None
        score = float(epoch) if value is None else (-value if self.lower_is_better else value)
        if score > self.average_score:
            self.average_score = score
            self.averaged_epochs = [e for e, _ in self.recent]
            self.average = [np.mean([w[i] for _, w in self.recent], axis=0) for i in range(len(trainable))]

    def final(self, state):
        """The state kept: the averaged weights when averaging, else the best epoch's (validation), else the last."""
        if self.average is not None:
            return state._replace(trainable=[a.astype(np.float32) for a in self.average])
        return self.best_state if self.best_state is not None else state
