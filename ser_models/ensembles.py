"""Voting and stacking ensembles over registered models, all fitted with speaker-grouped inner folds.

An ensemble is itself a scikit-learn classifier (`fit(X, y, groups)`), registered like any
model. Its input is a `MultiInput` carrying every input kind its members read, so classical
and deep members mix over the same cached features. Inside the outer training fold it:

1. makes speaker-disjoint inner folds of the training speakers;
2. gets each candidate member's out-of-fold probabilities and inner UAR on them;
3. keeps the named members, the `top_k` by inner UAR, or (`selection="greedy"`) the members that
   forward selection with replacement adds while the inner UAR of their mean probabilities rises
   (Caruana et al., 2004), and refits them on the whole outer training fold;
4. combines them: mean probabilities (soft), majority vote (hard), inner-UAR-weighted mean
   (weighted), or a logistic-regression meta-learner trained on the out-of-fold probabilities
   (stacking; class-balanced by default, `meta_class_weight`); after greedy selection, soft voting
   weights each member by the times it was added.
   Nothing it fits ever sees an outer-test speaker.

`member_overrides` sets parameters of named members on top of their own (e.g. one early-stopped
network for a frame model, instead of its registered recipe of three refitted ones). With
`refit_members="candidate"` (the default) the chosen members are refitted as they were scored on
the inner folds, overrides included; with `"registered"` the overrides apply to the inner folds
only, and the chosen members are refitted with their own parameters, i.e. as their own rows.
`member_folds` gives named members fewer (or more) inner folds than `inner_folds`, e.g. 2 for the costly frame
networks: their out-of-fold probabilities then come from folds of their own, still of the training speakers only.

Inner results and refits are memoised on disk (`cache_dir`), so the ensemble kinds on one
fold share their members' work; the runner memoises a candidate's own row there too
(`timed_fit`), so a member refitted as its row is trained once.
"""

from __future__ import annotations

import hashlib
import time
import warnings
from dataclasses import dataclass

import numpy as np
from joblib import Memory
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score

from ser_models.extractors import FEATURES
from ser_models.models.frames import FrameBatch
from ser_models.models.registry import model_names, model_spec, register_model
from ser_models.tuning import inner_speaker_folds


def member_feature_set(name: str) -> tuple[str, str | None]:
    """'logreg@compare' -> ('logreg', 'compare'): a member on another feature set's functionals."""
    model, _, feature_set = name.partition("@")
    return model, feature_set or None


class MultiInput:
    """Aligned rows of several input kinds (functionals, frames, other feature sets' functionals).

    Slices and stacks like one array. `other_functionals` maps a feature set (e.g. "compare") to
    its utterance functionals for the same rows, read by members named "model@feature_set".
    """

    def __init__(self, functionals: np.ndarray, frames: FrameBatch | None = None,
                 other_functionals: dict[str, np.ndarray] | None = None):
        self.functionals = functionals
        self.frames = frames
        self.other_functionals = dict(other_functionals or {})

    def __len__(self) -> int:
        return len(self.functionals)

    def __getitem__(self, rows) -> MultiInput:
        return MultiInput(self.functionals[rows], None if self.frames is None else self.frames[rows],
                          {k: v[rows] for k, v in self.other_functionals.items()})

    @property
    def shape(self) -> tuple[int, ...]:
        return self.functionals.shape

    @staticmethod
    def concatenate(parts: list[MultiInput]) -> MultiInput:
        from ser_models.model_inputs import stack_blocks  # noqa: PLC0415  -- model_inputs builds on this module

        frames = None if parts[0].frames is None else stack_blocks("frames", [p.frames for p in parts])
        others = {k: np.concatenate([p.other_functionals[k] for p in parts]) for k in parts[0].other_functionals}
        return MultiInput(stack_blocks("functionals", [p.functionals for p in parts]), frames, others)

    def resident(self) -> MultiInput:
        """The utterance matrices read into memory (frames stay where they are: the frame models read batches)."""
        return MultiInput(np.asarray(self.functionals), self.frames, self.other_functionals)

    def for_model(self, name: str):
        """The input that member `name` ("model" or "model@feature_set") reads."""
        model, feature_set = member_feature_set(name)
        kind = model_spec(model).input
        if feature_set is not None:
            if kind != "functionals":
                raise ValueError(f"member {name!r}: only utterance-functional models can read another feature set")
            if feature_set not in self.other_functionals:
                raise ValueError(f"member {name!r} reads the {feature_set} functionals, which the ensemble input "
                                 f"lacks (it has: {', '.join(sorted(self.other_functionals)) or 'none'})")
            return self.other_functionals[feature_set]
        if kind == "functionals":
            return self.functionals
        if self.frames is None:
            raise ValueError(f"member {name!r} reads {kind} but the ensemble input has no frames")
        if kind == "fusion":
            return self.frames.with_utterance(self.functionals)
        return self.frames


