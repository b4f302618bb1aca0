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
of the devices with copies of its last image, whose predictions are cut off before
anything is scored (`kvt.train` scores every evaluation itself). On 2 logical CPU
devices the first epoch's losses and accuracies equal one device's to the digits
printed; later epochs drift apart as float rounding (the order of the cross-device sums)
compounds.

Several processes (`--num-processes N --process-id I --coordinator HOST:PORT`, JAX
only): every process runs the same `kvt train` command; `keras.distribution.initialize`
joins them through the coordinator (process 0's address) and the DataParallel mesh spans
every process's devices. Keras 3.15 shards only a `tf.data.Dataset` across processes by
itself, so kvt shards by hand instead (`auto_shard_dataset=False`): each process feeds
its slice of every global batch (`Replicas.share`) and Keras assembles the global batch
from the slices. The final predictions are made by each process on its share of the
test set with a local copy of the trained weights, then gathered. Process 0 alone
writes the run directory (a resumed run is read by every process, so `--resume` needs
the directory on storage that all of them see). Imports its framework lazily.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import sys
from typing import Any, Iterator

import numpy as np

from kvt.config import DISTRIBUTE_REFUSED, TrainConfig, check_positive
from kvt.errors import BackendError, UsageError

HOST_DEVICES_FLAG = "--xla_force_host_platform_device_count"
ADDRESS = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[^\s:\[\]]+):(\d{1,5})$")


@dataclasses.dataclass(frozen=True)
class Cluster:
    """The processes one run spans. Not part of the TrainConfig: a run means the same
    whatever processes trained it, and may resume on another count."""

    coordinator: str | None = None
    num_processes: int = 1
    process_id: int = 0

    @property
    def writer(self) -> bool:
        """Whether this process writes the run directory (process 0 does)."""
        return self.process_id == 0

    def check(self, config: TrainConfig | None = None) -> Cluster:
        """Raises UsageError/BackendError naming the first nonsense; `config` is checked
        against the cluster when given."""
        n, i = self.num_processes, self.process_id
        check_positive("--num-processes", n)
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < n:
            raise UsageError(f"--process-id {i!r} is not one of the {n} processes: give 0 to "
                             f"{n - 1} (0 is the coordinator, which writes the run)")
        if n == 1:
            if self.coordinator is not None:
                raise UsageError("--coordinator joins several processes into one run: give "
                                 "--num-processes N (N > 1) too, or drop --coordinator")
            return self
        match = ADDRESS.match(self.coordinator or "")
        if not match or not 0 < int(match.group(2)) < 65536:
            given = f"got {self.coordinator!r}" if self.coordinator else "none given"
            raise UsageError(f"--num-processes {n} needs --coordinator HOST:PORT, process 0's "
                             f"address and a free port, the same on every process ({given})")
        if config is not None and config.distribute != "data-parallel":
            raise BackendError(f"--num-processes {n} spreads a run over the processes of "
                               f"Keras' DataParallel distribution: give --backend jax "
                               f"--distribute data-parallel (TensorFlow's multi-worker "
                               f"strategy is refused: "
                               f"{DISTRIBUTE_REFUSED['multi-worker'].split(' (')[0]})")
        return self


def start(cluster: Cluster) -> None:
    """Joins the run's processes (before any JAX computation; after `prepare`)."""
    if cluster.num_processes == 1:
        return
    import keras

    try:
        keras.distribution.initialize(cluster.coordinator, cluster.num_processes,
                                      cluster.process_id)
    except Exception as e:  # JAX raises its own runtime errors for a coordinator it cannot reach
        raise BackendError(f"could not join the {cluster.num_processes} processes through "
                           f"--coordinator {cluster.coordinator} ({str(e).splitlines()[0]}): "
                           f"start every process with the same --coordinator and "
                           f"--num-processes") from None


