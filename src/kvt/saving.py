"""Model files: a trained model saved as `.keras` with kvt's metadata, and loaded back.

kvt adds one entry to Keras' archive, `kvt.json` (`model_meta`): the class names, the
input shape and scaling, and the config and dataset the model was trained with. The
input scaling is defined here once: training records `SCALE`, and `to_inputs` applies
the scale a file records to the 0..255 images that kvt's datasets hold. `load_model`
uses Keras' safe mode with kvt's layers registered and turns the error of a damaged,
foreign or unsafe file into one line. Importing this module imports no framework;
`load_model` imports Keras (call it after the backend is selected).
"""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kvt._version import __version__
from kvt.errors import ModelError, RunError, first_line
from kvt.runs import RunDir, model_source, write_atomic

if TYPE_CHECKING:
    from kvt.config import TrainConfig
    from kvt.data import Dataset

MODEL_META = "kvt.json"  # kvt's entry inside model.keras: class names, input scaling
SCALE = 1.0 / 255.0  # images are stored as 0..255 and fed to the model in [0, 1]


# --- input scaling ----------------------------------------------------------------------

def input_scale(meta: dict[str, Any] | None = None) -> float:
    """The input scale that a model file's metadata `meta` records (`SCALE`, what
    training uses, when `meta` is None or records none, as files of older kvt versions
    do)."""
    return SCALE if meta is None else meta.get("scale", SCALE)


def to_inputs(images: np.ndarray, meta: dict[str, Any] | None = None) -> np.ndarray:
    """Stored 0..255 images as model inputs: float32, times `input_scale(meta)`."""
    return images.astype(np.float32) * np.float32(input_scale(meta))


def model_tta(meta: dict[str, Any], tta: str | None = None) -> str:
    """The test-time augmentation to use: `tta` when given, else the one the model was
    trained and judged with (`"none"` for files of kvt versions that recorded none)."""
    return tta or meta.get("tta", "none")


def classify(model, images: np.ndarray, meta: dict[str, Any], tta: str,
             batch_size: int | None = None) -> np.ndarray:
    """Class probabilities of 0..255 `images` from a loaded model, under test-time
    augmentation `tta` (`kvt.augment.tta_probs`)."""
    from kvt.augment import tta_probs

    def predict(x: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict(x, batch_size=batch_size, verbose=0))

    x = to_inputs(images, meta)
    return tta_probs(predict(x), predict, x, tta)


def model_meta(config: TrainConfig, dataset: Dataset) -> dict[str, Any]:
    """What `predict` and `evaluate` need besides the weights, stored in model.keras."""
    return {"class_names": dataset.class_names, "input_shape": list(dataset.input_shape),
            "scale": SCALE, "api": config.api, "model": config.model,
            "activation": config.activation, "native_ops": config.native_ops,
            "backend": config.backend,
            "dataset": config.dataset, "data_dir": config.data_dir,
            "image_size": config.image_size, "channels": config.channels, "tta": config.tta,
            "kvt": __version__,
            **model_source(config)}


# --- saving -----------------------------------------------------------------------------

def save_model(model, path: str | Path, meta: dict[str, Any]) -> Path:
    """Saves `model` as .keras with kvt's metadata (class names, scaling) inside."""
    def write(tmp: Path) -> None:
        model.save(tmp)
        # Keras reads only its own entries of the archive, so an extra one is harmless
        # and keeps the class names with the weights wherever the file goes.
        with zipfile.ZipFile(tmp, "a") as z:
            z.writestr(MODEL_META, json.dumps(meta, indent=2, sort_keys=True))
    return write_atomic(path, write)


def read_model_meta(path: str | Path) -> dict[str, Any]:
    try:
        with zipfile.ZipFile(path) as z:
            if MODEL_META not in z.namelist():
                return {}
            return json.loads(z.read(MODEL_META))
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise ModelError(f"{path} is not a readable .keras model file ({e}): check the path") from None


# --- loading ----------------------------------------------------------------------------

def resolve_model_path(target: str | Path) -> Path:
    """A model.keras path from either a run directory or the file itself."""
    target = Path(target)
    if target.is_dir():
        RunDir(target).require_complete()
        return target / "model.keras"
    if not target.is_file():
        raise RunError(f"{target} does not exist: pass a run directory or a model.keras file")
    if target.suffix != ".keras":
        raise ModelError(f"{target} is not a .keras model file: pass a run directory or a .keras file")
    return target


def load_model(path: str | Path, unsafe: bool = False, imports: list[str] = ()):
    """Loads a .keras model in Keras' safe mode; returns (model, kvt metadata).

    `imports` are modules the user trusts to provide the functions of the model's
    `--activation module:function` layers. Imports the framework: call after the
    backend is selected.
    """
    import importlib

    import keras

    import kvt.layers  # noqa: F401  (registers kvt's layers, TFCReLU on TensorFlow)

    for module in imports:
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise ModelError(f"cannot import --import {module} ({e}): check that it is "
                             f"installed or on PYTHONPATH") from None
    path = Path(path)
    meta = read_model_meta(path)
    _check_scale(path, meta)
    if meta.get("api") == "tf":
        if keras.backend.backend() != "tensorflow":
            raise ModelError(
                f"{path} is a tf.keras model that calls TensorFlow ops: load it with "
                f"--backend tensorflow"
            )
    try:
        model = keras.saving.load_model(path, safe_mode=not unsafe)
    except Exception as e:
        error = _needs_import(path, meta, e, imports) or _loading_error(path, e)
        if error is None:
            raise
        raise error from None
    return model, meta


def _check_scale(path: Path, meta: dict[str, Any]) -> None:
    """Refuses a recorded input scale that `to_inputs` could not apply."""
    scale = meta.get("scale", SCALE)
    if (not isinstance(scale, (int, float)) or isinstance(scale, bool)
            or not math.isfinite(scale) or scale <= 0):
        raise ModelError(f"{path} records the input scale {scale!r}, not a positive number: "
                         f"the file is damaged; retrain or re-save it")


def _needs_import(path: Path, meta: dict[str, Any], e: Exception,
                  imports: list[str]) -> ModelError | None:
    """A model of a user builder's own layers, loaded without its module: which --import
    to pass. (A model of standard and registered layers needs no import.)"""
    from kvt.models.user import needed_import

    module = needed_import(meta)
    text = str(e)
    if module is None or module in imports or not (
            "Could not locate" in text or "register_keras_serializable" in text):
        return None
    return ModelError(f"cannot load {path}: its model uses layers of {module}, the module of "
                      f"its builder: pass --import {module} if you trust it (it must be on "
                      f"PYTHONPATH or in the current folder)")


def _loading_error(path: Path, e: Exception) -> ModelError | None:
    """One line for why Keras could not load `path`, from the innermost known cause;
    None for an error kvt does not recognise (a bug keeps its traceback)."""
    from kvt.layers import UnresolvableFunction

    cause: BaseException | None = e
    while cause is not None:  # Keras wraps a layer's error in its own TypeErrors
        if isinstance(cause, UnresolvableFunction):
            return ModelError(f"cannot load {path}: {cause}")
        cause = cause.__cause__ or cause.__context__
    text = str(e)
    if isinstance(e, ValueError) and ("safe_mode" in text or "lambda" in text.lower()):
        return ModelError(
            f"{path} needs arbitrary Python code to load (for example a Lambda layer), "
            f"which safe mode refuses: load it only if you trust its source, with --unsafe")
    if isinstance(e, (ValueError, TypeError, OSError, KeyError, zipfile.BadZipFile)):
        return ModelError(f"cannot load {path}: {first_line(e)}")
    return None
