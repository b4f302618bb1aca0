"""What a bench measures: one `RowSpec` per row, and the plan of a bench (which rows,
in which order, which are skipped and why)."""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import json
from typing import Any, Iterable

from kvt.backends import DEFAULT_BACKEND
from kvt.errors import BackendError

PRECISIONS = ("float32", "bf16")
YARDSTICKS = ("torch", "tf")
# A yardstick row's `api`: what trains it instead of Keras' fit loop.
YARDSTICK_API = {"torch": "torch.nn", "tf": "tf.function"}
# The PyTorch yardstick mirrors these activations; your own functions have no twin there.
TORCH_ACTIVATIONS = ("relu", "crelu", "elu", "gelu", "swish")


@dataclasses.dataclass(frozen=True)
class RowSpec:
    """What one row measures; it travels to the row's process as JSON."""

    kind: str  # "kvt", "yardstick" or "peak"
    backend: str = DEFAULT_BACKEND
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
    model: str = "minivggnet"  # kvt rows: the registered family; yardsticks: MiniVGGNet

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> RowSpec:
        return cls(**json.loads(text))


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
         models: Iterable[str] = ("minivggnet",),
         **common: Any) -> tuple[list[RowSpec], list[str]]:
    """The rows of a bench (the product of the options, impossible combinations
    skipped) and one note per skipped kind of row.

    kvt rows come first, one per (model, backend, api, activation, precision, batch size,
    steps per execution); then the yardstick rows, one per yardstick and (activation,
    precision, batch size), which train MiniVGGNet whatever `models` says. `installed`
    maps frameworks to whether they can be imported (default: looked up); `common` goes
    to every row (steps, warmup, dataset).
    """
    if installed is None:
        from kvt.backends import installed as look_up

        installed = look_up()
    rows: list[RowSpec] = []
    notes: list[str] = []
    for model, backend, api, activation, precision, batch, spe in itertools.product(
            models, backends, apis, activations, precisions, batch_sizes, steps_per_execution):
        if api == "tf" and backend != "tensorflow":
            _note_once(notes, f"skipped --api tf on {backend}: the tf.keras model calls "
                              f"TensorFlow ops, so it needs --backend tensorflow")
            continue
        if spe > 1 and backend == "torch":
            _note_once(notes, "skipped --steps-per-execution above 1 on torch: Keras' PyTorch "
                              "trainer runs one step per call")
            continue
        rows.append(RowSpec("kvt", backend, api, activation, precision, batch, spe,
                            model=model, **common))
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