SELECTIONS = ("top_k", "greedy")
REFITS = ("candidate", "registered")  # the chosen members refitted as scored (overrides included), or as their rows
META_CLASS_WEIGHTS = {"balanced": "balanced", "none": None}  # suite value -> LogisticRegression(class_weight=)


def check_choices(params: dict) -> None:
    """Refuse an unknown member `selection`, refit or meta-learner class weighting before any fit (a suite's typo
    is not a traceback hours in)."""
    if params.get("selection", "top_k") not in SELECTIONS:
        raise ValueError(f"selection must be one of {', '.join(SELECTIONS)}, not {params['selection']!r}")
    if params.get("refit_members", "candidate") not in REFITS:
        raise ValueError(f"refit_members must be one of {', '.join(REFITS)}, not {params['refit_members']!r}")
    if params.get("meta_class_weight", "balanced") not in META_CLASS_WEIGHTS:
        raise ValueError(f"meta_class_weight must be one of {', '.join(map(repr, META_CLASS_WEIGHTS))}, "
                         f"not {params['meta_class_weight']!r}")


def check_ensemble_params(params: dict) -> None:
    """Refuse, before any fit, an unknown selection, member model or feature set, or a parameter a member
    does not take in `member_params` / `member_overrides` (KeyError: an unknown model; ValueError: the rest)."""
    check_choices(params)
    members = params.get("members", [])
    if not isinstance(members, list | tuple) or not members or not all(isinstance(m, str) for m in members):
        raise ValueError("members must be a non-empty list of model names, e.g. [\"logreg\", \"svm@compare\"]")
    for member in members:
        model, feature_set = member_feature_set(member)
        if model_spec(model).family == "ensemble":
            raise ValueError(f"member {member!r} is itself an ensemble")
        if feature_set is not None and feature_set not in FEATURES:
            raise ValueError(f"member {member!r}: unknown feature set {feature_set!r}; "
                             f"choose from {', '.join(FEATURES.names())}")
        if feature_set is not None and model_spec(model).input != "functionals":
            raise ValueError(f"member {member!r}: only utterance-functional models can read another feature set")
    for key in ("member_params", "member_overrides"):
        for member, values in (params.get(key) or {}).items():
            if not isinstance(values, dict):
                raise ValueError(f"{key}.{member} must be a table of parameters")
            model_spec(member_feature_set(member)[0]).check_params(values)
    for member, folds in (params.get("member_folds") or {}).items():
        model_spec(member_feature_set(member)[0])  # a registered model (like the overrides, it need not be a member)
        if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
            raise ValueError(f"member_folds.{member} must be a whole number of inner folds, at least 2")


def greedy_selection(oof: dict[str, np.ndarray], y: np.ndarray, classes: np.ndarray, candidates: list[str],
                     steps: int, trace: list | None = None) -> dict[str, int]:
    """Forward selection with replacement: {member: times added}, added while the inner UAR strictly rises.

    Each step adds the candidate whose probabilities, summed with those already chosen, give the
    highest UAR on the out-of-fold rows; ties go to the earlier candidate. At most `steps` additions.
    `trace` (a list) receives each addition as [candidate, inner UAR after it].
    """
    counts: dict[str, int] = {}
    total, best = np.zeros((len(y), len(classes))), -np.inf
    for _ in range(steps):
        with warnings.catch_warnings():  # a sum may predict a class no row has
            warnings.simplefilter("ignore", UserWarning)
            scores = [float(balanced_accuracy_score(y, classes[(total + oof[n]).argmax(axis=1)])) for n in candidates]
        pick = int(np.argmax(scores))
        if scores[pick] <= best:
            break
        best, total = scores[pick], total + oof[candidates[pick]]
        counts[candidates[pick]] = counts.get(candidates[pick], 0) + 1
        if trace is not None:
            trace.append([candidates[pick], best])
    return counts


