"""Feature extractors behind one interface: the built-in librosa and openSMILE sets, a user's own, a file's.

An extractor turns a batch of decoded mono signals into utterance vectors ("functionals"), frame sequences
("frames") or both. A suite names it by `feature_set`; its constructor's keyword arguments come from the suite's
`[features.options]` and enter the feature cache key and every record's config hash (with its `version`).

    @register_features("mfcc_mean")
    class MfccMean:
        produces = ("functionals",)
        def __init__(self, n_mfcc: int = 13): ...
        def functional_names(self) -> list[str]: ...
        def extract(self, signals, sample_rate, *, frames=False): ...   # one vector (or UtteranceFeatures) each
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ser_models.registry import Registry

FUNCTIONALS, FRAMES = "functionals", "frames"


@dataclass
class UtteranceFeatures:
    """The output of one extraction pass."""

    functionals: np.ndarray  # (n_functionals,) float32
    frames: np.ndarray | None  # (n_frames, n_frame_features) float16; None: not asked for (openSMILE sets)


@runtime_checkable
class FeatureExtractor(Protocol):
    """What a feature set implements (attributes missing from a user's class take `ExtractorDefaults`' values)."""

    produces: tuple[str, ...]  # "functionals", "frames" or both

    def functional_names(self) -> list[str]: ...

    def extract(self, signals: list[np.ndarray], sample_rate: int, *, frames: bool) -> list: ...


class ExtractorDefaults:
    """Defaults of the optional parts of a FeatureExtractor; a user's class may inherit them or not."""

    version = 1  # bump when the numbers change: cached features and recorded rows are then redone
    produces: tuple[str, ...] = (FUNCTIONALS,)
    batch_size = 8  # signals per `extract` call (a GPU encoder wants more)
    mel_bands = 0  # leading frame columns that form a log-mel spectrogram (read by cnn2d); 0: none
    frames_free = False  # frames come with the functionals in one pass (else a frame pass runs only when asked)
    stored_options: dict = {}  # options the cache entries are made with, when `view` derives the vectors from them

    def view(self, functionals: np.ndarray) -> np.ndarray:
        """The models' (n, len(functional_names())) vectors from (n, stored width) cached ones (with stored_options)."""
        return functionals

    def frame_names(self) -> list[str]:
        return []

    def check_available(self) -> None:
        """Raise (with what to install) when the extractor's optional dependency is absent."""

    def key_fields(self) -> dict:
        """What decides its numbers besides its options and `version`, for the cache key and config hashes; an
        "options" entry here replaces the options there (precomputed features key their file's digest, not its path)."""
        return {}


FEATURES: Registry[Callable[..., Any]] = Registry("feature set")
BUILT_IN = {"librosa", "egemaps", "compare"}  # their cache keys predate extractors: no extractor fields in them


def register_features(name: str, *, factory: Callable | str | None = None) -> Callable:
    """Register a feature extractor class (or factory) under `name`: as a decorator, or with `factory=`."""

    def decorate(target):
        FEATURES.add(name, target)
        return target

    return decorate if factory is None else decorate(factory)


def feature_set_names() -> list[str]:
    """Every registered feature set, built-in ones first."""
    return FEATURES.names()


def option(extractor: object, name: str):
    """An extractor's attribute, or its ExtractorDefaults value when the user's class leaves it out."""
    value = getattr(extractor, name, None)
    if value is not None:
        return value
    default = getattr(ExtractorDefaults, name)
    return default.__get__(extractor) if inspect.isfunction(default) else default


@functools.lru_cache(maxsize=64)
def extractor_for(spec) -> object:
    """The extractor a FeatureSpec names, built with its options (and the spec, when it takes `spec=`)."""
    from ser_models.plugins import resolve

    factory = FEATURES.get(spec.feature_set)
    factory = resolve(factory) if isinstance(factory, str) else factory
    options = dict(spec.options)
    if "spec" in inspect.signature(factory).parameters:
        options["spec"] = spec
    try:
        extractor = factory(**options)
    except TypeError as error:
        raise ValueError(f"feature set {spec.feature_set!r} does not take the options {sorted(dict(spec.options))} "
                         f"({error})") from error
    if not isinstance(extractor, FeatureExtractor):
        raise TypeError(f"feature set {spec.feature_set!r}: {type(extractor).__name__} needs `produces`, "
                        "`functional_names()` and `extract(signals, sample_rate, *, frames)`")
    return extractor


def as_features(value: object, *, frames: bool) -> UtteranceFeatures:
    """One extractor output as UtteranceFeatures: a vector, a (vector, frames) pair, or UtteranceFeatures;
    a frame matrix alone gets the mean and standard deviation of its columns as its vector."""
    if isinstance(value, UtteranceFeatures):
        vector, matrix = value.functionals, value.frames
    elif isinstance(value, tuple):
        vector, matrix = value
    elif np.ndim(value) == 2:
        matrix = np.asarray(value, dtype=np.float32)
        vector = np.concatenate([matrix.mean(axis=0), matrix.std(axis=0)])
    else:
        vector, matrix = value, None
    vector = np.asarray(vector, dtype=np.float32).ravel()
    matrix = None if matrix is None or not frames else np.clip(np.asarray(matrix), -6e4, 6e4).astype(np.float16)
    return UtteranceFeatures(functionals=vector, frames=matrix)
