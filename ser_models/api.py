"""The public extension API: what a user's plugin imports to bring a model, a feature set or a corpus.

    from ser_models.api import register_model, register_features, register_corpus, CorpusInfo

- a model: `@register_model(name, ...)` on a factory returning a scikit-learn classifier (`fit(X, y[, groups])`,
  `predict_proba`, `classes_`), saying what it reads (`input="functionals"`, `"frames"` or `"fusion"`);
- a feature set: `@register_features(name)` on a class with `produces`, `functional_names()`, `extract(...)`
  (see `FeatureExtractor`); `feature_set = "precomputed"` reads a file of features instead;
- a corpus: `@register_corpus(CorpusInfo(...))` on a loader returning manifest rows and skipped files.

A plugin is any module or .py file that calls them; suites name it in `plugins = [...]`, the command line with
`--plugin`, an installed package with an entry point in the group `ser_bench.plugins`. See docs/extending.md.
"""

from ser_models.corpora.registry import CorpusInfo, register_corpus
from ser_models.extractors import ExtractorDefaults, FeatureExtractor, UtteranceFeatures, register_features
from ser_models.models.keras_runtime import keras_module  # Keras on JAX, as the built-in deep models use it
from ser_models.models.registry import Classifier, ModelSpec, register_model
from ser_models.plugins import ENTRY_POINT_GROUP, PluginError, load_plugin

__all__ = ["ENTRY_POINT_GROUP", "Classifier", "CorpusInfo", "ExtractorDefaults", "FeatureExtractor", "ModelSpec",
           "PluginError", "UtteranceFeatures", "keras_module", "load_plugin", "register_corpus", "register_features",
           "register_model"]