def selection_inputs(oof: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The out-of-fold probabilities greedy selection reads, as stored beside its record (float16): selecting on the
    stored values lets anyone replay the selection exactly from the file."""
    return {name: np.asarray(values, dtype=np.float16) for name, values in oof.items()}


def oof_digest(stored: dict[str, np.ndarray], candidates: list[str]) -> str:
    """SHA-256 of the stored out-of-fold probabilities, candidates in selection order."""
    digest = hashlib.sha256()
    for name in candidates:
        digest.update(name.encode() + b"\0" + np.ascontiguousarray(stored[name]).tobytes())
    return digest.hexdigest()


def fit_member(name: str, params: dict, seed: int, x, y, groups):
    """Member `name` ("model" or "model@feature_set") built with `params` and fitted on these rows."""
    spec = model_spec(member_feature_set(name)[0])
    estimator = spec.build(seed=seed, **params)
    return estimator.fit(x, y, **({"groups": groups} if spec.fit_groups else {}))


@dataclass
class TimedFit:
    """A fitted model, the seconds its fit took, and when it finished (time.time())."""

    estimator: object
    seconds: float
    finished: float


def timed_fit(model: str, params: dict, seed: int, x, y, groups, *, version: int = 1) -> TimedFit:
    """`model` (a registered name) built with `params` and fitted on these rows, timed.

    The runner (a candidate's own row) and the ensembles (a chosen member's refit) memoise this one function on
    disk, so the same fit on the same rows is trained once; `version`, the model's registered version, is only
    part of the memo key, so a changed model is never served an older one's fit.
    """
    start = time.perf_counter()
    estimator = fit_member(model, params, seed, x, y, groups)
    return TimedFit(estimator, time.perf_counter() - start, time.time())


def out_of_fold(name: str, params: dict, seed: int, x, y, groups, splits, classes) -> np.ndarray:
    """Probabilities of every training row from the member fitted without that row's speakers."""
    probabilities = np.zeros((len(y), len(classes)))
    for train, held_out in splits:
        member = fit_member(name, params, seed, x[train], y[train], groups[train])
        columns = [list(classes).index(c) for c in member.classes_]
        probabilities[np.ix_(held_out, columns)] = member.predict_proba(x[held_out])
    return probabilities


class EnsembleClassifier(ClassifierMixin, BaseEstimator):
    """Soft, hard or weighted voting, or stacking, over registered member models."""

    def __init__(self, *, method="soft", members=("logreg", "svm", "xgboost", "mlp"), top_k=0, selection="top_k",
                 greedy_steps=10, inner_folds=3, member_params=None, member_overrides=None,
                 member_folds=None, refit_members="candidate", meta_C=1.0, meta_class_weight="balanced", seed=0,
                 cache_dir=None):
        self.method = method
        self.members = members
        self.top_k = top_k
        self.selection = selection
        self.greedy_steps = greedy_steps
        self.inner_folds = inner_folds
        self.member_params = member_params
        self.member_overrides = member_overrides
        self.member_folds = member_folds
        self.refit_members = refit_members
        self.meta_C = meta_C
        self.meta_class_weight = meta_class_weight
        self.seed = seed
        self.cache_dir = cache_dir

    def fit(self, X: MultiInput, y, groups):
        check_choices({"selection": self.selection, "refit_members": self.refit_members,
                       "meta_class_weight": self.meta_class_weight})
        y, groups = np.asarray(y), np.asarray(groups)
        memory = Memory(self.cache_dir, verbose=0)
        cached_out_of_fold, cached_fit = memory.cache(out_of_fold), memory.cache(timed_fit)
        self.classes_ = np.unique(y)
        folds = {name: (self.member_folds or {}).get(name, self.inner_folds) for name in self.members}
        splits = {k: inner_speaker_folds(y, groups, k, self.seed) for k in sorted(set(folds.values()))}
        self.inner_speakers_ = [sorted(map(str, set(groups[held_out]))) for k in splits for _, held_out in splits[k]]
        params = {name: {**(self.member_params or {}).get(name, {}), **(self.member_overrides or {}).get(name, {})}
                  for name in self.members}
        oof, inner_uar = {}, {}
        for name in self.members:
            oof[name] = cached_out_of_fold(name, params[name], self.seed, X.for_model(name), y, groups,
                                           splits[folds[name]], self.classes_)
            with warnings.catch_warnings():  # a member may predict a class no training row of a fold has
                warnings.simplefilter("ignore", UserWarning)
                inner_uar[name] = float(balanced_accuracy_score(y, self.classes_[oof[name].argmax(axis=1)]))
        ranked = sorted(self.members, key=lambda n: -inner_uar[n])
        if self.selection == "greedy":
            stored, self.selection_trace_ = selection_inputs(oof), []
            counts = greedy_selection({n: v.astype(np.float64) for n, v in stored.items()}, y, self.classes_, ranked,
                                      self.greedy_steps, self.selection_trace_)
            self.chosen_, self.candidates_ = list(counts), ranked
            self.inner_oof_ = {"targets": np.searchsorted(self.classes_, y), **stored}
        else:
            self.chosen_ = ranked[: self.top_k] if self.top_k else list(self.members)
            counts = dict.fromkeys(self.chosen_, 1)
        self.inner_uar_ = inner_uar
        if self.refit_members == "registered":  # the overrides were for the inner folds; refit as the members' rows
            params = {name: dict((self.member_params or {}).get(name, {})) for name in self.members}
        self.members_ = {}
        for name in self.chosen_:
            model = member_feature_set(name)[0]
            self.members_[name] = cached_fit(model, params[name], self.seed, X.for_model(name), y, groups,
                                             version=model_spec(model).version).estimator
        weights = np.array([inner_uar[n] if self.method == "weighted" else counts[n] for n in self.chosen_], float)
        self.weights_ = weights / weights.sum()
        if self.method == "stacking":
            self.meta_ = LogisticRegression(C=self.meta_C, class_weight=META_CLASS_WEIGHTS[self.meta_class_weight],
                                            max_iter=3000, random_state=self.seed)
            self.meta_.fit(np.hstack([oof[n] for n in self.chosen_]), y)  # out-of-fold rows of training speakers
        self.validation_speakers_ = []
        return self

    def _member_probabilities(self, X: MultiInput) -> list[np.ndarray]:
        out = []
        for name in self.chosen_:
            member = self.members_[name]
            probabilities = np.zeros((len(X), len(self.classes_)))
            columns = [list(self.classes_).index(c) for c in member.classes_]
            probabilities[:, columns] = member.predict_proba(X.for_model(name))
            out.append(probabilities)
        return out

    def predict_proba(self, X: MultiInput) -> np.ndarray:
        members = self._member_probabilities(X)
        if self.method == "stacking":
            meta = self.meta_.predict_proba(np.hstack(members))
            probabilities = np.zeros((len(X), len(self.classes_)))
            probabilities[:, [list(self.classes_).index(c) for c in self.meta_.classes_]] = meta
        elif self.method == "hard":
            votes = np.zeros((len(X), len(self.classes_)))
            for p in members:
                votes[np.arange(len(X)), p.argmax(axis=1)] += 1
            probabilities = votes + 1e-3 * np.mean(members, axis=0)  # mean probability breaks ties
        else:
            probabilities = np.tensordot(self.weights_, np.stack(members), axes=1)
        return probabilities / probabilities.sum(axis=1, keepdims=True)

    def predict(self, X: MultiInput) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


DEFAULT_MEMBERS = ("logreg", "svm", "xgboost", "mlp")
# stored only when a suite sets them: recorded rows keep their hash
_OPTIONAL = {"refit_members": "candidate", "member_folds": {}}


def _meta_defaults(method: str) -> dict:
    """A stacking row records its meta-learner's class weighting (it enters the config hash); votes have none.

    Balanced: it beat the unweighted meta-learner on held-out inner speakers of RAVDESS and URDU
    (bench/benchmarks/stacking_meta.md); no outer test fold took part in the choice.
    """
    return {"meta_class_weight": "balanced"} if method == "stacking" else {}


for _name, _method, _description in (
    ("soft_vote", "soft", "soft voting: mean member probabilities"),
    ("hard_vote", "hard", "hard voting: majority of member predictions"),
    ("weighted_vote", "weighted", "soft voting weighted by each member's inner-fold UAR"),
    ("stacking", "stacking", "logistic regression on the members' out-of-fold probabilities"),
):
    register_model(
        _name, family="ensemble", input="multi", description=_description, fit_groups=True,
        defaults={"members": list(DEFAULT_MEMBERS), "top_k": 0, "inner_folds": 3, "member_params": {},
                  **_meta_defaults(_method)},
        search_space=lambda trial: {"top_k": trial.suggest_int("top_k", 2, len(DEFAULT_MEMBERS))}, optional=_OPTIONAL,
    )(lambda *, seed, _method=_method, **params: EnsembleClassifier(method=_method, seed=seed, **params))

# Classical and deep candidates together, chosen by greedy forward selection on the inner folds. The networks that
# read frames join as one early-stopped network each (at their 40 ms steps): their registered recipe, three refitted
# networks, would make each candidate's inner folds cost four trainings instead of one.
FRAME_MEMBERS = tuple(n for n in model_names("deep") if model_spec(n).input in ("frames", "fusion"))
for _name, _method, _description in (
    ("mixed_vote", "soft", "soft voting over classical and deep members chosen by greedy forward selection"),
    ("mixed_stacking", "stacking", "stacking over classical and deep members chosen by greedy forward selection"),
):
    register_model(
        _name, family="ensemble", input="multi", description=_description, fit_groups=True,
        defaults={"members": [*DEFAULT_MEMBERS, *FRAME_MEMBERS], "selection": "greedy", "greedy_steps": 10,
                  "inner_folds": 3, "member_params": {},
                  "member_overrides": {n: {"refit_full": False} for n in FRAME_MEMBERS}, **_meta_defaults(_method)},
        search_space=lambda trial: {"greedy_steps": trial.suggest_int("greedy_steps", 1, 10)}, optional=_OPTIONAL,
        version=2,  # 2: selection on the float16 out-of-fold probabilities stored with its trace (replayable)
    )(lambda *, seed, _method=_method, **params: EnsembleClassifier(method=_method, seed=seed, **params))
