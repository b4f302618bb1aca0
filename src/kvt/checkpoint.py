"""Resuming a training run: its progress, the per-epoch checkpoint, and the run's status
when training stops before the end.

After each finished epoch `kvt.train.fit` saves the whole training state to the run's
checkpoint.npz (every model and optimizer variable, the framework's global random
state, the `Progress` so far); `restore_checkpoint` loads it into a model built from the
same config, and `RestoreRng` puts the random state back as the first resumed epoch
begins, so that a resumed run ends where an uninterrupted one would have;
`recording_failure` marks the run interrupted or failed when training stops early,
saying how many epochs are saved and the command that continues it. Imports Keras: call
`kvt.backends.select()` before importing this module.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import zipfile
from pathlib import Path
from typing import Any, Iterator

import keras
import numpy as np

from kvt import backends, signals
from kvt.config import TrainConfig
from kvt.errors import Cancelled, RunError
from kvt.record_paths import recorded_data_dir
from kvt.runs import RunDir, write_atomic

CHECKPOINT_FORMAT = 1


class Progress:
    """What the finished epochs produced: history, timings, how many times the run was
    started (the first start and each resume)."""

    def __init__(self, epochs: int, done: int = 0, history: dict[str, list[float]] | None = None,
                 starts: int = 0):
        self.epochs, self.done = epochs, done
        self.saved = done  # epochs in the checkpoint on disk
        self.history: dict[str, list[float]] = history or {}
        self.starts = starts + 1  # this process is one more
        self.rng: dict[str, Any] = {}  # framework RNG state to restore when training starts

    def add_epoch(self, logs: dict[str, list[Any]], epoch_seconds: float,
                  train_seconds: float) -> None:
        for key, values in logs.items():
            self.history.setdefault(key, []).extend(float(np.asarray(v)) for v in values)
        self.history.setdefault("epoch_seconds", []).append(float(epoch_seconds))
        self.history.setdefault("train_seconds", []).append(float(train_seconds))
        self.done += 1

    def summary(self) -> str:
        return f"{self.done}/{self.epochs} epochs finished"


# --- save and restore -------------------------------------------------------------------

def _state_variables(model) -> list[Any]:
    """Every variable a resumed run needs: weights, BatchNorm statistics, dropout seed
    state (`model.variables` includes SeedGenerator states; `save_weights` does not)
    and the optimizer's step counter and slots."""
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    return [*model.variables, *model.optimizer.variables]


def save_checkpoint(model, config: TrainConfig, progress: Progress, path: Path) -> Path:
    """The state after `progress.done` epochs, as one .npz written atomically."""
    arrays = {f"v{i}": np.asarray(keras.ops.convert_to_numpy(v))
              for i, v in enumerate(_state_variables(model))}
    rng = backends.rng_state(config.backend)
    config_dict = {**config.to_dict(), "data_dir": recorded_data_dir(config.data_dir)}
    state = {"format": CHECKPOINT_FORMAT, "epochs_done": progress.done,
             "history": progress.history, "starts": progress.starts,
             "config": config_dict, "variables": len(arrays), "rng": sorted(rng)}
    arrays.update({f"rng_{k}": v for k, v in rng.items()})
    arrays["state"] = np.array(json.dumps(state))

    def write(p: Path) -> None:
        with open(p, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
    return write_atomic(path, write)


def _trained(config: dict) -> dict:
    """What a checkpoint must share with the config that resumes it: all of it but where
    the data lies (`kvt train --resume --data-dir` checks that the data is the same)."""
    return {k: v for k, v in config.items() if k != "data_dir"}


def restore_checkpoint(model, config: TrainConfig, path: Path) -> Progress:
    """Loads a checkpoint into `model` (built and compiled from the same config)."""
    fix = f"start the run again with --force, or delete {path}"
    try:
        with np.load(path, allow_pickle=False) as z:
            state = json.loads(str(z["state"]))
            variables = _state_variables(model)
            if state.get("format") != CHECKPOINT_FORMAT or state.get("variables") != len(variables):
                raise RunError(f"the checkpoint {path} does not fit this model: {fix}")
            if _trained(state.get("config") or {}) != _trained(config.to_dict()):
                raise RunError(f"the checkpoint {path} was written for another config: {fix}")
            values = [z[f"v{i}"] for i in range(len(variables))]
            rng = {k: z[f"rng_{k}"] for k in state.get("rng", [])}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as e:
        raise RunError(f"cannot read the checkpoint {path} ({e}): {fix}") from None
    for variable, value in zip(variables, values):
        if tuple(variable.shape) != value.shape:
            raise RunError(f"the checkpoint {path} does not fit this model "
                           f"({variable.path}: {value.shape} vs {tuple(variable.shape)}): {fix}")
        variable.assign(value)
    progress = Progress(config.epochs, int(state["epochs_done"]), state["history"],
                        # "sessions": what older checkpoints called the starts
                        int(state.get("starts", state.get("sessions", 1))))
    progress.rng = rng
    return progress


class RestoreRng(keras.callbacks.Callback):
    """Restores a checkpoint's framework RNG state as the first resumed epoch begins.

    Not earlier: the first `fit()` of a process builds the model on a batch of data,
    and on PyTorch that draws from the global generator, which the uninterrupted run
    did only once, at its own start.
    """

    def __init__(self, backend: str, state: dict[str, Any]):
        super().__init__()
        self.backend, self.state = backend, state

    def on_train_begin(self, logs=None):
        if self.state:
            backends.set_rng_state(self.backend, self.state)
            self.state = {}


# --- stopping early -----------------------------------------------------------------------

def _saved_words(n: int) -> str:
    if n == 0:
        return "no finished epoch is saved"
    return f"{n} finished epoch is saved" if n == 1 else f"{n} finished epochs are saved"


def _stopped_words(progress: Progress) -> str:
    if progress.saved >= progress.epochs:
        return f"stopped while saving the results; all {progress.epochs} epochs are saved"
    return (f"stopped during epoch {progress.saved + 1}/{progress.epochs}; "
            f"{_saved_words(progress.saved)}")


@contextlib.contextmanager
def recording_failure(run_dir: RunDir | None, progress: Progress) -> Iterator[None]:
    """Marks the run interrupted (Ctrl-C, SIGTERM) or failed if the block does not finish.

    Any error after a signal counts as the interrupt: unwinding a framework half-way
    (TensorFlow tracing a graph, say) can surface as an error of its own.
    """
    if run_dir is None:
        yield
        return
    resume = f"kvt train --resume {shlex.quote(str(run_dir.path))}"
    try:
        yield
    except (KeyboardInterrupt, Exception) as e:
        if isinstance(e, KeyboardInterrupt) or signals.received():
            message = f"{_stopped_words(progress)}: continue with {resume}"
            with signals.deferred():  # a second signal must not leave it "running"
                run_dir.mark("interrupted", message)
            raise Cancelled(message) from None
        if isinstance(e, OSError):
            # Disk full, permissions changed under us: the last checkpoint is still whole.
            message = (f"cannot write to {run_dir.path} ({e.strerror or e}); "
                       f"{_saved_words(progress.saved)}: free space or fix permissions, "
                       f"then continue with {resume}")
            with contextlib.suppress(OSError), signals.deferred():
                run_dir.mark("failed", message)
            raise RunError(message) from None
        with signals.deferred():
            run_dir.mark("failed", str(e))
        raise
