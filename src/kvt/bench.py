"""Throughput, % of peak and a yardstick loop: what `kvt bench` measures.

A bench is a list of rows, each measured in its own process (one process, one
backend), one at a time:

- a **kvt row** trains and runs inference with the model `kvt train` builds and the
  optimiser it compiles (`kvt.train.build_and_compile`), through `model.fit` and
  `model.predict`, on synthetic images of CIFAR-10's shape (or a real dataset);
- a **yardstick row** trains the same network without Keras' training loop: a plain
  PyTorch loop (`torch.nn.Sequential`, SGD, bf16 autocast for `bf16`) or a plain
  `tf.function` step with `tf.GradientTape` over the Keras model;
- a **peak row**, run first: the machine's fp32 and bf16 matmul peak, the best GFLOP/s of
  square matmuls (up to 2048^3) in NumPy and in the framework of every row (yardsticks
  included): bf16 is "n/a" when no row uses a framework other than NumPy.

FLOP convention (forward pass, per image, counted from the built model's layers):

- Conv2D: 2·H_out·W_out·k_h·k_w·(C_in/groups)·C_out, plus H_out·W_out·C_out for the bias;
- Dense: 2·in·out, plus out for the bias;
- BatchNormalization: 4 per element (subtract, multiply, scale, shift);
- max pooling: k_h·k_w − 1 comparisons per output element (average: k_h·k_w);
- softmax: 3 per element; every other activation (CReLU included, your own functions
  too): 1 per output element; Add and friends: 1 per output element;
- Dropout, Flatten, Reshape, Concatenate, the input: 0.

Training counts 3× the forward pass (forward, gradient with respect to the inputs,
gradient with respect to the weights): MiniVGGNet with ReLU costs about 53.6 MFLOP
forward and 161 MFLOP per training image. `pct_of_peak` is the row's training GFLOP/s
(train images/s × training FLOPs per image) divided by the matmul peak of its precision.

The peak is measured on the CPU: a row whose framework computes on a GPU (`device`
"gpu") gets no `pct_of_peak`.

Precision `bf16`: the row builds its model under Keras' `mixed_bfloat16` policy (bf16
compute, float32 variables) with the last layer, the softmax, in float32; the PyTorch
yardstick runs under `torch.autocast(bfloat16)`. Each row reads `compute_dtype` (the
first layer's output), `variable_dtype` and `output_dtype` from real tensors after
training. `steps_per_execution` is Keras' compile option, for kvt rows only.

Timing: `warmup` steps run first (the first call traces/compiles); `compile_s` is that
call's wall time less `warmup` steady steps. Then `steps` steps are timed: for kvt rows
from `on_train_begin` to `on_train_end` of one `fit` call (Keras' input pipeline from
in-memory arrays included, the per-call set-up not), for yardstick rows around the loop.
Inference is timed the same way with `predict` (or the plain forward pass).
`peak_rss_mb` is the row process's resident-set high-water mark (`ru_maxrss`), the
framework's own start-up included.

This module imports no framework at import time; a row imports its own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import itertools
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

from kvt.errors import BackendError, UsageError

PRECISIONS = ("float32", "bf16")
YARDSTICKS = ("torch", "tf")
# A yardstick row's `api`: what trains it instead of Keras' fit loop.
YARDSTICK_API = {"torch": "torch.nn", "tf": "tf.function"}
# The PyTorch yardstick mirrors these activations; your own functions have no twin there.
TORCH_ACTIVATIONS = ("relu", "crelu", "elu", "gelu", "swish")
TRAIN_FACTOR = 3  # training FLOPs per image = 3 x forward
INPUT_SHAPE = (32, 32, 3)  # CIFAR-10's, for synthetic data
NUM_CLASSES = 10
PEAK_N = 2048  # largest side of the square matmuls that measure the peak
PEAK_SECONDS = 0.3  # time spent per framework and dtype measuring it
LR = 0.01  # the seed recipe's, for the yardsticks


@dataclasses.dataclass(frozen=True)
class RowSpec:
    """What one row measures; it travels to the row's process as JSON."""

    kind: str  # "kvt", "yardstick" or "peak"
    backend: str = "tensorflow"
    api: str = "keras"  # kvt rows: keras | tf; yardsticks: torch.nn | tf.function
    activation: str = "relu"
    precision: str = "float32"
    batch_size: int = 32
    steps_per_execution: int = 1
    steps: int = 20
    warmup: int = 3
    dataset: str | None = None  # None: synthetic images
    data_dir: str | None = None
    seed: int = 0

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> RowSpec:
        return cls(**json.loads(text))


