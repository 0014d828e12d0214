"""Corpora to cleaned feature tables: where each corpus lives, its manifest, its cached features, its hygiene."""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from bench.options import BenchError, RunOptions
from bench.plan import Dataset, member_feature_sets, resolve_models
from bench.records import config_hash
from bench.suite import augment_for
from bench.votes import STORED
from ser_models.corpora import corpus_info, corpus_names, harmonise_labels, load_corpus, register_manifest_corpus
from ser_models.extractors import BUILT_IN
from ser_models.feature_cache import FeatureSet, extract_features
from ser_models.features import FeatureSpec
from ser_models.hygiene import copies_within, without, without_lone_speaker_classes
from ser_models.models import model_spec
from ser_models.opensmile_features import MissingExtraError

log = logging.getLogger(__name__)


def register_manifests(manifests: dict[str, str], data_root: Path | None) -> list[str]:
    """Register CSV/TSV-described corpora; a relative path is tried as given, then under the data root."""
    for name, file in manifests.items():
        path = Path(file).expanduser()
        if not path.is_absolute() and not path.exists() and data_root is not None:
            path = data_root / path
        register_manifest_corpus(name, path)
    return list(manifests)


def resolve_corpora(requested: tuple[str, ...], data_root: Path | None, manifests: tuple[str, ...] = ()) -> list[str]:
    """Expand 'found' to every registered corpus whose folder is under the data root, plus manifest corpora."""
    if data_root is not None and not data_root.is_dir():
        raise BenchError(f"data root {data_root} does not exist (from --data-root or SER_DATA)")
    names: list[str] = []
    for item in requested:
        if item == "found" and manifests and data_root is None:
            names += manifests
        elif item == "found":
            if data_root is None:
                raise BenchError(
                    "this suite runs on the corpora under a data root: pass --data-root DIR or set SER_DATA"
                )
            found = [n for n in corpus_names() if not corpus_info(n).generated
                     and "manifest" not in corpus_info(n).extra and (data_root / corpus_info(n).folder).is_dir()]
            if not found and not manifests:
                layouts = "; ".join(corpus_info(n).layout for n in corpus_names() if not corpus_info(n).generated)
                raise BenchError(f"no corpus found under {data_root}{_inside_a_corpus(data_root)}. Expected one of: "
                                 f"{layouts}")
            names += found + list(manifests)
        else:
            info = corpus_info(item)
            if not info.generated and "manifest" not in info.extra and data_root is None:
                raise BenchError(f"corpus {item!r} needs a data root: pass --data-root DIR or set SER_DATA")
            if not info.generated and "manifest" not in info.extra and _inside_a_corpus(data_root) and \
                    not (data_root / info.folder).is_dir():
                raise BenchError(f"corpus {item!r} is not under {data_root}{_inside_a_corpus(data_root)}")
            names.append(item)
    return list(dict.fromkeys(names))


def _inside_a_corpus(data_root: Path) -> str:
    """A hint when the data root is a corpus' own folder (.../ravdess) rather than the folder that holds it."""
    folders = {corpus_info(n).folder.lower() for n in corpus_names() if not corpus_info(n).generated}
    if data_root.name.lower() in folders and not (data_root / data_root.name).is_dir():
        return (f" ({data_root} looks like a corpus' own folder: the data root is the folder that holds it, "
                f"--data-root {data_root.parent})")
    return ""


def corpus_root(name: str, options: dict, data_root: Path | None, cache_dir: Path) -> Path:
    """Where a corpus lives: generated ones in the cache, real ones under the data root."""
    info = corpus_info(name)
    if info.generated:
        return cache_dir / "corpora" / f"{name}-{config_hash(options)[:10]}"
    if "manifest" in info.extra:
        return Path(info.folder)
    return data_root / info.folder


def reads_frames(models) -> bool:
    """Whether any of these models (names or families) reads frame features rather than functionals."""
    return any(model_spec(m).input not in ("functionals", "layers", STORED) for m in resolve_models(tuple(models)))


def load_features(options: RunOptions, corpus: str, spec: FeatureSpec | None = None, *,
                   frames: bool = True, main: FeatureSet | None = None) -> FeatureSet:
    """A corpus's usable features on `spec` (the suite's own set when None). Copies of a recording are found on the
    suite's own set; another set (`main`: the suite's own set of the corpus) leaves out the same files."""
    corpus_options = options.suite.corpus_options.get(corpus, {})
    root = corpus_root(corpus, corpus_options, options.data_root, options.cache_dir)
    manifest = load_corpus(corpus, root, **corpus_options)
    if options.suite.labels:
        manifest = harmonise_labels(manifest, **options.suite.labels)
        if manifest.empty:
            raise BenchError(f"corpus {corpus!r}: no utterances left after the suite's label options")
    features = extract_features(
        manifest, spec or options.suite.features, cache_dir=options.cache_dir, n_jobs=options.jobs,
        progress=options.progress, frames=frames, store=options.feature_store,
    )
    features.skipped = manifest.attrs.get("skipped", []) + features.skipped
    if features.manifest.empty:
        raise BenchError(f"corpus {corpus!r}: no usable audio in {root} ({len(features.skipped)} files skipped)")
    say = main is None  # said once, for the suite's own feature set
    copies = _copies(options, corpus, features) if main is None else \
        [row for row in main.skipped if "copy_of" in row]
    features = without(features, copies, corpus=corpus if say else None)
    if options.target != "emotion":
        return features
    return without_lone_speaker_classes(corpus, features, say=say)


