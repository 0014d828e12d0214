"""Any corpus described by a CSV/TSV file: columns path, speaker, emotion (and optionally gender)."""

from __future__ import annotations

import logging
import re
from collections import Counter
from pathlib import Path

import pandas as pd

from ser_models.corpora.manifest import ManifestError, canonical_emotion, label_problem
from ser_models.corpora.registry import CORPORA, CorpusEntry, CorpusInfo

REQUIRED_COLUMNS = ("path", "speaker", "emotion")
log = logging.getLogger(__name__)
_SAID: set[str] = set()  # warnings already given in this process (a corpus loads once per feature set)


def read_manifest_table(file: str | Path) -> pd.DataFrame:
    """The CSV (or TSV, by suffix) as strings; ManifestError names what is missing."""
    file = Path(file)
    if not file.is_file():
        raise ManifestError(f"manifest file {file} does not exist")
    try:
        table = pd.read_csv(file, sep=_separator(file), dtype=str, encoding="utf-8-sig")
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as error:
        raise ManifestError(f"manifest file {file} cannot be read as CSV/TSV: {error}") from error
    table.columns = [str(c).strip().lower() for c in table.columns]
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise ManifestError(
            f"manifest file {file} lacks columns {missing}; it needs {list(REQUIRED_COLUMNS)} (optional: gender), "
            f"and its header has {list(table.columns)[:8]}"
        )
    return table


def _separator(file: Path) -> str:
    """Tab for .tsv/.tab; otherwise the first of , ; and tab whose split of the header names every required column
    (spreadsheets in many locales export CSV with semicolons), else a comma."""
    if file.suffix.lower() in (".tsv", ".tab"):
        return "\t"
    with open(file, encoding="utf-8-sig", errors="replace") as stream:
        header = stream.readline()
    for separator in (",", ";", "\t"):
        if set(REQUIRED_COLUMNS) <= {c.strip().strip('"').lower() for c in header.split(separator)}:
            return separator
    return ","


def _loader(file: Path):
    def load(root: Path) -> tuple[list[dict], list[tuple[str, str]]]:
        table = read_manifest_table(file)
        rows, skipped, seen = [], [], set()
        extra = [c for c in table.columns if c not in (*REQUIRED_COLUMNS, "gender", "corpus", "label_raw")]
        for item in table.to_dict("records"):
            raw_path = str(item["path"]).strip() if isinstance(item["path"], str) else ""
            path = _listed_path(root, raw_path)
            emotion = canonical_emotion(item["emotion"])
            if not raw_path or not path.is_file():
                skipped.append((str(path), "listed in the manifest but not found"))
            elif path.resolve() in seen:
                skipped.append((str(path), "listed in the manifest more than once (the first row is used)"))
            elif emotion is None:
                skipped.append((str(path), label_problem(item["emotion"])))
            elif not isinstance(item["speaker"], str) or not item["speaker"].strip():
                skipped.append((str(path), "no speaker given"))
            else:
                seen.add(path.resolve())
                gender = str(item.get("gender") or "unknown").strip().lower()
                gender = {"m": "male", "f": "female"}.get(gender, gender)
                rows.append({"path": str(path), "speaker": item["speaker"].strip(), "emotion": emotion,
                             "gender": gender if gender in ("male", "female") else "unknown",
                             "label_raw": str(item["emotion"]), **{c: item[c] for c in extra}})
        return _one_id_per_speaker(file, rows), skipped

    return load


def _listed_path(root: Path, raw_path: str) -> Path:
    """The file a manifest row names: absolute, or relative to the manifest's folder; a path written on Windows
    (Actor_01\\a.wav) is also tried with forward slashes."""
    path = Path(raw_path) if Path(raw_path).is_absolute() else root / raw_path
    if "\\" in raw_path and not path.is_file():
        posix = raw_path.replace("\\", "/")
        return Path(posix) if Path(posix).is_absolute() else root / posix
    return path


def _one_id_per_speaker(file: Path, rows: list[dict]) -> list[dict]:
    """Speaker ids that differ only in case or leading zeros ("01", "1"; "Ses01F", "ses1f"), as when two tables are
    joined or a spreadsheet drops zeros, are one speaker (under its most used spelling): two ids would let one person
    be on both sides of a fold."""
    spellings = Counter((_speaker_form(row["speaker"]), row["speaker"]) for row in rows)
    usual: dict[str, str] = {}  # the most used spelling of each id (the first of equals)
    for (form, spelling), _ in spellings.most_common():
        usual.setdefault(form, spelling)
    merged = {}
    for row in rows:
        one = usual[_speaker_form(row["speaker"])]
        if one != row["speaker"]:
            merged.setdefault(row["speaker"], one)
            row["speaker"] = one
    message = f"{file}: speaker ids that differ only in case or leading zeros are taken for one speaker: " + \
        ", ".join(f"{other} = {one}" for other, one in sorted(merged.items()))
    if merged and message not in _SAID:
        _SAID.add(message)
        log.warning(message)
    return rows


def _speaker_form(speaker: str) -> str:
    return re.sub(r"\d+", lambda digits: str(int(digits.group())), speaker.strip().lower())


def register_manifest_corpus(name: str, file: str | Path) -> CorpusInfo:
    """Register (or re-point) corpus `name` as the files listed in `file`; paths are relative to its folder."""
    file = Path(file).expanduser().resolve()
    table = read_manifest_table(file)
    if name in CORPORA and "manifest" not in CORPORA.get(name).info.extra:
        raise ManifestError(f"{name!r} is a built-in corpus; give the manifest corpus another name")
    info = CorpusInfo(
        name=name, title=name, citation=f"described by {file.name}", license="see the corpus' own terms",
        native_sample_rate=0, n_speakers=len({_speaker_form(s) for s in table["speaker"].dropna().astype(str)}),
        emotions=tuple(sorted({e for e in map(canonical_emotion, table["emotion"]) if e})),
        layout=f"files listed in {file} (columns path, speaker, emotion[, gender])", folder=str(file.parent),
        extra={"manifest": str(file)},
    )
    CORPORA.replace(name, CorpusEntry(info=info, loader=_loader(file)))
    return info
