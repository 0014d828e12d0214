"""RAVDESS (Livingstone & Russo, 2018): 24 actors, speech and song, 8 emotions."""

from __future__ import annotations

import re
from pathlib import Path

from ser_models.corpora.registry import CorpusInfo, audio_files, register_corpus

EMOTION_CODES = {
    "01": "neutral", "02": "calm", "03": "happy", "04": "sad",
    "05": "angry", "06": "fearful", "07": "disgust", "08": "surprised",
}
FILE_PATTERN = re.compile(r"^(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})$")

INFO = CorpusInfo(
    name="ravdess",
    title="RAVDESS",
    citation=(
        "Livingstone SR, Russo FA (2018) The Ryerson Audio-Visual Database of Emotional Speech "
        "and Song (RAVDESS). PLoS ONE 13(5): e0196391."
    ),
    license="CC BY-NC-SA 4.0",
    native_sample_rate=48_000,
    n_speakers=24,
    emotions=tuple(EMOTION_CODES.values()),
    layout="<root>/ravdess/Actor_NN/03-01-EE-II-SS-RR-NN.wav (or .flac)",
    folder="ravdess",
    url="https://zenodo.org/record/1188976",
)


@register_corpus(INFO)
def load_ravdess(root: Path, *, include_song: bool = False) -> tuple[list[dict], list[tuple[str, str]]]:
    """Speech files (vocal channel 01) of RAVDESS; song (02) only when asked for."""
    rows, skipped = [], []
    for path in audio_files(root):
        match = FILE_PATTERN.match(path.stem)
        if not match:
            skipped.append((str(path), "file name is not MM-VV-EE-II-SS-RR-AA"))
            continue
        modality, channel, emotion, intensity, statement, repetition, actor = match.groups()
        if modality != "03" or (channel == "02" and not include_song):
            continue  # video modalities and song are not part of the speech benchmark
        if channel not in ("01", "02") or emotion not in EMOTION_CODES:
            skipped.append((str(path), f"unknown vocal channel {channel} or emotion code {emotion}"))
            continue
        rows.append({
            "path": str(path),
            "speaker": actor,
            "gender": "male" if int(actor) % 2 else "female",
            "emotion": EMOTION_CODES[emotion],
            "label_raw": emotion,
            "intensity": "strong" if intensity == "02" else "normal",
            "statement": statement,
            "repetition": repetition,
            "vocal_channel": "speech" if channel == "01" else "song",
        })
    return rows, skipped
