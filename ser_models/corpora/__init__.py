"""Corpus loaders: each returns the manifest DataFrame described in manifest.py."""

from ser_models.corpora import crema_d, emodb, ravdess, savee, synthetic, tess, urdu  # noqa: F401  (registers them)
from ser_models.corpora.csv_manifest import register_manifest_corpus
from ser_models.corpora.manifest import (
    CANONICAL_EMOTIONS,
    ManifestError,
    canonical_emotion,
    harmonise_labels,
    validate_manifest,
)
from ser_models.corpora.registry import (
    CorpusInfo,
    CorpusNotFoundError,
    corpus_info,
    corpus_names,
    load_corpus,
    register_corpus,
)
from ser_models.corpora.synthetic import SyntheticConfig, generate_synthetic

__all__ = [
    "CANONICAL_EMOTIONS", "CorpusInfo", "CorpusNotFoundError", "ManifestError", "SyntheticConfig",
    "canonical_emotion", "corpus_info", "corpus_names", "generate_synthetic", "harmonise_labels", "load_corpus",
    "register_corpus", "register_manifest_corpus", "validate_manifest",
]
