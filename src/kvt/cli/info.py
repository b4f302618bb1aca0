"""`kvt info`: what is installed and usable — backends, versions, devices, CPU, threads."""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import os
import platform
from typing import Any, Iterator

INTERESTING_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16",
                     "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "info", help="show backends, versions, devices, CPU features and threads",
        description="Show which Keras backends are installed and usable, their versions and "
                    "devices (and whether a GPU is visible to each), the CPU's features and "
                    "thread settings. Imports each installed framework.")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from kvt import __version__, backends

    print(f"kvt {__version__}, Python {platform.python_version()}, "
          f"{platform.system()} {platform.machine()}")
    print(f"keras {_version('keras') or 'not installed'}; {_default_backend()}")
    flags = set((backends.cpuinfo("flags") or "").split())
    usable = [f for f in INTERESTING_FLAGS if f in flags]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"cpu: {backends.cpu_model()}, {cores} usable of {os.cpu_count()} cores; "
          f"features: {' '.join(usable) or 'unknown'}")
    env = {k: os.environ[k] for k in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS",
                                      "TF_NUM_INTEROP_THREADS", "XLA_FLAGS") if k in os.environ}
    print(f"thread settings: {env or 'none set (each framework uses every usable core)'}")
    print()
    header = f"{'backend':<11} {'installed':<9} {'version':<10} {'gpu':<4} {'threads':<8} devices"
    print(header)
    print("-" * len(header))
    installed = backends.installed()
    with _checked_keras_backend():
        for name in backends.FRAMEWORKS:
            _print_row(name, installed[name])
    return 0


def _default_backend() -> str:
    from kvt.backends import env_backend
    from kvt.errors import UsageError

    try:
        name = env_backend()
    except UsageError as e:
        return f"{e} (commands without --backend refuse it)"
    return f"default backend {name or 'tensorflow'} " + \
        ("(from $KERAS_BACKEND)" if name else "(KERAS_BACKEND unset)")


@contextlib.contextmanager
def _checked_keras_backend() -> Iterator[None]:
    """TensorFlow imports Keras, which refuses an unknown $KERAS_BACKEND: probe each
    framework without it, so that a bad variable is not reported as a broken install."""
    from kvt.backends import env_backend
    from kvt.errors import UsageError

    try:
        env_backend()
        saved = None
    except UsageError:
        saved = os.environ.pop("KERAS_BACKEND")
    try:
        yield
    finally:
        if saved is not None:
            os.environ["KERAS_BACKEND"] = saved


def _print_row(name: str, installed: bool) -> None:
    from kvt import backends

    if not installed:
        extra = backends.FRAMEWORKS[name][1]
        print(f"{name:<11} {'no':<9} {'-':<10} {'-':<4} {'-':<8} pip install '{extra}'")
        return
    try:
        probe = PROBES[name]()
    except Exception as e:  # a broken install is what this command is for finding
        print(f"{name:<11} {'broken':<9} {_version(name) or '?':<10} {'-':<4} {'-':<8} "
              f"{type(e).__name__}: {e}")
        return
    print(f"{name:<11} {'yes':<9} {probe['version']:<10} "
          f"{'yes' if probe['gpu'] else 'no':<4} {probe['threads']!s:<8} "
          f"{', '.join(probe['devices'])}")


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _probe_tensorflow() -> dict[str, Any]:
    from kvt.backends import filtered_stderr

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
