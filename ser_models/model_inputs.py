"""Model inputs of a table: functionals, padded frames or both, plus augmented training copies.

One definition for the harness' fits, the ensembles' members and `bench predict`: each builds its inputs here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ser_models.ensembles import MultiInput, member_feature_set
from ser_models.feature_cache import FeatureSet
from ser_models.feature_store import StoredFrames, StoredRows, resident_copy
from ser_models.models import model_spec
from ser_models.models.frames import DEFAULT_MAX_FRAMES, FrameBatch, pad_frames
from ser_models.protocols import SpeakerLeakError, assert_speaker_disjoint


def _fusion(vectors: np.ndarray, frames: list[np.ndarray], names: list[str]) -> FrameBatch:
    batch = pad_frames(frames, DEFAULT_MAX_FRAMES)
    return FrameBatch(batch.values, batch.lengths, vectors)


def layer_stack(vectors: np.ndarray, frames: object, names: list[str]) -> np.ndarray:
    """(n, layers, features): an encoder's vectors of every layer ("layer{k}.{name}" columns), one row per layer."""
    layers = {name.split(".", 1)[0] for name in names if name.startswith("layer") and "." in name}
    if not layers or len(names) != vectors.shape[1] or len(names) % len(layers):
        raise ModelInputError("this model reads every layer of a speech encoder: feature_set = \"encoder\" with "
                              "[feature_options.encoder] layer = \"all\" (and no gender_input)")
    return vectors.reshape(len(vectors), len(layers), -1)


# Each input kind: how to build it from (utterance vectors, frame matrices, vector names), and how to stack row
# blocks of it.
MODEL_INPUTS = {
    "functionals": lambda vectors, frames, names: vectors,
    "frames": lambda vectors, frames, names: pad_frames(frames, DEFAULT_MAX_FRAMES),
    "fusion": _fusion,
    "layers": layer_stack,
}
STACK_INPUTS = {"functionals": np.concatenate, "frames": FrameBatch.concatenate, "fusion": FrameBatch.concatenate,
                "layers": np.concatenate, "multi": MultiInput.concatenate, "multi_functionals": MultiInput.concatenate}


def _stored_rows(features: FeatureSet, name: str) -> StoredRows:
    width = len(features.functional_names) if name == "functionals" else len(features.frame_names)
    return StoredRows.of(features.store, features.store_rows, width)


# The kinds read from a feature store: the rows travel as the store's folder and row numbers, read in the worker.
STORED_INPUTS = {
    "functionals": lambda features: _stored_rows(features, "functionals"),
    "frames": lambda features: StoredFrames(_stored_rows(features, "frames"), DEFAULT_MAX_FRAMES),
    "fusion": lambda features: StoredFrames(_stored_rows(features, "frames"), DEFAULT_MAX_FRAMES,
                                            _stored_rows(features, "functionals")),
}


def stack_blocks(kind: str, blocks: list):
    """Row blocks of one input kind as one: stored blocks stay stored; a mix is read into memory first."""
    if all(isinstance(b, StoredRows) for b in blocks):
        return StoredRows.concatenate(blocks)
    if all(isinstance(b, StoredFrames) for b in blocks):
        return StoredFrames.concatenate(blocks)
    return STACK_INPUTS[kind]([resident_copy(b) for b in blocks])
GENDER_CODES = {"female": 0.0, "male": 1.0}


class ModelInputError(ValueError):
    """The inputs a model asked for cannot be built from the features at hand."""


def gender_column(manifest: pd.DataFrame) -> np.ndarray:
    """(n, 1) speaker gender from the corpus metadata: 1 male, 0 female; refuses unknown genders."""
    unknown = ~manifest["gender"].isin(list(GENDER_CODES))
    if unknown.any():
        example = manifest["path"][unknown].iloc[0]
        raise ValueError(f"{int(unknown.sum())} utterances have no gender metadata (e.g. {example})")
    return manifest["gender"].map(GENDER_CODES).to_numpy(np.float32)[:, None]


