"""Leaderboards built from stored records only: never trains, never reads audio."""

from __future__ import annotations

import dataclasses
import logging
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from tabulate import tabulate

from bench.figures import roc_figures, summary_figures
from bench.plots import learning_curves
from bench.ranking import cross_corpus_table, model_table, pooled_uar
from bench.records import RecordStore, atomic_write_bytes
from bench.results_page import write_results_page
from bench.suite import Suite
from bench.tables import best_predictions, is_main_table, read_predictions, tables, unreadable_predictions
from bench.variant import Variant
from ser_models.metrics import roc_auc_from_predictions, speaker_confusions, speaker_statistics

log = logging.getLogger(__name__)

TOP_MODELS_PER_CLASS_TABLE = 3
STATISTICS_SEED = 0  # the interval's bootstrap resamples, and the random sign flips above 14 speakers
SIGNIFICANCE = 0.05


def records_frame(records: list[dict], load_predictions=None) -> pd.DataFrame:
    """Records as a DataFrame, one row per record, with its row name, target and macro AUC.

    The AUC comes from the stored out-of-fold probabilities when they can be read (so old runs
    get it without retraining), otherwise from the record.
    """
    frame = pd.DataFrame(records)
    frame["target"] = frame["target"].fillna("emotion") if "target" in frame.columns else "emotion"
    frame["entry"] = [Variant.of(r.get("variant")).label(r["model"]) for r in records]
    aucs = []
    for record in records:
        auc = record.get("auc_macro")
        if load_predictions is not None:
            try:
                auc = roc_auc_from_predictions(load_predictions(record["config_hash"]), record["labels"])["auc_macro"]
            except (OSError, ValueError, KeyError, EOFError):
                pass
        aucs.append(np.nan if auc is None else auc)
    frame["auc"] = aucs
    return frame


def _speaker_independent(group: pd.DataFrame) -> bool:
    return "speaker_independent" not in group.columns or not (group["speaker_independent"] == False).any()  # noqa: E712


def _dataset_facts(group: pd.DataFrame) -> str:
    first = group.sort_values(["model", "seed", "fold"]).iloc[0]
    one_pass = group[(group["model"] == first["model"]) & (group["seed"] == first["seed"])]
    labels = list(first["labels"])
    class_counts = np.sum([np.asarray(c).sum(axis=1) for c in one_pass["confusion"]], axis=0)
    speakers = sorted(set().union(*one_pass["train_speakers"], *one_pass["test_speakers"]))
    counts = ", ".join(f"{label} {int(n)}" for label, n in zip(labels, class_counts, strict=True))
    if not _speaker_independent(group):
        folds = (f"{one_pass['fold'].nunique()} utterance-level folds: the same speakers train and test, "
                 "so these numbers are speaker-DEPENDENT and not comparable with the other tables")
    elif all(len(s) == 1 for s in one_pass["test_speakers"]):
        folds = f"{one_pass['fold'].nunique()} speaker-disjoint folds: leave one speaker out"
    else:
        folds = (f"{one_pass['fold'].nunique()} speaker-disjoint folds, "
                 f"about {np.mean([len(s) for s in one_pass['test_speakers']]):.1f} test speakers each")
    return (
        f"Classes: {', '.join(labels)}. Test utterances: {int(class_counts.sum())} ({counts}), "
        f"{len(speakers)} speakers. Chance UAR {1 / len(labels):.3f}; "
        f"majority-class accuracy {class_counts.max() / class_counts.sum():.3f}. {folds}.{_class_coverage(one_pass)}"
    )


def _class_coverage(one_pass: pd.DataFrame) -> str:
    """A warning when test folds lack classes (speakers who voice only some emotions), else nothing."""
    held = [int((np.asarray(c).sum(axis=1) > 0).sum()) for c in one_pass["confusion"]]
    n_labels = len(one_pass.iloc[0]["labels"])
    if min(held) == n_labels:
        return ""
    return (f" Test folds hold {min(held)} to {max(held)} of the {n_labels} classes (mean {np.mean(held):.1f}): "
            "most speakers voice only some emotions, so a fold's UAR averages only the classes it holds, and what "
            "a model learns of an emotion is partly what it learns of the few speakers who voice it.")


