"""ser_models: corpora, features, protocols, models and metrics for speech emotion recognition."""

from ser_models import ensembles  # noqa: F401  (registers the ensembles)
from ser_models.audio import AudioError, load_audio
from ser_models.corpora import corpus_info, corpus_names, load_corpus
from ser_models.feature_cache import FeatureSet, extract_features
from ser_models.features import FeatureSpec
from ser_models.metrics import classification_metrics
from ser_models.models import get_model, model_names, model_spec
from ser_models.protocols import Fold, leave_speakers_out, make_folds

__version__ = "0.1.0"

__all__ = [
    "AudioError", "FeatureSet", "FeatureSpec", "Fold", "classification_metrics", "corpus_info", "corpus_names",
    "extract_features", "get_model", "leave_speakers_out", "load_audio", "load_corpus", "make_folds",
    "model_names", "model_spec",
]
