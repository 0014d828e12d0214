"""Suites are data: a TOML file names corpora, models, protocols, seeds and budgets."""

from __future__ import annotations

import dataclasses
import math

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

from bench.votes import STORED
from ser_models.augment import Augmentation
from ser_models.corpora import CANONICAL_EMOTIONS, canonical_emotion
from ser_models.corpora.manifest import NO_AGREEMENT, no_agreement
from ser_models.ensembles import check_ensemble_params
from ser_models.extractors import FEATURES
from ser_models.features import FeatureSpec
from ser_models.models import model_spec
from ser_models.models.deep import check_choices as check_deep_choices
from ser_models.plugins import PluginError, load_plugins
from ser_models.protocols import PROTOCOLS

SUITES_DIR = Path(__file__).parent / "suites"


class SuiteError(ValueError):
    """A suite file that cannot be used; the message says what to fix."""


@dataclass(frozen=True)
class Suite:
    """A parsed suite file."""

    name: str
    description: str
    corpora: tuple[str, ...]  # names, or "found" for every corpus under the data root
    models: tuple[str, ...]  # names, "all", or "classical"/"deep" families
    protocols: tuple[str, ...] = ("speaker_folds",)
    seeds: tuple[int, ...] = (0,)
    model_seeds: dict = field(default_factory=dict)  # model or family -> its seeds, e.g. {deep = [0, 1, 2]}
    publish: bool = False  # also write the project's results/leaderboard.md
    budget: float = 1.0  # scales each model's budget parameters (deep models: epochs, patience)
    features: FeatureSpec = FeatureSpec()
    corpus_options: dict = field(default_factory=dict)
    model_params: dict = field(default_factory=dict)
    protocol_models: dict = field(default_factory=dict)  # protocol -> models run under it (default: all)
    protocol_options: dict = field(default_factory=dict)  # speaker_folds: {n_folds = K} or {leave_one_speaker_out}
    augment: tuple[Augmentation, ...] = ()  # augmented copies added to training folds only
    model_augment: dict = field(default_factory=dict)  # model -> its own extra training copies, e.g. {cnn = [...]}
    labels: dict = field(default_factory=dict)  # harmonisation for every corpus: {merge = {...}, drop = [...]}
    combined: dict = field(default_factory=dict)  # combined protocol: {labels = "shared"|"all", n_folds = K}
    manifests: dict = field(default_factory=dict)  # corpus name -> CSV/TSV manifest file
    tasks: dict = field(default_factory=dict)  # other targets -> their models, e.g. {gender = ["classical"]}
    variants: tuple[dict, ...] = ()  # extra rows: {feature_set = "egemaps"} or {gender_input = true}, with models
    tuning: dict = field(default_factory=dict)  # model -> {trials = N, timeout = seconds per fold}: tuned rows
    plugins: tuple[str, ...] = ()  # modules or .py files registering the user's models, feature sets, corpora
    feature_options: dict = field(default_factory=dict)  # feature set -> its options, e.g. {precomputed = {file}}
    report: dict = field(default_factory=dict)  # {page = "README.md", compare_with = SUITE, timings = [FILE.json]}

    def spec_for(self, feature_set: str) -> FeatureSpec:
        """The suite's feature spec on another feature set, with that set's options."""
        return dataclasses.replace(self.features, feature_set=feature_set,
                                   options=tuple(self.feature_options.get(feature_set, {}).items()))


def _augmentations(items: list, suite: str) -> tuple[Augmentation, ...]:
    try:
        return tuple(Augmentation(**item) for item in items)
    except (TypeError, ValueError) as error:
        example = '{kind = "noise", amount = 20}'
        raise SuiteError(f"suite {suite!r}: bad augment entry ({error}); write e.g. {example}") from error


def _model_augment(items: dict, suite: str) -> dict[str, tuple[Augmentation, ...]]:
    """[model_augment]: a model name -> augmented copies that only its rows train on (besides `augment`)."""
    out = {}
    for name, augmentations in items.items():
        try:
            spec = model_spec(name)
        except KeyError as error:
            raise SuiteError(f"suite {suite!r}: [model_augment] {error.args[0]}") from error
        if spec.family == "ensemble":  # its members train on their inputs, not the ensemble's: no copies of its own
            raise SuiteError(f"suite {suite!r}: [model_augment] {name!r} is an ensemble; give its members copies "
                             "with the suite's `augment`")
        if not isinstance(augmentations, list) or not augmentations:
            raise SuiteError(f'suite {suite!r}: write [model_augment] {name} = [{{kind = "noise", amount = 20}}]')
        out[name] = _augmentations(augmentations, suite)
    return out


