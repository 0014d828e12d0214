"""Figures drawn from stored records only (matplotlib, PNG)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def slug(text: str) -> str:
    """A file-name-safe form of a table name such as 'ravdess->urdu' or 'ravdess+urdu'."""
    return text.replace("->", "_to_").replace(" +", "_with_").replace("+", "_and_").replace(" · ", "_") \
        .replace("/", "_").replace(" ", "_")


def learning_curves(frame: pd.DataFrame, folder: Path) -> dict[tuple[str, str, str], Path]:
    """One PNG per (corpus, protocol, model) that kept per-epoch curves: training and validation loss per fold."""
    if "curves" not in frame.columns:
        return {}
    figures = {}
    with_curves = frame[frame["curves"].apply(lambda c: isinstance(c, dict) and bool(c.get("loss")))
                        & (frame["target"] == "emotion")]
    for (corpus, protocol, model), group in with_curves.groupby(["corpus", "protocol", "entry"], sort=True):
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), constrained_layout=True)
        for _, row in group.sort_values(["seed", "fold"]).iterrows():
            curves = row["curves"]
            label = f"fold {row['fold']}"
            axes[0].plot(curves["loss"], lw=1, label=label)
            if curves.get("val_loss"):
                axes[1].plot(curves["val_loss"], lw=1, label=label)
        axes[0].set_title(f"{model} on {corpus}: training loss")
        axes[1].set_title("validation loss (held-out training speakers)")
        for axis in axes:
            axis.set_xlabel("epoch")
        if axes[1].lines:
            axes[1].legend(fontsize=6, ncol=2)
        path = folder / f"curves-{slug(corpus)}-{protocol}-{slug(model)}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=80, metadata={"Software": None})
        plt.close(fig)
        figures[(corpus, protocol, model)] = path
    return figures


def roc_curves(predictions: pd.DataFrame, labels: list[str], title: str, path: Path) -> Path:
    """One-vs-rest ROC curve per class from pooled out-of-fold probabilities."""
    from sklearn.metrics import roc_auc_score, roc_curve

    fig, axis = plt.subplots(figsize=(4.8, 4.2), constrained_layout=True)
    truth = predictions["true"].astype(str)
    for label in labels:
        positives = (truth == label).to_numpy()
        if 0 < positives.sum() < len(positives):
            fpr, tpr, _ = roc_curve(positives, predictions[f"p_{label}"])
            axis.plot(fpr, tpr, lw=1, label=f"{label} (AUC {roc_auc_score(positives, predictions[f'p_{label}']):.2f})")
    axis.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    axis.set_xlabel("false positive rate")
    axis.set_ylabel("true positive rate")
    axis.set_title(title, fontsize=9)
    axis.legend(fontsize=7, loc="lower right")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80, metadata={"Software": None})
    plt.close(fig)
    return path


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80, metadata={"Software": None})
    plt.close(fig)
    return path


def confusion_figure(confusion, labels: list[str], title: str, path: Path) -> Path:
    """Row-normalised confusion matrix (each row: how one true class was predicted)."""
    import numpy as np

    confusion = np.asarray(confusion, dtype=float)
    normalised = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    fig, axis = plt.subplots(figsize=(1.0 + 0.55 * len(labels), 0.8 + 0.5 * len(labels)), constrained_layout=True)
    image = axis.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    for (i, j), value in np.ndenumerate(normalised):
        axis.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7,
                  color="white" if value > 0.6 else "black")
    axis.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
    axis.set_yticks(range(len(labels)), labels, fontsize=8)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(title, fontsize=9)
    fig.colorbar(image, ax=axis, shrink=0.8)
    return _save(fig, path)


def uar_bars(table: pd.DataFrame, chance: float, title: str, path: Path) -> Path:
    """UAR per model (mean over folds) with the standard deviation over folds as error bars."""
    table = table.sort_values("uar_mean")
    fig, axis = plt.subplots(figsize=(6, 0.6 + 0.28 * len(table)), constrained_layout=True)
    axis.barh(list(table.index), table["uar_mean"], xerr=table["uar_std"], color="#4c78a8", ecolor="#333", capsize=2)
    axis.axvline(chance, color="grey", ls="--", lw=0.8, label=f"chance {chance:.2f}")
    axis.set_xlim(0, 1)
    axis.set_xlabel("UAR (mean ± std over folds)")
    axis.set_title(title, fontsize=9)
    axis.tick_params(axis="y", labelsize=7)
    axis.legend(fontsize=7, loc="lower right")
    return _save(fig, path)


def cross_corpus_heatmap(matrix: pd.DataFrame, title: str, path: Path) -> Path:
    """Train (rows) x test (columns) UAR matrix."""
    import numpy as np

    fig, axis = plt.subplots(figsize=(1.6 + 1.1 * matrix.shape[1], 1.2 + 0.6 * matrix.shape[0]),
                             constrained_layout=True)
    values = matrix.to_numpy(dtype=float)
    axis.imshow(np.nan_to_num(values, nan=0.0), cmap="viridis", vmin=0, vmax=1)
    for (i, j), value in np.ndenumerate(values):
        axis.text(j, i, "—" if np.isnan(value) else f"{value:.2f}", ha="center", va="center", fontsize=8,
                  color="white" if not np.isnan(value) and value < 0.6 else "black")
    axis.set_xticks(range(matrix.shape[1]), list(matrix.columns), fontsize=8)
    axis.set_yticks(range(matrix.shape[0]), list(matrix.index), fontsize=8)
    axis.set_xlabel("tested on")
    axis.set_ylabel("trained on")
    axis.set_title(title, fontsize=9)
    return _save(fig, path)
