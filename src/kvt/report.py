"""What runs report: the model's summary (summary.txt), metrics and the classification
report from a model's predictions, and the four plots: a run's training curves and
confusion matrix, a comparison's accuracies per configuration and its mean curves."""

from __future__ import annotations

import contextlib
import functools
import math
import warnings
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from kvt.runs import write_atomic

EPSILON = 1e-7  # Keras' clip for log(p) in categorical cross-entropy


def model_summary(model, config, input_shape, num_classes: int) -> str:
    """summary.txt: what was built (family, API, activation, precision, input, classes),
    its parameter counts, its FLOPs per image (`kvt.models.flops`) and Keras' own
    layer-by-layer summary."""
    from kvt.models.flops import TRAIN_FACTOR, keras_flops

    lines: list[str] = []
    model.summary(print_fn=lambda text, *args, **kwargs: lines.append(text), line_length=78)
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    total = model.count_params()
    forward, uncounted = keras_flops(model)
    native = " (native ops)" if config.native_ops else ""
    head = [
        f"model: {config.model}, --api {config.api}, activation {config.activation}{native}, "
        f"precision {config.precision}",
        f"input: {'x'.join(str(d) for d in input_shape)}, {num_classes} classes",
        f"parameters: {total:,} ({trainable:,} trainable, {total - trainable:,} not)",
        f"FLOPs per image: {forward / 1e6:.1f} M forward, {TRAIN_FACTOR * forward / 1e6:.1f} M "
        f"training ({TRAIN_FACTOR} x forward)"
        + (f"; not counted: {', '.join(uncounted)}" if uncounted else ""),
        "",
    ]
    return "\n".join(head + [line.rstrip() for line in "\n".join(lines).splitlines()]) + "\n"


def scores(probs: np.ndarray, y_true: np.ndarray) -> tuple[float, float]:
    """(accuracy, loss) of predicted class probabilities: the one definition of an
    evaluated loss in kvt (each epoch's val_loss, the final loss, kvt evaluate). The loss
    is the mean of -log p(true class), p clipped below at `EPSILON` (one image adds at
    most 16.12): Keras' formula for probabilities, without label smoothing, the same on
    every backend and after test-time augmentation."""
    y_true = np.asarray(y_true)
    picked = np.clip(probs[np.arange(len(y_true)), y_true], EPSILON, 1.0)
    return float((probs.argmax(axis=1) == y_true).mean()), float(-np.log(picked).mean())


def evaluate_predictions(probs: np.ndarray, y_true: np.ndarray,
                         class_names: list[str]) -> tuple[dict[str, Any], str, np.ndarray]:
    """Test metrics from predicted probabilities: (metrics, report text, confusion matrix)."""
    from sklearn.metrics import classification_report, confusion_matrix

    y_pred = probs.argmax(axis=1)
    labels = list(range(len(class_names)))
    accuracy, loss = scores(probs, y_true)
    report = classification_report(y_true, y_pred, labels=labels, target_names=class_names,
                                   zero_division=0)
    detail = classification_report(y_true, y_pred, labels=labels, target_names=class_names,
                                   zero_division=0, output_dict=True)
    per_class = {name: {k: float(detail[name][k]) for k in ("precision", "recall", "f1-score",
                                                             "support")}
                 for name in class_names}
    metrics = {
        "test_accuracy": accuracy,
        "test_loss": loss,
        "test_images": int(len(y_true)),
        "per_class": per_class,
        "macro_avg": {k: float(v) for k, v in detail["macro avg"].items()},
        "weighted_avg": {k: float(v) for k, v in detail["weighted avg"].items()},
    }
    return metrics, report, confusion_matrix(y_true, y_pred, labels=labels)


