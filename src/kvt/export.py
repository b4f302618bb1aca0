"""Deployable copies of a trained model, made by Keras 3's `model.export` and checked in
each format's own runtime before kvt calls the export done.

    saved_model   a TensorFlow SavedModel folder   tf.saved_model.load(path).serve(x)
    onnx          an .onnx file (tf2onnx)          onnxruntime.InferenceSession(path)
    litert        a .tflite file (LiteRT)          ai_edge_litert.interpreter.Interpreter

Every artifact takes what an image viewer shows, float32 pixel values 0..255 of shape
(batch, height, width, channels) for any batch size, and returns the class
probabilities: the input scale that the model file records (`kvt.saving.to_inputs`) is
built in as a first `Rescaling` layer, so that a deployment needs neither kvt nor the
scale.

`export` writes the artifact under a temporary name, runs it in its runtime on real
images, in batches of 1, 7 and up to 256 (so that an artifact fixed to one batch size
cannot pass), and compares its probabilities with the Keras model's. Beyond `TOLERANCE`
it deletes the artifact and raises `ModelError`; otherwise it renames it into place.
Every format is traced through a TensorFlow function, so exporting needs the TensorFlow
backend; a .keras file is engine-neutral, so a model trained on JAX or PyTorch exports
there too. Importing this module imports no framework.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import importlib.metadata
import importlib.util
import logging
import os
import re
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

from kvt.errors import BackendError, ModelError, RunError, UsageError, first_line
from kvt.runs import check_writable_folder, write_atomic

EXTRA = "kvt[export]"  # the pip extra that installs every format's converter and runtime

# An artifact's probabilities may differ from the Keras model's by at most this much, for
# every image and class. Measured on a 2-core AMD EPYC (2026-11-27: tests/test_export.py's
# digits runs from TensorFlow, JAX and PyTorch and --api tf, the demo run, a 32x32x3
# CIFAR-10 slice): at most 8.3e-7 (SavedModel), 1.0e-6 (ONNX), 1.8e-6 (LiteRT). 1e-4
# leaves a margin of 55x; a wrong artifact lies far beyond (the demo's last-layer biases
# shifted by up to 1: 0.36; the input scale left out: 1.0).
TOLERANCE = 1e-4

# An int8 artifact (--quantize int8) computes with 8-bit weights and activations: it is
# judged by its top-1 accuracy on the check images, which may drop by at most this much
# (absolute, 0.02 = 2 points) below the Keras model's.
INT8_ACCURACY_DROP = 0.02
QUANTIZE = ("int8",)
REPRESENTATIVE_IMAGES = 200  # training images that calibrate int8 activation ranges

CHECK_BATCHES = (1, 7)  # the first batches of every check; then BATCH at a time
BATCH = 256


@dataclasses.dataclass(frozen=True)
class Format:
    """One export format: how Keras names it, where it goes, what runs it."""

    keras_format: str  # model.export's format=
    suffix: str  # of the default output beside model.keras
    folder: bool  # the artifact is a folder, not a file
    title: str
    runtime: str  # the distribution that runs the check (its version is printed)
    modules: tuple[str, ...]  # importable modules the format needs


FORMATS = {
    "saved_model": Format("tf_saved_model", "_saved_model", True, "TensorFlow SavedModel",
                          "tensorflow", ("tensorflow",)),
    "onnx": Format("onnx", ".onnx", False, "ONNX", "onnxruntime",
                   ("tf2onnx", "onnx", "onnxruntime")),
    "litert": Format("litert", ".tflite", False, "LiteRT (.tflite)", "ai-edge-litert",
                     ("ai_edge_litert",)),
}

# Converters and runtimes chatter on stderr (C++ logs, the LiteRT delegate's INFO line);
# their errors still come through.
_NOISE = re.compile(r"^(?:[IW]\d{4} |WARNING: All log messages before absl|INFO: |"
                    r"WARNING:tensorflow:|E\d{4} .*cuInit|fully_quantize: )")


# --- before anything is loaded ----------------------------------------------------------

def require(fmt: str) -> None:
    """Refuses a format whose converter or runtime is not installed (BackendError, the
    exit code of a missing engine), naming the pip command."""
    missing = [m for m in FORMATS[fmt].modules if importlib.util.find_spec(m) is None]
    if missing:
        raise BackendError(f"{FORMATS[fmt].title} export needs {', '.join(missing)}, which "
                           f"{'is' if len(missing) == 1 else 'are'} not installed: "
                           f"pip install '{EXTRA}'")


def default_out(model_path: Path, fmt: str) -> Path:
    """The artifact's default path, beside the model file: model_saved_model/,
    model.onnx, model.tflite."""
    return model_path.with_name(model_path.stem + FORMATS[fmt].suffix)


def check_out(out: Path, fmt: str, force: bool) -> None:
    """Refuses an output path that exists (unless `force`), is of the wrong kind, or
    cannot be written, before any work is done."""
    spec = FORMATS[fmt]
    if fmt == "litert" and out.suffix != ".tflite":
        raise UsageError(f"--out {out}: a LiteRT model's name must end with .tflite")
    kind = "folder" if spec.folder else "file"
    if out.exists() or out.is_symlink():
        if not force:
            raise RunError(f"{out} already exists: choose another --out or pass --force to "
                           f"replace it")
        if out.is_dir() != spec.folder:
            raise RunError(f"--out {out} is a {'folder' if out.is_dir() else 'file'} and a "
                           f"{spec.title} is a {kind}: choose another --out")
    check_writable_folder(out.parent, f"--out {out}", "choose another --out")


def check_exportable(model, path: Path, fmt: str) -> None:
    """Refuses a model the format cannot hold, with the format that can."""
    policies = {layer.dtype_policy.compute_dtype for layer in model.layers
                if getattr(layer, "dtype_policy", None) is not None}
    other = sorted(policies - {"float32"})
    if other and fmt != "saved_model":
        # tf2onnx writes bfloat16 convolutions that onnxruntime refuses to load; LiteRT
        # keeps them as TensorFlow ops that its interpreter does not have (Flex ops).
        runtime = {"onnx": "ONNX Runtime", "litert": "the LiteRT interpreter"}[fmt]
        raise ModelError(f"{path} computes in {', '.join(other)} (--precision bf16), which "
                         f"{runtime} cannot run: export it --format saved_model, or train "
                         f"in float32")


# --- exporting --------------------------------------------------------------------------

@dataclasses.dataclass
class Check:
    """How the artifact compared with the Keras model on the check images."""

    runtime: str  # "onnxruntime 1.31.1"
    images: int
    max_abs_diff: float  # of any probability
    agree: int  # images whose top-1 class is the Keras model's
    keras_accuracy: float
    accuracy: float  # the artifact's
    quantized: str | None = None

    @property
    def passed(self) -> bool:
        if self.quantized:
            return self.accuracy >= self.keras_accuracy - INT8_ACCURACY_DROP
        return self.max_abs_diff <= TOLERANCE

    def line(self) -> str:
        batches = ", ".join(str(b) for b in CHECK_BATCHES)
        share = 100 * self.agree / self.images
        agree = f"top-1 agreement {self.agree}/{self.images} ({share:.2f}%)"
        accuracy = (f"accuracy {100 * self.accuracy:.2f}% (Keras {100 * self.keras_accuracy:.2f}%"
                    + (f", allowed drop {100 * INT8_ACCURACY_DROP:.0f} points)"
                       if self.quantized else ")"))
        diff = f"max |difference| of probabilities {self.max_abs_diff:.2g}"
        if not self.quantized:
            diff += f" (tolerance {TOLERANCE:g})"
        return (f"checked in {self.runtime} on {self.images} test images (batches of {batches} "
                f"and up to {BATCH}): {diff}, {agree}, {accuracy}")


def export(model, meta: dict[str, Any], fmt: str, out: Path, pixels, labels,
           quantize: str | None = None, representative=None, tta: str = "none") -> Check:
    """Exports `model` as `fmt` to `out`, checked on `pixels` (0..255 images, with their
    `labels`) against the model's own predictions; returns the check.

    `quantize="int8"` (LiteRT only) quantizes weights and activations to 8 bits,
    calibrated on `representative` (0..255 training images). `tta="flip"` builds the
    test-time augmentation in: the artifact averages each image and its mirror image, and
    is checked against the model's probabilities averaged the same way
    (`kvt.saving.classify`). On a failed check nothing is left at `out` (an existing
    artifact there stays as it was) and `ModelError` says by how much it failed. Call on
    the TensorFlow backend.
    """
    import keras
    import numpy as np

    from kvt.saving import classify

    if keras.backend.backend() != "tensorflow":
        raise BackendError(f"exporting runs on the TensorFlow backend, not "
                           f"{keras.backend.backend()}: run kvt export in its own process")
    pixels = np.asarray(pixels, dtype=np.float32)
    reference = classify(model, pixels, meta, tta, batch_size=BATCH)
    wrapper = taking_pixels(model, meta, tta)
    wrapper(pixels[:1])  # a model never called has no input signature for ONNX
    spec = FORMATS[fmt]
    result: list[Check] = []

    def write(tmp: Path) -> None:
        with quiet():
            try:
                wrapper.export(str(tmp), format=spec.keras_format, verbose=False,
                               **_converter_options(quantize, representative))
            except Exception as e:
                unwritable(e, out)
                raise ModelError(f"{spec.title} export of {model.name} failed: "
                                 f"{first_line(e)}") from None
            try:
                got = predict(fmt, tmp, pixels)
            except Exception as e:
                unwritable(e, out)
                raise ModelError(f"the exported {spec.title} model does not run in "
                                 f"{spec.runtime} ({first_line(e)}); nothing was exported") \
                    from None
        check = compare(reference, got, labels, f"{spec.runtime} {_version(spec.runtime)}",
                        quantize)
        if not check.passed:
            raise ModelError(f"the exported {spec.title} model does not match the Keras "
                             f"model, so nothing was exported: {check.line()}")
        result.append(check)

    try:
        write_atomic(out, write)
    except OSError as e:  # the rename into place, or a write outside the exporter
        unwritable(e, out)
        raise
    return result[0]


# What a full or unwritable disk says, as an OSError's errno or, from TensorFlow's C++
# file writers (a SavedModel's SaveV2 op), only in the text of a framework error.
DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)
DISK_WORDS = tuple(os.strerror(code) for code in DISK_ERRNOS[:4])


def unwritable(e: BaseException, out: Path) -> None:
    """Raises `RunError` (one line, no framework text) if `e`, or an error it came
    from, is a full or unwritable disk: not the model's fault, and fixed by space."""
    seen: BaseException | None = e
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in DISK_ERRNOS:
            reason = seen.strerror or os.strerror(seen.errno)
            break
        reason = next((w for w in DISK_WORDS if w in str(seen)), None)
        if reason:
            break
        seen = seen.__cause__ or seen.__context__
    else:
        return
    raise RunError(f"cannot write {out} ({reason}): nothing was exported; free space or "
                   f"fix permissions there, or choose another --out") from None


