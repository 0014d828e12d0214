"""A plugin of one's own: a model, a Keras model, a feature set and a corpus, none of them in ser-bench.

Run it with `python -m bench run --suite examples/plugin_suite.toml` (the suite names this file in `plugins`), or
add `--plugin examples/my_plugin.py` to any command. Worker processes load it too.
"""

from __future__ import annotations

from pathlib import Path

import librosa
import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.decomposition import PCA
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import LabelEncoder, StandardScaler

from ser_models.api import CorpusInfo, keras_module, register_corpus, register_features, register_model


# 1. A scikit-learn pipeline. The factory takes the parameters as keywords (and seed=, when it wants one); the
#    scaler and PCA are fitted inside `fit`, so on the training speakers of each fold only.
@register_model("pca_knn", description="standardise, PCA to 32 dimensions, 7 nearest neighbours",
                defaults={"components": 32, "neighbours": 7})
def pca_knn(*, components: int, neighbours: int):
    return make_pipeline(StandardScaler(), PCA(n_components=components, random_state=0),
                         KNeighborsClassifier(n_neighbors=neighbours, weights="distance"))


# 2. A small Keras model of one's own behind the scikit-learn classifier API (fit, predict_proba, classes_).
class TinyKerasClassifier(ClassifierMixin, BaseEstimator):
    """One hidden layer of `units` on standardised utterance vectors (Keras 3, whatever backend is set)."""

    def __init__(self, units: int = 32, epochs: int = 20, seed: int = 0):
        self.units, self.epochs, self.seed = units, epochs, seed

    def fit(self, x, y):
        keras = keras_module()  # Keras on JAX with ser-bench's thread and compile-cache settings
        keras.utils.set_random_seed(self.seed)
        self.encoder_ = LabelEncoder().fit(y)
        self.classes_ = self.encoder_.classes_
        self.mean_, self.scale_ = x.mean(axis=0), x.std(axis=0) + 1e-6
        self.net_ = keras.Sequential([keras.Input((x.shape[1],)), keras.layers.Dense(self.units, activation="relu"),
                                      keras.layers.Dense(len(self.classes_), activation="softmax")])
        self.net_.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
        self.net_.fit((x - self.mean_) / self.scale_, self.encoder_.transform(y), epochs=self.epochs, batch_size=32,
                      verbose=0)
        return self

    def predict_proba(self, x):
        return np.asarray(self.net_.predict((x - self.mean_) / self.scale_, verbose=0), dtype=float)

    def predict(self, x):
        return self.classes_[np.argmax(self.predict_proba(x), axis=1)]


register_model("tiny_keras", family="deep", description="one hidden layer of 32 (Keras), 20 epochs",
               defaults={"units": 32, "epochs": 20}, budget_params=("epochs",), factory=TinyKerasClassifier)


# 3. A feature set: its constructor's keywords are its options ([feature_options.mfcc_stats] in a suite), which enter
#    the cache key with `version`. `extract` gets a batch of mono signals and returns one result per signal: a vector,
#    or (vector, frame matrix) when frames are asked for.
@register_features("mfcc_stats")
class MfccStats:
    """MFCC means and standard deviations; the MFCC frames for the sequence models."""

    produces = ("functionals", "frames")
    version = 1

    def __init__(self, n_mfcc: int = 13):
        self.n_mfcc = n_mfcc

    def functional_names(self) -> list[str]:
        return [f"mfcc{i}_{stat}" for stat in ("mean", "std") for i in range(self.n_mfcc)]

    def frame_names(self) -> list[str]:
        return [f"mfcc{i}" for i in range(self.n_mfcc)]

    def extract(self, signals: list[np.ndarray], sample_rate: int, *, frames: bool) -> list:
        out = []
        for y in signals:
            mfcc = librosa.feature.mfcc(y=y, sr=sample_rate, n_mfcc=self.n_mfcc, n_fft=512, hop_length=160)
            vector = np.concatenate([mfcc.mean(axis=1), mfcc.std(axis=1)])
            out.append((vector, mfcc.T) if frames else vector)
        return out


# 4. A corpus: a loader walks its folder (under the data root) and returns manifest rows and skipped files. Speaker
#    ids are made globally unique ("by_folder:anna"); emotion words are mapped to the canonical names ("Anger" ->
#    angry) and kept as label_raw; a row without gender gets "unknown".
@register_corpus(CorpusInfo(
    name="by_folder", title="Recordings sorted as SPEAKER/EMOTION/*.wav", citation="your lab's corpus",
    license="yours", native_sample_rate=16_000, n_speakers=0, emotions=(), folder="by_folder",
    layout="<root>/by_folder/SPEAKER/EMOTION/*.wav (or .flac)"))
def load_by_folder(root: Path) -> tuple[list[dict], list[tuple[str, str]]]:
    rows, skipped = [], []
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() not in (".wav", ".flac"):
            continue
        parts = path.relative_to(root).parts
        if len(parts) != 3:
            skipped.append((str(path), "not SPEAKER/EMOTION/FILE"))
            continue
        rows.append({"path": str(path), "speaker": parts[0], "emotion": parts[1]})
    return rows, skipped