def _pyplot():
    """matplotlib.pyplot on the file-only Agg backend (no display needed, none opened)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# Installed fonts known to cover CJK (and much else), tried first; any other installed
# font that has the glyphs will do.
FALLBACK_FONTS = ("Noto Sans CJK JP", "Noto Sans CJK SC", "Noto Sans CJK TC",
                  "Noto Sans CJK KR", "Source Han Sans", "WenQuanYi Zen Hei",
                  "WenQuanYi Micro Hei", "Droid Sans Fallback", "Noto Sans SC",
                  "Noto Sans JP", "AR PL UMing CN", "IPAGothic", "Arial Unicode MS")


@functools.lru_cache(maxsize=None)
def _charmap(path: str) -> frozenset[int]:
    from matplotlib.ft2font import FT2Font

    try:
        return frozenset(FT2Font(path).get_charmap())
    except (OSError, RuntimeError, ValueError):  # a damaged font file is no candidate
        return frozenset()


def font_families(texts: Iterable[str]) -> list[str] | None:
    """Font families that draw every character of `texts`: matplotlib's default first,
    then the first installed font with the glyphs the default lacks (matplotlib falls
    back glyph by glyph). None when the default has them all, or no font does."""
    from matplotlib import font_manager, rcParams

    default = font_manager.findfont(font_manager.FontProperties(family=rcParams["font.family"]))
    missing = {ord(c) for text in texts for c in text if not c.isspace()} - _charmap(default)
    if not missing:
        return None
    rank = {name: i for i, name in enumerate(FALLBACK_FONTS)}
    for font in sorted(font_manager.fontManager.ttflist,
                       key=lambda f: (rank.get(f.name, len(rank)), f.name)):
        # Last Resort maps every code point to a box naming its Unicode block: a
        # placeholder, not the glyph, so a real font further down must win over it.
        if not font.name.startswith("Last Resort") and missing <= _charmap(font.fname):
            return [font_manager.FontProperties(fname=default).get_name(), font.name]
    return None


@contextlib.contextmanager
def _fonts_for(*texts: str) -> Iterator[None]:
    """Draws the block's text with fonts that have its glyphs. Where no installed font
    has them they show as boxes, without a warning per character on stderr."""
    plt = _pyplot()
    families = font_families(texts)
    with plt.rc_context({"font.family": families} if families else {}), \
            warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from (current )?font")
        yield


def _save_figure(fig, path: str | Path) -> Path:
    import matplotlib.pyplot as plt

    try:
        return write_atomic(path, lambda p: fig.savefig(p, dpi=100, bbox_inches="tight"))
    finally:
        plt.close(fig)


def plot_history(history: dict[str, list[float]], path: str | Path, title: str) -> Path:
    """The tutorial's plot: training and validation loss and accuracy per epoch."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    epochs = np.arange(1, len(history["loss"]) + 1)
    with plt.style.context("ggplot"), _fonts_for(title):
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


def plot_training(history: dict[str, list[float]], path: str | Path, dataset_name: str,
                  config) -> Path:
    """A run's plot.png: `plot_history` of its loss and accuracy columns (not the
    timings), titled with the dataset and the config's API, activation and backend."""
    curves = {k: v for k, v in history.items() if not k.endswith("seconds")}
    title = (f"Training Loss and Accuracy on {dataset_name} ({config.api}, "
             f"{config.activation}, {config.backend})")
    return plot_history(curves, path, title)


def plot_confusion(matrix: np.ndarray, class_names: list[str], path: str | Path,
                   title: str) -> Path:
    plt = _pyplot()

    with _fonts_for(title, *class_names):
        return _draw_confusion(plt, matrix, class_names, path, title)


def _draw_confusion(plt, matrix: np.ndarray, class_names: list[str], path: str | Path,
                    title: str) -> Path:
    n = len(class_names)
    size = max(5.0, 0.6 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    image = ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(n), class_names, rotation=45, ha="right")
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("Predicted")
    ax.set_ylabel("True")
    ax.set_title(title)
    if n <= 30:
        # The colour scale runs from the smallest count to the largest, not from 0: pick
        # each label's colour from the cell colour actually drawn under it.
        cells = image.cmap(image.norm(matrix))
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=8,
                        color=text_colour(cells[i, j]))
    return _save_figure(fig, path)


def text_colour(rgba) -> str:
    """Black or white, whichever contrasts more with a cell of colour `rgba` (0..1).

    By WCAG's relative luminance L, black's contrast is (L + 0.05) / 0.05 and white's
    1.05 / (L + 0.05): they are equal at L = 0.179.
    """
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgba[:3]]
    luminance = 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
    return "white" if luminance < 0.179 else "black"