def taking_pixels(model, meta: dict[str, Any], tta: str = "none"):
    """`model` behind a `Rescaling` by the model file's input scale: a model of 0..255
    pixels, whose input is named `pixels`. With `tta="flip"` it returns the average of the
    model's probabilities for the image and for its left-right mirror image."""
    import keras

    from kvt.saving import input_scale

    inputs = keras.Input(model.input_shape[1:], dtype="float32", name="pixels")
    # float32(scale) * x, as kvt.saving.to_inputs computes it (plus an offset of 0)
    scaled = keras.layers.Rescaling(input_scale(meta), name="input_scale")(inputs)
    probs = model(scaled)
    if tta == "flip":  # (batch, height, width, channels): axis 2 is left-right
        mirrored = keras.ops.flip(scaled, axis=2)
        probs = keras.layers.Average(name="flip_tta")([probs, model(mirrored)])
    return keras.Model(inputs, probs, name=model.name)


def _converter_options(quantize: str | None, representative) -> dict[str, Any]:
    if quantize is None:
        return {}
    import numpy as np
    import tensorflow as tf

    def calibration() -> Iterator[list[np.ndarray]]:
        for image in representative:
            yield [np.asarray(image, dtype=np.float32)[None]]

    # Weights and activations in int8 where LiteRT has int8 kernels; the input and output
    # stay float32, so that the artifact is called as the float one is.
    return {"optimizations": [tf.lite.Optimize.DEFAULT], "representative_dataset": calibration}


