"""A job, what each executor trains (see `kvt.executors` for the contract)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

from kvt.runs import RunDir


@dataclasses.dataclass
class Remote:
    """A job as a node that does not share this process's working directory sees it:
    paths relative to the root folder (a sweep directory) that the executor either
    finds mounted on the node or ships to it."""

    run: Path  # the run directory
    inputs: list[Path]  # the files it reads besides its run directory (its config file)
    start: list[str]  # the `kvt train` command line that starts the run
    resume: list[str]  # the one that continues it from its last finished epoch


@dataclasses.dataclass
class Job:
    """One run to train: its run directory, what it still needs and the `kvt train`
    command line (without the program) that does it."""

    name: str  # what the lines about it call it: "crelu seed 3"
    run_dir: RunDir
    argv: list[str] = dataclasses.field(default_factory=list)
    action: str = "start"  # start | resume | done
    epochs: int = 0  # the epochs the run trains in all, for the progress lines
    remote: Remote | None = None  # for an executor that trains it on other nodes (Ray)


# executor(todo, jobs, started, finished, tick): see `kvt.executors`.
Executor = Callable[[list[Job], int, Callable[[Job], None], Callable[[Job, int, float], None],
                     Callable[[], None]], None]


def next_action(rd: RunDir) -> str:
    """What a run needs: "done" (complete), "resume" (interrupted or stopped while
    running, with its config.json written), or "start" (never started, or failed: from
    the beginning)."""
    status = rd.status()
    if status == "complete":
        return "done"
    if status in ("interrupted", "running") and (rd / "config.json").is_file():
        return "resume"
    return "start"
