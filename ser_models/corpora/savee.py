"""SAVEE (Haq & Jackson, 2009): four male British English speakers, 7 emotions."""

from __future__ import annotations

import re
from pathlib import Path

from ser_models.corpora.registry import CorpusInfo, audio_files, register_corpus

EMOTION_CODES = {"a": "angry", "d": "disgust", "f": "fearful", "h": "happy", "n": "neutral", "sa": "sad",
                 "su": "surprised"}
SPEAKERS = ("DC", "JE", "JK", "KL")
FLAT_PATTERN = re.compile(r"^(DC|JE|JK|KL)_(sa|su|a|d|f|h|n)(\d{2})$", re.IGNORECASE)
NESTED_PATTERN = re.compile(r"^(sa|su|a|d|f|h|n)(\d{2})$", re.IGNORECASE)

INFO = CorpusInfo(
    name="savee",
    title="SAVEE",
    citation=(
        "Haq S, Jackson PJB (2009) Speaker-dependent audio-visual emotion recognition. "
        "Proc. Int. Conf. on Auditory-Visual Speech Processing (AVSP'09), 53-58."
    ),
    license="free for research use (registration with the University of Surrey)",
    native_sample_rate=44_100,
    n_speakers=4,
    emotions=tuple(EMOTION_CODES.values()),
    layout="<root>/savee/AudioData/DC/a01.wav or the flat <root>/savee/DC_a01.wav",
    folder="savee",
    url="http://kahlan.eps.surrey.ac.uk/savee/",
    extra={"label_map": EMOTION_CODES},
)


@register_corpus(INFO)
def load_savee(root: Path) -> tuple[list[dict], list[tuple[str, str]]]:
    """Both layouts: the speaker from the folder (AudioData/DC/a01) or the name prefix (DC_a01)."""
    rows, skipped = [], []
    for path in audio_files(root):
        flat = FLAT_PATTERN.match(path.stem)
        nested = NESTED_PATTERN.match(path.stem) if path.parent.name.upper() in SPEAKERS else None
        if flat:
            speaker, code, number = flat.groups()
        elif nested:
            speaker, (code, number) = path.parent.name, nested.groups()
        else:
            skipped.append((str(path), "file name is neither <SPK>_<code><NN> nor <SPK>/<code><NN>"))
            continue
        rows.append({"path": str(path), "speaker": speaker.upper(), "gender": "male",
                     "emotion": EMOTION_CODES[code.lower()], "label_raw": code.lower(), "sentence": int(number)})
    return rows, skipped