def plot_compare(groups: dict[str, list[float]], path: str | Path, title: str,
                 ylabel: str) -> Path:
    """Every seed's accuracy per configuration (jittered dots) with a box behind."""
    plt = _pyplot()

    labels = list(groups)
    rng = np.random.default_rng(0)  # jitter only; fixed so that reruns draw the same plot
    with plt.style.context("ggplot"), _fonts_for(title, *labels):
        fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(labels) + 2), 5))
        data = [100 * np.asarray(groups[k], dtype=float) for k in labels]
        filled = [i for i, d in enumerate(data) if len(d)]
        if filled:
            ax.boxplot([data[i] for i in filled], positions=[i + 1 for i in filled],
                       widths=0.5, showfliers=False)
        for i, values in enumerate(data, start=1):
            ax.scatter(i + rng.uniform(-0.12, 0.12, len(values)), values, s=30, zorder=3)
            if len(values):
                ax.plot([i - 0.3, i + 0.3], [values.mean()] * 2, color="black", lw=2, zorder=4)
        ax.set_xticks(range(1, len(labels) + 1), [f"{k}\n(n={len(groups[k])})" for k in labels])
        ax.set_xlim(0.4, len(labels) + 0.6)
        ax.set_ylabel(ylabel)
        ax.set_title(title + "\n(dots: seeds; black bar: mean)")
        return _save_figure(fig, path)


def plot_curves(curves: dict[str, list[dict[str, list[float]]]], path: str | Path,
                title: str, split: str) -> Path:
    """Mean training and evaluation curves per configuration, each with a ±1 std band."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    panels = (("accuracy", "val_accuracy", "accuracy"), ("loss", "val_loss", "loss"))
    with plt.style.context("ggplot"), _fonts_for(title, *curves):
        fig, axes = plt.subplots(1, 2, figsize=(13, 5))
        for ax, (train_key, eval_key, name) in zip(axes, panels):
            for i, (label, histories) in enumerate(curves.items()):
                color = f"C{i % 10}"
                for key, style, kind in ((eval_key, "-", split), (train_key, "--", "train")):
                    runs = [h[key] for h in histories if key in h]
                    if not runs:
                        continue
                    n = min(len(r) for r in runs)
                    values = np.asarray([r[:n] for r in runs], dtype=float)
                    mean, std = values.mean(axis=0), values.std(axis=0)
                    epochs = np.arange(1, n + 1)
                    ax.plot(epochs, mean, style, color=color, label=f"{label} {kind}",
                            marker="o" if n < 3 else None)
                    if len(runs) > 1:
                        ax.fill_between(epochs, mean - std, mean + std, color=color, alpha=0.15)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("Epoch #")
            ax.set_ylabel(name)
            ax.legend(fontsize="small")
        fig.suptitle(title + " (band: ±1 std across seeds)")
        return _save_figure(fig, path)


# BatchNormalization's moving averages start at mean 0, variance 1 and keep momentum**steps
# of that start; evaluation normalises with them. Above this share they are not yet the
# data's (momentum 0.99: 459 steps), and the evaluated accuracy can sit near chance.
BN_SETTLED = 0.01
# An evaluated accuracy this far (absolute) below the last epoch's training accuracy is
# worth a word: ordinary overfitting (the seed recipe on CIFAR-10) stays under 0.2.
FAR_BELOW = 0.25


def settling_advice(momentum: float | None, steps_per_epoch: int, epochs: int, split: str,
                    accuracy: float, train_accuracy: float) -> str | None:
    """One line on why a run's evaluated accuracy may mislead, and what to do: too few
    steps for BatchNormalization's moving averages (`momentum`), or an accuracy far
    below the training accuracy. None when neither holds."""
    steps = steps_per_epoch * epochs
    gap = (f"{split} accuracy {accuracy:.1%} against {train_accuracy:.1%} in training"
           if train_accuracy - accuracy >= FAR_BELOW else None)
    if momentum is not None and 0 < momentum < 1 and momentum ** steps > BN_SETTLED:
        needed = math.ceil(math.log(BN_SETTLED) / math.log(momentum))
        return (f"{steps} training steps are too few for BatchNormalization's moving averages "
                f"(momentum {momentum:g}), which the {split} evaluation uses: they still hold "
                f"{momentum ** steps:.0%} of their starting values"
                + (f" ({gap})" if gap else "") +
                f"; train at least {needed} steps ({steps_per_epoch} per epoch now): more "
                f"--epochs or a smaller --batch-size")
    if gap:
        return (f"{gap}: the model fits its training images far better than these; more "
                f"epochs will not help if it overfits (try --augment or more training "
                f"images), and if the {split} images differ from the training images "
                f"(labels, size, colours), fix them")
    return None
