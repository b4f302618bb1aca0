"""Compile and fit a model for a TrainConfig: the story of one training run.

`fit` reads top to bottom as what a run does: check the config against the process,
build and compile the model, continue from the checkpoint when resuming, fit epoch by
epoch (each one checkpointed and in history.csv before its line is printed), evaluate,
then write the run's artifacts and mark it complete after the last one. Each helper
lives with its job: `kvt.callbacks`, `kvt.checkpoint`, `kvt.saving` (input scaling, the
model file), `kvt.runs` (the run directory, config.json), `kvt.report` (metrics,
plots), `kvt.signals` (the interrupt policy). Imports Keras: call
`kvt.backends.select()` before importing this module.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from pathlib import Path
from typing import Any, TextIO

import keras
import numpy as np

from kvt import backends, distribute, keras2_decay, signals
from kvt.augment import augment_epoch, tta_probs
from kvt.callbacks import (EpochLog, EpochTimer, InterruptCheck, NanGuard, epoch_line,
                           tensorboard_installed)
from kvt.checkpoint import (Progress, RestoreRng, recording_failure, restore_checkpoint,
                            save_checkpoint)
from kvt.config import TrainConfig
from kvt.data import Dataset, load_dataset
from kvt.errors import BackendError, RunError, UsageError
from kvt.models import build_model
from kvt.report import evaluate_predictions, model_summary, plot_confusion, plot_training
from kvt.runs import CHECKPOINT, LOGS, RunDir, config_record, write_atomic, write_json, write_text
from kvt.saving import model_meta, save_model, to_inputs

# The validation holdout does not move with the training seed: every run of a sweep is
# judged on the same images.
VAL_SEED = 0


@dataclasses.dataclass
class TrainResult:
    """The outcome of `fit()`: the model, its history and its test metrics."""

    config: TrainConfig
    model: Any
    history: dict[str, list[float]]
    metrics: dict[str, Any]
    report: str
    run_dir: RunDir | None


def load_data(config: TrainConfig) -> Dataset:
    """The config's dataset: validation holdout (if any), then train/test limits."""
    dataset = load_dataset(config.dataset, config.data_dir, config.image_size,
                           channels=config.channels)
    if config.val_split:
        dataset = dataset.holdout(config.val_split, VAL_SEED)
    if config.train_limit or config.test_limit:
        dataset = dataset.limit(config.train_limit, config.test_limit, config.seed)
    return dataset


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The order in which epoch `epoch` visits the `n` training images."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def build_and_compile(config: TrainConfig, input_shape, num_classes: int,
                      train_images: int | None = None):
    """The config's model, compiled with its optimiser recipe. `train_images` (the
    training set's size) sets the steps of a `warmup-cosine` schedule."""
    model = build_model(config.model, config.api, input_shape, num_classes, config.activation,
                        config.native_ops, config.precision)
    optimizer = keras.optimizers.SGD(
        learning_rate=learning_rate(config, train_images), momentum=config.momentum,
        nesterov=config.nesterov, weight_decay=config.weight_decay or None)
    loss: Any = "categorical_crossentropy"
    if config.label_smoothing:
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing)
    # Data-parallel evaluation pads with zero-weight images (kvt.distribute), which only
    # weighted metrics leave out; without sample weights the two are the same.
    metrics = {"weighted_metrics" if config.distribute == "data-parallel" else "metrics":
               ["accuracy"]}
    model.compile(optimizer=optimizer, loss=loss, steps_per_execution=config.steps_per_execution,
                  **metrics)
    return model


