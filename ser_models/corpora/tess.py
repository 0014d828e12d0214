"""TESS (Dupuis & Pichora-Fuller, 2010): two actresses, 200 target words, 7 emotions."""

from __future__ import annotations

import re
from pathlib import Path

from ser_models.corpora.registry import CorpusInfo, audio_files, register_corpus

# Emotion words as they appear in folder and file names (case and spelling vary).
EMOTION_WORDS = {
    "angry": "angry", "anger": "angry", "disgust": "disgust", "disgusted": "disgust", "fear": "fearful",
    "fearful": "fearful", "happy": "happy", "happiness": "happy", "neutral": "neutral", "sad": "sad",
    "sadness": "sad", "ps": "surprised", "pleasant_surprise": "surprised", "pleasant_surprised": "surprised",
    "surprise": "surprised", "surprised": "surprised",
}
FOLDER_PATTERN = re.compile(r"^(OAF|YAF)_(.+)$", re.IGNORECASE)
FILE_PATTERN = re.compile(r"^(OAF|YAF)_([a-z]+)_(.+)$", re.IGNORECASE)

INFO = CorpusInfo(
    name="tess",
    title="TESS",
    citation=(
        "Dupuis K, Pichora-Fuller MK (2010) Toronto Emotional Speech Set (TESS). "
        "University of Toronto, Psychology Department. doi:10.5683/SP2/E8H2MF"
    ),
    license="CC BY-NC-ND 4.0",
    native_sample_rate=24_414,
    n_speakers=2,
    emotions=("angry", "disgust", "fearful", "happy", "neutral", "surprised", "sad"),
    layout="<root>/tess/OAF_angry/OAF_back_angry.wav, <root>/tess/YAF_pleasant_surprised/YAF_back_ps.wav",
    folder="tess",
    url="https://doi.org/10.5683/SP2/E8H2MF",
    extra={"label_map": EMOTION_WORDS},
)


def _emotion(word: str) -> str | None:
    return EMOTION_WORDS.get(word.strip().lower().replace(" ", "_").replace("-", "_"))


@register_corpus(INFO)
def load_tess(root: Path) -> tuple[list[dict], list[tuple[str, str]]]:
    """<speaker>_<word>_<emotion> files; the emotion folder, when there is one, must agree."""
    rows, skipped = [], []
    for path in audio_files(root):
        match = FILE_PATTERN.match(path.stem)
        emotion = _emotion(match.group(3)) if match else None
        if emotion is None:
            skipped.append((str(path), "file name is not <OAF|YAF>_<word>_<emotion> with a known emotion"))
            continue
        speaker, word, raw = match.group(1).upper(), match.group(2).lower(), match.group(3)
        folder = FOLDER_PATTERN.match(path.parent.name)
        if folder and _emotion(folder.group(2)) not in (None, emotion):
            skipped.append((str(path), f"emotion {raw!r} disagrees with folder {path.parent.name}"))
            continue
        rows.append({"path": str(path), "speaker": speaker, "gender": "female", "emotion": emotion,
                     "label_raw": raw.lower(), "word": word, "age_group": "older" if speaker == "OAF" else "younger"})
    return rows, skipped