def compare(reference, got, labels, runtime: str, quantized: str | None = None) -> Check:
    import numpy as np

    top, got_top = reference.argmax(axis=1), got.argmax(axis=1)
    return Check(runtime=runtime, images=len(reference),
                 max_abs_diff=float(np.abs(got.astype(np.float64) - reference).max()),
                 agree=int((top == got_top).sum()),
                 keras_accuracy=float((top == labels).mean()),
                 accuracy=float((got_top == labels).mean()), quantized=quantized)


# --- running an artifact in its runtime -------------------------------------------------

def predict(fmt: str, path: Path, pixels) -> Any:
    """The probabilities the artifact at `path` gives for `pixels`, run by its own runtime
    in batches of 1, 7, then `BATCH` at a time."""
    import numpy as np

    run = runner(fmt, path)
    starts = [0]
    for size in CHECK_BATCHES:
        starts.append(starts[-1] + size)
    while starts[-1] < len(pixels):
        starts.append(starts[-1] + BATCH)
    return np.concatenate([run(np.ascontiguousarray(pixels[a:b]))
                           for a, b in zip(starts, starts[1:]) if a < len(pixels)])


def _saved_model(path: Path) -> Callable:
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))  # kept: its variables die with it
    return lambda x: loaded.serve(tf.constant(x)).numpy()