# --- the plan: which rows, in which order ------------------------------------------------

def check_installed(backends: Iterable[str]) -> None:
    """Raises `BackendError` (with the pip command) for a backend that is not installed."""
    from kvt.backends import FRAMEWORKS

    for backend in backends:
        module, extra = FRAMEWORKS[backend]
        if importlib.util.find_spec(module) is None:
            raise BackendError(f"the {backend} backend needs {module}, which is not "
                               f"installed: pip install '{extra}'")


def plan(backends: list[str], apis: list[str], activations: list[str],
         precisions: list[str], batch_sizes: list[int], steps_per_execution: list[int],
         yardsticks: list[str], installed: dict[str, bool] | None = None,
         **common: Any) -> tuple[list[RowSpec], list[str]]:
    """The rows of a bench (the product of the options, impossible combinations
    skipped) and one note per skipped kind of row.

    kvt rows come first, one per (backend, api, activation, precision, batch size,
    steps per execution); then the yardstick rows, one per yardstick and (activation,
    precision, batch size). `installed` maps frameworks to whether they can be
    imported (default: looked up); `common` goes to every row (steps, warmup, dataset).
    """
    if installed is None:
        from kvt.backends import installed as look_up

        installed = look_up()
    rows: list[RowSpec] = []
    notes: list[str] = []
    for backend, api, activation, precision, batch, spe in itertools.product(
            backends, apis, activations, precisions, batch_sizes, steps_per_execution):
        if api == "tf" and backend != "tensorflow":
            _note_once(notes, f"skipped --api tf on {backend}: the tf.keras model calls "
                              f"TensorFlow ops, so it needs --backend tensorflow")
            continue
        rows.append(RowSpec("kvt", backend, api, activation, precision, batch, spe, **common))
    for yardstick, activation, precision, batch in itertools.product(
            yardsticks, activations, precisions, batch_sizes):
        framework = "torch" if yardstick == "torch" else "tensorflow"
        if not installed.get(framework, False):
            _note_once(notes, f"skipped the {yardstick} yardstick: {framework} is not "
                              f"installed")
            continue
        if yardstick == "torch" and activation not in TORCH_ACTIVATIONS:
            _note_once(notes, f"skipped the torch yardstick for --activation {activation}: "
                              f"it has no plain PyTorch twin")
            continue
        rows.append(RowSpec("yardstick", framework, YARDSTICK_API[yardstick], activation,
                            precision, batch, 1, **common))
    return rows, notes


def _note_once(notes: list[str], note: str) -> None:
    if note not in notes:
        notes.append(note)


# --- FLOPs --------------------------------------------------------------------------------