def _report(report: object, suite: str) -> dict:
    """[report]: a results page generated beside the leaderboard (bench/results_page.py)."""
    allowed = {"page": str, "compare_with": str, "timings": list}
    if not isinstance(report, dict) or any(k not in allowed or not isinstance(v, allowed[k]) for k, v in
                                           report.items()):
        raise SuiteError(f"suite {suite!r}: [report] takes page = \"README.md\", compare_with = \"SUITE\" and "
                         "timings = [\"FILE.json\", ...]")
    return dict(report)


def augment_for(suite: Suite, model: str, seed: int = 0) -> tuple[Augmentation, ...]:
    """The augmented copies a model's rows of `seed` train on: the suite's for every model, then its own, each
    drawn with the model's seed (so the spread over seeds includes the copies'; seed 0 draws as before seeds did)."""
    own = dict.fromkeys([*suite.augment, *suite.model_augment.get(model, ())])
    return tuple(dataclasses.replace(augmentation, seed=seed) for augmentation in own)


def suite_names() -> list[str]:
    """The suites shipped with the harness."""
    return sorted(p.stem for p in SUITES_DIR.glob("*.toml"))


def load_suite(name_or_path: str) -> Suite:
    """Read a shipped suite by name, or any suite file by path."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = SUITES_DIR / f"{name_or_path}.toml"
        if not path.exists():
            raise SuiteError(f"unknown suite {name_or_path!r}; choose from {', '.join(suite_names())} or a .toml file")
    if not path.exists():
        raise SuiteError(f"suite file {path} does not exist")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise SuiteError(f"suite file {path} is not valid TOML: {error}") from error
    return parse_suite(data, default_name=path.stem, folder=path.parent)


def _plugins(names: object, suite: str, folder: Path | None) -> tuple[str, ...]:
    """Load the suite's plugins now (its models and feature sets are checked next); a .py file is found beside it."""
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise SuiteError(f'suite {suite!r}: write plugins = ["my_lab.ser_plugins", "my_model.py"]')
    resolved = tuple(str(folder / n) if n.endswith(".py") and folder and not Path(n).is_absolute()
                     and not Path(n).exists() else n for n in names)
    try:
        load_plugins(resolved)
    except PluginError as error:
        raise SuiteError(f"suite {suite!r}: {error}") from None
    return resolved


