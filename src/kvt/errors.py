"""kvt's error hierarchy.

Every error a user can cause is a `KvtError`: `kvt.cli.main` prints its message as one
line and exits with its `exit_code`. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

# Exit codes, documented in docs/runs.md. 1 is left to unexpected failures (bugs).
EXIT_OK = 0
EXIT_BUG = 1
EXIT_USAGE = 2  # argparse's own code: bad flags and nonsense numbers
EXIT_DATA = 3  # missing, corrupt or unsafe data
EXIT_MODEL = 4  # unknown model/activation, unloadable or unsafe model file
EXIT_BACKEND = 5  # a backend or framework that is missing or cannot do what was asked
EXIT_RUN = 6  # run directory problems: exists, incomplete, not writable
EXIT_TRAINING = 7  # training itself failed (for example a NaN loss)
EXIT_CANCELLED = 130  # Ctrl-C
EXIT_BROKEN_PIPE = 141  # the reader of stdout went away (128 + SIGPIPE, as shells report)

# What each code means, for --help and the table of docs/runs.md.
EXIT_MEANINGS = {
    EXIT_OK: "success",
    EXIT_BUG: "an unexpected error (a bug: please report it with --debug output)",
    EXIT_USAGE: "bad arguments or nonsense numbers",
    EXIT_DATA: "missing, corrupt or unsafe data",
    EXIT_MODEL: "unknown model or activation; an unloadable or unsafe model file",
    EXIT_BACKEND: "a backend that is not installed or cannot do what was asked",
    EXIT_RUN: "run directory or output path problems: exists, incomplete, not writable, in use",
    EXIT_TRAINING: "training failed (NaN or infinite loss); compare: some runs failed",
    EXIT_CANCELLED: "cancelled with Ctrl-C or SIGTERM",
    EXIT_BROKEN_PIPE: "the program reading kvt's output stopped early",
}


def exit_codes_help() -> str:
    """The exit codes as a table for the end of --help."""
    return "exit codes:\n" + "\n".join(f"  {code:<4} {meaning}"
                                        for code, meaning in EXIT_MEANINGS.items())


def first_line(e: BaseException) -> str:
    """The first non-blank line of an error's message (a library's errors often go on
    for pages), or its type's name if it has none: for one-line messages that quote it."""
    for line in str(e).splitlines():
        if line.strip():
            return line.strip()
    return type(e).__name__


class KvtError(Exception):
    """An error the user can fix; its message says what went wrong and what to do."""

    exit_code = EXIT_BUG
    # The message with command-line flags where it names config fields (`--batch-size`
    # for `batch_size`), for the CLI to print: set by `kvt.config.refuse`.
    flag_message: str | None = None


class UsageError(KvtError):
    exit_code = EXIT_USAGE


class DataError(KvtError):
    exit_code = EXIT_DATA


class ModelError(KvtError):
    exit_code = EXIT_MODEL


class BackendError(KvtError):
    exit_code = EXIT_BACKEND


class RunError(KvtError):
    exit_code = EXIT_RUN


class TrainingError(KvtError):
    exit_code = EXIT_TRAINING


class Cancelled(KvtError):
    """The user stopped the work (Ctrl-C, SIGTERM); the message says how to go on."""

    exit_code = EXIT_CANCELLED