class ModelInputs:
    """Model inputs of one table, built once per kind, plus aligned augmented copies.

    `target` is the manifest column predicted (emotion, or gender); `gender_input` appends the
    speaker's gender from the metadata to the utterance functionals. `other_sets` are the same
    utterances on other feature sets (e.g. ComParE), read by ensemble members "model@compare".
    `copies` names, per (model, seed) fit or per model, the positions in `augmented` of the copies its rows train on
    (copies are drawn with the model's seed); without it every model trains on every copy, and a model it does not
    name trains on none.
    """

    def __init__(self, features: FeatureSet, augmented: list[FeatureSet] = (), *, target: str = "emotion",
                 gender_input: bool = False, other_sets: dict[str, FeatureSet] | None = None,
                 copies: dict[str | tuple[str, int], tuple[int, ...]] | None = None):
        self.features = features
        self.copies = None if copies is None else {m: tuple(c) for m, c in copies.items()}
        self.target = target
        self.gender_input = gender_input
        self.sets = [features, *augmented]
        self.other_sets = dict(other_sets or {})
        # Row of each original utterance in each set (-1 where its augmented copy failed).
        self.positions = [
            pd.Series(np.arange(len(s.manifest)), index=s.manifest["path"]).reindex(features.manifest["path"])
            .fillna(-1).astype(int).to_numpy()
            for s in self.sets
        ]
        self._built: dict[tuple[str, int], object] = {}

    def _input(self, kind: str, index: int):
        if kind in ("multi", "multi_functionals"):  # ensembles: the kinds their members read, from the shared ones
            frames = self._input("frames", index) if kind == "multi" else None
            return MultiInput(self._input("functionals", index), frames,
                              {name: self._other_functionals(name, index) for name in self.other_sets})
        if (kind, index) not in self._built:
            features = self.sets[index]
            if kind in ("frames", "fusion") and features.frames is None:
                raise ModelInputError(f"{kind} models need frame features, which were not extracted for this "
                                      f"feature set ({features.functional_names[0]}, ...)")
            if features.store is not None and not self.gender_input and kind in STORED_INPUTS:
                self._built[(kind, index)] = STORED_INPUTS[kind](features)
                return self._built[(kind, index)]
            vectors = features.functionals
            if self.gender_input:
                vectors = np.hstack([vectors, gender_column(features.manifest)])
            self._built[(kind, index)] = MODEL_INPUTS[kind](vectors, features.frames, features.functional_names)
        return self._built[(kind, index)]

    def _other_functionals(self, name: str, index: int) -> np.ndarray:
        """Functionals of feature set `name`, aligned with the rows of set `index` (originals only)."""
        if ("other", name, index) not in self._built:
            other, manifest = self.other_sets[name], self.sets[index].manifest
            if index > 0:
                raise ModelInputError(f"ensemble members on the {name} features cannot train on augmented copies "
                                      f"(their {name} features are not extracted); drop the augmentation or them")
            rows = pd.Series(np.arange(len(other.manifest)), index=other.manifest["path"]).reindex(manifest["path"])
            if rows.isna().any():
                missing = manifest["path"][rows.isna().to_numpy()].tolist()
                raise ModelInputError(f"{len(missing)} utterances have no {name} features (e.g. {missing[0]}); "
                                      f"ensemble members on {name} need every utterance")
            vectors = other.functionals[rows.astype(int).to_numpy()]
            if self.gender_input:
                vectors = np.hstack([vectors, gender_column(manifest)])
            self._built[("other", name, index)] = vectors
        return self._built[("other", name, index)]

    def test_set(self, model: str, test: np.ndarray, members: list[str] | None = None):
        """Original (never augmented) inputs of the test rows."""
        return self._input(input_kind(model, members), 0)[test]

    def sets_of(self, model: str, seed: int = 0) -> list[int]:
        """Indices into `sets` that `model` (of `seed`) trains on: the originals (0), then its copies."""
        if self.copies is None:
            return list(range(len(self.sets)))
        return [0, *(1 + i for i in self.copies.get((model, seed), self.copies.get(model, ())))]

    def training_set(self, model: str, train: np.ndarray, members: list[str] | None = None, seed: int = 0):
        """(x, y, speakers, source rows): training rows plus their augmented copies, nothing else."""
        kind = input_kind(model, members)
        blocks, sources = [], []
        for index in self.sets_of(model, seed):
            rows = self.positions[index][train]
            keep = rows >= 0
            blocks.append(self._input(kind, index)[rows[keep]])
            sources.append(train[keep])
        source = np.concatenate(sources)
        manifest = self.features.manifest
        x = stack_blocks(kind, blocks) if len(blocks) > 1 else blocks[0]
        return x, manifest[self.target].to_numpy()[source], manifest["speaker"].to_numpy()[source], source


def input_kind(model: str, members: list[str] | None = None) -> str:
    """What `model` reads; an ensemble whose members all read functionals gets no padded frames."""
    kind = model_spec(model).input
    if kind == "multi" and members is not None and all(
            model_spec(member_feature_set(m)[0]).input == "functionals" for m in members):
        return "multi_functionals"
    return kind


def job_data(inputs: ModelInputs, model: str, train: np.ndarray, test: np.ndarray,
             speaker_independent: bool = True, members: list[str] | None = None, seed: int = 0) -> tuple:
    """Arguments of fit_and_predict after the seed; asserts no test utterance (or copy) is trained on."""
    x_train, y_train, groups_train, source = inputs.training_set(model, train, members, seed)
    if np.isin(source, test).any():
        raise SpeakerLeakError("a test-fold utterance (or an augmented copy of one) reached the training set")
    keys = np.asarray(inputs.features.keys)
    if np.isin(keys[test], keys[source]).any():
        raise SpeakerLeakError("a test-fold file's audio is also a training file (a byte-identical copy)")
    if speaker_independent:
        assert_speaker_disjoint(groups_train, inputs.features.manifest["speaker"].to_numpy()[test])
    return x_train, y_train, groups_train, inputs.test_set(model, test, members)
