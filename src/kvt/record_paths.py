"""Paths in kvt's records (config.json, sweep.json, compare.json and .md, status.json, a
sweep's train.log): records travel to other machines (results/), where an absolute path
of this one would mean nothing, so each path is kept as the user typed it when relative,
relative to the run or sweep directory when inside it, and otherwise by its name alone.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kvt.config import TrainConfig

# What a record holds in place of an absolute path outside the run (or sweep) directory
# and the home folder: the last part of the path, after this prefix. Records travel to
# other machines (results/), where the path would mean nothing.
ELIDED = ".../"
# Set (to 1) in the environment of a `kvt train` whose output is itself a record (a
# sweep's train.log): its output spells paths as records do.
PORTABLE_PATHS = "KVT_PORTABLE_PATHS"


def portable_path(path: str | Path, *bases: str | Path) -> str:
    """`path` as kvt's records spell it: as typed when relative; relative to the first
    of `bases` when it lies in one of them (a run's `--config` in its sweep); under the
    home folder as `~/...`; otherwise only its last part, after ELIDED."""
    text = str(path)
    if not os.path.isabs(text):
        return text
    target = os.path.normpath(text)
    for base in bases:
        base = os.path.normpath(os.path.abspath(base))
        if target == base or target.startswith(base.rstrip(os.sep) + os.sep):
            return os.path.relpath(target, os.path.normpath(os.path.abspath(bases[0])))
    home = os.path.normpath(os.path.expanduser("~"))
    if home != os.sep and target.startswith(home + os.sep):
        return "~/" + os.path.relpath(target, home)
    return ELIDED + os.path.basename(target)


def portable_argv(argv: list[str], *bases: str | Path) -> list[str]:
    """A command line as kvt's records spell it: every absolute path in it (an
    argument, or the value of `--flag=PATH`) through `portable_path`."""
    out = []
    for arg in argv:
        flag, eq, value = arg.partition("=")
        if eq and flag.startswith("-") and os.path.isabs(value):
            out.append(f"{flag}={portable_path(value, *bases)}")
        else:
            out.append(portable_path(arg, *bases))
    return out


def recorded_data_dir(data_dir: str | None) -> str | None:
    """The data directory a record keeps: the one typed when relative; none for an
    absolute one (`kvt train --resume` then needs --data-dir or KVT_DATA_DIR, and checks
    that it holds the same data)."""
    return data_dir if data_dir is None or not os.path.isabs(data_dir) else None


def recorded_source(config: TrainConfig, source: str, *bases: str | Path) -> str:
    """A dataset's source as config.json keeps it: for data given as an absolute
    --data-dir, only its name after ELIDED, which tells `kvt train --resume` to ask for
    --data-dir again (`unrecorded_data`); otherwise `portable_path`."""
    if config.data_dir and recorded_data_dir(config.data_dir) is None:
        return ELIDED + os.path.basename(os.path.normpath(source))
    return portable_path(source, *bases)


def sweep_of(path: str | Path) -> Path | None:
    """The sweep directory a run directory lies in (SWEEP/runs/<configuration>/seed-N),
    if it does."""
    root = Path(path).absolute().parent.parent.parent
    return root if (root / "sweep.json").is_file() else None


def record_bases(run_dir: str | Path) -> list[Path]:
    """What a run's records spell paths relative to (`portable_path`): the run
    directory, and the sweep it lies in, if any."""
    return [Path(run_dir), *filter(None, [sweep_of(run_dir)])]
