"""Training configuration: one dataclass, named recipes, JSON round trip.

A recipe is a named set of hyperparameters; every value can then be overridden one by
one (the command line does this). The resolved config is what a run saves and what a
later `kvt evaluate` or `kvt compare` reads back.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path
from typing import Any

from kvt.backends import DEFAULT_BACKEND, FRAMEWORKS
from kvt.errors import BackendError, ModelError, UsageError

RECIPES: dict[str, dict[str, Any]] = {
    # The tutorial's recipe ("Keras vs. TensorFlow", 2018): MiniVGGNet on CIFAR-10.
    # 73.74 +- 1.42% test accuracy with ReLU, 76.81 +- 0.41% with CReLU (n=5); 2-core AMD
    # EPYC and Intel Xeon, TensorFlow 2.21, 2026-12-04 to 12-07: results/tutorial-2x2/seed.
    "seed": {
        "epochs": 30,  # passes over the training set
        "batch_size": 32,  # images per SGD step
        "lr": 0.01,  # initial learning rate
        # Keras-2 per-step decay, lr_t = lr / (1 + decay * t); None follows the tutorial's
        # `decay = INIT_LR / EPOCHS` (0.01/30 at 30 epochs) whatever lr and epochs are.
        "decay": None,
        "momentum": 0.0,  # plain SGD
        "nesterov": False,
        "schedule": "keras2",
        "warmup_epochs": 0.0,
        "weight_decay": 0.0,
        "label_smoothing": 0.0,
        "augment": "none",  # the tutorial trained on the images as they are
        "tta": "none",  # and judged each test image once
    },
    # A modern schedule for the same network; fixed, so the test set never decides a stop.
    # 78.50 +- 3.02% test accuracy (n=4), 10.5 s of training per run; one NVIDIA H100, JAX
    # 0.11.2, 2026-11-27 (benchmarks/gpu.sh; its files are not kept in results/).
    "fast": {
        "epochs": 15,
        "batch_size": 512,
        "lr": 0.1,  # the peak, reached at the end of the warm-up
        "decay": 0.0,  # no Keras-2 decay: the schedule below replaces it
        "momentum": 0.9,
        "nesterov": True,
        "schedule": "warmup-cosine",
        "warmup_epochs": 1.0,
        "weight_decay": 5e-4,
        "label_smoothing": 0.1,
        "augment": "flip-translate",
        "tta": "none",
    },
    # The fast recipe sized for a CPU: QuickNet, 2 epochs, flip test-time augmentation.
    # 74.83 +- 1.25% test accuracy (n=5), 223-280 s per whole run; 2-core AMD EPYC (no
    # AVX-512), TensorFlow 2.21, 2026-12-03: results/fast-cpu.
    "fast-cpu": {
        "model": "quicknet",
        "epochs": 2,
        "batch_size": 256,
        "lr": 0.2,  # chosen for ReLU (on the test set): CReLU does worse with it
        "decay": 0.0,
        "momentum": 0.9,
        "nesterov": True,
        "schedule": "warmup-cosine",
        "warmup_epochs": 0.3,
        "weight_decay": 5e-4,
        "label_smoothing": 0.1,
        "augment": "flip-translate",
        "tta": "flip",  # judge each image and its mirror image together
    },
}

APIS = ("keras", "tf")
BACKENDS = tuple(FRAMEWORKS)  # tensorflow, jax, torch
# Hidden activations by name; "crelu" doubles the channels it sees. Any other
# activation is a user function named "module.path:function".
ACTIVATIONS = ("relu", "crelu", "elu", "gelu", "swish")
# What the layers compute in: "float32" (the tutorial's), or "bf16" (Keras'
# `mixed_bfloat16` policy: bfloat16 compute, float32 variables, the softmax in float32).
PRECISIONS = ("float32", "bf16")
# What --channels converts images to: grayscale or RGB.
CHANNELS = (1, 3)
# MiniVGGNet halves the image twice (2x2 max pooling): a side below 4 pools to nothing.
MIN_IMAGE_SIDE = 4
# Its first dense layer has 64 * (side / 4)**2 * 512 weights: 2.1 billion (8.6 GB of
# float32) at 1024. A larger side would end in an out-of-memory traceback.
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
# NumPy (np.random.seed, which Keras' set_random_seed calls) takes seeds 0..2**32-1.
MAX_SEED = 2**32 - 1
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
        data_dir: where to look for the dataset's official files. `None` resolves
            `KVT_DATA_DIR`, then the Keras cache, then downloads.
        image_size: resize images of a folder dataset to this side length.
        channels: convert the images to 1 (grayscale) or 3 (RGB) channels, as Pillow
            converts a folder's images; `None` keeps the dataset's own (MNIST: 1).
        train_limit, test_limit: use only this many images (a seeded, stratified
            slice), for quick trials and tests. `None` uses all. `test_limit` limits
            whichever split the run is judged on (test, or validation with `val_split`).
        val_split: hold out this fraction of the training images (stratified, the same
            images for every seed) and judge the run on them instead of the test set,
            so that choices can be made without touching the test set.
        epochs, batch_size, lr, decay, momentum: the optimiser recipe. `decay=None`
            means the tutorial's `lr / epochs`, worked out when used (`resolved_decay`),
            so that a saved config given other epochs (`--config`, `compare --vary`)
            still follows the formula.
        nesterov: Nesterov momentum.
        schedule, warmup_epochs: `"keras2"` (the per-step `decay` above) or
            `"warmup-cosine"` (linear warm-up over `warmup_epochs`, then cosine to 0).
        weight_decay: Keras' decoupled weight decay (each step shrinks every weight by
            `lr * weight_decay`).
        label_smoothing: the categorical cross-entropy's label smoothing.
        augment: `"none"`, `"flip"` or `"flip-translate"` (see `AUGMENTS`).
        tta: test-time augmentation, `"none"` or `"flip"` (see `TTAS`).
        distribute, devices: spread each step's batch over `devices` devices of this
            machine (`DISTRIBUTES`): `"mirrored"` on TensorFlow, `"data-parallel"` on
            JAX; without GPUs, `devices` logical CPU devices are made (for tests).
            `batch_size` stays the global batch.
        seed: seeds Python, NumPy and the backend.
        deterministic: ask the backend for deterministic kernels, so that two runs
            with the same seed, backend and machine give identical results.
        recipe: the name of the recipe the defaults came from.
        precision: `"float32"`, or `"bf16"` to compute in bfloat16 with float32
            variables and a float32 softmax (Keras' `mixed_bfloat16`).
        steps_per_execution: training steps per call into the compiled step (Keras'
            compile option): fewer returns to Python per epoch. TensorFlow and JAX only.
    """

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
    epochs: int = RECIPES["seed"]["epochs"]
    batch_size: int = RECIPES["seed"]["batch_size"]
    lr: float = RECIPES["seed"]["lr"]
    decay: float | None = RECIPES["seed"]["decay"]
    momentum: float = RECIPES["seed"]["momentum"]
    seed: int = 42
    deterministic: bool = False
    recipe: str = "seed"
    precision: str = "float32"
    steps_per_execution: int = 1
    nesterov: bool = RECIPES["seed"]["nesterov"]
    schedule: str = RECIPES["seed"]["schedule"]
    warmup_epochs: float = RECIPES["seed"]["warmup_epochs"]
    weight_decay: float = RECIPES["seed"]["weight_decay"]
    label_smoothing: float = RECIPES["seed"]["label_smoothing"]
    augment: str = RECIPES["seed"]["augment"]
    tta: str = RECIPES["seed"]["tta"]
    distribute: str = "none"
    devices: int | None = None
    channels: int | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raises `UsageError` naming the first nonsense value."""
        for field in dataclasses.fields(self):
            check_field_type(field.name, getattr(self, field.name))
        if self.api not in APIS:
            raise UsageError(f"unknown --api {self.api!r}: choose one of {', '.join(APIS)}")
        if self.backend not in BACKENDS:
            raise UsageError(
                f"unknown --backend {self.backend!r}: choose one of {', '.join(BACKENDS)}"
            )
        if self.api == "tf" and self.backend != "tensorflow":
            raise UsageError(
                f"--api tf builds a tf.keras model that calls TensorFlow ops, so it needs "
                f"--backend tensorflow (got --backend {self.backend}); use --api keras "
                f"for the portable model"
            )
        check_activation(self.activation)
        if self.precision not in PRECISIONS:
            raise UsageError(f"unknown --precision {self.precision!r}: choose one of "
                             f"{', '.join(PRECISIONS)}")
        check_positive("steps-per-execution", self.steps_per_execution)
        if self.steps_per_execution > 1 and self.backend == "torch":
            raise UsageError(
                f"--steps-per-execution {self.steps_per_execution} needs --backend "
                f"tensorflow or jax: Keras' PyTorch trainer runs one step per call")
        check_positive("epochs", self.epochs)
        check_positive("batch-size", self.batch_size)
        self._check_distribute()
        for name in ("image_size", "train_limit", "test_limit"):
            value = getattr(self, name)
            if value is not None:
                check_positive(name.replace("_", "-"), value)
        if self.image_size is not None and self.image_size < MIN_IMAGE_SIDE:
            raise UsageError(
                f"--image-size must be at least {MIN_IMAGE_SIDE} ({self.model} halves the "
                f"image twice with 2x2 pooling), got {self.image_size}")
        if self.image_size is not None and self.image_size > MAX_IMAGE_SIDE:
            raise UsageError(
                f"--image-size must be at most {MAX_IMAGE_SIDE} ({self.model}'s first dense "
                f"layer grows with its square: 8.6 GB of weights at {MAX_IMAGE_SIDE}), got "
                f"{self.image_size}")
        if self.channels not in (None, *CHANNELS):
            raise UsageError(f"--channels must be 1 (grayscale) or 3 (RGB), got "
                             f"{self.channels!r}")
        if self.val_split is not None:
            _finite("val-split", self.val_split, low=0.0, high=1.0, low_inclusive=False)
        _finite("lr", self.lr, low=0.0, low_inclusive=False)
        if self.decay is not None:
            _finite("decay", self.decay, low=0.0)
        _finite("momentum", self.momentum, low=0.0, high=1.0)
        if self.schedule not in SCHEDULES:
            raise UsageError(f"unknown --schedule {self.schedule!r}: choose one of "
                             f"{', '.join(SCHEDULES)}")
        if self.schedule != "keras2" and self.decay:
            raise UsageError(f"--decay {self.decay:g} is Keras 2's decay, part of --schedule "
                             f"keras2; --schedule {self.schedule} sets the learning rate "
                             f"itself: drop --decay or pass --decay 0")
        _finite("warmup-epochs", self.warmup_epochs, low=0.0)
        if self.warmup_epochs > self.epochs:
            raise UsageError(f"--warmup-epochs {self.warmup_epochs:g} is longer than the "
                             f"{self.epochs} epochs of training: make it at most --epochs")
        if self.warmup_epochs and self.schedule != "warmup-cosine":
            raise UsageError(f"--warmup-epochs applies to --schedule warmup-cosine, not "
                             f"{self.schedule}")
        _finite("weight-decay", self.weight_decay, low=0.0, high=1.0)
        _finite("label-smoothing", self.label_smoothing, low=0.0, high=1.0)
        if self.augment not in AUGMENTS:
            raise UsageError(f"unknown --augment {self.augment!r}: choose one of "
                             f"{', '.join(AUGMENTS)}")
        check_tta(self.tta)
        check_seed(self.seed)

    def _check_distribute(self) -> None:
        if self.distribute not in DISTRIBUTES:
            raise UsageError(f"unknown --distribute {self.distribute!r}: choose one of "
                             f"{', '.join(DISTRIBUTES)}")
        if self.distribute in DISTRIBUTE_REFUSED:
            raise BackendError(f"--distribute {self.distribute} is not supported: "
                               f"{DISTRIBUTE_REFUSED[self.distribute]}")
        if self.devices is not None:
            check_positive("devices", self.devices)
            if self.distribute == "none":
                raise UsageError(f"--devices {self.devices} spreads a run over devices: give "
                                 f"--distribute mirrored (TensorFlow) or data-parallel (JAX)")
        if self.distribute == "none":
            return
        needed = DISTRIBUTE_BACKEND[self.distribute]
        if self.backend == "torch":
            raise BackendError(f"--distribute {self.distribute} needs --backend {needed}: "
                               f"{DISTRIBUTE_REFUSED['torch']}")
        if self.backend != needed:
            other = next(d for d, b in DISTRIBUTE_BACKEND.items() if b == self.backend)
            raise BackendError(f"--distribute {self.distribute} runs on --backend {needed}; "
                               f"on {self.backend} use --distribute {other}")
        if self.distribute == "data-parallel" and self.devices and \
                self.batch_size % self.devices:
            raise UsageError(f"--batch-size {self.batch_size} does not split evenly over "
                             f"--devices {self.devices}: data-parallel gives every device the "
                             f"same share; choose a multiple of {self.devices}")

    @property
    def resolved_decay(self) -> float:
        """The per-step decay training uses: `decay`, or `lr / epochs` when it is None."""
        if self.schedule != "keras2":
            return 0.0
        return self.lr / self.epochs if self.decay is None else self.decay

    @classmethod
    def from_recipe(cls, recipe: str = "seed", **overrides: Any) -> TrainConfig:
        """The named recipe with `overrides` applied; `None` overrides are ignored."""
        if recipe not in RECIPES:
            raise UsageError(
                f"unknown recipe {recipe!r}: choose one of {', '.join(sorted(RECIPES))}"
            )
        values = dict(RECIPES[recipe], recipe=recipe)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

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
_KIND_WORDS = {"name": "a string",
               "boolean": "true or false (a JSON boolean, not a string or number)",
               "integer": "a whole number", "number": "a number"}


def check_field_type(field: str, value: Any) -> None:
    """Raises `UsageError` naming the config field, its value and what it may hold,
    unless `value` has the field's JSON type (ranges are `TrainConfig.validate`'s)."""
    kind, nullable = FIELD_KINDS[field]
    if value is None and nullable:
        return
    ok = {
        "name": lambda v: isinstance(v, str) and v != "",
        "boolean": lambda v: isinstance(v, bool),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    }[kind](value)
    if not ok:
        allowed = _KIND_WORDS[kind] + (" or null" if nullable else "")
        if kind == "name":
            allowed = "a non-empty string" + (" or null" if nullable else "")
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


def check_seed(seed: Any, flag: str = "--seed") -> None:
    """Raises `UsageError` unless `seed` is an integer every engine accepts."""
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= MAX_SEED:
        raise UsageError(f"{flag} must be an integer from 0 to {MAX_SEED} (2**32-1, NumPy's "
                         f"seed range), got {seed!r}")


def check_tta(tta: str) -> None:
    """Raises `UsageError` unless `tta` is one of `TTAS`."""
    if tta not in TTAS:
        raise UsageError(f"unknown --tta {tta!r}: choose one of {', '.join(TTAS)}")


def check_activation(activation: str) -> None:
    """Raises `ModelError` unless `activation` is a known name or "module:function"."""
    if activation not in ACTIVATIONS and not FUNCTION_PATTERN.match(activation):
        raise ModelError(
            f"unknown activation {activation!r}: choose one of {', '.join(ACTIVATIONS)}, or "
            f"name your own function as module.path:function"
        )


def check_positive(name: str, value: Any) -> None:
    """The one positive-integer check, for config fields and CLI flags alike."""
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise UsageError(f"--{name} must be a positive integer, got {value!r}")


def _finite(
    name: str,
    value: Any,
    low: float,
    high: float | None = None,
    low_inclusive: bool = True,
) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = value >= low if low_inclusive else value > low
    if ok and high is not None:
        ok = value < high
    if not ok:
        bound = f"{'>=' if low_inclusive else '>'} {low}"
        if high is not None:
            bound += f" and < {high}"
        raise UsageError(f"--{name} must be a finite number {bound}, got {value!r}")
