"""What training does at batch and epoch ends, and the line it prints per epoch.

The Keras callbacks of `kvt.train.fit` (`EpochTimer` times each epoch and its training
part, `NanGuard` stops at the first non-finite loss, `InterruptCheck` stops at the next
batch after a Ctrl-C or SIGTERM, whose policy is `kvt.signals`', `EpochLog` writes each
checkpointed epoch's scalars for TensorBoard) and `epoch_line`, the line `kvt train`
prints per epoch where a progress bar would be noise. Resuming's callback is
`kvt.checkpoint.RestoreRng`. Imports Keras: call `kvt.backends.select()` before
importing this module.
"""

from __future__ import annotations

import importlib.util
import math
import time
from pathlib import Path
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


class EpochLog(keras.callbacks.TensorBoard):
    """Keras' TensorBoard callback, made to fit kvt's one `fit` call per epoch: each
    epoch's scalars (Keras' `epoch_loss`, `epoch_accuracy`, `epoch_learning_rate` in
    `train/`, `epoch_loss`, `epoch_accuracy` in `validation/`, plus kvt's
    `epoch_images_per_second`), stepped by the epoch's number counted from 0.

    Keras' own callback opens new event files at every `fit` call and writes as soon as
    an epoch ends. Here the writers live for the whole process (one event file per
    folder per start: a resumed run adds one beside the first start's), and an
    epoch is written only by `commit()`, which `fit` calls once the epoch's checkpoint
    is on disk, then flushed: the event files hold exactly the checkpointed epochs, so
    a resumed run neither repeats an epoch's step nor loses one to a kill. (It relies on
    Keras 3's `_writers` and `_pop_writer`, internals of the callback.)
    """

    def __init__(self, log_dir: str | Path, timer: EpochTimer):
        super().__init__(log_dir=str(log_dir), write_graph=False)
        self.timer = timer
        self._pending: tuple[int, dict[str, Any]] | None = None

    def set_model(self, model):
        writers = self._writers
        super().set_model(model)  # (which forgets the writers)
        self._writers = writers

    def on_test_end(self, logs=None):
        # Keras would also write evaluation_*_vs_iterations at once, before the epoch is
        # checkpointed; the validation folder's epoch_* scalars say the same per epoch.
        self._pop_writer()

    def on_epoch_end(self, epoch, logs=None):
        self._pending = (epoch, dict(logs or {}))

    def on_train_end(self, logs=None):
        self._pop_writer()  # and keep the writers open for the next epoch's fit

    def commit(self, history: dict[str, list[float]] | None = None) -> None:
        """Writes the last finished epoch's scalars and flushes them to disk, with the
        last values of `history` (the epoch's, with kvt's validation figures) over Keras'
        logs of the same name."""
        if self._pending is None:
            return
        epoch, logs = self._pending
        self._pending = None
        logs.update({k: v[-1] for k, v in (history or {}).items()
                     if (k in logs or k.startswith("val_")) and v})
        logs["images_per_second"] = self.timer.n_train / max(self.timer.train_seconds[-1], 1e-9)
        super().on_epoch_end(epoch, logs)
        for writer in self._writers.values():
            writer.flush()

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers = {}


def tensorboard_installed() -> bool:
    """Whether `tf.summary` can write scalars: TensorFlow 2.21 leaves that to the
    `tensorboard` package, which it no longer installs."""
    return importlib.util.find_spec("tensorboard") is not None


def epoch_line(epoch: int, epochs: int, logs: dict[str, list[Any]], seconds: float,
               train_seconds: float, n_train: int) -> str:
    """One line per epoch, for logs and pipes where a progress bar would be noise."""
    parts = [f"epoch {epoch + 1}/{epochs}", f"{seconds:.1f}s"]
    parts += [f"{k} {float(np.asarray(v[-1])):.4f}" for k, v in logs.items()
              if k in ("loss", "accuracy", "val_loss", "val_accuracy")]
    parts.append(f"{n_train / max(train_seconds, 1e-9):.0f} img/s")
    return " - ".join(parts)
