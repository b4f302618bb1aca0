"""The sweep directory (see `kvt.compare`) and the training of its runs.

`Sweep.jobs` says what each (configuration, seed) still needs, as a `kvt train` command
line; an executor trains the jobs (`local_pool`: child processes of this one, several at
a time, stopped together; `kvt.compare.ray_executor`: Ray tasks); `execute` is the whole
sweep: train what is left, then write the results.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, TextIO

from kvt import signals
from kvt.backends import thread_env
from kvt.compare.plan import Plan, Variant
from kvt.compare.render import render_text, write_results
from kvt.compare.results import collect, failure_message, unfinished
from kvt.errors import Cancelled, RunError, UsageError
from kvt.runs import RunDir, write_json, write_text

RESULTS = ("compare.md", "compare.json", "compare.png", "curves.png")
# The `kvt train` command line of a run (without the program): `kvt.cli.common.train_argv`,
# which the CLI passes in (this library sits below the CLI). Called as
# train_argv(config_file, seed=, out=, force=True) or train_argv(resume=run_dir,
# data_dir=where its data lies now or None).
TrainArgv = Callable[..., list[str]]


@dataclasses.dataclass
class Job:
    """One (configuration, seed) of a sweep: its run directory, what it still needs
    and the `kvt train` command line that does it."""

    variant: Variant
    seed: int
    run_dir: RunDir
    argv: list[str] = dataclasses.field(default_factory=list)
    action: str = "start"  # start | resume | done
    # To resume: where the run's data lies now, if the plan moved it (kvt compare --resume
    # --data-dir) since the run last trained; None if it is where the run has it.
    data_dir: str | None = None


# How the jobs of a sweep are trained: `executor(todo, jobs, started, finished, tick)`
# runs every job of `todo` (`kvt <job.argv>`, its output in the run's train.log), at most
# `jobs` at a time; it calls `started(job)` once a job is under way, `finished(job, exit
# code, seconds)` once it has ended and `tick()` every second or so while it waits (the
# sweep's progress lines), and on KeyboardInterrupt stops what it started (each run
# checkpoints and marks itself interrupted) before letting the interrupt go on.
# `local_pool` runs them as child processes of this one; `RayExecutor`
# (kvt.compare.ray_executor) as Ray tasks on the nodes of a cluster.
Executor = Callable[[list[Job], int, Callable[[Job], None], Callable[[Job, int, float], None],
                     Callable[[], None]], None]

# How often the sweep reads the history.csv of the runs under way, in seconds.
PROGRESS_EVERY = 5.0


class Sweep:
    """A sweep directory (see `kvt.compare`)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.status = RunDir(self.path)

    def run_dir(self, variant: Variant, seed: int) -> RunDir:
        return RunDir(self.path / "runs" / variant.slug / f"seed-{seed}")

    def config_path(self, variant: Variant) -> Path:
        return self.path / "configs" / f"{variant.slug}.json"

    def claim(self, create: bool = True):
        """Holds the sweep directory for this process (see `RunDir.claim`)."""
        return self.status.claim(create)

    def create(self, plan: Plan, force: bool) -> None:
        """Writes the plan; refuses an existing sweep unless `force`, which deletes it.
        Call it inside `claim()`."""
        if (self.path / "sweep.json").exists():
            if not force:
                raise RunError(f"{self.path} already holds a sweep: continue it with --resume "
                               f"{self.path}, choose another --out, or pass --force to start "
                               f"over")
            for name in ("runs", "configs"):
                shutil.rmtree(self.path / name, ignore_errors=True)
            for name in (*RESULTS, "status.json"):
                (self.path / name).unlink(missing_ok=True)
        try:
            self.save(plan)
        except OSError as e:
            raise RunError(f"cannot write the sweep directory {self.path} ({e.strerror or e}): "
                           f"choose a writable --out") from None

    def save(self, plan: Plan) -> None:
        """Writes each configuration's config file (what its new runs train), then the
        plan (sweep.json)."""
        (self.path / "configs").mkdir(parents=True, exist_ok=True)
        for variant in plan.variants:
            write_text(self.config_path(variant), plan.config(variant).to_json() + "\n")
        write_json(self.path / "sweep.json", plan.to_dict())

    def load(self) -> Plan:
        if self.path.exists() and not self.path.is_dir():  # --force would not help
            raise RunError(f"{self.path} is a file, not a kvt compare directory: pass the "
                           f"--out folder of a sweep")
        try:
            return Plan.from_dict(json.loads((self.path / "sweep.json").read_text()))
        except UsageError as e:  # a field of the file: named by the check
            raise UsageError(f"{self.path / 'sweep.json'}: {e}") from None
        except FileNotFoundError:
            raise RunError(f"{self.path} is not a kvt compare directory (no sweep.json): pass "
                           f"the --out of the sweep to continue") from None
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise RunError(f"cannot read {self.path / 'sweep.json'} ({e}): start the sweep "
                           f"again with --force") from None

    def jobs(self, plan: Plan, train_argv: TrainArgv) -> list[Job]:
        """What each (configuration, seed) still needs, seeds first so that an early
        stop leaves every configuration with some runs; `train_argv` spells the
        `kvt train` command line of each."""
        jobs = []
        for seed in plan.seeds:
            for variant in plan.variants:
                rd = self.run_dir(variant, seed)
                if rd.path.is_dir():
                    with rd.claim(create=False):  # refuses a run another process is training
                        pass
                action = next_action(rd)
                moved = data_dir_to_resume(rd, plan.config(variant)) if action == "resume" else None
                jobs.append(Job(variant, seed, rd, self.train_argv(
                    variant, seed, action, train_argv, moved), action, moved))
        return jobs

    def train_argv(self, variant: Variant, seed: int, action: str,
                   train_argv: TrainArgv, data_dir: str | None = None) -> list[str]:
        """The `kvt train` command line that does `action` for a run (none for "done"),
        its paths as this Sweep spells them (relative ones for a Sweep(".") that runs
        in the sweep directory); a resumed one reads its data from `data_dir` if given."""
        rd = self.run_dir(variant, seed)
        if action == "done":
            return []
        if action == "resume":
            return train_argv(resume=rd.path, data_dir=data_dir)
        return train_argv(self.config_path(variant), seed=seed, out=rd.path, force=True)


