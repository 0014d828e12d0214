"""Registered models; all expose the scikit-learn classifier API."""

from ser_models.models import classical, deep  # noqa: F401  (registers the models)
from ser_models.models.registry import ModelSpec, get_model, model_names, model_spec, register_model

__all__ = ["ModelSpec", "get_model", "model_names", "model_spec", "register_model"]
