"""Model registry: a name maps to a factory, its defaults, its input and its search space."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sklearn.base import ClassifierMixin

Factory = Callable[..., ClassifierMixin]
SearchSpace = Callable[[Any], dict]  # optuna.Trial -> parameters


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: how to build it and what it reads."""

    name: str
    factory: Factory
    family: str  # "classical" or "deep"
    input: str  # "functionals" (utterance vector) or "frames" (sequence)
    description: str
    defaults: dict = field(default_factory=dict)
    search_space: SearchSpace | None = None
    fit_groups: bool = False  # fit(X, y, groups=speakers): it splits off validation speakers itself
    budget_params: tuple[str, ...] = ()  # integer parameters a suite's budget factor scales (e.g. epochs)
    version: int = 1  # bump when the model's code changes its numbers: recorded rows are then redone
    # Switches whose neutral value is the model's behaviour without them: accepted, but stored (and hashed)
    # only when a suite sets them, so adding one never changes the rows already recorded.
    optional: dict = field(default_factory=dict)

    def check_params(self, params: dict) -> None:
        """Refuse parameter names the model does not take (a suite's typo would otherwise fail hours in)."""
        unknown = sorted(set(params) - set(self.defaults) - set(self.optional))
        if unknown:
            raise ValueError(f"model {self.name!r} has no parameters {unknown}; it takes "
                             f"{sorted({**self.defaults, **self.optional})}")

    def build(self, *, seed: int = 0, **params) -> ClassifierMixin:
        """A fresh unfitted estimator with defaults overridden by `params`."""
        self.check_params(params)
        return self.factory(seed=seed, **{**self.defaults, **params})

    def resolved_params(self, overrides: dict | None = None, budget: float = 1.0) -> dict:
        """Defaults scaled by `budget`, then `overrides`: exactly what a record stores."""
        scaled = {k: max(1, round(v * budget)) for k, v in self.defaults.items() if k in self.budget_params}
        return {**self.defaults, **scaled, **(overrides or {})}


_MODELS: dict[str, ModelSpec] = {}


def register_model(
    name: str, *, family: str, input: str, description: str, defaults: dict,
    search_space: SearchSpace | None = None, fit_groups: bool = False, budget_params: tuple[str, ...] = (),
    version: int = 1, optional: dict | None = None,
) -> Callable[[Factory], Factory]:
    """Decorator: register `factory(seed=..., **params)` under `name`."""

    def decorate(factory: Factory) -> Factory:
        if name in _MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        _MODELS[name] = ModelSpec(
            name, factory, family, input, description, dict(defaults), search_space, fit_groups, budget_params, version,
            dict(optional or {}),
        )
        return factory

    return decorate


def model_names(family: str | None = None) -> list[str]:
    """Registered model names in registration order, optionally of one family."""
    return [n for n, s in _MODELS.items() if family is None or s.family == family]


def model_spec(name: str) -> ModelSpec:
    """The registered spec of `name`; the error lists the valid names."""
    if name not in _MODELS:
        raise KeyError(f"unknown model {name!r}; choose from {', '.join(_MODELS)}")
    return _MODELS[name]


def get_model(name: str, *, seed: int = 0, **params) -> ClassifierMixin:
    """A fresh estimator for model `name`."""
    return model_spec(name).build(seed=seed, **params)
