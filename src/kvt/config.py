"""Training configuration: one dataclass, checked field by field, and its JSON round trip.

The resolved config is what a run saves and what a later `kvt evaluate` or `kvt compare`
reads back; its defaults are the "seed" recipe's (`kvt.recipes`). Errors name the config
field (`batch_size must be ...`) and carry the sentence with flags for the CLI (`refuse`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path
from typing import Any, Callable

from kvt.backends import DEFAULT_BACKEND, FRAMEWORKS
from kvt.errors import BackendError, KvtError, ModelError, UsageError

APIS = ("keras", "tf")
BACKENDS = tuple(FRAMEWORKS)  # tensorflow, jax, torch
# Hidden activations by name; "crelu" doubles the channels it sees. Any other
# activation is a user function named "module.path:function".
ACTIVATIONS = ("relu", "crelu", "elu", "gelu", "swish")
# What the layers compute in: "float32" (the tutorial's), or "bf16" (Keras'
# `mixed_bfloat16` policy: bfloat16 compute, float32 variables, the softmax in float32).
PRECISIONS = ("float32", "bf16")
CHANNELS = (1, 3)  # what images are converted to: grayscale or RGB
# The smallest side is the model family's (`kvt.models.min_side`); the largest, one cap for
# all: MiniVGGNet's first dense layer has 64 * (side / 4)**2 * 512 weights, 2.1 billion
# (8.6 GB of float32) at 1024; a larger side would end in an out-of-memory traceback.
MAX_IMAGE_SIDE = 1024
# How the learning rate moves: "keras2" is Keras 2's per-step inverse-time decay (the
# tutorial's), "warmup-cosine" rises linearly from 0 to --lr over --warmup-epochs, then
# follows a cosine down to 0 at the last step.
SCHEDULES = ("keras2", "warmup-cosine")
# Training-set augmentation, drawn per epoch from (seed, epoch) in NumPy before the
# epoch's batches are made, so the model (and its jit) is untouched and a resumed run
# sees the same images: "flip" mirrors half the images left-right, "flip-translate"
# also shifts each image by up to TRANSLATE pixels each way (reflected borders).
AUGMENTS = ("none", "flip", "flip-translate")
# Test-time augmentation, wherever a trained model is judged or used (the run's final
# evaluation, kvt evaluate, predict and export): "none" classifies each image once, "flip"
# averages the class probabilities of the image and its left-right mirror image. The
# per-epoch validation in history.csv is always the single pass.
TTAS = ("none", "flip")
# How one run spreads over several devices of one machine: "none"; "mirrored",
# TensorFlow's MirroredStrategy; "data-parallel", Keras' DataParallel distribution on
# JAX. "multi-worker" (several machines) is refused with the reason: see DISTRIBUTE_REFUSED.
DISTRIBUTES = ("none", "mirrored", "data-parallel", "multi-worker")
DISTRIBUTE_BACKEND = {"mirrored": "tensorflow", "data-parallel": "jax"}
DISTRIBUTE_REFUSED = {
    "multi-worker": "TensorFlow's MultiWorkerMirroredStrategy fails inside Keras 3's trainer "
                    "(keras-team/keras#20585, tensorflow#72388); for several machines run a "
                    "sweep's runs on them with kvt compare --executor ray",
    "torch": "Keras' PyTorch trainer has no data-parallel mode: PyTorch's "
             "DistributedDataParallel needs a training loop of its own",
}
MAX_SEED = 2**32 - 1  # NumPy's np.random.seed (Keras' set_random_seed calls it)
FUNCTION_PATTERN = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


@dataclasses.dataclass
class TrainConfig:
    """Everything that decides what a training run computes.

    Args:
        model: registered model family name, or a user's builder as
            `"module.path:function"` (`kvt.models.user`). Defaults to `"minivggnet"`.
        api: `"keras"` (portable Keras 3 code) or `"tf"` (the `tf.keras` model that
            calls TensorFlow ops directly). Defaults to `"keras"`.
        activation: hidden activation: `"relu"`, `"crelu"` (the tutorial's placement),
            `"elu"`, `"gelu"`, `"swish"`, or a user function as `"module:function"`.
        native_ops: compute the built-in activations with the backend's own ops
            (`tf.nn.crelu`, `jax.nn.relu`, `torch.relu`, ...) instead of `keras.ops`.
        backend: Keras backend, chosen before Keras is imported.
        dataset: a name of `kvt.data.NAMED` (`"cifar10"`, `"cifar100"`,
            `"cifar100-coarse"`, `"mnist"`, `"fashion_mnist"`, `"digits"`) or a path to an
            image-folder dataset.
        data_dir: where the dataset's official files lie; `None`: `KVT_DATA_DIR`, the
            Keras cache, a download.
        image_size: resize images of a folder dataset to this side length (at least the
            model family's `kvt.models.min_side`, at most `MAX_IMAGE_SIDE`).
        channels: convert the images to 1 (grayscale) or 3 (RGB) channels, as Pillow
            converts a folder's images; `None` keeps the dataset's own (MNIST: 1).
        train_limit, test_limit: use only this many images (a seeded, stratified
            slice), for quick trials and tests. `None` uses all. `test_limit` limits
            whichever split the run is judged on (test, or validation with `val_split`).
        val_split: hold out this fraction of the training images (stratified, the same
            images for every seed) and judge the run on them instead of the test set,
            so that choices can be made without touching the test set.
        epochs, batch_size, lr, decay, momentum: the optimiser recipe. `decay=None` is
            the tutorial's `lr / epochs`, worked out when used (`resolved_decay`), so a
            saved config given other epochs still follows the formula.
        nesterov: Nesterov momentum.
        schedule, warmup_epochs: `"keras2"` (the per-step `decay` above) or
            `"warmup-cosine"` (linear warm-up over `warmup_epochs`, then cosine to 0).
        weight_decay: Keras' decoupled weight decay (each step shrinks every weight by
            `lr * weight_decay`).
        label_smoothing: the categorical cross-entropy's label smoothing.
        augment, tta: training and test-time augmentation (`AUGMENTS`, `TTAS`).
        distribute, devices: spread each step's batch over `devices` devices of this
            machine (`DISTRIBUTES`): `"mirrored"` on TensorFlow, `"data-parallel"` on
            JAX; without GPUs, `devices` logical CPU devices are made (for tests).
            `batch_size` stays the global batch.
        seed: seeds Python, NumPy and the backend.
        deterministic: ask the backend for deterministic kernels, so that two runs
            with the same seed, backend and machine give identical results.
        recipe: the name of the `kvt.recipes` recipe the defaults came from.
        precision: `"float32"`, or `"bf16"` to compute in bfloat16 with float32
            variables and a float32 softmax (Keras' `mixed_bfloat16`).
        steps_per_execution: training steps per call into the compiled step (Keras'
            compile option): fewer returns to Python per epoch. TensorFlow and JAX only.
    """

    # The defaults are the "seed" recipe's (kvt.recipes.SEED; a test holds them equal).
    model: str = "minivggnet"
    api: str = "keras"
    activation: str = "relu"
    native_ops: bool = False
    backend: str = DEFAULT_BACKEND
    dataset: str = "cifar10"
    data_dir: str | None = None
    image_size: int | None = None
    train_limit: int | None = None
    test_limit: int | None = None
    val_split: float | None = None
    epochs: int = 30
    batch_size: int = 32
    lr: float = 0.01
    decay: float | None = None
    momentum: float = 0.0
    seed: int = 42
    deterministic: bool = False
    recipe: str = "seed"
    precision: str = "float32"
    steps_per_execution: int = 1
    nesterov: bool = False
    schedule: str = "keras2"
    warmup_epochs: float = 0.0
    weight_decay: float = 0.0
    label_smoothing: float = 0.0
    augment: str = "none"
    tta: str = "none"
    distribute: str = "none"
    devices: int | None = None
    channels: int | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raises `UsageError` (`ModelError`, `BackendError`) naming the first field that
        holds nonsense on its own, then the first fields that do together."""
        for field in dataclasses.fields(self):
            check_field(field.name, getattr(self, field.name))
        self._check_combinations()

    def _check_combinations(self) -> None:
        if self.api == "tf" and self.backend != "tensorflow":
            raise refuse(UsageError, lambda n: (
                f"{n('api')} tf builds a tf.keras model that calls TensorFlow ops, so it needs "
                f"{n('backend')} tensorflow (got {n('backend')} {self.backend}); use {n('api')} "
                f"keras for the portable model"))
        if self.steps_per_execution > 1 and self.backend == "torch":
            raise refuse(UsageError, lambda n: (
                f"{n('steps_per_execution')} {self.steps_per_execution} needs {n('backend')} "
                f"tensorflow or jax: Keras' PyTorch trainer runs one step per call"))
        self._check_distribute()
        if self.schedule != "keras2" and self.decay:
            raise refuse(UsageError, lambda n: (
                f"{n('decay')} {self.decay:g} is Keras 2's decay, part of {n('schedule')} keras2; "
                f"{n('schedule')} {self.schedule} sets the learning rate itself: drop "
                f"{n('decay')} or set {n('decay')} 0"))
        if self.warmup_epochs > self.epochs:
            raise refuse(UsageError, lambda n: (
                f"{n('warmup_epochs')} {self.warmup_epochs:g} is longer than the {self.epochs} "
                f"epochs of training: make it at most {n('epochs')}"))
        if self.warmup_epochs and self.schedule != "warmup-cosine":
            raise refuse(UsageError, lambda n: (
                f"{n('warmup_epochs')} applies to {n('schedule')} warmup-cosine, not "
                f"{self.schedule}"))

    def _check_distribute(self) -> None:
        if self.devices is not None and self.distribute == "none":
            raise refuse(UsageError, lambda n: (
                f"{n('devices')} {self.devices} spreads a run over devices: give "
                f"{n('distribute')} mirrored (TensorFlow) or data-parallel (JAX)"))
        if self.distribute == "none":
            return
        needed = DISTRIBUTE_BACKEND[self.distribute]
        if self.backend == "torch":
            raise refuse(BackendError, lambda n: (
                f"{n('distribute')} {self.distribute} needs {n('backend')} {needed}: "
                f"{DISTRIBUTE_REFUSED['torch']}"))
        if self.backend != needed:
            other = next(d for d, b in DISTRIBUTE_BACKEND.items() if b == self.backend)
            raise refuse(BackendError, lambda n: (
                f"{n('distribute')} {self.distribute} runs on {n('backend')} {needed}; on "
                f"{self.backend} use {n('distribute')} {other}"))
        if self.distribute == "data-parallel" and self.devices and \
                self.batch_size % self.devices:
            raise refuse(UsageError, lambda n: (
                f"{n('batch_size')} {self.batch_size} does not split evenly over "
                f"{n('devices')} {self.devices}: data-parallel gives every device the same "
                f"share; choose a multiple of {self.devices}"))

    @property
    def resolved_decay(self) -> float:
        """The per-step decay training uses: `decay`, or `lr / epochs` when it is None."""
        if self.schedule != "keras2":
            return 0.0
        return self.lr / self.epochs if self.decay is None else self.decay

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        if not isinstance(values, dict):
            raise UsageError(f"a config must be a JSON object of fields (\"epochs\": 30, "
                             f"...), got {json_kind(values)}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UsageError(f"unknown config keys {unknown}: known keys are {sorted(known)}")
        return cls(**values)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        return cls.from_dict(json.loads(text))

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        """Reads the `config` section of a run's config.json (or a bare config)."""
        data = json.loads(Path(path).read_text())
        if isinstance(data, dict) and "config" in data:  # a run's config.json
            data = data["config"]
        return cls.from_dict(data)


# What each field of a config holds, as JSON writes it: a config file is checked field by
# field before anything loads, so "false" (a string) never turns a flag on and a null
# dataset never reaches the data loader.
FIELD_KINDS: dict[str, tuple[str, bool]] = {  # field: (kind, None allowed)
    "model": ("name", False), "api": ("name", False), "activation": ("name", False),
    "native_ops": ("boolean", False), "backend": ("name", False),
    "dataset": ("name", False), "data_dir": ("name", True),
    "image_size": ("integer", True), "train_limit": ("integer", True),
    "test_limit": ("integer", True), "val_split": ("number", True),
    "epochs": ("integer", False), "batch_size": ("integer", False),
    "lr": ("number", False), "decay": ("number", True), "momentum": ("number", False),
    "seed": ("integer", False), "deterministic": ("boolean", False),
    "recipe": ("name", False), "precision": ("name", False),
    "steps_per_execution": ("integer", False), "nesterov": ("boolean", False),
    "schedule": ("name", False), "warmup_epochs": ("number", False),
    "weight_decay": ("number", False), "label_smoothing": ("number", False),
    "augment": ("name", False), "tta": ("name", False), "distribute": ("name", False),
    "devices": ("integer", True), "channels": ("integer", True),
}
_KIND_WORDS = {"name": "a non-empty string",
               "boolean": "true or false (a JSON boolean, not a string or number)",
               "integer": "a whole number", "number": "a number"}


def check_field_type(field: str, value: Any) -> None:
    """Raises `UsageError` naming the config field, its value and what it may hold,
    unless `value` has the field's JSON type (what it may hold, `check_field`'s)."""
    kind, nullable = FIELD_KINDS[field]
    if value is None and nullable:
        return
    ok = {"name": lambda v: isinstance(v, str) and v != "",
          "boolean": lambda v: isinstance(v, bool),
          "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
          "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
          }[kind](value)
    if not ok:
        allowed = _KIND_WORDS[kind] + (" or null" if nullable else "")
        raise UsageError(f"config field {field!r} must be {allowed}, got "
                         f"{json.dumps(value) if _jsonable(value) else repr(value)}")


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
        return True
    except (TypeError, ValueError):
        return False


def json_kind(value: Any) -> str:
    """How JSON names the type of `value` ("a list", "a string", ...)."""
    for kind, words in ((dict, "an object"), (list, "a list"), (str, "a string"),
                        (bool, "a boolean"), ((int, float), "a number")):
        if isinstance(value, kind):
            return words
    return "null" if value is None else type(value).__name__


# What a field may hold on its own, beyond its JSON type: one of a few names, a count, a
# number in a range (low, high or None, whether low itself is allowed).
CHOICES = {"api": APIS, "backend": BACKENDS, "precision": PRECISIONS, "schedule": SCHEDULES,
           "augment": AUGMENTS, "tta": TTAS, "distribute": DISTRIBUTES}
COUNTS = ("epochs", "batch_size", "steps_per_execution", "image_size", "train_limit",
          "test_limit", "devices")
RANGES = {"val_split": (0.0, 1.0, False), "lr": (0.0, None, False), "decay": (0.0, None, True),
          "momentum": (0.0, 1.0, True), "warmup_epochs": (0.0, None, True),
          "weight_decay": (0.0, 1.0, True), "label_smoothing": (0.0, 1.0, True)}


def check_field(field: str, value: Any) -> None:
    """Raises `UsageError` (`ModelError` for an activation, `BackendError` for a refused
    distribution) unless `value` is one that config field `field` may hold on its own;
    which fields go together is `TrainConfig.validate`'s."""
    check_field_type(field, value)
    if value is None:  # a field that may be left unset (check_field_type refused the rest)
        return
    if field == "channels" and value not in CHANNELS:
        raise refuse(UsageError, lambda n: f"{n(field)} must be 1 (grayscale) or 3 (RGB), got "
                                           f"{value!r}")
    if field in CHOICES and value not in CHOICES[field]:
        raise refuse(UsageError, lambda n: f"unknown {n(field)} {value!r}: choose one of "
                                           f"{', '.join(CHOICES[field])}")
    if field == "distribute" and value in DISTRIBUTE_REFUSED:
        raise refuse(BackendError, lambda n: f"{n(field)} {value} is not supported: "
                                             f"{DISTRIBUTE_REFUSED[value]}")
    if field == "activation":
        check_activation(value)
    if field in COUNTS and value <= 0:
        raise refuse(UsageError, lambda n: f"{n(field)} must be a positive integer, got "
                                           f"{value!r}")
    if field == "image_size" and value > MAX_IMAGE_SIDE:
        raise refuse(UsageError, lambda n: f"{n(field)} must be at most {MAX_IMAGE_SIDE} "
                                           f"(8.6 GB of weights in MiniVGGNet's first dense "
                                           f"layer at {MAX_IMAGE_SIDE}), got {value}")
    if field in RANGES:
        _check_range(field, value, *RANGES[field])
    if field == "seed" and not _seed_ok(value):
        raise refuse(UsageError, lambda n: _seed_words(n(field), value))


def flag(field: str) -> str:
    """The command-line flag of config field `field`: `batch_size` -> `--batch-size`."""
    return "--" + field.replace("_", "-")


def refuse(kind: type[KvtError], say: Callable[[Callable[[str], str]], str]) -> KvtError:
    """A `kind` error whose message is `say(name)`, `name` spelling each config field as
    the field (`batch_size`). Its `flag_message` is the same sentence with the flags
    (`--batch-size`): the CLI shows it where the values came from flags."""
    error = kind(say(lambda field: field))
    error.flag_message = say(flag)
    return error


def check_seed(seed: Any, label: str = "seed") -> None:
    """Raises `UsageError` unless `seed` is an integer every engine accepts; `label`
    names it in the message."""
    if not _seed_ok(seed):
        raise UsageError(_seed_words(label, seed))


def _seed_ok(seed: Any) -> bool:
    return isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed <= MAX_SEED


def _seed_words(label: str, seed: Any) -> str:
    return f"{label} must be an integer from 0 to {MAX_SEED} (2**32-1, NumPy's seed range), " \
           f"got {seed!r}"


def check_activation(activation: str) -> None:
    """Raises `ModelError` unless `activation` is a known name or "module:function"."""
    if activation not in ACTIVATIONS and not FUNCTION_PATTERN.match(activation):
        raise ModelError(f"unknown activation {activation!r}: choose one of "
                         f"{', '.join(ACTIVATIONS)}, or name your own function as "
                         f"module.path:function")


def check_positive(label: str, value: Any) -> None:
    """The one positive-integer check, for counts that are not config fields (the CLI's
    `--jobs`, ...); `label` names the value in the message."""
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise UsageError(f"{label} must be a positive integer, got {value!r}")


def _check_range(field: str, value: float, low: float, high: float | None,
                 low_inclusive: bool) -> None:
    ok = math.isfinite(value) and (value >= low if low_inclusive else value > low)
    if ok and high is not None:
        ok = value < high
    if not ok:
        bound = f"{'>=' if low_inclusive else '>'} {low}"
        if high is not None:
            bound += f" and < {high}"
        raise refuse(UsageError, lambda n: f"{n(field)} must be a finite number {bound}, got "
                                           f"{value!r}")
