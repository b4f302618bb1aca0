"""The sweep directory (see `kvt.compare`) and the training of its runs.

`Sweep.jobs` says what each (configuration, seed) still needs, as a `kvt train` command
line; an executor of `kvt.executors` trains the jobs (the local pool by default);
`execute` is the whole sweep: train what is left, then write the results.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import shutil
from pathlib import Path
from typing import Any, Callable, TextIO

from kvt import signals
from kvt.compare.plan import Plan, Variant
from kvt.compare.render import render_text, write_results
from kvt.compare.results import collect, failure_message, unfinished
from kvt.errors import Cancelled, RunError, UsageError
from kvt.executors import Executor, Job, Progress, Remote, local_pool, next_action
from kvt.record_paths import recorded_data_dir
from kvt.runs import RunDir, write_json, write_text

RESULTS = ("compare.md", "compare.json", "compare.png", "curves.png")
# The `kvt train` command line of a run (without the program): `kvt.cli.common.train_argv`,
# which the CLI passes in (this library sits below the CLI). Called as
# train_argv(config_file, seed=, out=, force=True, data_dir=) or train_argv(resume=run_dir,
# data_dir=): data_dir where its data lies now, if its files do not say, or None.
TrainArgv = Callable[..., list[str]]


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
            config = plan.config(variant)  # its data_dir as records keep it (none if absolute)
            config = dataclasses.replace(config, data_dir=recorded_data_dir(config.data_dir))
            write_text(self.config_path(variant), config.to_json() + "\n")
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
                config = plan.config(variant)
                if action == "resume":
                    moved = data_dir_to_resume(rd, config)
                else:  # the config file keeps no absolute data_dir: given on the command line
                    kept = recorded_data_dir(config.data_dir)
                    moved = config.data_dir if kept != config.data_dir else None
                jobs.append(Job(f"{variant.label} seed {seed}", rd,
                                self.train_argv(variant, seed, action, train_argv, moved),
                                action, config.epochs,
                                _remote(variant, seed, train_argv, moved)))
        return jobs

    def train_argv(self, variant: Variant, seed: int, action: str,
                   train_argv: TrainArgv, data_dir: str | None = None) -> list[str]:
        """The `kvt train` command line that does `action` for a run (none for "done"),
        its paths as this Sweep spells them (relative ones for a Sweep(".") that runs
        in the sweep directory); the run reads its data from `data_dir` if given."""
        rd = self.run_dir(variant, seed)
        if action == "done":
            return []
        if action == "resume":
            return train_argv(resume=rd.path, data_dir=data_dir)
        return train_argv(self.config_path(variant), seed=seed, out=rd.path, force=True,
                          data_dir=data_dir)


def _remote(variant: Variant, seed: int, train_argv: TrainArgv,
            data_dir: str | None) -> Remote:
    """A job's paths and command lines relative to the sweep directory, for an executor
    that trains it on another node (Ray)."""
    rel = Sweep(".")
    return Remote(rel.run_dir(variant, seed).path, [rel.config_path(variant)],
                  rel.train_argv(variant, seed, "start", train_argv, data_dir),
                  rel.train_argv(variant, seed, "resume", train_argv, data_dir))


def data_dir_to_resume(rd: RunDir, config) -> str | None:
    """The plan's data directory for a run to resume, if its own config.json names
    another (the sweep's data moved since it last trained); None otherwise (and when
    config.json cannot be read: `kvt train --resume` says why)."""
    try:
        saved = json.loads((rd / "config.json").read_text())["config"].get("data_dir")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return config.data_dir if config.data_dir and config.data_dir != saved else None


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

    progress = Progress(stream, "kvt compare")

    def started(job: Job) -> None:
        verb = "continuing" if job.action == "resume" else "starting"
        print(f"kvt compare: {verb} {job.name}", file=stream, flush=True)
        progress.add(job)

    def ended(job: Job, returncode: int, seconds: float) -> None:
        nonlocal finished
        progress.remove(job)
        finished += 1
        print(f"kvt compare: [{finished}/{total}] {job.name}: "
              f"{_outcome(job, returncode, seconds)}", file=stream, flush=True)
        sweep.status.mark("running", f"{done_before + finished} of "
                                     f"{done_before + total} runs finished")

    sweep.status.mark("running", f"{done_before} of {done_before + total} runs finished")
    try:
        executor(todo, jobs, started, ended, progress.poll)
    except KeyboardInterrupt:
        raise _cancelled(sweep, "stopped; finished runs are kept, unfinished ones continue "
                                "from their last finished epoch with") from None


def _cancelled(sweep: Sweep, words: str) -> Cancelled:
    """Marks the sweep interrupted; the error that says how to continue it."""
    hint = f"kvt compare --resume {shlex.quote(str(sweep.path))}"
    with signals.deferred():
        sweep.status.mark("interrupted", f"continue with {hint}")
    return Cancelled(f"{words}: {hint}")


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
        results = collect(sweep.path, sweep.run_dir, plan)
        analysis = write_results(sweep.path, plan, results, command)
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
        results = collect(sweep.path, sweep.run_dir, plan)
        analysis = write_results(sweep.path, plan, results, command, interim=interim)
    except OSError as e:
        raise RunError(f"cannot write the results into {sweep.path} ({e.strerror or e}): make "
                       f"the sweep directory writable") from None
    return analysis, render_text(plan, analysis)
