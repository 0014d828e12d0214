"""Model registry: a name maps to a factory, its defaults, its input and its search space."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from sklearn.base import ClassifierMixin

from ser_models.plugins import resolve
from ser_models.registry import Registry


@runtime_checkable
class Classifier(Protocol):
    """What a registered model's factory returns: the scikit-learn classifier API. A model registered with
    `fit_groups=True` is fitted as `fit(X, y, groups=speakers)` (to hold out validation speakers itself)."""

    classes_: Any

    def fit(self, X, y, **fit_params) -> Classifier: ...

    def predict_proba(self, X) -> Any: ...


Factory = Callable[..., Classifier]
SearchSpace = Callable[[Any], dict]  # optuna.Trial -> parameters


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: how to build it and what it reads."""

    name: str
    factory: Factory | str  # or a lazy "package.module:attr" name, imported on first build
    family: str  # "classical", "deep" or "ensemble"
    input: str  # "functionals" (utterance vector), "frames" (sequence), "fusion" (both), "layers" (an encoder's
    # layers, n x layers x features); ensembles: "multi"
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
        factory = resolve(self.factory) if isinstance(self.factory, str) else self.factory
        params = {**self.defaults, **params}
        return factory(seed=seed, **params) if _takes_seed(factory) else factory(**params)

    def resolved_params(self, overrides: dict | None = None, budget: float = 1.0) -> dict:
        """Defaults scaled by `budget`, then `overrides`: exactly what a record stores."""
        scaled = {k: max(1, round(v * budget)) for k, v in self.defaults.items() if k in self.budget_params}
        return {**self.defaults, **scaled, **(overrides or {})}


def _takes_seed(factory: Callable) -> bool:
    """Whether `factory` accepts `seed=` (a user's estimator class may not: it is then built without one)."""
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.name == "seed" or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


MODELS: Registry[ModelSpec] = Registry("model")
FAMILIES = ("classical", "deep", "ensemble")
INPUTS = ("functionals", "frames", "fusion", "layers", "multi", "stored")


def register_model(
    name: str, *, family: str = "classical", input: str = "functionals", description: str = "",
    defaults: dict | None = None, search_space: SearchSpace | None = None, fit_groups: bool = False,
    budget_params: tuple[str, ...] = (), version: int = 1, optional: dict | None = None,
    factory: Factory | str | None = None,
) -> Callable[[Factory], Factory]:
    """Register a classifier factory under `name`: as a decorator, or with `factory=` (an object or a lazy
    "package.module:attr" name). The factory takes its parameters (and `seed=`, when it accepts one) as keywords
    and returns an unfitted scikit-learn classifier (`fit`, `predict_proba`, `classes_`)."""
    if family not in FAMILIES or input not in INPUTS:
        raise ValueError(f"model {name!r}: family is one of {FAMILIES} and input one of {INPUTS[:3]}, "
                         f"not {family!r} / {input!r}")

    def decorate(factory: Factory | str) -> Factory | str:
        MODELS.add(name, ModelSpec(name, factory, family, input, description, dict(defaults or {}), search_space,
                                   fit_groups, budget_params, version, dict(optional or {})))
        return factory

    return decorate if factory is None else decorate(factory)


def model_names(family: str | None = None, *, every: bool = False) -> list[str]:
    """Registered model names in registration order, optionally of one family. A model reading an encoder's layer
    stack runs only where a suite names it (on `layer = "all"` features), so "all", the family groups and this
    list leave it out unless `every`."""
    return [n for n, s in MODELS.items()
            if (family is None or s.family == family) and (every or s.input != "layers")]


def model_spec(name: str) -> ModelSpec:
    """The registered spec of `name`; the error lists the valid names."""
    return MODELS.get(name)


def get_model(name: str, *, seed: int = 0, **params) -> ClassifierMixin:
    """A fresh estimator for model `name`."""
    return model_spec(name).build(seed=seed, **params)