def learning_rate(config: TrainConfig, train_images: int | None = None) -> Any:
    """The config's learning rate: a number, or a Keras schedule over optimizer steps."""
    if config.schedule == "warmup-cosine":
        if train_images is None:
            raise ValueError("a warmup-cosine schedule needs the number of training images")
        steps_per_epoch = -(-train_images // config.batch_size)
        total = steps_per_epoch * config.epochs
        warmup = round(steps_per_epoch * config.warmup_epochs)
        # From 0 up to lr over the warm-up, then a cosine from lr down to 0 at `total`.
        return keras.optimizers.schedules.CosineDecay(
            0.0, decay_steps=max(total - warmup, 1), alpha=0.0,
            warmup_target=config.lr, warmup_steps=warmup)
    if config.resolved_decay > 0:
        return keras2_decay(config.lr, config.resolved_decay)
    return config.lr


def fit(config: TrainConfig, dataset: Dataset, run_dir: RunDir | None = None,
        plot_path: str | Path | None = None, stream: TextIO | None = None,
        resume: bool = False,
        cluster: distribute.Cluster = distribute.Cluster()) -> TrainResult:
    """Trains, evaluates and writes every artifact to `run_dir`.

    Every finished epoch is checkpointed in `run_dir` (weights, optimizer and random
    state, history), so that `resume=True` continues from the last finished epoch and
    ends where an uninterrupted run would have. The training data is visited in an
    order that depends only on (seed, epoch), not on how many processes the run took.
    With `config.distribute`, all of it happens in the strategy's scope
    (`kvt.distribute`); with several processes (`cluster`, started by
    `distribute.start`), every process calls `fit` and only process 0 writes `run_dir`
    (the others read it when resuming).
    """
    with distribute.scope(config, cluster) as replicas:
        return _fit(config, dataset, run_dir, plot_path, stream, resume, replicas)


def _fit(config: TrainConfig, dataset: Dataset, run_dir: RunDir | None,
         plot_path: str | Path | None, stream: TextIO | None, resume: bool,
         replicas: distribute.Replicas) -> TrainResult:
    stream = stream or sys.stdout
    source = run_dir  # where a resumed run is read from, by every process
    if replicas.process:  # process 0 alone writes the run and the plot
        run_dir = plot_path = None
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
    model = build_and_compile(config, dataset.input_shape, dataset.num_classes,
                              replicas.usable(n_train))
    if replicas.kind == "mirrored":
        distribute.synchronize_batchnorm(model, True)
    x_val, y_val, w_val = distribute.padded(replicas, x_test, y_test)
    padded = len(x_val) > len(x_test)  # data-parallel evaluation's zero-weight copies
    progress = Progress(config.epochs)
    if resume and source is not None and (source / CHECKPOINT).is_file():
        progress = restore_checkpoint(model, config, source / CHECKPOINT)
    replicas.agree(progress.done, "the epochs already trained")
    # Each process feeds its slice of every global batch (all of it with one process).
    batch = config.batch_size // replicas.processes
    validation = (x_test, y_test)
    if padded or replicas.processes > 1:
        validation = tuple(replicas.share(a, config.batch_size) for a in (x_val, y_val, w_val))

    timer = EpochTimer(n_train)
    callbacks: list[Any] = [timer, NanGuard(), InterruptCheck()]
    if progress.rng:
        callbacks.append(RestoreRng(config.backend, progress.rng))
    board = tensorboard_log(run_dir, timer)
    if board is not None:
        callbacks.append(board)
    interactive = stream.isatty()
    # From the moment status.json says "running", an interrupt or error must change it.
    with signals.policy(), recording_failure(run_dir, progress), \
            (contextlib.closing(board) if board else contextlib.nullcontext()):
        if run_dir is not None:
            if not (resume and (run_dir / "config.json").is_file()):
                write_json(run_dir / "config.json", config_record(config, dataset))
            write_text(run_dir / "summary.txt", model_summary(
                model, config, dataset.input_shape, dataset.num_classes))
            run_dir.mark("running", progress.summary())
        # One buffer for every epoch's images: fresh arrays of the training set's size each
        # epoch cost seconds of page faults (kvt.augment.CHUNK).
        buffer = np.empty((replicas.usable(n_train), *x_train.shape[1:]), x_train.dtype)
        for epoch in range(progress.done, config.epochs):
            order = epoch_order(config.seed, epoch, n_train)[:replicas.usable(n_train)]
            # mode "clip": NumPy's default "raise" copies through a temporary first
            x_epoch = np.take(x_train, order, axis=0, out=buffer, mode="clip")
            x_epoch = augment_epoch(x_epoch, config.augment, config.seed, epoch, out=x_epoch)
            if replicas.processes > 1:
                mine = replicas.share(np.arange(len(order)), config.batch_size)
                x_epoch, order = x_epoch[mine], order[mine]
            fitted = model.fit(x_epoch, y_train[order], validation_data=validation,
                               batch_size=batch, initial_epoch=epoch,
                               epochs=epoch + 1, shuffle=False,
                               verbose=1 if interactive else 0, callbacks=callbacks)
            if padded:  # Keras divides val_loss by the padded count
                fitted.history["val_loss"] = [v * len(x_val) / len(x_test)
                                              for v in fitted.history["val_loss"]]
            signals.check()
            with signals.deferred():  # an epoch that finished is saved whole
                progress.add_epoch(fitted.history, timer.epoch_seconds[-1],
                                   timer.train_seconds[-1])
                if run_dir is not None:
                    save_checkpoint(model, config, progress, run_dir / CHECKPOINT)
                    progress.saved = progress.done
                    run_dir.write_history(progress.history)
                    run_dir.mark("running", progress.summary())
                if board is not None:
                    board.commit(fitted.history)
            if not interactive:  # printed once the epoch is on disk
                print(epoch_line(epoch, config.epochs, fitted.history, timer.epoch_seconds[-1],
                                 timer.train_seconds[-1], n_train), file=stream, flush=True)
        history = progress.history
        predict_batch = max(config.batch_size, 256)
        predict_batch += -predict_batch % replicas.count  # an equal share per device

        def predict(x: np.ndarray) -> np.ndarray:
            return distribute.predict(model, replicas, x, predict_batch,
                                      [InterruptCheck()])[:len(x_test)]

        single = predict(x_val)
        probs = tta_probs(single, predict, x_val, config.tta)
        signals.check()
        metrics, report, matrix = evaluate_predictions(probs, dataset.y_test,
                                                       dataset.class_names)
        metrics = _name_split(metrics, dataset.eval_split)
        metrics["tta"] = config.tta
        if config.tta != "none":  # what the network scores alone, for comparison
            metrics["single_pass_accuracy"] = float(np.mean(
                single.argmax(axis=1) == dataset.y_test))
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
            "replicas": replicas.count,
            "processes": replicas.processes,
        })
        result = TrainResult(config, model, history, metrics, report, run_dir)
        if run_dir is not None:
            write_run(result, dataset, matrix, plot_path)
            (run_dir / CHECKPOINT).unlink(missing_ok=True)  # model.keras holds the end state
        elif plot_path is not None:
            plot_training(history, plot_path, dataset.name, config)
    return result


