"""Any corpus described by a CSV/TSV file: columns path, speaker, emotion (and optionally gender)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ser_models.corpora.manifest import ManifestError, canonical_emotion, label_problem
from ser_models.corpora.registry import _CORPORA, CorpusEntry, CorpusInfo

REQUIRED_COLUMNS = ("path", "speaker", "emotion")


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
            path = Path(raw_path) if Path(raw_path).is_absolute() else root / raw_path
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
        return rows, skipped

    return load


def register_manifest_corpus(name: str, file: str | Path) -> CorpusInfo:
    """Register (or re-point) corpus `name` as the files listed in `file`; paths are relative to its folder."""
    file = Path(file).expanduser().resolve()
    table = read_manifest_table(file)
    if name in _CORPORA and "manifest" not in _CORPORA[name].info.extra:
        raise ManifestError(f"{name!r} is a built-in corpus; give the manifest corpus another name")
    info = CorpusInfo(
        name=name, title=name, citation=f"described by {file.name}", license="see the corpus' own terms",
        native_sample_rate=0, n_speakers=int(table["speaker"].nunique()),
        emotions=tuple(sorted({e for e in map(canonical_emotion, table["emotion"]) if e})),
        layout=f"files listed in {file} (columns path, speaker, emotion[, gender])", folder=str(file.parent),
        extra={"manifest": str(file)},
    )
    _CORPORA[name] = CorpusEntry(info=info, loader=_loader(file))
    return info