@dataclasses.dataclass
class Replicas:
    """What a run is spread over: the count and the devices' names."""

    count: int = 1
    devices: list[str] = dataclasses.field(default_factory=list)
    kind: str = "none"
    processes: int = 1
    process: int = 0

    def usable(self, n: int) -> int:
        """How many of `n` training images a data-parallel epoch uses (a multiple of the
        device count); all of them otherwise."""
        return n - n % self.count if self.kind == "data-parallel" else n

    def pad(self, n: int) -> int:
        """How many zero-weight images evaluation adds to `n` (data-parallel only)."""
        return -n % self.count if self.kind == "data-parallel" else 0

    def share(self, rows: np.ndarray, batch: int) -> np.ndarray:
        """This process's part of `rows` (all of them with one process): its equal slice
        of every global batch of `batch` rows, in process order, so that Keras, putting
        the processes' slices together, trains on the global batches one process would
        (`len(rows)` and `batch` are multiples of the process count)."""
        if self.processes == 1:
            return rows
        parts = []
        for start in range(0, len(rows), batch):
            chunk = rows[start:start + batch]
            k = len(chunk) // self.processes
            parts.append(chunk[self.process * k:(self.process + 1) * k])
        return np.concatenate(parts)

    def agree(self, value: int, what: str) -> None:
        """Raises BackendError unless every process has the same `value` (a collective:
        every process must call it)."""
        if self.processes == 1:
            return
        from jax.experimental import multihost_utils

        values = [int(v) for v in
                  np.asarray(multihost_utils.process_allgather(np.int64(value)))]
        if len(set(values)) > 1:
            raise BackendError(f"the {self.processes} processes disagree on {what} "
                               f"({', '.join(map(str, values))} by process id): a resumed "
                               f"run must be read by every process from the same directory "
                               f"(shared storage)")


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
def scope(config: TrainConfig, cluster: Cluster = Cluster()) -> Iterator[Replicas]:
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
        import jax
        import keras

        devices = _per_process(jax.devices(), config.devices)
        if config.batch_size % len(devices):
            raise BackendError(f"--batch-size {config.batch_size} does not split evenly over "
                               f"the {len(devices)} devices: choose a multiple of "
                               f"{len(devices)}")
        previous = keras.distribution.distribution()
        # Sharded by hand across processes (Replicas.share): Keras' own sharding takes
        # only tf.data input.
        keras.distribution.set_distribution(keras.distribution.DataParallel(
            devices=devices, auto_shard_dataset=cluster.num_processes == 1))
        try:
            yield Replicas(len(devices), [str(d) for d in devices], "data-parallel",
                           cluster.num_processes, cluster.process_id)
        finally:
            keras.distribution.set_distribution(previous)
    else:
        yield Replicas()


def _per_process(devices: list[Any], wanted: int | None) -> list[Any]:
    """The first `wanted` of every process's devices (JAX's; all of them if None)."""
    by_process: dict[int, list[Any]] = {}
    for d in devices:
        by_process.setdefault(d.process_index, []).append(d)
    return [d for _, mine in sorted(by_process.items()) for d in _take(mine, wanted, "JAX")]


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


def predict(model, replicas: Replicas, x: np.ndarray, batch_size: int,
            callbacks: list[Any]) -> np.ndarray:
    """The model's outputs for `x`. With several processes (where Keras cannot fetch
    outputs that span other processes' devices), each process predicts its equal share
    of `x` on its own devices with a local copy of the trained weights, and the shares
    are gathered in order (`len(x)` is a multiple of the process count)."""
    if replicas.processes == 1:
        return np.asarray(model.predict(x, batch_size=batch_size, verbose=0,
                                        callbacks=callbacks))
    import keras
    from jax.experimental import multihost_utils

    with local_only():
        local = keras.models.clone_model(model)
        local.set_weights(model.get_weights())
        k = len(x) // replicas.processes
        mine = x[replicas.process * k:(replicas.process + 1) * k]
        probs = np.asarray(local.predict(mine, batch_size=batch_size, verbose=0,
                                         callbacks=callbacks))
    return np.asarray(multihost_utils.process_allgather(probs, tiled=True))


@contextlib.contextmanager
def local_only() -> Iterator[None]:
    """No Keras distribution inside: what is made here lives on this process's devices,
    so that one process can do it alone (the other processes would never join a
    distributed variable's creation, e.g. while process 0 saves the model)."""
    import keras

    previous = keras.distribution.distribution()
    keras.distribution.set_distribution(None)
    try:
        yield
    finally:
        keras.distribution.set_distribution(previous)
