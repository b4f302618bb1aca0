"""What a run reports: the classification report, metrics, and the two plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from kvt.runs import write_atomic

EPSILON = 1e-7  # Keras' clip for log(p) in categorical cross-entropy


def evaluate_predictions(probs: np.ndarray, y_true: np.ndarray,
                         class_names: list[str]) -> tuple[dict[str, Any], str, np.ndarray]:
    """Test metrics from predicted probabilities: (metrics, report text, confusion matrix)."""
    from sklearn.metrics import classification_report, confusion_matrix

    y_pred = probs.argmax(axis=1)
    labels = list(range(len(class_names)))
    picked = np.clip(probs[np.arange(len(y_true)), y_true], EPSILON, 1.0)
    report = classification_report(y_true, y_pred, labels=labels, target_names=class_names,
                                   zero_division=0)
    detail = classification_report(y_true, y_pred, labels=labels, target_names=class_names,
                                   zero_division=0, output_dict=True)
    per_class = {name: {k: float(detail[name][k]) for k in ("precision", "recall", "f1-score",
                                                             "support")}
                 for name in class_names}
    metrics = {
        "test_accuracy": float((y_pred == y_true).mean()),
        "test_loss": float(-np.log(picked).mean()),
        "test_images": int(len(y_true)),
        "per_class": per_class,
        "macro_avg": {k: float(v) for k, v in detail["macro avg"].items()},
        "weighted_avg": {k: float(v) for k, v in detail["weighted avg"].items()},
    }
    return metrics, report, confusion_matrix(y_true, y_pred, labels=labels)


def _save_figure(fig, path: str | Path) -> Path:
    import matplotlib.pyplot as plt

    try:
        return write_atomic(path, lambda p: fig.savefig(p, dpi=100, bbox_inches="tight"))
    finally:
        plt.close(fig)


def plot_history(history: dict[str, list[float]], path: str | Path, title: str) -> Path:
    """The tutorial's plot: training and validation loss and accuracy per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = np.arange(1, len(history["loss"]) + 1)
    with plt.style.context("ggplot"):
        fig, ax = plt.subplots(figsize=(8, 6))
        for key, label in (("loss", "train_loss"), ("val_loss", "val_loss"),
                           ("accuracy", "train_acc"), ("val_accuracy", "val_acc")):
            if key in history:
                ax.plot(epochs, history[key], label=label, marker="o" if len(epochs) < 3 else None)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(title)
        ax.set_xlabel("Epoch #")
        ax.set_ylabel("Loss/Accuracy")
        ax.legend()
        return _save_figure(fig, path)


def plot_confusion(matrix: np.ndarray, class_names: list[str], path: str | Path,
                   title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(class_names)
    size = max(5.0, 0.6 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(n), class_names, rotation=45, ha="right")
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("Predicted")
    ax.set_ylabel("True")
    ax.set_title(title)
    threshold = matrix.max() / 2 if matrix.size else 0
    if n <= 30:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if matrix[i, j] > threshold else "black")
    return _save_figure(fig, path)
