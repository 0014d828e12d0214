"""CREMA-D (Cao et al., 2014): 91 actors, 12 sentences, 6 emotions at up to 4 intensity levels."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from ser_models.corpora.registry import CorpusInfo, audio_files, register_corpus

EMOTION_CODES = {"ANG": "angry", "DIS": "disgust", "FEA": "fearful", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
LEVELS = {"LO": "low", "MD": "medium", "HI": "high", "XX": "unspecified", "X": "unspecified"}
FILE_PATTERN = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{1,2})$", re.IGNORECASE)

INFO = CorpusInfo(
    name="crema_d",
    title="CREMA-D",
    citation=(
        "Cao H, Cooper DG, Keutmann MK, Gur RC, Nenkova A, Verma R (2014) CREMA-D: Crowd-sourced Emotional "
        "Multimodal Actors Dataset. IEEE Transactions on Affective Computing 5(4): 377-390."
    ),
    license="Open Database License (ODbL) 1.0",
    native_sample_rate=16_000,
    n_speakers=91,
    emotions=tuple(EMOTION_CODES.values()),
    layout="<root>/crema_d/AudioWAV/1001_DFA_ANG_XX.wav (+ optional VideoDemographics.csv)",
    folder="crema_d",
    url="https://github.com/CheyneyComputerScience/CREMA-D",
    extra={"label_map": EMOTION_CODES},
)


def _genders(root: Path) -> dict[str, str]:
    """Actor id -> male/female from VideoDemographics.csv, wherever it is under the root."""
    found = sorted(root.rglob("VideoDemographics.csv"))
    if not found:
        return {}
    table = pd.read_csv(found[0], dtype=str)
    if not {"ActorID", "Sex"} <= set(table.columns):
        return {}
    return {row.ActorID.strip(): row.Sex.strip().lower() for row in table.itertuples() if isinstance(row.Sex, str)}


@register_corpus(INFO)
def load_crema_d(root: Path) -> tuple[list[dict], list[tuple[str, str]]]:
    """Every <actor>_<sentence>_<EMO>_<level> file; gender from the demographics table when present."""
    genders = _genders(root)
    rows, skipped = [], []
    for path in audio_files(root):
        match = FILE_PATTERN.match(path.stem)
        if not match:
            skipped.append((str(path), "file name is not <actor>_<sentence>_<EMO>_<level>"))
            continue
        actor, sentence, code, level = match.groups()
        if code.upper() not in EMOTION_CODES or level.upper() not in LEVELS:
            skipped.append((str(path), f"unknown emotion code {code} or level {level}"))
            continue
        rows.append({
            "path": str(path), "speaker": actor, "gender": genders.get(actor, "unknown"),
            "emotion": EMOTION_CODES[code.upper()], "label_raw": code.upper(),
            "sentence": sentence.upper(), "intensity": LEVELS[level.upper()],
        })
    return rows, skipped
