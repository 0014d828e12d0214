"""openSMILE's standard sets (eGeMAPSv02, ComParE_2016) as alternative feature sets; needs the opensmile extra."""

from __future__ import annotations

import functools
from functools import lru_cache

import numpy as np

from ser_models.extractors import ExtractorDefaults, register_features

OPENSMILE_SETS = {"egemaps": "eGeMAPSv02", "compare": "ComParE_2016"}


class MissingExtraError(RuntimeError):
    """An optional dependency that a requested feature needs is not installed."""


def opensmile_module():
    try:
        import opensmile
    except ImportError as error:
        raise MissingExtraError(
            "the eGeMAPS and ComParE feature sets need openSMILE: pip install -e '.[opensmile]' "
            "(or pip install opensmile)"
        ) from error
    return opensmile


@lru_cache(maxsize=8)
def _smile(feature_set: str, level: str):
    opensmile = opensmile_module()
    return opensmile.Smile(feature_set=getattr(opensmile.FeatureSet, OPENSMILE_SETS[feature_set]),
                           feature_level=getattr(opensmile.FeatureLevel, level))


def opensmile_names(feature_set: str, level: str) -> list[str]:
    """Column names of the set's functionals ("Functionals") or frame descriptors ("LowLevelDescriptors")."""
    return list(_smile(feature_set, level).feature_names)


def opensmile_features(y: np.ndarray, sample_rate: int, feature_set: str,
                       frames: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """(functionals, frames) of one mono signal: openSMILE's functionals and, when asked, its low-level
    descriptors (a second openSMILE pass, so only frame models pay for it)."""
    functionals = _smile(feature_set, "Functionals").process_signal(y, sample_rate).to_numpy()[0]
    functionals = np.nan_to_num(functionals, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)
    if not frames:
        return functionals, None
    matrix = _smile(feature_set, "LowLevelDescriptors").process_signal(y, sample_rate).to_numpy()
    if len(matrix) < 3:
        raise ValueError("utterance shorter than three openSMILE frames")
    return functionals, np.clip(np.nan_to_num(matrix), -6e4, 6e4).astype(np.float16)


class OpenSmileFeatures(ExtractorDefaults):
    """openSMILE's eGeMAPSv02 or ComParE_2016: functionals, and its low-level descriptors as frames when asked."""

    produces = ("functionals", "frames")

    def __init__(self, feature_set: str):
        self.feature_set = feature_set

    def check_available(self) -> None:
        opensmile_module()

    def functional_names(self) -> list[str]:
        return opensmile_names(self.feature_set, "Functionals")

    def frame_names(self) -> list[str]:
        return opensmile_names(self.feature_set, "LowLevelDescriptors")

    def extract(self, signals: list[np.ndarray], sample_rate: int, *, frames: bool = True) -> list[tuple]:
        return [opensmile_features(y, sample_rate, self.feature_set, frames) for y in signals]


for _name in OPENSMILE_SETS:
    register_features(_name, factory=functools.partial(OpenSmileFeatures, _name))
