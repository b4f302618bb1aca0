"""Arguments and steps that several subcommands share."""

from __future__ import annotations

import argparse

from kvt.config import BACKENDS


def add_backend_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend", choices=BACKENDS, default=None,
        help="Keras backend (default: $KERAS_BACKEND, else tensorflow)")


def backend_name(args: argparse.Namespace) -> str:
    """--backend, else $KERAS_BACKEND (checked), else tensorflow."""
    from kvt.backends import env_backend

    return args.backend or env_backend() or "tensorflow"


def add_threads_argument(parser) -> None:
    parser.add_argument(
        "--threads", type=int, default=None, metavar="N",
        help="use at most N CPU threads: sets OMP_NUM_THREADS and TF_NUM_INTRAOP_THREADS "
             "to N, TF_NUM_INTEROP_THREADS to 1 (default: the environment's, else every "
             "core; JAX's XLA:CPU has no such setting)")


def apply_threads(args: argparse.Namespace) -> None:
    """--threads, checked and set before any framework starts."""
    if getattr(args, "threads", None) is not None:
        from kvt import backends

        positive("threads", args.threads)
        backends.set_threads(args.threads)


def select_backend(args: argparse.Namespace) -> str:
    """Selects the backend of `args` (before Keras is imported) and returns its name."""
    from kvt import backends

    apply_threads(args)
    name = backend_name(args)
    backends.select(name, deterministic=getattr(args, "deterministic", False))
    backends.import_keras()
    return name


def add_loading_arguments(parser: argparse.ArgumentParser) -> None:
    add_threads_argument(parser)
    parser.add_argument(
        "--import", dest="imports", action="append", default=[], metavar="MODULE",
        help="import MODULE before loading, so that a model trained with --activation "
             "MODULE:function can find it (repeatable)")
    parser.add_argument(
        "--unsafe", action="store_true",
        help="load model files that need arbitrary Python code (Lambda layers); only "
             "for files from a source you trust")


def positive(name: str, value: int) -> None:
    """Refuses a count flag below 1 (argparse only checks that it is an integer)."""
    if value <= 0:
        from kvt.errors import UsageError

        raise UsageError(f"--{name} must be a positive integer, got {value}")


def load_model_from_args(args: argparse.Namespace, target: str):
    """The model of a run directory or .keras file, on the backend of `args`.

    Checks the path before the backend is imported, so a typo costs no framework
    start-up. Returns (path, model, kvt metadata).
    """
    from kvt.saving import resolve_model_path

    path = resolve_model_path(target)
    select_backend(args)
    from kvt.saving import load_model

    model, meta = load_model(path, unsafe=args.unsafe, imports=args.imports)
    return path, model, meta