def tensorboard_log(run_dir: RunDir | None, timer: EpochTimer) -> EpochLog | None:
    """The run's TensorBoard callback, writing to `run_dir/logs`; None without a run
    directory, or (after a one-line note) without the tensorboard package."""
    if run_dir is None:
        return None
    if not tensorboard_installed():
        print("kvt: note: no TensorBoard logs for this run: the tensorboard package is not "
              "installed (pip install tensorboard)", file=sys.stderr, flush=True)
        return None
    return EpochLog(run_dir / LOGS, timer)


def _name_split(metrics: dict[str, Any], split: str) -> dict[str, Any]:
    """`accuracy`/`loss` of the split the run was judged on, also under the split's
    name (`test_accuracy` or `validation_accuracy`), and `eval_split` saying which."""
    accuracy, loss = metrics.pop("test_accuracy"), metrics.pop("test_loss")
    images = metrics.pop("test_images")
    return {"eval_split": split, "accuracy": accuracy, "loss": loss, "eval_images": images,
            f"{split}_accuracy": accuracy, f"{split}_loss": loss, f"{split}_images": images,
            **metrics}


def write_run(result: TrainResult, dataset: Dataset, matrix: np.ndarray,
              plot_path: str | Path | None) -> None:
    """Writes every artifact; marks the run complete only after the last one."""
    rd = result.run_dir
    assert rd is not None
    rd.write_history(result.history)
    write_text(rd / "report.txt", result.report)
    plot_training(result.history, rd / "plot.png", dataset.name, result.config)
    plot_confusion(matrix, dataset.class_names, rd / "confusion_matrix.png",
                   f"Confusion matrix, {dataset.name} test set")
    distribute.synchronize_batchnorm(result.model, False)  # the file loads on every backend
    with distribute.local_only():  # process 0 alone saves
        save_model(result.model, rd / "model.keras", model_meta(result.config, dataset))
    write_json(rd / "metrics.json", result.metrics)
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
