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
import time
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
from kvt.report import (evaluate_predictions, model_summary, plot_confusion, plot_training,
                        scores, settling_advice)
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
    # Why the evaluated accuracy may mislead, and what to do (`settling_advice`), or None.
    advice: str | None = None


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
    _check_process(config, dataset)
    if config.deterministic:
        backends.make_deterministic(keras.backend.backend())
    keras.utils.set_random_seed(config.seed)
    arrays = _Arrays.of(config, dataset, replicas)
    model = build_and_compile(config, dataset.input_shape, dataset.num_classes,
                              replicas.usable(arrays.n_train))
    if replicas.kind == "mirrored":
        distribute.synchronize_batchnorm(model, True)
    progress = Progress(config.epochs)
    if resume and source is not None and (source / CHECKPOINT).is_file():
        progress = restore_checkpoint(model, config, source / CHECKPOINT)
    replicas.agree(progress.done, "the epochs already trained")

    timer = EpochTimer(arrays.n_train)
    callbacks: list[Any] = [timer, NanGuard(), InterruptCheck()]
    if progress.rng:
        callbacks.append(RestoreRng(config.backend, progress.rng))
    board = tensorboard_log(run_dir, timer)
    if board is not None:
        callbacks.append(board)
    # From the moment status.json says "running", an interrupt or error must change it.
    with signals.policy(), recording_failure(run_dir, progress), \
            (contextlib.closing(board) if board else contextlib.nullcontext()):
        if run_dir is not None:
            _start_run(run_dir, config, dataset, model, progress, resume)
        _train_epochs(model, config, dataset, arrays, replicas, progress, run_dir, timer,
                      board, callbacks, stream)
        metrics, report, matrix = _evaluate(model, config, dataset, arrays, replicas,
                                            progress)
        steps = -(-replicas.usable(arrays.n_train) // config.batch_size)
        advice = settling_advice(bn_momentum(model), steps, config.epochs, dataset.eval_split,
                                 metrics["accuracy"], metrics["final_train_accuracy"])
        result = TrainResult(config, model, progress.history, metrics, report, run_dir,
                             advice)
        if run_dir is not None:
            write_run(result, dataset, matrix, plot_path)
            (run_dir / CHECKPOINT).unlink(missing_ok=True)  # model.keras holds the end state
        elif plot_path is not None:
            plot_training(progress.history, plot_path, dataset.name, config)
    return result


def _check_process(config: TrainConfig, dataset: Dataset) -> None:
    """Refuses a config that this process or this dataset cannot train."""
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


@dataclasses.dataclass
class _Arrays:
    """The dataset as model inputs and one-hot labels, with the evaluation data padded
    for data-parallel replicas."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    x_val: np.ndarray  # x_test with an equal share per device

    @property
    def n_train(self) -> int:
        return len(self.x_train)

    @classmethod
    def of(cls, config: TrainConfig, dataset: Dataset, replicas: distribute.Replicas) -> _Arrays:
        x_train, x_test = to_inputs(dataset.x_train), to_inputs(dataset.x_test)
        y_train = keras.utils.to_categorical(dataset.y_train, dataset.num_classes)
        return cls(x_train, y_train, x_test, distribute.padded(replicas, x_test)[0])


def _predictor(model, config: TrainConfig, replicas: distribute.Replicas, n_test: int):
    """The model's probabilities for the evaluation images, in batches that share evenly
    over the devices, cut back to the `n_test` real ones."""
    predict_batch = max(config.batch_size, 256)
    predict_batch += -predict_batch % replicas.count  # an equal share per device

    def predict(x: np.ndarray) -> np.ndarray:
        return distribute.predict(model, replicas, x, predict_batch,
                                  [InterruptCheck()])[:n_test]

    return predict


def _start_run(run_dir: RunDir, config: TrainConfig, dataset: Dataset, model,
               progress: Progress, resume: bool) -> None:
    """config.json (kept when resuming), summary.txt, and status.json "running"."""
    if not (resume and (run_dir / "config.json").is_file()):
        write_json(run_dir / "config.json", config_record(config, dataset, run_dir.path))
    write_text(run_dir / "summary.txt", model_summary(
        model, config, dataset.input_shape, dataset.num_classes))
    run_dir.mark("running", progress.summary())


def _train_epochs(model, config: TrainConfig, dataset: Dataset, arrays: _Arrays,
                  replicas: distribute.Replicas, progress: Progress, run_dir: RunDir | None,
                  timer: EpochTimer, board: EpochLog | None, callbacks: list[Any],
                  stream: TextIO) -> None:
    """Fits the epochs left, one `model.fit` each, every finished epoch validated by
    kvt, checkpointed and in history.csv before its line is printed."""
    n_train, x_train, y_train = arrays.n_train, arrays.x_train, arrays.y_train
    predict = _predictor(model, config, replicas, len(arrays.x_test))
    # Each process feeds its slice of every global batch (all of it with one process).
    batch = config.batch_size // replicas.processes
    interactive = stream.isatty()
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
        fitted = model.fit(x_epoch, y_train[order], batch_size=batch, initial_epoch=epoch,
                           epochs=epoch + 1, shuffle=False,
                           verbose=1 if interactive else 0, callbacks=callbacks)
        # The epoch's validation: kvt's own pass, scored by the same function as the
        # final evaluation (`kvt.report.scores`), so that val_loss and the final loss are
        # one quantity on every backend (Keras' own validation loss is its training
        # objective: label smoothing in, and on TensorFlow unclipped).
        started = time.perf_counter()
        val_accuracy, val_loss = scores(predict(arrays.x_val), dataset.y_test)
        fitted.history.update(val_accuracy=[val_accuracy], val_loss=[val_loss])
        timer.epoch_seconds[-1] += time.perf_counter() - started
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
        # Printed once the epoch is on disk; after a progress bar too, which cannot show
        # the validation figures (computed after it ends).
        print(epoch_line(epoch, config.epochs, fitted.history, timer.epoch_seconds[-1],
                         timer.train_seconds[-1], n_train), file=stream, flush=True)


def _evaluate(model, config: TrainConfig, dataset: Dataset, arrays: _Arrays,
              replicas: distribute.Replicas, progress: Progress
              ) -> tuple[dict[str, Any], str, np.ndarray]:
    """The run's metrics (under test-time augmentation `config.tta`, with its timings),
    classification report and confusion matrix."""
    history = progress.history
    predict = _predictor(model, config, replicas, len(arrays.x_test))
    single = predict(arrays.x_val)
    probs = tta_probs(single, predict, arrays.x_val, config.tta)
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
        "train_images": arrays.n_train,
        "train_seconds": float(sum(epoch_seconds)),
        "seconds_per_epoch": float(np.mean(epoch_seconds)),
        "images_per_second": float(arrays.n_train / np.mean(train_seconds)),
        "final_train_accuracy": history["accuracy"][-1],
        "final_train_loss": history["loss"][-1],
        "starts": progress.starts,  # 1, plus one for each --resume
        "replicas": replicas.count,
        "processes": replicas.processes,
    })
    return metrics, report, matrix


def bn_momentum(model) -> float | None:
    """The largest momentum of the model's BatchNormalization layers (None without)."""
    found, layers = [], list(getattr(model, "layers", []))
    while layers:
        layer = layers.pop()
        if isinstance(layer, keras.layers.BatchNormalization):
            found.append(float(layer.momentum))
        layers += list(getattr(layer, "layers", []))
    return max(found) if found else None


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
