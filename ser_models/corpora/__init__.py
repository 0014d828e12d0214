"""Corpus loaders: each returns the manifest DataFrame described in manifest.py."""

from ser_models.corpora import ravdess, synthetic, urdu  # noqa: F401  (registers the corpora)
from ser_models.corpora.manifest import CANONICAL_EMOTIONS, ManifestError, validate_manifest
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
    "corpus_info", "corpus_names", "generate_synthetic", "load_corpus", "register_corpus", "validate_manifest",
]