def _copies(options: RunOptions, corpus: str, features: FeatureSet) -> list[dict]:
    """Copies of a recording in a corpus, found on the built-in functionals that the near-copy distance was set on:
    a user's feature set (fewer, other dimensions) would take different recordings for copies, or miss real ones."""
    if options.suite.features.feature_set in BUILT_IN:
        return copies_within(corpus, features)
    reference = extract_features(features.manifest, FeatureSpec(**{**asdict(options.suite.features),
                                                                   "feature_set": "librosa", "options": ()}),
                                 cache_dir=options.cache_dir, n_jobs=options.jobs, progress=options.progress,
                                 store=options.feature_store)
    return copies_within(corpus, reference)


def other_sets(dataset: Dataset, variant_sets: dict, feature_sets: list[str]) -> dict[str, FeatureSet]:
    """The dataset's utterances on the feature sets that ensemble members name ("logreg@compare")."""
    return {
        feature_set: dataset.features if dataset.spec.feature_set == feature_set
        else FeatureSet.concat([variant_sets[(corpus, feature_set)] for corpus in dataset.corpora])
        for feature_set in feature_sets
        if dataset.spec.feature_set == feature_set
        or all((corpus, feature_set) in variant_sets for corpus in dataset.corpora)
    }


def training_copies(options: RunOptions, dataset: Dataset, fits: list[tuple[str, int]]
                    ) -> tuple[list[FeatureSet], dict[tuple[str, int], tuple[int, ...]]]:
    """The augmented copies these (model, seed) fits train on, each extracted once, and each fit's positions among
    them."""
    wanted = {(model, seed): augment_for(options.suite, model, seed) for model, seed in fits}
    augmentations = list(dict.fromkeys(a for own in wanted.values() for a in own))
    sets = [
        extract_features(dataset.features.manifest, dataset.spec, cache_dir=options.cache_dir,
                         n_jobs=options.jobs, progress=options.progress, augmentation=augmentation,
                         frames=dataset.features.frames is not None, store=options.feature_store)
        for augmentation in augmentations
    ]
    return sets, {fit: tuple(augmentations.index(a) for a in own) for fit, own in wanted.items()}


def write_skipped(folder: Path, rows: list[dict]) -> None:
    path = folder / "skipped.csv"
    if rows:
        pd.DataFrame(rows, columns=["corpus", "path", "reason"]).to_csv(path, index=False)
    elif path.exists():
        path.unlink()


def load_tables(options: RunOptions, corpora: list[str], models: list[str]):
    """Each corpus' features on the suite's set, then on the sets its variants and ensemble members read, with the
    skipped files of all: (corpus_sets, variant_sets keyed (corpus, set), skipped rows, models left runnable)."""
    suite = options.suite
    corpus_sets, skipped_rows = {}, []
    for corpus in corpora:
        corpus_sets[corpus] = load_features(options, corpus, frames=reads_frames(models))
        skipped_rows += [{"corpus": corpus, **row} for row in corpus_sets[corpus].skipped]
    variant_sets = {}
    member_sets = member_feature_sets(suite, models)
    for feature_set in dict.fromkeys([*(v["feature_set"] for v in suite.variants if "feature_set" in v),
                                      *member_sets]):
        spec = suite.spec_for(feature_set)
        try:
            spec.check_available()
        except MissingExtraError as error:
            log.warning("rows on the %s feature set left out: %s", feature_set, error)
            if feature_set in member_sets:
                models = [m for m in models if feature_set not in member_feature_sets(suite, [m])]
            continue
        # An openSMILE set's frame pass runs only for the frame models of its variant rows.
        frames = any(reads_frames(v["models"]) for v in suite.variants if v.get("feature_set") == feature_set)
        for corpus in corpora:
            variant_sets[(corpus, feature_set)] = load_features(options, corpus, spec, frames=frames,
                                                                main=corpus_sets[corpus])
            known = {row["path"] for row in corpus_sets[corpus].skipped}
            skipped_rows += [{"corpus": f"{corpus} ({feature_set})", **row}
                             for row in variant_sets[(corpus, feature_set)].skipped if row["path"] not in known]
    return corpus_sets, variant_sets, skipped_rows, models
