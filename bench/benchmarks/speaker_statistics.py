"""How honest the leaderboard's interval and p-value are when a corpus has few speakers, on simulated test folds.

    python -m bench.benchmarks.speaker_statistics [--datasets 400]

Each simulated corpus draws its speakers from one population: per speaker and class an accuracy (a speaker effect
plus a class effect), and the utterances each speaker voices per class: every class 8 times (balanced, as RAVDESS or
SAVEE), 1 to 2 classes 8 to 24 times each (unbalanced), or exactly URDU's table of files per speaker and emotion
(29 speakers, 26 of whom voice one emotion; angry by 4 speakers). Two models predict every utterance independently
at the same accuracies, so "no difference" is true; the printed rates are

- how often the paired test says p < 0.05 (should be at most 0.05),
- how often the 95 % interval of model A's pooled UAR holds the population's value (should be about 0.95),
- how often the test finds a real difference, model B being 0.08 less accurate per utterance (power),
- and, in a second table, how many tables of 10 or 30 equally good rows (some of them near copies of one another)
  still star a row as below the best one, which the same speakers chose, and how often a row 0.08 worse is starred:
  by the leaderboard's step-down test, and by each row's own test against the best (what it did before),

for the leaderboard's statistics (`ser_models.metrics.speaker_statistics`: an expanded percentile bootstrap over
speakers and a paired sign-flip permutation test) and for what it used before (the plain 2.5-97.5 percentile
bootstrap over speakers, for both). Nothing here reads audio or a record.
"""

from __future__ import annotations

import argparse

import numpy as np

from ser_models.metrics import _uar_of as _uar  # the pooled UAR the old bootstrap scored
from ser_models.metrics import speaker_statistics

CLASSES = 4
# URDU's files per speaker (rows) and emotion (angry, happy, neutral, sad), from its file names.
URDU_DESIGN = np.array([
    [0, 12, 0, 0], [0, 0, 0, 2], [0, 0, 0, 4], [0, 2, 0, 0], [0, 2, 0, 0], [0, 4, 0, 0], [0, 4, 0, 0], [0, 14, 0, 0],
    [0, 6, 0, 0], [0, 2, 0, 0], [0, 0, 4, 0], [22, 0, 0, 0], [0, 2, 0, 0], [0, 2, 0, 0], [0, 2, 0, 0], [28, 0, 0, 0],
    [0, 0, 10, 0], [0, 0, 4, 0], [0, 0, 2, 0], [0, 0, 0, 6], [0, 0, 0, 38], [0, 0, 0, 40], [0, 0, 0, 2], [0, 0, 0, 4],
    [2, 2, 8, 0], [48, 0, 0, 0], [0, 8, 72, 0], [0, 10, 0, 4], [0, 28, 0, 0]])


def _accuracies(rng: np.random.Generator, n: int) -> np.ndarray:
    speaker = rng.beta(4, 3, size=(n, 1))
    return np.clip(speaker + rng.normal(0, 0.1, size=(n, CLASSES)) + np.linspace(-0.1, 0.1, CLASSES), 0.05, 0.95)


def _counts(rng: np.random.Generator, n: int, design: str) -> np.ndarray:
    if design == "balanced":
        return np.full((n, CLASSES), 8)
    if design == "urdu":
        return URDU_DESIGN
    ranks = rng.random((n, CLASSES)).argsort(axis=1).argsort(axis=1)
    voiced = ranks < rng.integers(1, 3, size=(n, 1))  # each speaker voices 1 or 2 classes
    return voiced * rng.integers(8, 25, size=(n, CLASSES))


def _confusion(rng: np.random.Generator, accuracy: np.ndarray, counts: np.ndarray) -> np.ndarray:
    n = len(counts)
    confusion = np.zeros((n, CLASSES, CLASSES))
    for s in range(n):
        for k in range(CLASSES):
            right = rng.binomial(counts[s, k], accuracy[s, k])
            confusion[s, k, k] = right
            confusion[s, k, np.arange(CLASSES) != k] = rng.multinomial(counts[s, k] - right,
                                                                        np.full(CLASSES - 1, 1 / (CLASSES - 1)))
    return confusion


