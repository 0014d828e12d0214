"""URDU (Latif et al., 2018): spontaneous Urdu speech from TV talk shows, 4 emotions."""

from __future__ import annotations

import re
from pathlib import Path

from ser_models.corpora.registry import CorpusInfo, audio_files, register_corpus

EMOTION_LETTERS = {"A": "angry", "H": "happy", "N": "neutral", "S": "sad"}
FILE_PATTERN = re.compile(r"^S([MF])(\d+)_F\d+_([AHNS])\d+$", re.IGNORECASE)

INFO = CorpusInfo(
    name="urdu",
    title="URDU",
    citation=(
        "Latif S, Qayyum A, Usman M, Qadir J (2018) Cross Lingual Speech Emotion Recognition: "
        "Urdu vs. Western Languages. FIT 2018."
    ),
    license="research use only",
    native_sample_rate=44_100,
    n_speakers=29,
    emotions=tuple(EMOTION_LETTERS.values()),
    layout="<root>/urdu/{Angry,Happy,Neutral,Sad}/SM1_F10_A010.wav (or .flac)",
    folder="urdu",
    url="https://github.com/siddiquelatif/URDU-Dataset",
)


@register_corpus(INFO)
def load_urdu(root: Path) -> tuple[list[dict], list[tuple[str, str]]]:
    """Every file whose name and emotion folder agree; the speaker is the first field."""
    rows, skipped = [], []
    for path in audio_files(root):
        match = FILE_PATTERN.match(path.stem)
        if not match:
            skipped.append((str(path), "file name is not S<G><X>_F<NN>_<E><YY>"))
            continue
        gender, number, letter = match.groups()
        emotion = EMOTION_LETTERS[letter.upper()]
        folder = path.parent.name.lower()
        if folder in EMOTION_LETTERS.values() and folder != emotion:
            skipped.append((str(path), f"emotion letter {letter} disagrees with folder {path.parent.name}"))
            continue
        rows.append({
            "path": str(path),
            "speaker": f"S{gender.upper()}{int(number)}",
            "gender": "male" if gender.upper() == "M" else "female",
            "emotion": emotion,
            "label_raw": letter.upper(),
        })
    return rows, skipped
