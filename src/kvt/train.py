"""Compile and fit a model for a TrainConfig, then write the whole run directory.

Imports Keras: call `kvt.backends.select()` before importing this module.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shlex
import sys
import time
import zipfile
from pathlib import Path
from typing import Any, Iterator, TextIO

import keras
import numpy as np

from kvt import __version__, backends, keras2_decay, signals
from kvt.config import TrainConfig
from kvt.data import Dataset, load_dataset
from kvt.errors import BackendError, Cancelled, RunError, TrainingError, UsageError
from kvt.models import build_model
from kvt.report import evaluate_predictions, plot_confusion, plot_history
from kvt.runs import CHECKPOINT, RunDir, write_atomic, write_json, write_text
from kvt.saving import model_meta, save_model, to_inputs

# The validation holdout does not move with the training seed: every run of a sweep is
# judged on the same images.
VAL_SEED = 0
CHECKPOINT_FORMAT = 1


@dataclasses.dataclass
class Run:
    """The outcome of `fit()`: the model, its history and its test metrics."""

    config: TrainConfig
    model: Any
    history: dict[str, list[float]]
    metrics: dict[str, Any]
    report: str
    run_dir: RunDir | None


def load_data(config: TrainConfig) -> Dataset:
    """The config's dataset: validation holdout (if any), then train/test limits."""
    dataset = load_dataset(config.dataset, config.data_dir, config.image_size)
    if config.val_split:
        dataset = dataset.holdout(config.val_split, VAL_SEED)
    if config.train_limit or config.test_limit:
        dataset = dataset.limit(config.train_limit, config.test_limit, config.seed)
    return dataset


def build_and_compile(config: TrainConfig, input_shape, num_classes: int):
    """The config's model, compiled with its optimiser recipe."""
    model = build_model(config.model, config.api, input_shape, num_classes, config.activation,
                        config.native_ops)
    lr: Any = config.lr
    if config.resolved_decay > 0:
        lr = keras2_decay(config.lr, config.resolved_decay)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=lr, momentum=config.momentum),
                  loss="categorical_crossentropy", metrics=["accuracy"])
    return model


def fit(config: TrainConfig, dataset: Dataset, run_dir: RunDir | None = None,
        plot_path: str | Path | None = None, stream: TextIO | None = None,
        resume: bool = False) -> Run:
    """Trains, evaluates and writes every artifact to `run_dir`.

    Every finished epoch is checkpointed in `run_dir` (weights, optimizer and random
    state, history), so that `resume=True` continues from the last finished epoch and
    ends where an uninterrupted run would have. The training data is visited in an
    order that depends only on (seed, epoch), not on how many processes the run took.
    """
    stream = stream or sys.stdout
    if config.backend != keras.backend.backend():
        raise BackendError(
            f"the config asks for backend {config.backend} but Keras runs on "
            f"{keras.backend.backend()} in this process: select the backend first "
            f"(kvt.backends.select) or set config.backend to match")
    n_train = len(dataset.y_train)
    if config.batch_size > n_train:
        raise UsageError(
            f"--batch-size {config.batch_size} is larger than the {n_train} training images: "
            f"use a smaller batch"
        )
    if config.deterministic:
        backends.make_deterministic(keras.backend.backend())
    keras.utils.set_random_seed(config.seed)
    x_train, x_test = to_inputs(dataset.x_train), to_inputs(dataset.x_test)
    y_train = keras.utils.to_categorical(dataset.y_train, dataset.num_classes)
    y_test = keras.utils.to_categorical(dataset.y_test, dataset.num_classes)
    model = build_and_compile(config, dataset.input_shape, dataset.num_classes)
    progress = Progress(config.epochs)
    if resume and run_dir is not None and (run_dir / CHECKPOINT).is_file():
        progress = restore_checkpoint(model, config, run_dir / CHECKPOINT)

    timer = EpochTimer(n_train)
    callbacks: list[Any] = [timer, NanGuard(), InterruptCheck()]
    if progress.rng:
        callbacks.append(RestoreRng(config.backend, progress.rng))
    interactive = stream.isatty()
    # From the moment status.json says "running", an interrupt or error must change it.
    with signals.policy(), _recording_failure(run_dir, progress):
        if run_dir is not None:
            if not (resume and (run_dir / "config.json").is_file()):
                _write_config(run_dir, config, dataset)
            run_dir.mark("running", progress.summary())
        for epoch in range(progress.done, config.epochs):
            order = epoch_order(config.seed, epoch, n_train)
            fitted = model.fit(x_train[order], y_train[order], validation_data=(x_test, y_test),
                               batch_size=config.batch_size, initial_epoch=epoch,
                               epochs=epoch + 1, shuffle=False,
                               verbose=1 if interactive else 0, callbacks=callbacks)
            signals.check()
            with signals.deferred():  # an epoch that finished is saved whole
                progress.add_epoch(fitted.history, timer.epoch_seconds[-1],
                                   timer.train_seconds[-1])
                if run_dir is not None:
                    save_checkpoint(model, config, progress, run_dir / CHECKPOINT)
                    progress.saved = progress.done
                    run_dir.write_history(progress.history)
                    run_dir.mark("running", progress.summary())
            if not interactive:  # printed once the epoch is on disk
                print(epoch_line(epoch, config.epochs, fitted.history, timer.epoch_seconds[-1],
                                 timer.train_seconds[-1], n_train), file=stream, flush=True)
        history = progress.history
        probs = np.asarray(model.predict(x_test, batch_size=max(config.batch_size, 256),
                                         verbose=0, callbacks=[InterruptCheck()]))
        signals.check()
        metrics, report, matrix = evaluate_predictions(probs, dataset.y_test,
                                                       dataset.class_names)
        metrics = _name_split(metrics, dataset.eval_split)
        epoch_seconds, train_seconds = history["epoch_seconds"], history["train_seconds"]
        metrics.update({
            "epochs": config.epochs,
            "train_images": n_train,
            "train_seconds": float(sum(epoch_seconds)),
            "seconds_per_epoch": float(np.mean(epoch_seconds)),
            "images_per_second": float(n_train / np.mean(train_seconds)),
            "final_train_accuracy": history["accuracy"][-1],
            "final_train_loss": history["loss"][-1],
            "sessions": progress.sessions,
        })
        run = Run(config, model, history, metrics, report, run_dir)
        if run_dir is not None:
            write_run(run, dataset, matrix, plot_path)
            (run_dir / CHECKPOINT).unlink(missing_ok=True)  # model.keras holds the end state
        elif plot_path is not None:
            _plot(run, dataset, plot_path)
    return run


