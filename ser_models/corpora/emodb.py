"""EmoDB, the Berlin Database of Emotional Speech (Burkhardt et al., 2005): 10 actors, 7 emotions, German."""

from __future__ import annotations

import re
from pathlib import Path

from ser_models.corpora.registry import CorpusInfo, audio_files, register_corpus

# The sixth character of a file name is the German initial of the emotion.
EMOTION_CODES = {
    "W": "angry",  # Wut
    "L": "boredom",  # Langeweile
    "E": "disgust",  # Ekel
    "A": "fearful",  # Angst
    "F": "happy",  # Freude
    "T": "sad",  # Trauer
    "N": "neutral",
}
# Speaker genders as the corpus documentation lists them.
SPEAKER_GENDERS = {
    "03": "male", "08": "female", "09": "female", "10": "male", "11": "male",
    "12": "male", "13": "female", "14": "female", "15": "male", "16": "female",
}
FILE_PATTERN = re.compile(r"^(\d{2})([ab]\d{2})([A-Z])([a-z])$")

INFO = CorpusInfo(
    name="emodb",
    title="EmoDB (Berlin Database of Emotional Speech)",
    citation=(
        "Burkhardt F, Paeschke A, Rolfes M, Sendlmeier W, Weiss B (2005) A Database of German "
        "Emotional Speech. Proc. Interspeech 2005, 1517-1520."
    ),
    license="free for research use (see the corpus website's terms)",
    native_sample_rate=16_000,
    n_speakers=10,
    emotions=tuple(EMOTION_CODES.values()),
    layout="<root>/emodb/wav/SSTTTEV.wav, e.g. 03a01Fa.wav (SS speaker, TTT text, E emotion letter, V version)",
    folder="emodb",
    url="http://emodb.bilderbar.info/",
)


@register_corpus(INFO)
def load_emodb(root: Path) -> tuple[list[dict], list[tuple[str, str]]]:
    """Every utterance of EmoDB's wav/ folder (any subfolder), labelled from its file name."""
    rows, skipped = [], []
    for path in audio_files(root):
        match = FILE_PATTERN.match(path.stem)
        if not match:
            skipped.append((str(path), "file name is not SSTTTEV (e.g. 03a01Fa)"))
            continue
        speaker, text, code, version = match.groups()
        if code not in EMOTION_CODES or speaker not in SPEAKER_GENDERS:
            skipped.append((str(path), f"unknown emotion letter {code} or speaker {speaker}"))
            continue
        rows.append({
            "path": str(path), "speaker": speaker, "gender": SPEAKER_GENDERS[speaker],
            "emotion": EMOTION_CODES[code], "label_raw": code, "text": text, "version": version,
        })
    return rows, skipped