def _onnx(path: Path) -> Callable:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = _threads()
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})[0]


def _litert(path: Path) -> Callable:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=_threads() or None)
    source = interpreter.get_input_details()[0]["index"]
    target = interpreter.get_output_details()[0]["index"]

    def run(x):
        if tuple(interpreter.get_input_details()[0]["shape"]) != x.shape:
            interpreter.resize_tensor_input(source, x.shape)
            interpreter.allocate_tensors()
        interpreter.set_tensor(source, x)
        interpreter.invoke()
        return interpreter.get_tensor(target).copy()

    interpreter.allocate_tensors()
    return run


def runner(fmt: str, path: str | Path) -> Callable:
    """The artifact at `path` loaded in its runtime: a function from a float32 batch of
    0..255 pixels to its probabilities (numpy arrays)."""
    return {"saved_model": _saved_model, "onnx": _onnx, "litert": _litert}[fmt](Path(path))


def _threads() -> int:
    """--threads (OMP_NUM_THREADS) for runtimes that take a thread count; 0 lets them
    choose."""
    try:
        return max(0, int(os.environ.get("OMP_NUM_THREADS", "0")))
    except ValueError:
        return 0


# --- helpers ----------------------------------------------------------------------------

@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Converters' and runtimes' chatter off: C++ log lines, tf2onnx's logging, Keras'
    numpy-2 shim for tf2onnx (a FutureWarning)."""
    from kvt.backends import filtered_stderr

    loggers = [logging.getLogger(name) for name in ("tf2onnx", "root")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings(), filtered_stderr(_NOISE):
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "?"
