"""Chooses the Keras backend before Keras is imported, and describes the machine.

Keras reads `KERAS_BACKEND` once, on its first import, so one process has one backend:
`select()` must run before anything imports `keras`. The default backend, the thread
settings, determinism and the frameworks' random state are here too, and what each
framework reports about itself: `describe()` for the active backend (a run's
config.json), `PROBES` for any installed one (`kvt info`). Importing this module
imports no framework; the functions that need one import it when called
(`import_keras`, `make_deterministic`, `rng_state`, `set_rng_state`, `describe`,
`PROBES`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import platform
import re
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

from kvt.errors import BackendError, UsageError

# Keras backend name -> (module that must be importable, pip extra that installs it).
FRAMEWORKS = {
    "tensorflow": ("tensorflow", "kvt"),
    "jax": ("jax", "kvt[jax]"),
    "torch": ("torch", "kvt[torch]"),
}


# What kvt runs on when neither --backend nor $KERAS_BACKEND names a backend (Keras'
# own default too).
DEFAULT_BACKEND = "tensorflow"

# Backends Keras itself knows but kvt does not train on.
OTHER_KERAS_BACKENDS = ("numpy", "openvino")


def env_backend() -> str | None:
    """The backend `$KERAS_BACKEND` names (None when unset or empty, as Keras reads it).

    Raises `UsageError` naming the variable when it is not one of kvt's backends, so
    that the error does not blame a `--backend` flag the user never typed.
    """
    value = os.environ.get("KERAS_BACKEND")
    if not value or value in FRAMEWORKS:
        return value or None
    what = ("a Keras backend kvt does not train on" if value in OTHER_KERAS_BACKENDS
            else "not a Keras backend")
    raise UsageError(f"KERAS_BACKEND={value} is {what}: set it to one of "
                     f"{', '.join(FRAMEWORKS)}, unset it, or pass --backend")


def cache_dir() -> Path:
    """kvt's cache (decoded datasets, JAX's compiled programs): `KVT_CACHE_DIR`, default
    `~/.cache/kvt`; `KVT_NO_CACHE=1` turns it off."""
    return Path(os.environ.get("KVT_CACHE_DIR", Path.home() / ".cache" / "kvt")).expanduser()


def select(backend: str, deterministic: bool = False) -> None:
    """Makes `backend` the Keras backend of this process.

    With `deterministic`, also sets what must be set before the framework starts
    (XLA's GPU determinism flag for JAX); `make_deterministic()` does the rest.

    Raises `BackendError` if the backend is unknown, its framework is not installed,
    or Keras was already imported with another backend.
    """
    if backend not in FRAMEWORKS:
        raise BackendError(
            f"unknown backend {backend!r}: choose one of {', '.join(FRAMEWORKS)}"
        )
    module, extra = FRAMEWORKS[backend]
    if importlib.util.find_spec(module) is None:
        raise BackendError(
            f"the {backend} backend needs {module}, which is not installed: "
            f"pip install '{extra}'"
        )
    # TensorFlow's C++ start-up chatter (oneDNN notices, CPU feature lines) drowns the
    # one line per epoch that kvt prints; warnings and errors still come through.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "keras" in sys.modules:
        current = sys.modules["keras"].backend.backend()
        if current != backend:
            raise BackendError(
                f"Keras is already running on {current} in this process and cannot switch "
                f"to {backend}: start a new process (one process, one backend)"
            )
        return
    os.environ["KERAS_BACKEND"] = backend
    if backend == "jax" and not os.environ.get("KVT_NO_CACHE"):
        # XLA's compiled programs persist in kvt's cache, so that the next process that
        # trains the same model (a resume, the next seed of a sweep, a rerun) loads them
        # instead of compiling again: a digits run's first epoch took 7.5 s cold and 2.8 s
        # warm on a 2-core AMD EPYC (2026-11-27). The user's own setting wins.
        os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(cache_dir() / "jax"))
    if deterministic and backend == "jax":
        flag = "--xla_gpu_deterministic_ops=true"
        if flag not in os.environ.get("XLA_FLAGS", ""):
            os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flag}".strip()


# Read once, when each framework starts: OpenMP (PyTorch's intra-op pool, oneDNN) and
# TensorFlow's two pools. XLA:CPU (JAX) has no such setting.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")


def thread_env(n: int) -> dict[str, str]:
    """The THREAD_VARIABLES that bound a framework to `n` cores: `n` intra-op threads,
    and independent ops one at a time (inter-op 1)."""
    return {name: "1" if name == "TF_NUM_INTEROP_THREADS" else str(n)
            for name in THREAD_VARIABLES}


def set_threads(n: int) -> None:
    """Limits the frameworks this process (and its children) start to `n` threads.

    Call before the framework is imported: TensorFlow fixes its pools when it starts.
    Independent ops run one at a time (inter-op 1), as `kvt compare` does for its
    children, so that `n` bounds the cores used. PyTorch, if already running, is told
    directly.
    """
    os.environ.update(thread_env(n))
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)


# TensorFlow's C++ runtime logs at start-up (oneDNN notices, "no CUDA drivers",
# cuInit failing on a machine without a GPU) before its log level applies.
_STARTUP_NOISE = re.compile(
    r"^(?:[IW]\d{4} |WARNING: All log messages before absl|E\d{4} .*cuInit|"
    r"To enable the following instructions|.*rebuild TensorFlow with the appropriate)")


def import_keras():
    """Imports Keras (and the backend's framework) with TensorFlow's start-up chatter
    filtered out of stderr; errors and warnings still come through.

    `TF_CPP_MIN_LOG_LEVEL=0` in the environment turns the filter off.
    """
    if "keras" in sys.modules or os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0":
        import keras
    else:
        with filtered_stderr():
            import keras

            if keras.backend.backend() == "tensorflow":
                import tensorflow as tf

                tf.config.list_logical_devices()  # device start-up logs its own lines
    return keras


@contextlib.contextmanager
def filtered_stderr(noise: re.Pattern[str] = _STARTUP_NOISE) -> Iterator[None]:
    """Drops the lines of stderr that match `noise` (TensorFlow's start-up chatter by
    default) and replays the others when the block ends."""
    # The noise is written by C++ straight to file descriptor 2, so sys.stderr alone
    # cannot catch it: point fd 2 at a file, then replay what is not noise.
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            for line in capture.read().decode(errors="replace").splitlines(keepends=True):
                if not noise.match(line):
                    sys.stderr.write(line)
            sys.stderr.flush()


def make_deterministic(backend: str) -> None:
    """Asks `backend` for deterministic kernels (call before its first computation).

    TensorFlow: `enable_op_determinism` (ops without a deterministic kernel then raise).
    PyTorch: `use_deterministic_algorithms`. JAX: XLA on the CPU is deterministic by
    itself; for GPUs the XLA flag must be in the environment before JAX starts, which
    `select()` does when asked.
    """
    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    elif backend == "torch":
        import torch

        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False


def rng_state(backend: str) -> dict[str, Any]:
    """Framework-global random state that training draws from, as numpy arrays.

    Keras layers keep their own seeds (SeedGenerator variables), with one exception:
    on PyTorch an unseeded Dropout draws from torch's global generator. A resumed run
    must restore it to continue the same sequence.
    """
    if backend != "torch":
        return {}
    import torch

    state = {"torch_cpu": torch.get_rng_state().numpy()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            state[f"torch_cuda{i}"] = s.numpy()
    return state


def set_rng_state(backend: str, state: dict[str, Any]) -> None:
    """Restores what `rng_state` returned."""
    if backend != "torch" or not state:
        return
    import torch

    torch.set_rng_state(torch.from_numpy(state["torch_cpu"].copy()))
    cuda = [torch.from_numpy(state[k].copy()) for k in sorted(state) if k.startswith("torch_cuda")]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def active() -> str:
    """The backend Keras uses (or will use) in this process."""
    if "keras" in sys.modules:
        return sys.modules["keras"].backend.backend()
    return os.environ.get("KERAS_BACKEND", DEFAULT_BACKEND)


def installed() -> dict[str, bool]:
    """Which backends' frameworks can be imported, without importing them."""
    return {name: importlib.util.find_spec(mod) is not None for name, (mod, _) in FRAMEWORKS.items()}


def describe() -> dict[str, Any]:
    """Versions, devices and threads of the active backend, for a run's config.json.

    Imports Keras and the backend's framework: call only after `select()`.
    """
    import keras
    import numpy as np

    backend = keras.backend.backend()
    info: dict[str, Any] = {
        "backend": backend,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "keras": keras.__version__,
        "machine": platform.machine(),
        "processor": cpu_model(),
        "cpu_count": os.cpu_count(),
        # What --threads (or the user's environment) set; TensorFlow reports 0 threads
        # ("default") for pools sized by these variables.
        "thread_settings": {k: os.environ[k] for k in THREAD_VARIABLES if k in os.environ},
    }
    if backend == "tensorflow":
        import tensorflow as tf

        info["tensorflow"] = tf.__version__
        info["devices"] = [d.name for d in tf.config.list_logical_devices()]
        info["intra_op_threads"] = tf.config.threading.get_intra_op_parallelism_threads()
        info["inter_op_threads"] = tf.config.threading.get_inter_op_parallelism_threads()
    elif backend == "jax":
        import jax

        info["jax"] = jax.__version__
        info["devices"] = [str(d) for d in jax.devices()]
    elif backend == "torch":
        import torch

        info["torch"] = torch.__version__
        info["devices"] = ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        info["intra_op_threads"] = torch.get_num_threads()
    return info


def cpuinfo(field: str) -> str | None:
    """The first `field` line of /proc/cpuinfo ("model name", "flags"), or None."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(field):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_model() -> str:
    return cpuinfo("model name") or platform.processor() or "unknown"


# --- what an installed framework reports, asked directly (kvt info) ---------------------

# Each returns the version, whether a GPU is visible, the intra-op threads ("auto" where
# the framework sizes its pool itself) and the devices of one backend's framework, asked
# directly: Keras runs one backend per process, `kvt info` shows them all. Each imports
# its framework.

def _probe_tensorflow() -> dict[str, Any]:
    with filtered_stderr():
        import tensorflow as tf

        devices = tf.config.list_physical_devices()
    intra = tf.config.threading.get_intra_op_parallelism_threads()
    return {"version": tf.__version__,
            "gpu": any(d.device_type == "GPU" for d in devices),
            "threads": intra or "auto",
            "devices": [d.name.replace("/physical_device:", "") for d in devices]}


def _probe_jax() -> dict[str, Any]:
    import jax

    devices = jax.devices()
    return {"version": jax.__version__,
            "gpu": any(d.platform == "gpu" for d in devices),
            "threads": "auto",
            "devices": [f"{d.platform}:{d.id}" for d in devices]}


def _probe_torch() -> dict[str, Any]:
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return {"version": torch.__version__.split("+")[0],
            "gpu": gpus > 0,
            "threads": torch.get_num_threads(),
            "devices": ["cpu"] + [f"cuda:{i}" for i in range(gpus)]}


PROBES = {"tensorflow": _probe_tensorflow, "jax": _probe_jax, "torch": _probe_torch}
