"""One run over several devices of one machine, through the engines' own strategies.

`--distribute mirrored` (TensorFlow): `tf.distribute.MirroredStrategy` over the GPUs, or
over `--devices N` logical CPU devices made before TensorFlow starts (so that it can be
tried, and tested, on a CPU). The model is built and compiled in the strategy's scope;
each step's batch (`--batch-size`, the global batch) is split over the replicas and
their gradients summed. BatchNormalization computes its statistics over the global
batch (Keras' `synchronized`), as one device would; the saved model file does not keep
that switch, so it loads on every backend. Dropout draws its masks per replica, so a
mirrored run is not the same draw as a one-device run with the same seed: without
dropout the losses agree (tests/test_distribute.py).

`--distribute data-parallel` (JAX): Keras' `DataParallel` distribution over the local
devices (`--devices N` fakes N host devices through XLA's flag, set before JAX is
imported): the batch axis of every step is sharded over the devices, the weights
replicated, and XLA adds the reductions, so that BatchNormalization's statistics are
the global batch's too. Every device must get the same share: the batch must divide
by the device count, each epoch leaves out its last `n % devices` images (a different
few each epoch, as the epoch order changes), and evaluation pads the data to a multiple
of the devices with zero-weight copies that no metric counts (`kvt.train` compiles the
accuracy as a weighted metric and undoes Keras' division of val_loss by the padded
count). On 2 logical CPU devices the first epoch's losses and accuracies equal one
device's to the digits printed; later epochs drift apart as float rounding (the order
of the cross-device sums) compounds. Imports its framework lazily.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
from typing import Any, Iterator

import numpy as np

from kvt.config import TrainConfig
from kvt.errors import BackendError

HOST_DEVICES_FLAG = "--xla_force_host_platform_device_count"


@dataclasses.dataclass
class Replicas:
    """What a run is spread over: the count and the devices' names."""

    count: int = 1
    devices: list[str] = dataclasses.field(default_factory=list)
    kind: str = "none"

    def usable(self, n: int) -> int:
        """How many of `n` training images a data-parallel epoch uses (a multiple of the
        device count); all of them otherwise."""
        return n - n % self.count if self.kind == "data-parallel" else n

    def pad(self, n: int) -> int:
        """How many zero-weight images evaluation adds to `n` (data-parallel only)."""
        return -n % self.count if self.kind == "data-parallel" else 0


def prepare(config: TrainConfig) -> None:
    """What must happen before the framework starts: N logical CPU devices. Call after
    `backends.select` and before Keras is imported."""
    if not config.devices:
        return
    if config.distribute == "data-parallel":
        if "jax" in sys.modules:
            raise BackendError(f"--devices {config.devices} must be set before JAX starts, "
                               f"and it has started in this process: run kvt train afresh")
        flags = [f for f in os.environ.get("XLA_FLAGS", "").split()
                 if not f.startswith(HOST_DEVICES_FLAG)]
        os.environ["XLA_FLAGS"] = " ".join([*flags, f"{HOST_DEVICES_FLAG}={config.devices}"])
    elif config.distribute == "mirrored":
        import tensorflow as tf

        if tf.config.list_physical_devices("GPU"):
            return  # the first N GPUs are chosen in scope()
        cpu = tf.config.list_physical_devices("CPU")[0]
        try:
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * config.devices)
        except RuntimeError:
            raise BackendError(f"--devices {config.devices} must be set before TensorFlow "
                               f"starts, and it has started in this process: run kvt train "
                               f"afresh") from None


@contextlib.contextmanager
def scope(config: TrainConfig) -> Iterator[Replicas]:
    """Where the run's model is built, compiled and trained."""
    if config.distribute == "mirrored":
        import tensorflow as tf

        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        devices = _take(devices, config.devices, "TensorFlow")
        strategy = tf.distribute.MirroredStrategy(devices)
        with strategy.scope():
            yield Replicas(strategy.num_replicas_in_sync, devices, "mirrored")
    elif config.distribute == "data-parallel":
        import keras

        devices = _take(keras.distribution.list_devices(), config.devices, "JAX")
        if config.batch_size % len(devices):
            raise BackendError(f"--batch-size {config.batch_size} does not split evenly over "
                               f"the {len(devices)} devices: choose a multiple of "
                               f"{len(devices)}")
        previous = keras.distribution.distribution()
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
        try:
            yield Replicas(len(devices), [str(d) for d in devices], "data-parallel")
        finally:
            keras.distribution.set_distribution(previous)
    else:
        yield Replicas()


def _take(devices: list[Any], wanted: int | None, engine: str) -> list[Any]:
    if wanted is None:
        return list(devices)
    if wanted > len(devices):
        raise BackendError(f"--devices {wanted}: {engine} sees only {len(devices)} devices "
                           f"here ({', '.join(map(str, devices))})")
    return list(devices[:wanted])


def synchronize_batchnorm(model, on: bool) -> None:
    """BatchNormalization over the global batch (TensorFlow strategies only), or back to
    Keras' default before the model file is written (where the switch would make the
    file TensorFlow-only)."""
    import keras

    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = on


def padded(replicas: Replicas, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """`arrays` with `replicas.pad(n)` copies of their last row appended, and last the
    sample weights: 1 for the real rows, 0 for the copies."""
    n = len(arrays[0])
    extra = replicas.pad(n)
    weights = np.concatenate([np.ones(n, np.float32), np.zeros(extra, np.float32)])
    if not extra:
        return (*arrays, weights)
    out = tuple(np.concatenate([a, np.repeat(a[-1:], extra, axis=0)]) for a in arrays)
    return (*out, weights)