def _per_class_table(group: pd.DataFrame, models: list[str]) -> str:
    labels = list(group.iloc[0]["labels"])
    rows = []
    for model in models:
        scores = pd.DataFrame(list(group[group["entry"] == model]["per_class_f1"])).mean()
        rows.append([model, *(f"{scores.get(label, 0.0):.3f}" for label in labels)])
    return tabulate(rows, headers=["model", *labels], tablefmt="github")


def speaker_table(group: pd.DataFrame, entries: list[str], load_predictions) -> dict[str, dict]:
    """CI of pooled UAR over test speakers per entry, and its p-value of being as good as the best entry.

    An entry run with several seeds is scored by its mean over seeds, like its row. Every entry and
    seed is scored on the same utterances (those all of them predicted), so the test is paired.
    """
    tables = {}
    for entry in entries:
        rows = group[group["entry"] == entry]
        for seed in sorted(rows["seed"].unique()):
            predictions = read_predictions(rows[rows["seed"] == seed], load_predictions)
            if predictions is None:
                return {}
            # Paths are relative to each corpus folder: with the corpus-prefixed speaker they name one utterance.
            predictions = predictions.assign(utterance=predictions["speaker"] + "/" + predictions["path"])
            tables[entry, seed] = predictions.drop_duplicates("utterance").set_index("utterance")
    common = sorted(set.intersection(*(set(t.index) for t in tables.values())))
    if not common:
        return {}
    labels = list(group.iloc[0]["labels"])
    per_seed: dict[str, list[np.ndarray]] = {}
    for (entry, _), table in tables.items():
        rows = table.loc[common]
        per_seed.setdefault(entry, []).append(
            speaker_confusions(rows["true"], rows["predicted"], rows["speaker"], labels)[1])
    confusions = {entry: np.stack(stacks) for entry, stacks in per_seed.items()}
    return speaker_statistics(confusions, seed=STATISTICS_SEED)


def _ci_cells(stats: dict | None) -> list[str]:
    if not stats:
        return ["—", "—"]
    ci = "—" if np.isnan(stats["ci_low"]) else f"[{stats['ci_low']:.3f}, {stats['ci_high']:.3f}]"  # one speaker
    if stats["best"]:
        return [ci, "best"]
    p = stats["p_vs_best"]
    return [ci, f"{p:.3f}{' *' if p < SIGNIFICANCE else ''}"]


def corpus_section(corpus: str, protocol: str, group: pd.DataFrame, figure_links: list[str] = (),
                   load_predictions=None) -> str:
    """Markdown for one corpus and protocol: ranking, per-class F1 of the top models, dataset facts."""
    table = model_table(group)
    stats = speaker_table(group, list(table.index), load_predictions) if load_predictions else {}
    rows = [
        [rank, model, f"{r.uar_mean:.3f} ± {r.uar_std:.3f}",
         f"{int(r.seeds)} (± {r.seed_std:.3f})" if r.seeds > 1 else "1", f"{r.uar_pooled:.3f}",
         *_ci_cells(stats.get(model)), f"{r.accuracy:.3f}",
         f"{r.macro_f1:.3f}", f"{r.weighted_f1:.3f}", "—" if np.isnan(r.auc) else f"{r.auc:.3f}",
         f"{r.fit_seconds:.1f}"]
        for rank, (model, r) in enumerate(table.iterrows(), start=1)
    ]
    headers = ["rank", "model", "UAR (mean ± std over folds)", "seeds (± std over seeds)", "UAR pooled",
               "95% CI (over speakers)", "p vs best", "accuracy", "macro-F1", "weighted F1", "macro AUC",
               "fit s/fold"]
    top = list(table.index[:TOP_MODELS_PER_CLASS_TABLE])
    title = f"## {corpus} — {protocol}"
    if not _speaker_independent(group):
        title += " (speaker-dependent: fewer than 4 speakers)"
    parts = [
        title,
        tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True),
        f"Per-class F1 of the top {len(top)} models (mean over folds):",
        _per_class_table(group, top),
        _dataset_facts(group),
    ]
    gender_rows = _gender_rows(group, table)
    if gender_rows:
        parts += ["Speaker gender (from the corpus metadata) appended to the utterance functionals:",
                  tabulate(gender_rows, headers=["model", "UAR without", "UAR with gender", "difference"],
                           tablefmt="github", disable_numparse=True)]
    chosen = _ensemble_members(group)
    if chosen:
        parts.append("Ensemble members, chosen in each outer training fold by inner-fold UAR (folds choosing each): "
                     + "; ".join(chosen) + ".")
    if "family" in group.columns and (group["family"] == "ensemble").any():
        parts.append("Ensembles share their members' inner-fold fits and refits (memoised per fold), so the "
                     "first ensemble of a fold carries the members' cost in its fit time and the others look cheap.")
    if figure_links:
        parts.append("Figures: " + ", ".join(figure_links) + ".")
    return "\n\n".join(parts)