def parse_suite(data: dict, *, default_name: str, folder: Path | None = None) -> Suite:
    """Validate a suite's dictionary and build the Suite (its plugins are loaded first)."""
    plugins = _plugins(data.get("plugins", []), default_name, folder)
    known = {f.name for f in fields(Suite)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise SuiteError(f"suite {default_name!r} has unknown keys {unknown}; allowed: {sorted(known)}")
    for key in ("corpora", "models"):
        if key not in data:
            raise SuiteError(f"suite {default_name!r} must list {key!r}")
    spec_fields = {f.name for f in fields(FeatureSpec)} - {"options"}
    feature_options = data.get("features", {})
    bad_features = sorted(set(feature_options) - spec_fields)
    if bad_features:
        raise SuiteError(f"unknown feature options {bad_features}; allowed: {sorted(spec_fields)} (a feature set's "
                         f"own options go in [feature_options.NAME])")
    set_options = _feature_options(data.get("feature_options", {}), default_name)
    main_set = feature_options.get("feature_set", "librosa")
    unknown_protocols = sorted(set(data.get("protocols", ())) - set(PROTOCOLS))
    if unknown_protocols:
        raise SuiteError(f"suite {default_name!r}: unknown protocols {unknown_protocols}; "
                         f"choose from {list(PROTOCOLS)}")
    return Suite(
        name=data.get("name", default_name),
        description=data.get("description", ""),
        corpora=tuple(data["corpora"]),
        models=tuple(data["models"]),
        protocols=tuple(data.get("protocols", ("speaker_folds",))),
        seeds=_seed_list(data.get("seeds", [0]), default_name, "seeds = [0, 1, 2]"),
        model_seeds=_model_seeds(data.get("model_seeds", {}), default_name),
        publish=bool(data.get("publish", False)),
        budget=_budget(data.get("budget", 1.0), default_name),
        features=_spec(feature_options, set_options.get(main_set, {}), default_name),
        plugins=plugins,
        feature_options=set_options,
        corpus_options=dict(data.get("corpus_options", {})),
        model_params=_model_params(data.get("model_params", {}), default_name),
        protocol_models={k: tuple(v) for k, v in data.get("protocol_models", {}).items()},
        protocol_options=_protocol_options(data.get("protocol_options", {}), default_name),
        augment=_augmentations(data.get("augment", []), default_name),
        model_augment=_model_augment(data.get("model_augment", {}), default_name),
        labels=_label_options(data.get("labels", {}), default_name),
        combined=_combined_options(data.get("combined", {}), default_name),
        manifests={str(k): str(v) for k, v in data.get("manifests", {}).items()},
        tasks=_tasks(data.get("tasks", {}), default_name),
        variants=tuple(_variant(v, default_name, main_set) for v in data.get("variants", [])),
        tuning=_tuning(data.get("tuning", {}), default_name),
        report=_report(data.get("report", {}), default_name),
    )


def _tuning(tuning: dict, suite: str) -> dict:
    budgets = {}
    for model, budget in tuning.items():
        spec = model_spec(model)
        if spec.search_space is None:
            raise SuiteError(f"suite {suite!r}: model {model!r} has no search space to tune")
        if not isinstance(budget, dict) or set(budget) - {"trials", "timeout"} or int(budget.get("trials", 0)) < 1:
            raise SuiteError(f"suite {suite!r}: write [tuning.{model}] trials = N (and optionally timeout = seconds)")
        budgets[model] = {"trials": int(budget["trials"]),
                          **({"timeout": float(budget["timeout"])} if "timeout" in budget else {})}
    return budgets


MODEL_GROUPS = ("classical", "deep", "ensemble")


def _model_params(params: dict, suite: str) -> dict:
    """[model_params.MODEL]: each a registered model, each key one of its parameters; an ensemble's members,
    their feature sets, their parameters and its member selection are ones it knows."""
    for name, values in params.items():
        try:
            spec = model_spec(name)
        except KeyError as error:
            raise SuiteError(f"suite {suite!r}: [model_params] {error.args[0]}") from error
        try:
            if not isinstance(values, dict):
                raise ValueError("write it as a table: [model_params.MODEL] with one parameter per line")
            spec.check_params(values)
            if spec.family == "ensemble":
                check_ensemble_params({**spec.defaults, **values})
            if spec.family == "deep":
                check_deep_choices({"architecture": name, **values})
            if spec.input == STORED and any("@" in m for m in values.get("members", [])):
                raise ValueError("a vote over stored predictions averages rows of this table: its members are model "
                                 "names without @feature_set")
        except (KeyError, ValueError) as error:
            message = error.args[0] if error.args else error
            raise SuiteError(f"suite {suite!r}: [model_params.{name}] {message}") from error
    return dict(params)


def _model_seeds(seeds: dict, suite: str) -> dict:
    """[model_seeds]: a model name or family -> the seeds it runs (the folds stay those of the first suite seed)."""
    out = {}
    for name, values in seeds.items():
        if name not in MODEL_GROUPS:
            try:
                model_spec(name)
            except KeyError as error:
                raise SuiteError(f"suite {suite!r}: [model_seeds] {error.args[0]}") from error
        out[name] = _seed_list(values, suite, f"[model_seeds] {name} = [0, 1, 2]")
    return out


MAX_SEED = 2**32 - 1  # numpy's and Keras' seeds are unsigned 32-bit


def valid_seed(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_SEED


def _seed_list(values: object, suite: str, example: str) -> tuple[int, ...]:
    if not isinstance(values, list | tuple) or not values or not all(valid_seed(v) for v in values):
        raise SuiteError(f"suite {suite!r}: write {example} (a list of integer seeds from 0 to {MAX_SEED})")
    return tuple(dict.fromkeys(values))


def valid_budget(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _budget(value: object, suite: str) -> float:
    if not valid_budget(value):
        raise SuiteError(f"suite {suite!r}: budget must be a number above 0 (1 = the registered epochs), not {value!r}")
    return float(value)


def seeds_for(suite: Suite, model: str) -> tuple[int, ...]:
    """The seeds a model runs: its own [model_seeds] entry, else its family's, else the suite's."""
    return suite.model_seeds.get(model) or suite.model_seeds.get(model_spec(model).family) or suite.seeds


TASKS = ("gender",)  # targets other than emotion, read from the manifest column of the same name


def _tasks(tasks: dict, suite: str) -> dict:
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        raise SuiteError(f"suite {suite!r}: unknown tasks {unknown}; choose from {list(TASKS)}")
    return {task: tuple(models) for task, models in tasks.items()}


def _variant(variant: dict, suite: str, main_set: str = "librosa") -> dict:
    """A [[variants]] entry; a feature set that is the suite's own adds nothing (its rows are the table's own)."""
    allowed = {"feature_set", "gender_input", "models", "protocols"}
    unknown = sorted(set(variant) - allowed)
    if unknown or "models" not in variant or not ({"feature_set", "gender_input"} & set(variant)):
        raise SuiteError(f"suite {suite!r}: a [[variants]] entry needs models and feature_set or gender_input "
                         f"(allowed keys: {sorted(allowed)}), got {variant}")
    if variant.get("feature_set", "librosa") not in FEATURES:
        raise SuiteError(f"suite {suite!r}: unknown feature_set {variant['feature_set']!r}; choose from "
                         f"{FEATURES.names()}")
    return {"models": tuple(variant["models"]), "protocols": tuple(variant.get("protocols", ("speaker_folds",))),
            **({"feature_set": variant["feature_set"]} if variant.get("feature_set", main_set) != main_set else {}),
            **({"gender_input": True} if variant.get("gender_input") else {})}


def _feature_options(options: object, suite: str) -> dict:
    """[feature_options.NAME]: a registered feature set -> its options (wherever the suite reads that set)."""
    if not isinstance(options, dict) or not all(isinstance(v, dict) for v in options.values()):
        raise SuiteError(f'suite {suite!r}: write [feature_options.precomputed] file = "features.npz"')
    unknown = sorted(name for name in options if name not in FEATURES)
    if unknown:
        raise SuiteError(f"suite {suite!r}: [feature_options] names unknown feature sets {unknown}; choose from "
                         f"{FEATURES.names()}")
    return {name: dict(values) for name, values in options.items()}


def _spec(fields_: dict, options: dict, suite: str) -> FeatureSpec:
    """The suite's FeatureSpec; an unknown set, or options its extractor refuses, is a SuiteError now."""
    try:
        spec = FeatureSpec(**fields_, options=tuple(options.items()))
        spec.extractor()
    except (TypeError, ValueError) as error:
        raise SuiteError(f"suite {suite!r}: [features] {error}") from None
    return spec


def _label_options(options: dict, suite: str) -> dict:
    unknown = sorted(set(options) - {"merge", "drop", "keep"})
    if unknown:
        raise SuiteError(f"suite {suite!r}: unknown [labels] keys {unknown}; allowed: drop, keep, merge")
    dropped = [label for label in options.get("drop", ()) if not no_agreement(label)]  # never a class: skipped
    named = [*options.get("merge", {}), *options.get("merge", {}).values(), *dropped, *options.get("keep", ())]
    bad = sorted({str(label) for label in named if canonical_emotion(label) is None})
    if bad:
        raise SuiteError(f"suite {suite!r}: [labels] names {bad}, which are no class names; classes are words "
                         f"such as {list(CANONICAL_EMOTIONS)} or a corpus' own (e.g. boredom); a label that says no "
                         f"emotion was agreed on ({', '.join(NO_AGREEMENT)}) is never a class: its rows are skipped")
    return dict(options)


def _protocol_options(options: dict, suite: str) -> dict:
    """[protocol_options] for speaker_folds: n_folds = K (>= 2) or leave_one_speaker_out = true."""
    unknown = sorted(set(options) - {"n_folds", "leave_one_speaker_out"})
    n_folds = options.get("n_folds")
    if unknown or (n_folds is not None and (not isinstance(n_folds, int) or n_folds < 2)) or (
            "leave_one_speaker_out" in options and not isinstance(options["leave_one_speaker_out"], bool)):
        raise SuiteError(f"suite {suite!r}: [protocol_options] takes n_folds = K (K >= 2) or "
                         f"leave_one_speaker_out = true, got {options}")
    if n_folds is not None and options.get("leave_one_speaker_out"):
        raise SuiteError(f"suite {suite!r}: [protocol_options] takes n_folds or leave_one_speaker_out, not both")
    return dict(options)


def _combined_options(options: dict, suite: str) -> dict:
    unknown = sorted(set(options) - {"labels", "n_folds"})
    if unknown or options.get("labels", "shared") not in ("shared", "all"):
        raise SuiteError(f"suite {suite!r}: [combined] takes labels = \"shared\"|\"all\" and n_folds = K")
    return dict(options)
