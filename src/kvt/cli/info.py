"""`kvt info`: what is installed and usable — backends, versions, devices, CPU, threads;
`kvt info RUN`: the model a run trained (its summary.txt).

What each framework reports is asked through `kvt.backends` (`PROBES`); this module
only prints it.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import os
import platform
from pathlib import Path
from typing import Iterator

from kvt.backends import DEFAULT_BACKEND, PROBES, THREAD_VARIABLES

INTERESTING_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16",
                     "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "info", help="show backends, versions, devices, CPU features and threads",
        description="Show which Keras backends are installed and usable, their versions and "
                    "devices (and whether a GPU is visible to each), the CPU's features and "
                    "thread settings. Imports each installed framework. With a run "
                    "directory: the model it trained (layers, parameters, FLOPs per image), "
                    "from its summary.txt, without importing a framework.")
    p.add_argument("run_dir", nargs="?", metavar="RUN",
                   help="a run directory: print its model summary instead")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.run_dir is not None:
        return _run_summary(Path(args.run_dir))
    from kvt import __version__, backends

    print(f"kvt {__version__}, Python {platform.python_version()}, "
          f"{platform.system()} {platform.machine()}")
    print(f"keras {_version('keras') or 'not installed'}; {_default_backend()}")
    flags = set((backends.cpuinfo("flags") or "").split())
    usable = [f for f in INTERESTING_FLAGS if f in flags]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"cpu: {backends.cpu_model()}, {cores} usable of {os.cpu_count()} cores; "
          f"features: {' '.join(usable) or 'unknown'}")
    env = {k: os.environ[k] for k in (*THREAD_VARIABLES, "XLA_FLAGS") if k in os.environ}
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


def _run_summary(path: Path) -> int:
    from kvt.errors import RunError

    summary = path / "summary.txt"
    if not (path / "config.json").is_file():
        raise RunError(f"{path} is not a kvt run directory (it has no config.json): give "
                       f"the --out of a kvt train")
    if not summary.is_file():
        raise RunError(f"{path} has no summary.txt (it was trained before kvt wrote "
                       f"one): train it again, or read its model with kvt.load_model")
    print(summary.read_text(), end="")
    return 0


def _default_backend() -> str:
    from kvt.backends import env_backend
    from kvt.errors import UsageError

    try:
        name = env_backend()
    except UsageError as e:
        return f"{e} (commands without --backend refuse it)"
    return f"default backend {name or DEFAULT_BACKEND} " + \
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