def _gender_rows(group: pd.DataFrame, table: pd.DataFrame) -> list[list[str]]:
    """Each row with the speaker's gender as an input beside the same row without it."""
    rows = []
    for entry, r in table.iterrows():
        first = group[group["entry"] == entry].iloc[0]
        variant = Variant.of(first["variant"] if isinstance(first.get("variant"), dict) else None)
        base = dataclasses.replace(variant, gender_input=False).label(first["model"])
        if variant.gender_input and base in table.index:
            without = table.loc[base, "uar_mean"]
            rows.append([base, f"{without:.3f}", f"{r.uar_mean:.3f}", f"{r.uar_mean - without:+.3f}"])
    return rows


def _ensemble_members(group: pd.DataFrame) -> list[str]:
    """'soft_vote: logreg 6/6, svm@compare 4/6' for every ensemble that chose among more candidates than it kept."""
    if "ensemble" not in group.columns:
        return []
    out = []
    for entry, rows in group[group["ensemble"].notna()].groupby("entry", sort=True):
        rows = rows[rows["seed"] == rows["seed"].min()]
        if not rows.iloc[0]["ensemble"]["inner_uar"]:
            continue  # a vote over stored predictions: fixed members, nothing chosen
        picks = [member for e in rows["ensemble"] for member in e["members"]]
        if len(set(picks)) == len(rows.iloc[0]["ensemble"]["members"]) and len(rows.iloc[0]["ensemble"]["inner_uar"]) \
                == len(set(picks)):
            continue  # every candidate kept: nothing was chosen
        counts = pd.Series(picks).value_counts()
        text = f"{entry}: " + ", ".join(f"{m} {n}/{len(rows)}" for m, n in counts.items())
        steps = [e["trace"] for e in rows["ensemble"] if e.get("trace")]  # greedy selection, step by step
        if steps:
            first = pd.Series([trace[0][0] for trace in steps]).value_counts()
            text += (" (greedy: first added " + ", ".join(f"{m} {n}/{len(steps)}" for m, n in first.items())
                     + f"; {np.mean([len(t) for t in steps]):.1f} additions, inner UAR "
                     f"{np.mean([t[0][1] for t in steps]):.3f} after the first, "
                     f"{np.mean([t[-1][1] for t in steps]):.3f} after the last)")
        out.append(text)
    return out


