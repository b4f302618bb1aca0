"""What training does at batch and epoch ends, and the line it prints per epoch.

The Keras callbacks of `kvt.train.fit` (`EpochTimer` times each epoch and its training
part, `NanGuard` stops at the first non-finite loss, `InterruptCheck` stops at the next
batch after a Ctrl-C or SIGTERM, whose policy is `kvt.signals`') and `epoch_line`, the
line `kvt train` prints per epoch where a progress bar would be noise. Resuming's
callback is `kvt.checkpoint.RestoreRng`. Imports Keras: call `kvt.backends.select()`
before importing this module.
"""

from __future__ import annotations

import math
import time
from typing import Any

import keras
import numpy as np

from kvt import signals
from kvt.errors import TrainingError


class EpochTimer(keras.callbacks.Callback):
    """Wall time per epoch, and of its training part alone (for images per second)."""

    def __init__(self, n_train: int):
        super().__init__()
        self.n_train = n_train
        self.epoch_seconds: list[float] = []
        self.train_seconds: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = self._last_batch = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self._last_batch = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.train_seconds.append(self._last_batch - self._start)
        self.epoch_seconds.append(time.perf_counter() - self._start)


class InterruptCheck(keras.callbacks.Callback):
    """Stops training or prediction at the next batch after a Ctrl-C or SIGTERM, even
    one that Keras swallowed (it converts every batch's logs inside a bare `except:`)."""

    def on_train_batch_end(self, batch, logs=None):
        signals.check()

    def on_epoch_end(self, epoch, logs=None):
        signals.check()

    def on_test_batch_end(self, batch, logs=None):
        signals.check()

    def on_predict_batch_end(self, batch, logs=None):
        signals.check()


class NanGuard(keras.callbacks.Callback):
    """Stops at the first non-finite loss: continuing would only waste the epoch."""

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(np.asarray(loss))):
            raise TrainingError(
                f"the loss became {float(np.asarray(loss))} at epoch {self._epoch + 1}, step "
                f"{batch + 1}: training diverged, most likely because the learning rate is "
                f"too high; try a smaller --lr"
            )


def epoch_line(epoch: int, epochs: int, logs: dict[str, list[Any]], seconds: float,
               train_seconds: float, n_train: int) -> str:
    """One line per epoch, for logs and pipes where a progress bar would be noise."""
    parts = [f"epoch {epoch + 1}/{epochs}", f"{seconds:.1f}s"]
    parts += [f"{k} {float(np.asarray(v[-1])):.4f}" for k, v in logs.items()
              if k in ("loss", "accuracy", "val_loss", "val_accuracy")]
    parts.append(f"{n_train / max(train_seconds, 1e-9):.0f} img/s")
    return " - ".join(parts)
