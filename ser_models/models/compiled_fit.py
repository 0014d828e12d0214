"""DeepClassifier's fit on the compiled training loop: the early-stopped network on the training speakers but the
validation ones, then the refitted networks on every training speaker, trained together as one program."""

from __future__ import annotations

import numpy as np
from sklearn.utils.class_weight import compute_class_weight

from ser_models.models.architectures import N_MELS_IN_FRAMES
from ser_models.models.compiled_loop import RowReader, set_state, train_states
from ser_models.models.compiled_programs import network_state, programs_for
from ser_models.models.keras_runtime import seed_keras
from ser_models.models.training import best_epoch, network_seed

# Parameters that never change a network's graph or its training step: networks differing only in them share
# compiled programs (the learning rate is an argument of the programs, not a constant in them).
TRAINING_ONLY = {"seed", "epochs", "patience", "learning_rate", "monitor", "validation_speakers", "refit_full",
                 "refit_networks", "keep_validation_network", "refit_schedule", "schedule", "warmup_epochs",
                 "averaging", "average_epochs", "best_epoch_ties", "validation_draw", "loop"}


def class_weights(targets: np.ndarray, n_classes: int) -> np.ndarray:
    """Balanced class weights of these rows ("balanced": n / (classes * count)); 0 for a class they lack."""
    present = np.unique(targets)
    weights = np.zeros(n_classes, dtype=np.float32)
    weights[present] = compute_class_weight("balanced", classes=present, y=targets)
    return weights


def networks_together() -> bool:
    """Whether a fit's refitted networks train as one program (vmap): on an accelerator, where one network leaves
    the device idle between launches; not on the CPU, where XLA runs a vmapped convolution as a grouped one, slower
    than the networks one after another (bench/benchmarks/deep_flops.md)."""
    import jax

    return jax.default_backend() != "cpu"


class CompiledFit:
    """A mixin of DeepClassifier: `_fit_compiled` trains its networks with the compiled loop."""

    def _programs(self, network):
        params = self.get_params()
        key = (tuple(sorted((k, repr(v)) for k, v in params.items() if k not in TRAINING_ONLY)),
               tuple(tuple(s) for s in self.input_shapes_), len(self.classes_))
        return programs_for(key, network, n_classes=len(self.classes_), n_mels=N_MELS_IN_FRAMES,
                            spec_augment=bool(self.spec_augment), mixup=float(self.mixup),
                            label_smoothing=float(self.label_smoothing))

    def _fit_compiled(self, keras, X, targets: np.ndarray, train: np.ndarray, val: np.ndarray) -> dict:
        everyone = np.concatenate([train, val])
        reader = RowReader(lambda rows: self._rows(X, rows), everyone)
        labels, n_classes = targets[everyone].astype(np.int32), len(self.classes_)
        first, held = np.arange(len(train)), np.arange(len(train), len(everyone))
        programs = self._programs(self.model_)
        [state], history = train_states(self, programs, [network_state(self.model_)], reader, first, labels,
                                        class_weights(labels[first], n_classes), self.epochs, [self.seed], held)
        set_state(self.model_, state)
        self.extra_models_ = []
        if not (self.refit_full and len(val)):
            return history
        # The held-out speakers chose the epoch count; now networks train afresh on every training speaker, together.
        best = best_epoch(history, self.monitor, self.best_epoch_ties) + 1
        networks = [self.model_] if self.keep_validation_network else []
        seeds = [network_seed(self.seed, index) for index in range(len(networks), max(1, int(self.refit_networks)))]
        fresh = []
        for seed in seeds:  # each network's initial weights as the Keras loop drew them
            seed_keras(keras, seed)
            fresh.append(self._network(self.input_shapes_, n_classes))
        everything, weights = np.arange(len(everyone)), class_weights(labels, n_classes)
        rates = self._replayed_rates(history, best)
        groups = [list(range(len(fresh)))] if networks_together() else [[i] for i in range(len(fresh))]
        for group in groups:
            states, _ = train_states(self, programs, [network_state(fresh[i]) for i in group], reader, everything,
                                     labels, weights, best, [seeds[i] for i in group], rates=rates)
            for i, trained in zip(group, states, strict=True):
                set_state(fresh[i], trained)
        networks += fresh
        self.model_, self.extra_models_ = networks[0], networks[1:]
        history["refit_epochs"] = [float(best)]
        return history
