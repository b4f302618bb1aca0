"""The per-epoch progress lines of the runs an executor is training."""

from __future__ import annotations

import time
from typing import Callable, TextIO

from kvt.executors.job import Job
from kvt.runs import RunDir

# How often the runs under way have their history.csv read, in seconds.
PROGRESS_EVERY = 5.0


class Progress:
    """The runs under way, epoch by epoch: whenever a run's history.csv shows an epoch
    more, a line with the epoch, its seconds and about how long the run has left at that
    pace, each line starting with `prefix` ("kvt compare"). Reads each run directory at
    most every `every` seconds of `clock`. A run whose files are written elsewhere (a
    Ray node that copies) shows nothing until it ends."""

    def __init__(self, stream: TextIO, prefix: str, every: float = PROGRESS_EVERY,
                 clock: Callable[[], float] = time.monotonic):
        self.stream, self.prefix, self.every, self.clock = stream, prefix, every, clock
        self.due = clock()
        # id(job) -> (job, when it started (time.time()), the epochs shown so far)
        self.watched: dict[int, tuple[Job, float, int]] = {}

    def add(self, job: Job) -> None:
        """Watches a job that has just started. A history.csv older than that is not its
        news: a resumed run's earlier epochs, or what a run started again will replace."""
        self.watched[id(job)] = (job, time.time(), 0)

    def remove(self, job: Job) -> None:
        self.watched.pop(id(job), None)

    def poll(self) -> None:
        now = self.clock()
        if now < self.due:
            return
        self.due = now + self.every
        for key, (job, since, shown) in list(self.watched.items()):
            history = _history_since(job.run_dir, since)
            done = len(next(iter(history.values()), []))
            if done <= shown:
                continue
            self.watched[key] = (job, since, done)
            line = f"{self.prefix}: {job.name}: epoch {done}/{job.epochs}"
            pace = history.get("epoch_seconds", [])
            if pace:
                line += f" in {pace[-1]:.0f} s"
                if done < job.epochs:
                    line += (f", about {duration((job.epochs - done) * pace[-1])} to go at "
                             f"that pace")
            print(line, file=self.stream, flush=True)


def _history_since(rd: RunDir, since: float) -> dict[str, list[float]]:
    """A run's history.csv if it was written at `since` (time.time()) or later, give or
    take a second (file times are coarser than the clock), else (or if it cannot be read
    yet) nothing."""
    try:
        if (rd / "history.csv").stat().st_mtime < since - 1:
            return {}
        return rd.read_history()
    except (OSError, ValueError):
        return {}


def duration(seconds: float) -> str:
    """A duration in the unit that reads best: "40 s", "58 min", "5.9 h"."""
    if seconds >= 5400:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 90:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"
