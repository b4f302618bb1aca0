"""kvt's command line: one module per subcommand, one `main()` that maps errors.

Each subcommand module defines `add_parser(subparsers)` and `run(args) -> int`, and
imports no framework at module level, so `kvt --help` and argument errors stay instant.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import sys
import threading
from typing import Iterator

from kvt import __version__
from kvt.errors import EXIT_BROKEN_PIPE, EXIT_CANCELLED, EXIT_USAGE, Cancelled, KvtError

COMMANDS = {
    "train": "kvt.cli.train",
    "evaluate": "kvt.cli.evaluate",
    "predict": "kvt.cli.predict",
    "compare": "kvt.cli.compare",
    "info": "kvt.cli.info",
    "bench": "kvt.cli.bench",
}


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: the problem and where to look for the fix."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="kvt",
        description="Train, evaluate and compare small Keras CNNs (MiniVGGNet on CIFAR-10 "
                    "and friends) on TensorFlow, JAX or PyTorch.",
    )
    parser.add_argument("--version", action="version", version=f"kvt {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show full tracebacks instead of one-line errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for module in COMMANDS.values():
        importlib.import_module(module).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:
        # Whoever read our output stopped (kvt info | head): not an error of ours. Point
        # stdout at /dev/null so that Python's final flush does not fail a second time.
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return EXIT_BROKEN_PIPE


def _terminate(signum, frame):
    raise KeyboardInterrupt


@contextlib.contextmanager
def _sigterm_as_ctrl_c() -> Iterator[None]:
    """SIGTERM (kill, a scheduler, kvt compare stopping its children) stops a command the
    way Ctrl-C does: a training run keeps its checkpoint and says how to resume."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with _sigterm_as_ctrl_c():
            return int(args.run(args) or 0)
    except KvtError as e:
        if args.debug:
            raise
        kind = "cancelled" if isinstance(e, Cancelled) else "error"
        print(f"kvt {args.command}: {kind}: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"kvt {args.command}: cancelled", file=sys.stderr)
        return EXIT_CANCELLED
