"""The pictures a run leaves in its directory: the loss curve and the confusion matrix.

matplotlib is imported inside each function, with the Agg backend, so importing this module costs
nothing and a headless node never looks for a display.
"""
import json

import numpy as np

from timeclr.files.atomic import atomic_path


def pyplot():
    """matplotlib.pyplot on the Agg backend: files only, no display needed (a server, a CI job)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_loss(metrics_path, png_path, ylabel="NT-Xent loss"):
    """The loss of every logged step of ``metrics.jsonl`` (and a moving average) as ``png_path``,
    with the online kNN top-1 on the validation split on a second axis when the run logged it."""
    every = [json.loads(line) for line in open(metrics_path)]
    rows = [r for r in every if "loss" in r]
    knn = [r for r in every if "val_knn_top1" in r]
    if not rows:
        return
    plt = pyplot()
    steps, loss = [r["step"] for r in rows], [r["loss"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, loss, lw=0.6, alpha=0.35, label="per step")
    w = max(1, len(loss) // 40)  # a moving average: per-step losses of small batches are noisy
    if w > 1:
        smooth = [sum(loss[max(0, i - w + 1):i + 1]) / len(loss[max(0, i - w + 1):i + 1]) for i in range(len(loss))]
        ax.plot(steps, smooth, lw=1.5, label=f"mean of {w} steps")
    ax.legend(loc="upper left")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if knn:
        ax2 = ax.twinx()
        ax2.plot([r["step"] for r in knn], [r["val_knn_top1"] for r in knn], "o-", color="C3", label="val kNN top-1")
        ax2.set_ylabel("kNN top-1 on the validation split (%)", color="C3")
        ax2.legend(loc="upper right")
    fig.tight_layout()
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def plot_confusion(cm, classes: list[str], path: str, title: str):
    """The confusion matrix, each row normalised by the class's test videos (so the diagonal is
    the per-class accuracy); class names on the axes while they stay legible (<= 40 classes)."""
    plt = pyplot()
    cm = np.asarray(cm, dtype=float)
    rows = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    k = len(classes)
    size = min(14.0, max(4.5, 0.28 * k + 2.5))
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    im = ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    if k <= 40:
        ax.set_xticks(range(k), classes, rotation=90, fontsize=7)
        ax.set_yticks(range(k), classes, fontsize=7)
        if k <= 12:
            for i in range(k):
                for j in range(k):
                    if cm[i, j]:
                        ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=7,
                                color="white" if rows[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title, fontsize=8)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the class's videos")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