def conv2d_flops(h_out: int, w_out: int, k_h: int, k_w: int, c_in: int, c_out: int,
                 bias: bool = True, groups: int = 1) -> int:
    """Forward FLOPs of one image through a 2-D convolution (2 per multiply-add)."""
    flops = 2 * h_out * w_out * k_h * k_w * (c_in // groups) * c_out
    return flops + (h_out * w_out * c_out if bias else 0)


def dense_flops(n_in: int, n_out: int, bias: bool = True) -> int:
    """Forward FLOPs of one input vector through a dense layer."""
    return 2 * n_in * n_out + (n_out if bias else 0)


def _size(shape: Iterable[Any]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def keras_layer_flops(layer) -> int | None:
    """Forward FLOPs per image of one built Keras layer; None if it has weights kvt does
    not know how to count (it is then left out and named in the table's footer)."""
    import keras

    L = keras.layers
    if isinstance(layer, keras.Model):
        total = 0
        for inner in layer.layers:
            f = keras_layer_flops(inner)
            total += f or 0
        return total
    in_shape = tuple(layer.input.shape[1:]) if not isinstance(layer, L.InputLayer) else ()
    out_shape = tuple(layer.output.shape[1:])
    out = _size(out_shape)
    if isinstance(layer, L.Conv2D):
        channels_last = layer.data_format == "channels_last"
        c_in = in_shape[-1] if channels_last else in_shape[0]
        h_out, w_out = out_shape[:2] if channels_last else out_shape[1:]
        return conv2d_flops(h_out, w_out, *layer.kernel_size, c_in, layer.filters,
                            layer.use_bias, layer.groups)
    if isinstance(layer, L.Dense):
        return _size(in_shape[:-1]) * dense_flops(in_shape[-1], layer.units, layer.use_bias)
    if isinstance(layer, L.BatchNormalization):
        return 4 * out
    if isinstance(layer, (L.MaxPooling2D, L.AveragePooling2D)):
        window = _size(layer.pool_size)
        return out * (window - 1 if isinstance(layer, L.MaxPooling2D) else window)
    if isinstance(layer, (L.GlobalAveragePooling2D, L.GlobalMaxPooling2D)):
        return _size(in_shape)
    if isinstance(layer, L.Softmax) or (
            isinstance(layer, L.Activation)
            and getattr(layer.activation, "__name__", "") == "softmax"):
        return 3 * out
    if isinstance(layer, (L.InputLayer, L.Dropout, L.Flatten, L.Reshape, L.Concatenate)):
        return 0
    if not layer.weights:  # an activation, an Add: elementwise
        return out
    return None


def keras_flops(model) -> tuple[int, list[str]]:
    """(forward FLOPs per image, names of the layers that could not be counted)."""
    total, uncounted = 0, []
    for layer in model.layers:
        f = keras_layer_flops(layer)
        if f is None:
            uncounted.append(layer.name)
        else:
            total += f
    return total, uncounted


def torch_flops(model, image) -> tuple[int, list[str]]:
    """`keras_flops` for a `torch.nn` model (NCHW), counted with forward hooks on its
    leaf modules while one image goes through."""
    import torch
    from torch import nn

    counts: list[int] = []
    uncounted: list[str] = []

    def hook(module, inputs, output):
        shape_in, shape_out = tuple(inputs[0].shape[1:]), tuple(output.shape[1:])
        out = _size(shape_out)
        if isinstance(module, nn.Conv2d):
            counts.append(conv2d_flops(shape_out[1], shape_out[2], *module.kernel_size,
                                       shape_in[0], module.out_channels,
                                       module.bias is not None, module.groups))
        elif isinstance(module, nn.Linear):
            counts.append(dense_flops(module.in_features, module.out_features,
                                      module.bias is not None))
        elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            counts.append(4 * out)
        elif isinstance(module, nn.MaxPool2d):
            counts.append(out * (_size(_pair(module.kernel_size)) - 1))
        elif isinstance(module, nn.Softmax):
            counts.append(3 * out)
        elif isinstance(module, (nn.Dropout, nn.Flatten)):
            counts.append(0)
        elif not any(True for _ in module.parameters()):
            counts.append(out)
        else:
            uncounted.append(type(module).__name__)

    leaves = [m for m in model.modules() if not any(True for _ in m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        was_training = model.training
        model.eval()
        with torch.no_grad():
            model(image)
        model.train(was_training)
    finally:
        for h in handles:
            h.remove()
    return sum(counts), uncounted


def _pair(k) -> tuple[int, int]:
    return (k, k) if isinstance(k, int) else tuple(k)


# --- the peak -------------------------------------------------------------------------------

def _best_seconds(fn, seconds: float = PEAK_SECONDS, at_least: int = 3) -> float:
    fn()  # warm-up: allocation, kernel choice
    best, spent, n = float("inf"), 0.0, 0
    while n < at_least or spent < seconds:
        t = time.perf_counter()
        fn()
        dt = time.perf_counter() - t
        best, spent, n = min(best, dt), spent + dt, n + 1
    return best


def matmul_gflop_s(make, largest: int = PEAK_N) -> tuple[float, int]:
    """(best GFLOP/s, n) of `make(n)()`, an n×n×n matmul. n doubles from 256 until one
    call takes 50 ms or n reaches `largest`, so that a slow path (bf16 emulated on a
    CPU without bf16 instructions) costs well under a second, not minutes."""
    n = 256
    while True:
        fn = make(n)
        fn()  # the first call of a size sets up kernels
        t = time.perf_counter()
        fn()
        if time.perf_counter() - t >= 0.05 or 2 * n > largest:
            break
        n *= 2
    return 2 * n ** 3 / _best_seconds(fn) / 1e9, n


def _numpy_matmuls():
    import numpy as np

    def make(n):
        a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
        return lambda: a @ a
    return f"numpy {np.__version__}", {"fp32": make}


def _torch_matmuls():
    import torch

    def maker(dtype):
        def make(n):
            a = torch.randn(n, n).to(dtype)
            return lambda: torch.mm(a, a)
        return make
    return (f"torch {torch.__version__.split('+')[0]}",
            {"fp32": maker(torch.float32), "bf16": maker(torch.bfloat16)})


def _jax_matmuls():
    import jax
    import jax.numpy as jnp

    mm = jax.jit(lambda a: a @ a)

    def maker(dtype):
        def make(n):
            a = jnp.ones((n, n), dtype=dtype)
            return lambda: mm(a).block_until_ready()
        return make
    return f"jax {jax.__version__}", {"fp32": maker(jnp.float32), "bf16": maker(jnp.bfloat16)}


def _tensorflow_matmuls():
    from kvt.backends import filtered_stderr

    with filtered_stderr():
        import tensorflow as tf

    def maker(dtype):
        def make(n):
            a = tf.cast(tf.random.normal((n, n)), dtype)
            return lambda: tf.linalg.matmul(a, a).numpy()
        return make
    return f"tensorflow {tf.__version__}", {"fp32": maker(tf.float32), "bf16": maker(tf.bfloat16)}


MATMULS = {"numpy": _numpy_matmuls, "torch": _torch_matmuls, "jax": _jax_matmuls,
           "tensorflow": _tensorflow_matmuls}


def measure_peak(frameworks: Iterable[str] = ("numpy", "torch", "jax", "tensorflow")
                 ) -> dict[str, Any]:
    """This CPU's matmul peak in fp32 and bf16: the best GFLOP/s of square matmuls in
    each of `frameworks` that is installed (a bench passes numpy and its rows'
    frameworks). bf16 is None when none of them can do it."""
    best: dict[str, tuple[float, str, int]] = {}
    for name in dict.fromkeys(frameworks):
        if importlib.util.find_spec(name) is None:
            continue
        source, makers = MATMULS[name]()
        for dtype, make in makers.items():
            gflop_s, n = matmul_gflop_s(make)
            if gflop_s > best.get(dtype, (0.0,))[0]:
                best[dtype] = (gflop_s, source, n)
    result: dict[str, Any] = {}
    for dtype in ("fp32", "bf16"):
        gflop_s, source, n = best.get(dtype, (None, None, None))
        result.update({f"peak_{dtype}_gflop_s": gflop_s, f"peak_{dtype}_source": source,
                       f"peak_{dtype}_n": n})
    result["peak_rss_mb"] = peak_rss_mb()
    return result


def peak_rss_mb() -> float:
    """This process's resident-set high-water mark in MiB (Linux reports KiB)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


# --- precision ----------------------------------------------------------------------------

@contextlib.contextmanager
def precision_policy(precision: str) -> Iterator[None]:
    """Layers built inside compute in `precision` ("bf16": Keras' `mixed_bfloat16`,
    variables stay float32); the previous global policy comes back afterwards."""
    import keras

    previous = keras.mixed_precision.global_policy()
    if precision == "bf16":
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def float32_output(model) -> None:
    """The last layer (the softmax) computes in float32, so that probabilities and the
    loss keep float32's range and resolution under a bf16 policy."""
    model.layers[-1].dtype_policy = "float32"


def dtypes(model, x) -> dict[str, str]:
    """What a model really computes in, from real tensors: the first layer's output,
    its kernel and the model's output."""
    import keras

    std = keras.backend.standardize_dtype
    first = model.layers[0]
    return {"compute_dtype": std(first(x).dtype),
            "variable_dtype": std(first.weights[0].dtype),
            "output_dtype": std(model(x).dtype)}


def build_keras_model(spec: RowSpec, input_shape, num_classes: int, compiled: bool = True):
    """The row's model as `kvt train` builds and compiles it, in the row's precision."""
    from kvt.config import TrainConfig
    from kvt.models import build_model
    from kvt.train import build_and_compile

    config = TrainConfig(api=spec.api, activation=spec.activation, backend=spec.backend,
                         batch_size=spec.batch_size)
    with precision_policy(spec.precision):
        if compiled:
            model = build_and_compile(config, input_shape, num_classes)
        else:
            model = build_model(config.model, spec.api, input_shape, num_classes,
                                spec.activation)
    float32_output(model)
    if compiled and spec.steps_per_execution > 1:
        model.compile(optimizer=model.optimizer, loss="categorical_crossentropy",
                      metrics=["accuracy"], steps_per_execution=spec.steps_per_execution)
    return model


# --- one row, in its own process ---------------------------------------------------------

def run_row(spec: RowSpec) -> dict[str, Any]:
    """Measures `spec` in this process (which must not have imported another backend)."""
    if spec.kind == "peak":  # `backend` holds the frameworks to try, comma separated
        return measure_peak(spec.backend.split(","))
    if spec.kind == "yardstick" and spec.backend == "torch":
        result = _torch_row(spec)
    else:
        from kvt import backends

        backends.select(spec.backend)
        backends.import_keras()
        result = _tf_loop_row(spec) if spec.kind == "yardstick" else _kvt_row(spec)
        result["device"] = _device(spec.backend)
    result["peak_rss_mb"] = peak_rss_mb()
    return result


def _device(backend: str) -> str:
    """Where Keras on `backend` computes: "cpu" or "gpu"."""
    if backend == "tensorflow":
        import tensorflow as tf

        return "gpu" if tf.config.list_logical_devices("GPU") else "cpu"
    if backend == "jax":
        import jax

        return "cpu" if jax.devices()[0].platform == "cpu" else "gpu"
    import torch

    return "gpu" if torch.cuda.is_available() else "cpu"


def _data(spec: RowSpec, n: int):
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


def _steps(spec: RowSpec) -> tuple[int, int]:
    """Warm-up and timed steps, rounded up to whole executions."""
    spe = spec.steps_per_execution
    return -(-spec.warmup // spe) * spe, -(-spec.steps // spe) * spe


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


def _kvt_row(spec: RowSpec) -> dict[str, Any]:
    import keras

    from kvt.train import epoch_order, to_inputs

    warmup, steps = _steps(spec)
    b = spec.batch_size
    images, labels, classes, data, load_s = _data(spec, b * max(warmup, steps))
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
    result = _result(spec, forward, uncounted, train_step_s, infer_step_s, warmup, steps,
                     warmup_s, infer_warmup_s)
    result.update(dtypes(model, x[:2]), data=data, load_s=load_s,
                  framework_version=_framework_version(spec.backend))
    return result


def _tf_loop_row(spec: RowSpec) -> dict[str, Any]:
    """The yardstick without Keras' fit: a `tf.function` step, `tf.GradientTape` over
    the same Keras model, plain SGD updates."""
    import keras
    import tensorflow as tf

    from kvt.train import to_inputs

    warmup, steps = _steps(spec)
    b = spec.batch_size
    images, labels, classes, data, load_s = _data(spec, b * max(warmup, steps))
    keras.utils.set_random_seed(spec.seed)
    x = tf.constant(to_inputs(images))
    y = tf.one_hot(tf.constant(labels), classes)
    steps = min(steps, int(x.shape[0]) // b)
    warmup = min(warmup, int(x.shape[0]) // b)
    keras_spec = dataclasses.replace(spec, api="keras")
    model = build_keras_model(keras_spec, tuple(x.shape[1:]), classes, compiled=False)
    forward, uncounted = keras_flops(model)
    variables = model.trainable_variables

    @tf.function
    def train_step(xb, yb):
        with tf.GradientTape() as tape:
            probs = tf.cast(model(xb, training=True), tf.float32)
            loss = tf.reduce_mean(keras.losses.categorical_crossentropy(yb, probs))
        for v, g in zip(variables, tape.gradient(loss, variables)):
            v.assign_sub(LR * g)
        return loss

    @tf.function
    def infer_step(xb):
        return model(xb, training=False)

    batches = [(x[i * b:(i + 1) * b], y[i * b:(i + 1) * b]) for i in range(len(x) // b)]

    def loop(step, n_steps: int, with_labels: bool) -> float:
        t = time.perf_counter()
        out = None
        for xb, yb in batches[:n_steps]:
            out = step(xb, yb) if with_labels else step(xb)
        _ = out.numpy()  # wait for the last step
        return time.perf_counter() - t

    warmup_s = loop(train_step, warmup, True)
    train_step_s = loop(train_step, steps, True) / steps
    infer_warmup_s = loop(infer_step, warmup, False)
    infer_step_s = loop(infer_step, steps, False) / steps
    result = _result(spec, forward, uncounted, train_step_s, infer_step_s, warmup, steps,
                     warmup_s, infer_warmup_s)
    result.update(dtypes(model, x[:2]), data=data, load_s=load_s,
                  framework_version=tf.__version__)
    return result


def torch_minivggnet(activation: str, in_channels: int = 3, side: int = 32,
                     classes: int = NUM_CLASSES):
    """MiniVGGNet as a plain `torch.nn.Sequential` (NCHW), layer for layer as
    `kvt.models.minivggnet` builds it: CReLU after every hidden conv but the first."""
    import torch
    from torch import nn

    class CReLU(nn.Module):
        def forward(self, x):
            return torch.cat([torch.relu(x), torch.relu(-x)], dim=1)

    acts = {"relu": nn.ReLU, "elu": nn.ELU, "gelu": nn.GELU, "swish": nn.SiLU}
    layers: list[nn.Module] = []
    c = in_channels

    def act(width: int, first: bool = False) -> int:
        if activation == "crelu" and not first:
            layers.append(CReLU())
            return 2 * width
        layers.append(acts["relu" if activation == "crelu" else activation]())
        return width

    def conv_block(c_in: int, filters: int, first: bool = False) -> int:
        layers.append(nn.Conv2d(c_in, filters, 3, padding=1))
        c_out = act(filters, first)
        layers.append(nn.BatchNorm2d(c_out, eps=1e-3, momentum=0.01))  # Keras' defaults
        return c_out

    c = conv_block(c, 32, first=True)
    c = conv_block(c, 32)
    layers += [nn.MaxPool2d(2), nn.Dropout(0.25)]
    c = conv_block(c, 64)
    c = conv_block(c, 64)
    layers += [nn.MaxPool2d(2), nn.Dropout(0.25), nn.Flatten(),
               nn.Linear(c * (side // 4) ** 2, 512)]
    c = act(512)
    layers += [nn.BatchNorm1d(c, eps=1e-3, momentum=0.01), nn.Dropout(0.5),
               nn.Linear(c, classes), nn.Softmax(dim=1)]
    return nn.Sequential(*layers)


def _torch_row(spec: RowSpec) -> dict[str, Any]:
    """The plain PyTorch yardstick: the same network, SGD, bf16 autocast for bf16. The
    softmax is counted in the FLOPs but trained through `cross_entropy` on the logits."""
    import torch
    import torch.nn.functional as F

    from kvt.train import to_inputs

    warmup, steps = _steps(spec)
    b = spec.batch_size
    images, labels, classes, data, load_s = _data(spec, b * max(warmup, steps))
    torch.manual_seed(spec.seed)
    x = torch.from_numpy(to_inputs(images)).permute(0, 3, 1, 2).contiguous()
    y = torch.from_numpy(labels.astype("int64"))
    steps = min(steps, len(x) // b)
    warmup = min(warmup, len(x) // b)
    model = torch_minivggnet(spec.activation, x.shape[1], x.shape[2], classes)
    forward, uncounted = torch_flops(model, x[:1])
    net = model[:-1]  # logits; cross_entropy applies the softmax
    optimizer = torch.optim.SGD(net.parameters(), lr=LR)
    bf16 = spec.precision == "bf16"

    def autocast():
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)

    def train(n_steps: int) -> float:
        net.train()
        t = time.perf_counter()
        for i in range(n_steps):
            xb, yb = x[i * b:(i + 1) * b], y[i * b:(i + 1) * b]
            with autocast():
                loss = F.cross_entropy(net(xb), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return time.perf_counter() - t

    def infer(n_steps: int) -> float:
        model.eval()
        t = time.perf_counter()
        with torch.inference_mode(), autocast():
            for i in range(n_steps):
                model(x[i * b:(i + 1) * b])
        return time.perf_counter() - t

    warmup_s = train(warmup)
    train_step_s = train(steps) / steps
    infer_warmup_s = infer(warmup)
    infer_step_s = infer(steps) / steps
    model.eval()
    with torch.inference_mode(), autocast():
        kinds = {"compute_dtype": str(model[0](x[:2]).dtype).replace("torch.", ""),
                 "variable_dtype": str(model[0].weight.dtype).replace("torch.", ""),
                 "output_dtype": str(model(x[:2]).dtype).replace("torch.", "")}
    result = _result(spec, forward, uncounted, train_step_s, infer_step_s, warmup, steps,
                     warmup_s, infer_warmup_s)
    result.update(kinds, data=data, load_s=load_s, device="cpu",
                  framework_version=torch.__version__.split("+")[0])
    return result


def _result(spec: RowSpec, forward: int, uncounted: list[str], train_step_s: float,
            infer_step_s: float, warmup: int, steps: int, warmup_s: float,
            infer_warmup_s: float) -> dict[str, Any]:
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


def _framework_version(backend: str) -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version(backend)
    except importlib.metadata.PackageNotFoundError:
        return "?"


# --- the bench: rows in child processes, one at a time ---------------------------------------

def run_in_child(spec: RowSpec) -> dict[str, Any]:
    """Runs `spec` in a fresh `python -m kvt bench --row` process; a failure comes back as
    {"error": its last line}."""
    with tempfile.TemporaryDirectory(prefix="kvt-bench-") as tmp:
        out = Path(tmp) / "row.json"
        cmd = [sys.executable, "-m", "kvt", "bench", "--row", spec.to_json(),
               "--row-out", str(out)]
        proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True)
        if proc.returncode == 0 and out.is_file():
            return json.loads(out.read_text())
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        error = lines[-1].removeprefix("kvt bench: error: ") if lines else ""
        return {"error": error or f"exit code {proc.returncode}",
                "exit_code": proc.returncode}


def finish(spec: RowSpec, measured: dict[str, Any], peak: dict[str, Any]) -> dict[str, Any]:
    """One row of the table and of --json: the spec, what was measured, % of peak."""
    row: dict[str, Any] = {k: v for k, v in dataclasses.asdict(spec).items()
                           if k not in ("seed", "data_dir")}
    row.update(measured)
    peak_gflop_s = peak.get("peak_bf16_gflop_s" if spec.precision == "bf16"
                            else "peak_fp32_gflop_s")
    row["peak_gflop_s"] = peak_gflop_s
    if "train_img_s" in row:
        row["train_gflop_s"] = row["train_img_s"] * row["gflops_per_img"]
        # The peak is this CPU's: a row that ran on a GPU gets no percentage of it.
        on_cpu = row.get("device", "cpu") == "cpu"
        row["pct_of_peak"] = (100 * row["train_gflop_s"] / peak_gflop_s
                              if peak_gflop_s and on_cpu else None)
    return row


def bench(rows: list[RowSpec], progress=None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Measures the peak, then every row, each in its own process, one at a time."""
    say = progress or (lambda message: None)
    say("measuring the matmul peak")
    frameworks = ["numpy", *(r.backend for r in rows)]
    peak = run_in_child(RowSpec("peak", backend=",".join(dict.fromkeys(frameworks))))
    results = []
    for i, spec in enumerate(rows, 1):
        say(f"row {i}/{len(rows)}: {label(spec)}")
        results.append(finish(spec, run_in_child(spec), peak))
    return peak, results


def label(spec: RowSpec) -> str:
    spe = f" spe {spec.steps_per_execution}" if spec.steps_per_execution > 1 else ""
    return (f"{spec.kind} {spec.backend}/{spec.api}/{spec.activation} {spec.precision} "
            f"batch {spec.batch_size}{spe}")


# --- the table ----------------------------------------------------------------------------

COLUMNS = (  # header, width, JSON field, format
    ("row", 9, "kind", "{}"),
    ("backend", 10, "backend", "{}"),
    ("api", 11, "api", "{}"),
    ("activation", 10, "activation", "{}"),
    ("prec", 7, "precision", "{}"),
    ("batch", 5, "batch_size", "{}"),
    ("spe", 3, "steps_per_execution", "{}"),
    ("train img/s", 11, "train_img_s", "{:.0f}"),
    ("infer img/s", 11, "infer_img_s", "{:.0f}"),
    ("compile s", 9, "compile_s", "{:.2f}"),
    ("peak MB", 7, "peak_rss_mb", "{:.0f}"),
    ("GFLOP/img", 9, "gflops_per_img", "{:.4f}"),
    ("GFLOP/s", 7, "train_gflop_s", "{:.1f}"),
    ("% peak", 6, "pct_of_peak", "{:.1f}"),
)
_TEXT = ("kind", "backend", "api", "activation", "precision")


def table(peak: dict[str, Any], rows: list[dict[str, Any]], notes: list[str]) -> str:
    """The fixed-column table with its footer: peaks, FLOP convention, what ran."""
    header = "  ".join(f"{h:<{w}}" if f in _TEXT else f"{h:>{w}}" for h, w, f, _ in COLUMNS)
    lines = [header, "-" * len(header)]
    for row in rows:
        cells = []
        for _, width, field, fmt in COLUMNS:
            value = row.get(field)
            text = "-" if value is None or (field == "steps_per_execution"
                                            and row["kind"] != "kvt") else fmt.format(value)
            if len(text) > width:  # a long function name: --json has it whole
                text = text[: width - 1] + "~"
            cells.append(f"{text:<{width}}" if field in _TEXT else f"{text:>{width}}")
        line = "  ".join(cells)
        if "error" in row:
            line = "  ".join(cells[:7]) + f"  failed: {row['error']}"
        lines.append(line.rstrip())
    lines.append("")
    lines.append(f"peak: {_peak_words(peak)}; % peak = train GFLOP/s / the matmul peak of "
                 f"the row's precision")
    gpu = [i for i, r in enumerate(rows, 1) if r.get("device", "cpu") != "cpu"]
    if gpu:
        lines.append(f"rows {', '.join(map(str, gpu))} ran on a GPU: no % of the peak, "
                     f"which is this CPU's")
    lines.append(f"GFLOP/img: training, counted from the model's layers = {TRAIN_FACTOR} x "
                 f"forward (conv/dense 2 per multiply-add + bias, BN 4, activations 1, "
                 f"max-pool k-1, softmax 3 per element)")
    uncounted = sorted({n for r in rows for n in r.get("uncounted_layers", [])})
    if uncounted:
        lines.append(f"not counted (layers with weights of unknown kind): {', '.join(uncounted)}")
    measured = [r for r in rows if "measured_steps" in r]
    if measured:
        data = measured[0].get("data", "synthetic")
        what = ("synthetic uint8 images 32x32x3, 10 classes" if data == "synthetic"
                else f"{data} through kvt's loader")
        counts = sorted({(r["warmup_steps"], r["measured_steps"]) for r in measured})
        steps = (f"{counts[0][0]} warm-up + {counts[0][1]} timed steps per row"
                 if len(counts) == 1 else "warm-up and timed steps per row in --json (rounded "
                                          "up to whole executions)")
        lines.append(f"data: {what}; {steps}; each row in its own process, one at a time")
    lines.append(f"machine: {_machine()}")
    lines.extend(f"note: {n}" for n in notes)
    return "\n".join(lines)


def _peak_words(peak: dict[str, Any]) -> str:
    if "error" in peak:
        return f"not measured ({peak['error']})"
    bf16 = peak.get("peak_bf16_gflop_s")
    return (f"matmul fp32 {peak['peak_fp32_gflop_s']:.1f} GFLOP/s ({peak['peak_fp32_source']}, "
            f"n={peak['peak_fp32_n']}), bf16 "
            + (f"{bf16:.1f} GFLOP/s ({peak['peak_bf16_source']}, n={peak['peak_bf16_n']})"
               if bf16 else "n/a (no row's framework does bf16)")
            + ", best of the installed frameworks")


def _machine() -> str:
    from kvt.backends import cpu_model, cpuinfo

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    # Whether bf16 can be fast here at all: without these, bf16 is emulated.
    bf16 = [f for f in (cpuinfo("flags") or "").split() if f in ("avx512_bf16", "amx_bf16")]
    return (f"{cpu_model()}, {cores} usable cores, bf16 instructions: "
            f"{' '.join(bf16) or 'none'}, Python {platform.python_version()}, "
            f"{time.strftime('%Y-%m-%d %H:%M')}")