def _population_uar(rng: np.random.Generator, design: str, size: int = 400_000) -> float:
    """The pooled UAR of a corpus with every speaker of the population: per class, accuracy weighted by counts."""
    accuracy = _accuracies(rng, size)
    counts = np.tile(URDU_DESIGN, (size // len(URDU_DESIGN), 1)) if design == "urdu" else _counts(rng, size, design)
    accuracy = accuracy[:len(counts)]
    return float(np.mean((accuracy * counts).sum(axis=0) / counts.sum(axis=0)))


def percentile_bootstrap(a: np.ndarray, b: np.ndarray, seed: int, resamples: int = 2000) -> tuple[float, float, float]:
    """The leaderboard's statistics before: (low, high) of A's pooled UAR and the paired bootstrap p of A - B."""
    rng = np.random.default_rng(seed)
    n = len(a)
    weights = np.zeros((resamples, n))
    np.add.at(weights, (np.arange(resamples)[:, None], rng.integers(0, n, size=(resamples, n))), 1)
    score_a, score_b = (_uar(np.einsum("bs,slm->blm", weights, c)) for c in (a, b))
    difference = score_a - score_b
    p = min(1.0, 2 * min((difference <= 0).mean(), (difference >= 0).mean()))
    return float(np.percentile(score_a, 2.5)), float(np.percentile(score_a, 97.5)), p


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=int, default=400, help="simulated corpora per row (default 400)")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    print("| design | speakers | p < 0.05 with no difference: sign flip | before: bootstrap | 95 % interval covers: "
          "expanded | before: plain | power at -0.08: sign flip | before: bootstrap |")
    print("|---|---|---|---|---|---|---|---|")
    for design, sizes in (("balanced", (4, 6, 10, 24, 29)), ("unbalanced", (4, 6, 10, 24, 29)),
                          ("urdu", (len(URDU_DESIGN),))):
        truth = _population_uar(rng, design)
        for n in sizes:
            rates = np.zeros(6)
            for index in range(args.datasets):
                accuracy, counts = _accuracies(rng, n), _counts(rng, n, design)
                a, b = _confusion(rng, accuracy, counts), _confusion(rng, accuracy, counts)
                worse = _confusion(rng, np.clip(accuracy - 0.08, 0.0, 1.0), counts)
                new = speaker_statistics({"a": a, "b": b}, seed=index)  # two models: the paired sign-flip test
                low, high, p_before = percentile_bootstrap(a, b, seed=index)
                p_worse = speaker_statistics({"a": a, "worse": worse}, seed=index, n_resamples=10)["worse"]["p_vs_best"]
                p_worse_before = percentile_bootstrap(a, worse, seed=index)[2]
                rates += [min(r["p_vs_best"] for r in new.values()) < 0.05, p_before < 0.05,
                          new["a"]["ci_low"] <= truth <= new["a"]["ci_high"], low <= truth <= high,
                          p_worse < 0.05, p_worse_before < 0.05]
            rates /= args.datasets
            print(f"| {design} | {n} | " + " | ".join(f"{r:.3f}" for r in rates) + " |", flush=True)
    _selection(rng, max(1, args.datasets // 4))


def _rows(rng: np.random.Generator, n: int, kind: str) -> dict[str, np.ndarray]:
    """10 or 30 equally good rows; with "near copies" 6 of 10 share 80 % of their predictions (votes and variants of
    one model do); with "one worse" the last of 10 is 0.08 less accurate."""
    accuracy, counts = _accuracies(rng, n), _counts(rng, n, "balanced")
    rows = 30 if kind == "30 equal" else 10
    confusions = {f"m{k}": _confusion(rng, accuracy, counts) for k in range(rows)}
    if kind == "near copies":
        base = _confusion(rng, accuracy, counts)
        for k in range(6):
            confusions[f"m{k}"] = 0.8 * base + 0.2 * confusions[f"m{k}"]
    if kind == "one worse":
        confusions["m9"] = _confusion(rng, np.clip(accuracy - 0.08, 0.0, 1.0), counts)
    return confusions


def _selection(rng: np.random.Generator, datasets: int) -> None:
    """A leaderboard compares every row with its best row, which the same test speakers chose. How many tables of
    equally good rows still star a row as below the best (any p < 0.05), by the step-down test and by each row's own
    sign-flip test against the best (what the leaderboard did before); and how often a worse row is starred."""
    print("\n| speakers | rows | tables with a '*': step-down | before: each row against the best |\n|---|---|---|---|")
    for n, kind in ((10, "10 equal"), (24, "10 equal"), (24, "30 equal"), (10, "near copies"), (24, "near copies"),
                    (10, "one worse"), (24, "one worse")):
        rates = np.zeros(2)
        for index in range(datasets):
            confusions = _rows(rng, n, kind)
            result = speaker_statistics(confusions, seed=index, n_resamples=10)
            best = next(m for m, r in result.items() if r["best"])
            pairwise = [speaker_statistics({best: confusions[best], m: c}, seed=index, n_resamples=10)[m]["p_vs_best"]
                        for m, c in confusions.items() if m != best]
            if kind == "one worse":  # how often the worse row is starred
                rates += [result["m9"]["p_vs_best"] < 0.05,
                          best != "m9" and pairwise[list(m for m in confusions if m != best).index("m9")] < 0.05]
            else:
                rates += [any(r["p_vs_best"] < 0.05 for r in result.values()), min(pairwise) < 0.05]
        label = "one of 10 is 0.08 worse: it is starred" if kind == "one worse" else kind
        print(f"| {n} | {label} | " + " | ".join(f"{r / datasets:.3f}" for r in rates) + " |", flush=True)


if __name__ == "__main__":
    main()
