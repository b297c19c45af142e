"""Pictures for people: plots the steps write next to their JSON."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: steps run in CI, DVC and Kubeflow pods
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from steelflow import io  # noqa: E402

CELL_INCHES = 1.6


def grid_picks(labels: list[str], classes: list[str], per_class: int) -> list[int]:
    """Indices of the first ``per_class`` images of each class, class by class."""
    return [i for c in classes for i in [j for j, lab in enumerate(labels) if lab == c][:per_class]]


def corruption_grid(examples: dict[str, list[np.ndarray]], row_labels: list[str], out: Path) -> None:
    """One row per example image (labelled by class); columns: the original, then each condition."""
    columns = list(examples)
    n_rows = len(row_labels)
    fig, axes = plt.subplots(
        n_rows, len(columns), figsize=(CELL_INCHES * len(columns), CELL_INCHES * n_rows), squeeze=False
    )
    for r, label in enumerate(row_labels):
        for c, name in enumerate(columns):
            ax = axes[r][c]
            img = examples[name][r]
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(name, fontsize=9)
            if c == 0:
                ax.set_ylabel(label, fontsize=9)
    _save(fig, out)


def accuracy_bars(accuracy: dict[str, float], paper_row: dict[str, float] | None, out: Path) -> None:
    """Accuracy (%) per condition; the paper's numbers for the same variant beside ours when it has them."""
    names = list(accuracy)
    x = np.arange(len(names))
    width = 0.4 if paper_row else 0.6
    fig, ax = plt.subplots(figsize=(1.2 * len(names) + 2, 4))
    ax.bar(x - (width / 2 if paper_row else 0), [100 * accuracy[n] for n in names], width, label="steelflow")
    if paper_row:
        ax.bar(x + width / 2, [paper_row.get(n, np.nan) for n in names], width, label="paper", alpha=0.6)
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.legend(loc="lower right")
    ax.grid(axis="y", alpha=0.3)
    _save(fig, out)


def confusion_figure(matrix: np.ndarray, classes: list[str], out: Path) -> None:
    """Rows: the true class; columns: the predicted one; counts in the cells."""
    fig, ax = plt.subplots(figsize=(0.8 * len(classes) + 2.5, 0.8 * len(classes) + 2))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    threshold = matrix.max() / 2 if matrix.size else 0
    for (i, j), v in np.ndenumerate(matrix):
        ax.text(
            j, i, str(v), ha="center", va="center", color="white" if v > threshold else "black", fontsize=8
        )
    _save(fig, out)


def _save(fig: plt.Figure, out: Path) -> None:
    fig.tight_layout()
    with io.atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