def data_dir_to_resume(rd: RunDir, config) -> str | None:
    """The plan's data directory for a run to resume, if its own config.json names
    another (the sweep's data moved since it last trained); None otherwise (and when
    config.json cannot be read: `kvt train --resume` says why)."""
    try:
        saved = json.loads((rd / "config.json").read_text())["config"].get("data_dir")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return config.data_dir if config.data_dir and config.data_dir != saved else None


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


def child_env(jobs: int) -> dict[str, str]:
    """The children's environment: with several at once, each gets its share of cores
    (TensorFlow and PyTorch threads) unless the user has set the counts."""
    env = dict(os.environ)
    if jobs > 1:
        for name, value in thread_env(max(1, (os.cpu_count() or 1) // jobs)).items():
            env.setdefault(name, value)
        # Several children on one GPU: JAX would take 75% of its memory each, TensorFlow
        # all of it, at start-up; PyTorch allocates as it goes. (Ignored on a CPU.)
        env.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", f"{0.9 / jobs:.2f}")
        env.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def local_pool(todo: list[Job], jobs: int, started: Callable[[Job], None],
               finished: Callable[[Job, int, float], None],
               tick: Callable[[], None], python: str = sys.executable) -> None:
    """The executor of this machine: each job a `python -m kvt` child process, its
    output in the run's train.log, `jobs` at a time, each with its share of the cores
    (`child_env`)."""
    env = child_env(jobs)
    running: dict[subprocess.Popen, tuple[Job, Any, float]] = {}
    try:
        while todo or running:
            while todo and len(running) < jobs:
                job = todo.pop(0)
                # A child that was started is always known, so that a stop reaches it.
                with signals.deferred():
                    job.run_dir.path.mkdir(parents=True, exist_ok=True)
                    log = open(job.run_dir / "train.log", "a")
                    log.write(f"$ kvt {shlex.join(job.argv)}\n")
                    log.flush()
                    with signals.children_held():
                        proc = subprocess.Popen([python, "-m", "kvt", *job.argv], stdout=log,
                                                stderr=subprocess.STDOUT, env=env,
                                                stdin=subprocess.DEVNULL)
                    running[proc] = (job, log, time.perf_counter())
                started(job)
            time.sleep(0.2)
            tick()
            for proc in [p for p in running if p.poll() is not None]:
                job, log, start = running.pop(proc)
                log.close()
                finished(job, proc.returncode, time.perf_counter() - start)
    except KeyboardInterrupt:
        _stop(running)
        raise


def train_jobs(sweep: Sweep, plan: Plan, jobs: int, stream: TextIO, train_argv: TrainArgv,
               executor: Executor | None = None) -> None:
    """Trains every job that is not done, `jobs` at a time, with `executor` (default:
    `local_pool`); a failed run is recorded by its own status.json and does not stop the
    others."""
    executor = executor or local_pool
    todo = [j for j in sweep.jobs(plan, train_argv) if j.action != "done"]
    total, finished = len(todo), 0
    done_before = len(plan.variants) * len(plan.seeds) - total
    if done_before:
        print(f"kvt compare: {done_before} runs already finished, {total} to go", file=stream,
              flush=True)

    progress = Progress(plan, stream)

    def started(job: Job) -> None:
        verb = "continuing" if job.action == "resume" else "starting"
        print(f"kvt compare: {verb} {job.variant.label} seed {job.seed}", file=stream,
              flush=True)
        progress.add(job)

    def ended(job: Job, returncode: int, seconds: float) -> None:
        nonlocal finished
        progress.remove(job)
        finished += 1
        print(f"kvt compare: [{finished}/{total}] {job.variant.label} seed {job.seed}: "
              f"{_outcome(job, returncode, seconds)}", file=stream, flush=True)
        sweep.status.mark("running", f"{done_before + finished} of "
                                     f"{done_before + total} runs finished")

    sweep.status.mark("running", f"{done_before} of {done_before + total} runs finished")
    try:
        executor(todo, jobs, started, ended, progress.poll)
    except KeyboardInterrupt:
        raise _cancelled(sweep, "stopped; finished runs are kept, unfinished ones continue "
                                "from their last finished epoch with") from None


class Progress:
    """The runs under way, epoch by epoch: whenever a run's history.csv shows an epoch
    more, a line with the epoch, its seconds and about how long the run has left at that
    pace. Reads each run directory at most every `every` seconds of `clock`. A run whose
    files are written elsewhere (a Ray node that copies) shows nothing until it ends."""

    def __init__(self, plan: Plan, stream: TextIO, every: float = PROGRESS_EVERY,
                 clock: Callable[[], float] = time.monotonic):
        self.epochs = {v.label: plan.config(v).epochs for v in plan.variants}
        self.stream, self.every, self.clock = stream, every, clock
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
            total = self.epochs[job.variant.label]
            line = f"kvt compare: {job.variant.label} seed {job.seed}: epoch {done}/{total}"
            pace = history.get("epoch_seconds", [])
            if pace:
                line += f" in {pace[-1]:.0f} s"
                if done < total:
                    line += f", about {_duration((total - done) * pace[-1])} to go at that pace"
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


def _duration(seconds: float) -> str:
    if seconds >= 5400:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 90:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"


def _cancelled(sweep: Sweep, words: str) -> Cancelled:
    """Marks the sweep interrupted; the error that says how to continue it."""
    hint = f"kvt compare --resume {shlex.quote(str(sweep.path))}"
    with signals.deferred():
        sweep.status.mark("interrupted", f"continue with {hint}")
    return Cancelled(f"{words}: {hint}")


def _stop(running: dict[subprocess.Popen, tuple[Job, Any, float]]) -> None:
    """Asks every child to stop (they checkpoint and mark themselves interrupted)."""
    for proc in running:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 60
    for proc, (_, log, _) in running.items():
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _outcome(job: Job, returncode: int, seconds: float) -> str:
    if returncode == 0 and job.run_dir.status() == "complete":
        metrics = job.run_dir.read_json("metrics.json")
        return f"{100 * metrics['accuracy']:.2f}% in {seconds:.0f} s"
    return f"FAILED (exit {returncode}): {failure_message(job.run_dir)}"


def execute(sweep: Sweep, plan: Plan, jobs: int, stream: TextIO, command: str,
            train_argv: TrainArgv, executor: Executor | None = None
            ) -> tuple[dict[str, Any], str]:
    """Trains what is left of the sweep, then writes the results. Returns the
    analysis and its text table."""
    train_jobs(sweep, plan, jobs, stream, train_argv, executor)
    try:
        results = collect(sweep, plan)
        analysis = write_results(sweep, plan, results, command)
        finished = len(results) - len(unfinished(analysis))
        with signals.deferred():
            signals.check()
            sweep.status.mark("complete", f"{finished} of {len(results)} runs finished")
            signals.settled()  # the results are whole: a late signal changes nothing
    except KeyboardInterrupt:
        raise _cancelled(sweep, "stopped while writing the results; every run is kept: "
                                "write them with") from None
    return analysis, render_text(plan, analysis)


def report(sweep: Sweep, plan: Plan, command: str) -> tuple[dict[str, Any], str]:
    """Writes the results of the runs `sweep` has finished so far, training nothing, and
    returns the analysis and its text table. Unless the sweep itself has finished, they
    are marked interim: its other runs may still be training, or wait for --resume."""
    interim = sweep.status.status() != "complete"
    try:
        analysis = write_results(sweep, plan, collect(sweep, plan), command, interim=interim)
    except OSError as e:
        raise RunError(f"cannot write the results into {sweep.path} ({e.strerror or e}): make "
                       f"the sweep directory writable") from None
    return analysis, render_text(plan, analysis)
