"""kvt's command line: one module per subcommand, one `main()` that maps errors.

Each subcommand module defines `add_parser(subparsers)` and `run(args) -> int`, and
imports no framework at module level, so `kvt --help` and argument errors stay instant.
No subcommand module imports another: what they share is in `kvt.cli.common`. Signals
are handled by `kvt.signals`' one policy, which `main()` holds for the whole command.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from kvt import __version__, signals
from kvt.errors import (EXIT_BROKEN_PIPE, EXIT_CANCELLED, EXIT_USAGE, Cancelled, KvtError,
                        exit_codes_help)

COMMANDS = {
    "train": "kvt.cli.train",
    "evaluate": "kvt.cli.evaluate",
    "predict": "kvt.cli.predict",
    "compare": "kvt.cli.compare",
    "info": "kvt.cli.info",
    "bench": "kvt.cli.bench",
    "export": "kvt.cli.export",
    "tune": "kvt.cli.tune",
}


class ParagraphFormatter(argparse.HelpFormatter):
    """Wraps each paragraph (separated by a blank line) of a description or epilog on
    its own, where argparse would run them all together, and keeps a paragraph of
    several lines (a table) as written."""

    def _fill_text(self, text, width, indent):
        fill = super()._fill_text
        return "\n\n".join(p if "\n" in p else fill(p, width, indent)
                             for p in text.split("\n\n"))


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (the problem and where to look for the fix) and
    the exit codes at the end of every --help."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", ParagraphFormatter)
        kwargs["epilog"] = "\n\n".join(filter(None, (kwargs.get("epilog"), exit_codes_help())))
        super().__init__(*args, **kwargs)

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


def _main(argv: list[str] | None) -> int:
    # From the first moment: a signal at any point of a command ends it as "cancelled".
    # Run as the program (no argv), the command's end is the process's: a signal while
    # the interpreter shuts down (TensorFlow's teardown takes a while) is then ignored
    # rather than turning a complete run's exit 0 into a death by signal.
    with signals.policy(final=argv is None):
        parser = build_parser()
        args = parser.parse_args(argv)
        try:
            signals.check()  # a signal held while this process started (children_held)
            code = int(args.run(args) or 0)
            signals.check()  # a signal that a library swallowed still cancels the command
            return code
        except KvtError as e:
            signals.settled()  # a second Ctrl-C must not cut the message short
            if args.debug:
                raise
            if isinstance(e, Cancelled):
                print(f"kvt {args.command}: cancelled: {e}", file=sys.stderr)
                return e.exit_code
            if signals.received():
                return _cancelled(args.command)
            # A library error naming config fields says it with the flags here (see
            # kvt.config.refuse); one about a file's field was re-raised without them.
            print(f"kvt {args.command}: error: {e.flag_message or e}", file=sys.stderr)
            return e.exit_code
        except (KeyboardInterrupt, Exception) as e:
            signals.settled()
            # An error after a signal is the signal's doing (a framework unwound half-way
            # by the interrupt fails with errors of its own), not a bug to report.
            if args.debug or not (isinstance(e, KeyboardInterrupt) or signals.received()):
                raise
            return _cancelled(args.command)


def _cancelled(command: str) -> int:
    print(f"kvt {command}: cancelled", file=sys.stderr)
    return EXIT_CANCELLED