def _write_config(run_dir: RunDir, config: TrainConfig, dataset: Dataset) -> None:
    write_json(run_dir / "config.json", {
        "config": config.to_dict(),
        "dataset": {"name": dataset.name, "source": dataset.source,
                    "eval_split": dataset.eval_split,
                    "train_images": len(dataset.y_train), "test_images": len(dataset.y_test),
                    "input_shape": list(dataset.input_shape),
                    "class_names": dataset.class_names},
        # What `decay: null` (the tutorial's lr / epochs) came to for this run.
        "optimizer": {"lr": config.lr, "decay": config.resolved_decay,
                      "decay_from": "lr / epochs" if config.decay is None else "--decay",
                      "momentum": config.momentum},
        "environment": backends.describe(),
        "kvt": __version__,
        "command": sys.argv,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    })


def _name_split(metrics: dict[str, Any], split: str) -> dict[str, Any]:
    """`accuracy`/`loss` of the split the run was judged on, also under the split's
    name (`test_accuracy` or `validation_accuracy`), and `eval_split` saying which."""
    accuracy, loss = metrics.pop("test_accuracy"), metrics.pop("test_loss")
    images = metrics.pop("test_images")
    return {"eval_split": split, "accuracy": accuracy, "loss": loss, "eval_images": images,
            f"{split}_accuracy": accuracy, f"{split}_loss": loss, f"{split}_images": images,
            **metrics}


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The order in which epoch `epoch` visits the `n` training images."""
    return np.random.default_rng([seed, epoch]).permutation(n)


class Progress:
    """What the finished epochs produced: history, timings, how many sessions ran."""

    def __init__(self, epochs: int, done: int = 0, history: dict[str, list[float]] | None = None,
                 sessions: int = 0):
        self.epochs, self.done = epochs, done
        self.saved = done  # epochs in the checkpoint on disk
        self.history: dict[str, list[float]] = history or {}
        self.sessions = sessions + 1  # this process is one more
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
    state = {"format": CHECKPOINT_FORMAT, "epochs_done": progress.done,
             "history": progress.history, "sessions": progress.sessions,
             "config": config.to_dict(), "variables": len(arrays), "rng": sorted(rng)}
    arrays.update({f"rng_{k}": v for k, v in rng.items()})
    arrays["state"] = np.array(json.dumps(state))

    def write(p: Path) -> None:
        with open(p, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
    return write_atomic(path, write)


def restore_checkpoint(model, config: TrainConfig, path: Path) -> Progress:
    """Loads a checkpoint into `model` (built and compiled from the same config)."""
    fix = f"start the run again with --force, or delete {path}"
    try:
        with np.load(path, allow_pickle=False) as z:
            state = json.loads(str(z["state"]))
            variables = _state_variables(model)
            if state.get("format") != CHECKPOINT_FORMAT or state.get("variables") != len(variables):
                raise RunError(f"the checkpoint {path} does not fit this model: {fix}")
            if state.get("config") != config.to_dict():
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
                        int(state.get("sessions", 1)))
    progress.rng = rng
    return progress


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
def _recording_failure(run_dir: RunDir | None, progress: Progress) -> Iterator[None]:
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


def _title(run: Run, dataset: Dataset) -> str:
    c = run.config
    return f"Training Loss and Accuracy on {dataset.name} ({c.api}, {c.activation}, {c.backend})"


def _plot(run: Run, dataset: Dataset, path: str | Path) -> None:
    curves = {k: v for k, v in run.history.items() if not k.endswith("seconds")}
    plot_history(curves, path, _title(run, dataset))


def write_run(run: Run, dataset: Dataset, matrix: np.ndarray,
              plot_path: str | Path | None) -> None:
    """Writes every artifact; marks the run complete only after the last one."""
    rd = run.run_dir
    assert rd is not None
    rd.write_history(run.history)
    write_text(rd / "report.txt", run.report)
    _plot(run, dataset, rd / "plot.png")
    plot_confusion(matrix, dataset.class_names, rd / "confusion_matrix.png",
                   f"Confusion matrix, {dataset.name} test set")
    save_model(run.model, rd / "model.keras", model_meta(run.config, dataset))
    write_json(rd / "metrics.json", run.metrics)
    if plot_path is not None:
        data = (rd / "plot.png").read_bytes()
        try:
            write_atomic(plot_path, lambda p: p.write_bytes(data))
        except OSError as e:  # checked before training, so the folder changed since
            raise RunError(f"cannot write --plot {plot_path} ({e.strerror or e}); the plot "
                           f"is in {rd / 'plot.png'}") from None
    with signals.deferred():
        signals.check()  # the last moment a signal can still stop the run
        rd.mark("complete")
        signals.settled()


# --- callbacks --------------------------------------------------------------------------

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