def cross_corpus_section(frame: pd.DataFrame, top: int = TOP_MODELS_PER_CLASS_TABLE) -> str:
    """Every model's UAR on every train->test pair, and the train x test UAR matrix of the best models."""
    frame = frame.assign(train=frame["train_corpora"].apply("+".join), pair=frame["corpus"])
    per_pair = cross_corpus_table(frame)
    pairs = [p for p in per_pair.columns if p != "mean"]
    rows = [[model, *(f"{r[p]:.3f}" if pd.notna(r[p]) else "—" for p in pairs), f"{r['mean']:.3f}"]
            for model, r in per_pair.iterrows()]
    parts = [
        "## Cross-corpus (train on one corpus, test on another, over the labels both have)",
        tabulate(rows, headers=["model", *pairs, "mean"], tablefmt="github", disable_numparse=True),
    ]
    trains, tests = sorted(frame["train"].unique()), sorted(frame["test_corpus"].unique())
    for model in per_pair.index[:top]:
        cells = frame[frame["model"] == model].groupby(["train", "test_corpus"])[["seed", "confusion"]]
        matrix = cells.apply(pooled_uar)
        body = [[train, *(f"{matrix[(train, test)]:.3f}" if (train, test) in matrix.index else "—"
                          for test in tests)] for train in trains]
        parts += [f"UAR matrix of `{model}` (rows: trained on; columns: tested on):",
                  tabulate(body, headers=["train \\ test", *tests], tablefmt="github", disable_numparse=True)]
    facts = []
    for pair, group in frame.groupby("pair"):
        labels = list(group.iloc[0]["labels"])
        facts.append(f"{pair}: {len(labels)} shared classes ({', '.join(labels)}), chance UAR {1 / len(labels):.3f}, "
                     f"{group.iloc[0]['n_train']} training and {group.iloc[0]['n_test']} test utterances")
    parts.append("Pairs: " + "; ".join(facts) + ".")
    return "\n\n".join(parts)


def per_speaker_section(corpus: str, protocol: str, model: str, predictions: pd.DataFrame) -> str:
    """Accuracy and UAR of one model for every test speaker (its out-of-fold predictions)."""
    rows = []
    for speaker, group in predictions.groupby("speaker", sort=True):
        correct = group["true"] == group["predicted"]
        recall = correct.groupby(group["true"]).mean()
        rows.append([speaker, len(group), f"{correct.mean():.3f}", f"{recall.mean():.3f}"])
    accuracies = np.array([float(r[2]) for r in rows])
    summary = (f"Accuracy over speakers: min {accuracies.min():.3f}, median {np.median(accuracies):.3f}, "
               f"max {accuracies.max():.3f} (std {accuracies.std(ddof=1) if len(rows) > 1 else 0:.3f}).")
    return "\n\n".join([
        f"### {corpus} — per-speaker results of `{model}` ({protocol})",
        tabulate(rows, headers=["speaker", "files", "accuracy", "UAR"], tablefmt="github", disable_numparse=True),
        summary,
    ])


