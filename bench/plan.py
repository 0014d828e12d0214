"""Planning a run before anything trains: its tables (datasets), their folds and jobs, and each job's key."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from bench.records import config_hash, record_identity
from bench.suite import Suite, augment_for, seeds_for
from bench.variant import Variant
from bench.votes import is_vote
from ser_models.ensembles import member_feature_set
from ser_models.feature_cache import FeatureSet
from ser_models.features import FeatureSpec
from ser_models.hygiene import has_gender, without_shared_speakers
from ser_models.models import model_names, model_spec
from ser_models.protocols import MIN_SPEAKERS, PROTOCOLS, Fold, ProtocolError, make_folds, untrained_test_classes

log = logging.getLogger(__name__)


def resolve_models(requested: tuple[str, ...], *, every: bool = False) -> list[str]:
    """Expand 'all' and family names; unknown names raise with the valid choices. `every`: as filters, "all" and the
    families let through the models that run only where named too (an encoder's layer head)."""
    names: list[str] = []
    for item in requested:
        if item == "all":
            names += model_names(every=every)
        elif item in ("classical", "deep", "ensemble"):
            names += model_names(family=item, every=every)
        else:
            model_spec(item)
            names.append(item)
    return list(dict.fromkeys(names))


@dataclass
class Dataset:
    """What one leaderboard table (or a set of its rows) is computed on."""

    name: str  # "ravdess"; "ravdess+urdu" (combined); "ravdess->urdu" (cross-corpus)
    corpora: tuple[str, ...]
    features: FeatureSet
    protocols: tuple[str, ...]
    corpus_options: dict
    spec: FeatureSpec
    fold_options: dict = field(default_factory=dict)  # extra make_folds options (cross-corpus sides, K)
    target: str = "emotion"  # the manifest column predicted
    variant: Variant = field(default_factory=Variant)  # what sets its rows apart from the table's own
    models: tuple[str, ...] | None = None  # None: the suite's models under each protocol


@dataclass
class Job:
    corpus: str
    protocol: str
    model: str
    fold: Fold
    seed: int
    params: dict
    key: str
    train: np.ndarray
    test: np.ndarray


def _labels_of(features: FeatureSet, target: str) -> set[str]:
    return set(features.manifest[target])


def _restricted(features: FeatureSet, target: str, labels: set[str]) -> FeatureSet:
    return features.subset(np.flatnonzero(features.manifest[target].isin(labels).to_numpy()))


def plan_datasets(suite: Suite, corpus_sets: dict[str, FeatureSet], *, target: str = "emotion",
                  variant_sets: dict[tuple[str, str], FeatureSet] | None = None) -> list[Dataset]:
    """Per-corpus tables, the combined table and cross-corpus pairs, other tasks, then variant rows."""
    scopes = {p: PROTOCOLS[p].scope for p in suite.protocols}
    per_corpus = tuple(p for p in suite.protocols if scopes[p] == "corpus")
    spec = suite.features
    datasets = []
    for name, features in corpus_sets.items():
        if target == "gender" and not has_gender(name, features, "gender task"):
            continue
        protocols = per_corpus
        if features.manifest["speaker"].nunique() < MIN_SPEAKERS:  # no speaker-independent claim possible: say so
            protocols = tuple(dict.fromkeys("speaker_dependent" if p == "speaker_folds" else p for p in protocols))
        datasets.append(Dataset(name, (name,), features, protocols, suite.corpus_options.get(name, {}), spec,
                                target=target))
    names = sorted(n for n in corpus_sets if any(d.name == n for d in datasets))
    if len(names) >= 2:
        datasets += _multi_corpus(suite, {n: corpus_sets[n] for n in names}, scopes, target)
    if target != "emotion":
        return datasets
    for task, models in suite.tasks.items():
        for name, features in corpus_sets.items():
            if features.manifest["speaker"].nunique() >= MIN_SPEAKERS and has_gender(name, features, f"{task} task"):
                datasets.append(Dataset(name, (name,), features, ("speaker_folds",), suite.corpus_options.get(name, {}),
                                        spec, target=task, models=models))
    for model, budget in suite.tuning.items():  # tuned rows on each corpus' speaker folds
        budget = {**budget, "trials": max(1, round(budget["trials"] * suite.budget))}  # the budget factor scales trials
        for name, features in corpus_sets.items():
            independent = features.manifest["speaker"].nunique() >= MIN_SPEAKERS
            protocol = "speaker_folds" if independent else "speaker_dependent"
            datasets.append(Dataset(name, (name,), features, (protocol,), suite.corpus_options.get(name, {}), spec,
                                    variant=Variant(tuned=tuple(sorted(budget.items()))), models=(model,)))
    for variant in suite.variants:
        extra = {k: v for k, v in variant.items() if k not in ("models", "protocols")}
        for name, features in corpus_sets.items():
            if "feature_set" in extra:
                if (name, extra["feature_set"]) not in (variant_sets or {}):
                    continue  # its extra is not installed (said when loading)
                features = variant_sets[(name, extra["feature_set"])]
            if extra.get("gender_input") and not has_gender(name, features, "gender-input rows"):
                continue
            protocols = tuple(p for p in variant["protocols"] if p in per_corpus)
            variant_spec = suite.spec_for(extra["feature_set"]) if "feature_set" in extra else spec
            datasets.append(Dataset(name, (name,), features, protocols, suite.corpus_options.get(name, {}),
                                    variant_spec, variant=Variant.of(extra), models=variant["models"]))
    return datasets


def _multi_corpus(suite: Suite, corpus_sets: dict[str, FeatureSet], scopes: dict, target: str) -> list[Dataset]:
    names = sorted(corpus_sets)
    options = {c: suite.corpus_options.get(c, {}) for c in names}
    datasets = []
    if "combined" in scopes.values():
        label_sets = [_labels_of(corpus_sets[c], target) for c in names]
        labels = set.union(*label_sets) if suite.combined.get("labels") == "all" else set.intersection(*label_sets)
        parts = []
        for c in names:  # a speaker two corpora share (by a shared recording) is kept in the first only
            seen = FeatureSet.concat(parts) if parts else None
            parts.append(without_shared_speakers("+".join(names), _restricted(corpus_sets[c], target, labels), seen))
        merged = FeatureSet.concat(parts)
        datasets.append(Dataset("+".join(names), tuple(names), merged, ("combined",), options, suite.features,
                                {"n_folds": suite.combined.get("n_folds")}, target=target))
    if "cross" in scopes.values():
        sides = [((a,), b) for a in names for b in names if a != b]
        if len(names) > 2:  # also every other corpus together -> one
            sides += [(tuple(c for c in names if c != b), b) for b in names]
        for train, test in sides:
            labels = set.union(*(_labels_of(corpus_sets[c], target) for c in train))
            labels &= _labels_of(corpus_sets[test], target)
            if len(labels) < 2:
                log.warning("cross-corpus %s->%s skipped: fewer than 2 shared labels", "+".join(train), test)
                continue
            tested = _restricted(corpus_sets[test], target, labels)
            name = f"{'+'.join(train)}->{test}"
            merged = FeatureSet.concat([*(without_shared_speakers(name, _restricted(corpus_sets[c], target, labels),
                                                                   tested) for c in train), tested])
            datasets.append(Dataset(f"{'+'.join(train)}->{test}", (*train, test), merged, ("cross_corpus",),
                                    {c: options[c] for c in (*train, test)}, suite.features,
                                    {"train_corpora": train, "test_corpus": test}, target=target))
    return datasets


def model_params(suite: Suite, model: str) -> dict:
    """A model's parameters in this suite; an ensemble also carries each member's."""
    params = model_spec(model).resolved_params(suite.model_params.get(model), suite.budget)
    if model_spec(model).family == "ensemble" and not is_vote(model):
        params["member_params"] = {m: model_params(suite, member_feature_set(m)[0]) for m in params["members"]}
    return params


def shared_fits(suite: Suite, models: list[str]) -> dict[str, set[str]]:
    """Per protocol, the models whose own rows an ensemble among `models` refits under that protocol as a chosen
    member with the same parameters (no member override applies to its refits): each such fit is trained once."""
    shared: dict[str, set[str]] = {}
    for protocol in suite.protocols:
        allowed = set(resolve_models(suite.protocol_models.get(protocol, ("all",)), every=True))
        for model in models:
            if model not in allowed or model_spec(model).family != "ensemble" or is_vote(model):
                continue
            params = model_params(suite, model)
            registered = params.get("refit_members", "candidate") == "registered"
            overrides = {} if registered else params.get("member_overrides") or {}
            # a member with copies of its own trains its row on more rows than the ensemble gives it: two fits
            shared.setdefault(protocol, set()).update(
                member_feature_set(m)[0] for m in params["members"]
                if not overrides.get(m) and not suite.model_augment.get(member_feature_set(m)[0]))
    return shared


def member_feature_sets(suite: Suite, models: list[str]) -> list[str]:
    """Feature sets (besides the suite's own) that the ensembles' members read, e.g. ["compare"]."""
    needed = [member_feature_set(m)[1] for model in models if model_spec(model).family == "ensemble"
              and not is_vote(model)
              for m in model_params(suite, model)["members"]]
    return list(dict.fromkeys(f for f in needed if f and f != suite.features.feature_set))


def _warn_untrained_test_classes(corpus: str, protocol: str, folds: list[Fold], manifest: pd.DataFrame,
                                 target: str) -> None:
    """Say which folds test a class that their training speakers never voice (its recall there is 0)."""
    untrained = {f.index: classes for f in folds if f.speaker_independent
                 and (classes := untrained_test_classes(f, manifest, target))}
    if untrained:
        log.warning("%s/%s: %d of %d folds test classes that none of their training speakers voices, so those "
                    "classes score 0 recall there (fold: classes): %s", corpus, protocol, len(untrained), len(folds),
                    "; ".join(f"{i}: {', '.join(c)}" for i, c in untrained.items()))


def job_key(*, corpus: str, corpus_options: dict, protocol: str, fold: dict, model: str, params: dict, seed: int,
            features: str, data: str, labels: list[str], target: str = "emotion", variant: dict | None = None,
            augment: list[dict] | None = None, model_version: int = 1, member_hashes: list[str] | None = None) -> str:
    """The config hash of one fit: a recorded row with this hash is that fit, and is reused. Every rule of what
    enters it lives here: a field added since the first records enters only when it differs from what those records
    had, so their hashes still match (`fold` is `Fold.hash_fields()`; `features` the FeatureSpec's key)."""
    return config_hash({
        "corpus": corpus, "corpus_options": corpus_options, "protocol": protocol, **fold,
        "model": model, "params": params, "seed": seed, "features": features, "data": data, "labels": labels,
        **({"target": target} if target != "emotion" else {}),
        **({"variant": variant} if variant else {}),
        **({"augment": augment} if augment else {}),
        **({"model_version": model_version} if model_version > 1 else {}),  # version 1 predates versions
        **({"member_hashes": member_hashes} if member_hashes else {}),
    })


def _table_folds(suite: Suite, dataset: Dataset, fold_seed: int, unusable: list[str]) -> dict[str, list[Fold]]:
    """Each protocol's folds of a table; a protocol whose folds cannot be made goes to `unusable` with the reason."""
    fold_options = {k: v for k, v in dataset.fold_options.items() if v is not None}
    out = {}
    for protocol in dataset.protocols:
        options_here = {**suite.protocol_options, **fold_options} if protocol == "speaker_folds" else fold_options
        try:
            out[protocol] = make_folds(protocol, dataset.features.manifest, seed=fold_seed, **options_here)
        except ProtocolError as error:
            log.info("%s: protocol %s skipped (%s)", dataset.name, protocol, error)
            unusable.append(f"{protocol}: {error}")
            continue
        if not dataset.variant:  # a variant's rows share the folds of its table, said once
            _warn_untrained_test_classes(dataset.name, protocol, out[protocol], dataset.features.manifest,
                                         dataset.target)
    return out


def plan_jobs(suite: Suite, dataset: Dataset, models: list[str], done: set[str], seeds: tuple[int, ...] = ()):
    """(jobs to run, rows reused, planned identity -> key) of one table; `seeds` overrides the suite's."""
    corpus, features = dataset.name, dataset.features
    labels = sorted(features.manifest[dataset.target].unique())
    # Every model of a table is scored on the same folds (from the first seed); seeds vary the models.
    unusable: list[str] = []
    folds_of = _table_folds(suite, dataset, (seeds or suite.seeds)[0], unusable)
    jobs, reused, planned = [], 0, {}
    common = {"corpus": corpus, "corpus_options": dataset.corpus_options, "features": dataset.spec.key(),
              "data": features.fingerprint(), "labels": labels, "target": dataset.target,
              "variant": dataset.variant.fields()}
    for protocol, folds in folds_of.items():
        allowed = set(resolve_models(suite.protocol_models.get(protocol, ("all",)), every=True))
        if dataset.models is not None:
            allowed &= set(resolve_models(dataset.models, every=True))
        # votes last: their config hashes name their members' (a retrained member redoes the vote)
        for model in (m for m in sorted(models, key=is_vote) if m in allowed):
            params = model_params(suite, model)
            for seed in seeds or seeds_for(suite, model):
                augment = [asdict(a) for a in augment_for(suite, model, seed)]
                for fold in folds:
                    members = _vote_members(planned, model, params, corpus, protocol, fold.index, seed, dataset)
                    if is_vote(model) and members is None:
                        continue
                    key = job_key(**common, protocol=protocol, fold=fold.hash_fields(), model=model, params=params,
                                  seed=seed, augment=augment, model_version=model_spec(model).version,
                                  member_hashes=members)
                    identity = {"corpus": corpus, "protocol": protocol, "model": model, "fold": fold.index,
                                "seed": seed, "target": dataset.target, "variant": dataset.variant.fields()}
                    planned[record_identity(identity)] = key
                    if key in done:
                        reused += 1
                        continue
                    train, test = fold.split(features.manifest)
                    job_params = params | {"member_hashes": members} if members else params
                    jobs.append(Job(corpus, protocol, model, fold, seed, job_params, key, train, test))
    if unusable and len(unusable) == len(dataset.protocols):  # not one table for this dataset: say why
        log.warning("%s: no folds can be made, so it gets no rows (%s)", corpus, "; ".join(unusable))
    return jobs, reused, planned


def _vote_members(planned: dict, model: str, params: dict, corpus: str, protocol: str, fold: int, seed: int,
                  dataset: Dataset) -> list[str] | None:
    """The config hashes of a vote's members on this fold and seed; None when one of them does not run here."""
    if not is_vote(model):
        return None
    hashes = []
    for member in params["members"]:
        identity = record_identity({"corpus": corpus, "protocol": protocol, "model": member, "fold": fold,
                                    "seed": seed, "target": dataset.target, "variant": dataset.variant.fields()})
        if identity not in planned:
            if fold == 0:
                log.info("%s %s: %s left out (member %s does not run on this table with seed %d)",
                         corpus, protocol, model, member, seed)
            return None
        hashes.append(planned[identity])
    return hashes
