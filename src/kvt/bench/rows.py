"""One kvt row, measured in this process: the model `kvt train` builds, trained with
`model.fit` and timed between Keras callbacks; and what every row shares (its data,
its step counts, its precision, the result it reports)."""

from __future__ import annotations

import time
from typing import Any

from kvt.bench.flops import TRAIN_FACTOR, keras_flops
from kvt.bench.spec import RowSpec
from kvt.errors import UsageError

INPUT_SHAPE = (32, 32, 3)  # CIFAR-10's, for synthetic data
NUM_CLASSES = 10


# --- precision ----------------------------------------------------------------------------

def dtypes(model, x) -> dict[str, str]:
    """What a model really computes in, from real tensors: the first layer's output,
    its kernel and the model's output."""
    import keras

    std = keras.backend.standardize_dtype
    # The first layer with weights (a functional model's first layer is its InputLayer).
    first = next(layer for layer in model.layers if layer.weights)
    try:
        computed = first(x).dtype
    except (TypeError, ValueError):  # a user's model whose first such layer is deeper in
        computed = first.compute_dtype
    return {"compute_dtype": std(computed),
            "variable_dtype": std(first.weights[0].dtype),
            "output_dtype": std(model(x).dtype)}


def build_keras_model(spec: RowSpec, input_shape, num_classes: int, compiled: bool = True):
    """The row's model as `kvt train` builds and compiles it, in the row's precision."""
    from kvt.config import TrainConfig
    from kvt.models import build_model
    from kvt.train import build_and_compile

    config = TrainConfig(model=spec.model, api=spec.api, activation=spec.activation,
                         backend=spec.backend,
                         batch_size=spec.batch_size, precision=spec.precision,
                         steps_per_execution=spec.steps_per_execution)
    if compiled:
        model = build_and_compile(config, input_shape, num_classes)
    else:
        model = build_model(config.model, spec.api, input_shape, num_classes,
                            spec.activation, precision=spec.precision)
    return model


# --- what every row shares -------------------------------------------------------------

def load_images(spec: RowSpec, n: int):
    """(uint8 images, int labels, classes, what it is, load seconds): synthetic, or the
    first n training images of `spec.dataset` through kvt's loader."""
    import numpy as np

    if spec.dataset is None:
        rng = np.random.default_rng(spec.seed)
        images = rng.integers(0, 256, (n, *INPUT_SHAPE), dtype=np.uint8)
        labels = rng.integers(0, NUM_CLASSES, n)
        return images, labels, NUM_CLASSES, "synthetic", 0.0
    from kvt.config import TrainConfig
    from kvt.train import load_data

    t = time.perf_counter()
    dataset = load_data(TrainConfig(dataset=spec.dataset, data_dir=spec.data_dir,
                                    backend=spec.backend))
    seconds = time.perf_counter() - t
    if len(dataset.y_train) < spec.batch_size:
        raise UsageError(f"--batch-size {spec.batch_size} is larger than the "
                         f"{len(dataset.y_train)} training images of {spec.dataset}")
    # Whole batches only: a last, smaller batch would trace a second graph mid-timing.
    n = min(n, len(dataset.y_train) // spec.batch_size * spec.batch_size)
    return (dataset.x_train[:n], dataset.y_train[:n], dataset.num_classes, dataset.name,
            seconds)


def step_counts(spec: RowSpec) -> tuple[int, int]:
    """Warm-up and timed steps, rounded up to whole executions."""
    spe = spec.steps_per_execution
    return -(-spec.warmup // spe) * spe, -(-spec.steps // spe) * spe


def row_result(spec: RowSpec, forward: int, uncounted: list[str], train_step_s: float,
               infer_step_s: float, warmup: int, steps: int, warmup_s: float,
               infer_warmup_s: float) -> dict[str, Any]:
    """What every row reports, from its FLOPs and timings."""
    b = spec.batch_size
    return {
        "train_img_s": b / train_step_s,
        "infer_img_s": b / infer_step_s,
        # What the first call cost beyond the steps it ran: tracing, compilation, set-up.
        "compile_s": max(0.0, warmup_s - warmup * train_step_s),
        "infer_compile_s": max(0.0, infer_warmup_s - warmup * infer_step_s),
        "warmup_s": warmup_s,
        "fwd_gflops_per_img": forward / 1e9,
        "gflops_per_img": TRAIN_FACTOR * forward / 1e9,
        "uncounted_layers": uncounted,
        "measured_steps": steps,
        "warmup_steps": warmup,
    }


def framework_version(backend: str) -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version(backend)
    except importlib.metadata.PackageNotFoundError:
        return "?"


# --- the kvt row ------------------------------------------------------------------------

class _Window:
    """Wall time from the start to the end of one fit/predict call, its set-up left out."""

    def __init__(self):
        import keras

        class Clock(keras.callbacks.Callback):
            def on_train_begin(cb, logs=None):
                self.start = time.perf_counter()

            def on_train_end(cb, logs=None):
                self.end = time.perf_counter()

            on_predict_begin, on_predict_end = on_train_begin, on_train_end

        self.callback = Clock()
        self.start = self.end = 0.0

    @property
    def seconds(self) -> float:
        return self.end - self.start


def kvt_row(spec: RowSpec) -> dict[str, Any]:
    """A kvt row: `kvt train`'s model and pipeline, through `fit` and `predict`."""
    import keras

    from kvt.train import epoch_order, to_inputs

    warmup, steps = step_counts(spec)
    b = spec.batch_size
    images, labels, classes, data, load_s = load_images(spec, b * max(warmup, steps))
    keras.utils.set_random_seed(spec.seed)
    # The pipeline kvt train runs: scale to [0, 1] once, one-hot, a permutation per epoch.
    x, y = to_inputs(images), keras.utils.to_categorical(labels, classes)
    steps = min(steps, len(x) // b)
    warmup = min(warmup, len(x) // b)
    model = build_keras_model(spec, x.shape[1:], classes)
    forward, uncounted = keras_flops(model)
    window = _Window()

    def fit(n_steps: int, epoch: int) -> float:
        order = epoch_order(spec.seed, epoch, len(x))[: n_steps * b]
        t = time.perf_counter()
        model.fit(x[order], y[order], batch_size=b, epochs=1, shuffle=False, verbose=0,
                  callbacks=[window.callback])
        return time.perf_counter() - t

    warmup_s = fit(warmup, 0)
    fit(steps, 1)
    train_step_s = window.seconds / steps
    predict_start = time.perf_counter()
    model.predict(x[: warmup * b], batch_size=b, verbose=0, callbacks=[window.callback])
    infer_warmup_s = time.perf_counter() - predict_start
    model.predict(x[: steps * b], batch_size=b, verbose=0, callbacks=[window.callback])
    infer_step_s = window.seconds / steps
    result = row_result(spec, forward, uncounted, train_step_s, infer_step_s, warmup, steps,
                        warmup_s, infer_warmup_s)
    result.update(dtypes(model, x[:2]), data=data, load_s=load_s,
                  framework_version=framework_version(spec.backend))
    return result