def render_leaderboard(
    records: list[dict], suite: Suite, figures: dict | None = None, link_base: Path | None = None,
    load_predictions=None,
) -> tuple[str, dict[str, tuple[str, float]]]:
    """The whole leaderboard markdown and the best model per corpus/protocol.

    `figures` maps (corpus, protocol, name) to a PNG; links are written relative to `link_base`.
    """
    figures = figures or {}
    header = [
        f"# ser-bench leaderboard: `{suite.name}` suite",
        suite.description,
        "Every number is speaker-independent unless a table says otherwise: no speaker is in both the training and "
        "the test side of any fold. UAR is unweighted average recall (balanced accuracy) over the classes present in "
        "a test fold; 'UAR pooled' is computed once over all folds' test predictions, which is steadier when folds "
        "hold few speakers or lack some classes; tables rank their rows by it (then by the fold mean), and it is the "
        "statistic of the interval and the p values. A row run with several seeds shows the mean over seeds of its "
        "mean over folds, the std over folds (averaged over seeds) and the std over seeds of the fold mean; its CI "
        "and p-value are those of its mean over seeds. Macro AUC is the mean one-vs-rest ROC AUC over classes, from "
        "the stored out-of-fold probabilities (mean over folds). The 95% CI of pooled UAR treats the test speakers "
        "(not utterances) as the sample: a bootstrap over speakers whose percentiles are widened to what Student's t "
        "asks of that many speakers (expanded percentile bootstrap). 'p vs best' is the p-value that a row is as good"
        " as the row with the best pooled UAR (marked 'best'), which these same speakers chose: a step-down "
        "permutation test over speakers (the model confidence set of Hansen et al. 2011, with each speaker's results "
        "sign-flipped: every combination up to 14 speakers, else 16,384 random ones). While the rows left differ, the"
        " worst leaves; a row's p is the largest p up to its leaving. It accounts for the table's many rows and for "
        "the best being chosen on the same data; with 4 speakers no p is below 0.125. "
        f"'*' (p < {SIGNIFICANCE}): the row is outside the 95% set of rows tied with the best. Built from "
        f"{len(records)} stored records by `python -m bench report --suite {suite.name}`.",
    ]
    if not records:
        return "\n\n".join([*header, "_No records yet._"]) + "\n", {}
    if load_predictions is not None:
        load_predictions = lru_cache(maxsize=None)(load_predictions)  # each file is read once per rendering
    frame = records_frame(records, load_predictions)
    emotion, others, speakers, best = [], [], [], {}
    for target, corpus, protocol, group in tables(frame):
        sections = emotion if target == "emotion" else others
        if target != "emotion" and not any(text.startswith(f"# {target.capitalize()}") for text in others):
            others.append(f"# {target.capitalize()} recognition\n\nThe same features, models and "
                          f"speaker-independent folds, predicting the speaker's {target} from the corpus "
                          f"metadata. Corpora without {target} metadata are left out, not guessed.")
        title_corpus = corpus if target == "emotion" else f"{corpus} ({target})"
        links = [_link(name, path, link_base) for (c, p, name), path in sorted(figures.items())
                 if (c, p) == (title_corpus, protocol)]
        sections.append(corpus_section(title_corpus, protocol, group, links, load_predictions))
        table = model_table(group)
        best[f"{corpus}/{protocol}" + ("" if target == "emotion" else f"/{target}")] = (
            table.index[0], float(table.iloc[0]["uar_pooled"]))
        if load_predictions is not None and is_main_table(frame, target, corpus, protocol, group):
            predictions = best_predictions(group, table.index[0], load_predictions)
            if predictions is not None:
                speakers.append(per_speaker_section(corpus, protocol, table.index[0], predictions))
    cross = frame[(frame["protocol"] == "cross_corpus") & (frame["target"] == "emotion")]
    if not cross.empty:
        links = [_link(name, path, link_base) for (c, _, name), path in sorted(figures.items()) if c == "cross_corpus"]
        emotion.append(cross_corpus_section(cross) + ("\n\nFigure: " + ", ".join(links) + "." if links else ""))
    if speakers:
        emotion += ["## Per-speaker results of the best model of each corpus", *speakers]
    return "\n\n".join([*header, *emotion, *others]) + "\n", best


def _link(name: str, path: Path, link_base: Path | None) -> str:
    return f"[{name}]({path.relative_to(link_base).as_posix() if link_base else path.as_posix()})"


def write_leaderboards(store: RecordStore, suite: Suite, *, publish_to: Path | None = None) -> dict:
    """Write <suite folder>/leaderboard.md (and <publish_to>/leaderboard.md) from the stored records."""
    records = store.load()
    load = store.load_predictions
    unreadable_predictions.cache_clear()  # each report names every unreadable file once
    figures = {}
    if records:
        frame = records_frame(records)
        folder = store.folder / "figures"
        figures = learning_curves(frame, folder) | roc_figures(frame, load, folder) | summary_figures(frame, folder)
    markdown, best = render_leaderboard(records, suite, figures, link_base=store.folder, load_predictions=load)
    path = store.folder / "leaderboard.md"
    atomic_write_bytes(path, markdown.encode())
    write_results_page(store, suite, records)
    if publish_to is not None:
        published, _ = render_leaderboard(records, suite, figures, link_base=Path(publish_to), load_predictions=load)
        atomic_write_bytes(Path(publish_to) / "leaderboard.md", published.encode())
    return {"leaderboard": path, "best": best}
