"""The trials of a search: asked from the Optuna study one at a time as an executor has
room, trained as `kvt train` runs, fed to the pruner epoch by epoch, told back.

The executor (`kvt.executors`) takes a list of jobs and pops them as it has room; a
`TrialQueue` stands in for that list, so each trial is asked of the study only when it
can start (TPE then sees every trial told so far), and the queue is empty once enough
trials are finished or under way.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path
from typing import Any, Callable, TextIO

from kvt import signals
from kvt.compare.results import failure_message
from kvt.config import TrainConfig
from kvt.errors import UsageError
from kvt.executors import Job, Remote, next_action
from kvt.runs import LOCK, RunDir
from kvt.tune.plan import TunePlan, TuneDir

FINISHED = ("COMPLETE", "PRUNED")  # the trials that count towards --trials
# How often the history.csv of the trials under way is read for the pruner, in seconds.
FEED_EVERY = 1.0
# A search whose trials keep failing stops asking for more after this many in a row
# (or -j, if larger): a broken data path should not fail a thousand trials.
FAILURES_IN_A_ROW = 3
# Samples that kvt train would refuse (e.g. --warmup-epochs above a sampled --epochs)
# are failed and asked again, at most this many times in a row.
INVALID_SAMPLES = 20


def describe(params: dict[str, Any]) -> str:
    return ", ".join(f"{k.replace('_', '-')}={v:.4g}" if isinstance(v, float)
                     else f"{k.replace('_', '-')}={v}" for k, v in params.items())


class Search:
    """Runs the trials of `plan` in `tune_dir` against an Optuna `study`; `train_argv` is
    `kvt.cli.common.train_argv`, the one builder of `kvt train` command lines."""

    def __init__(self, tune_dir: TuneDir, plan: TunePlan, study,
                 train_argv: Callable[..., list[str]], stream: TextIO, owner: str):
        import optuna

        self.dir, self.plan, self.study = tune_dir, plan, study
        self.train_argv, self.stream, self.owner = train_argv, stream, owner
        self.states = optuna.trial.TrialState
        self.distributions = {p.name: p.distribution() for p in plan.space}
        self.prune = plan.executor == "local"  # only a local run can be stopped early
        self.live: dict[int, dict[str, Any]] = {}  # id(job) -> the trial it trains
        self.finished = len(study.get_trials(deepcopy=False, states=self._finished()))
        self.failed_in_a_row = 0
        self.due = 0.0

    def _finished(self):
        return tuple(getattr(self.states, s) for s in FINISHED)

    # --- what is left to train ------------------------------------------------------

    def wanted(self) -> int:
        """How many more trials to start: the plan's count less those finished or under
        way; none once too many have failed in a row."""
        if self.failed_in_a_row >= max(FAILURES_IN_A_ROW, self.plan.jobs):
            return 0
        return max(0, self.plan.trials - self.finished - len(self.live))

    def recovered(self) -> list[Job]:
        """This directory's trials that an earlier start left RUNNING (stopped, or the
        machine went down): told what their run came to, or continued from their last
        finished epoch (see `kvt.tune`)."""
        import optuna

        jobs = []
        for frozen in self.study.get_trials(deepcopy=False, states=(self.states.RUNNING,)):
            if frozen.user_attrs.get("owner") != self.owner:
                continue  # another machine's trial of a shared study
            trial = optuna.trial.Trial(self.study, frozen._trial_id)
            rd, number = self.dir.run_dir(frozen.number), frozen.number
            entry = {"number": number, "trial": trial, "params": frozen.params,
                     "reported": set(frozen.intermediate_values),
                     "seconds": frozen.user_attrs.get("seconds", 0.0)}
            if "pruned_at" in frozen.user_attrs:  # stopped before it was told
                entry["pruned_at"] = frozen.user_attrs["pruned_at"]
            if "pruned_at" in entry or not self.dir.config_path(number).is_file():
                self._tell(entry, rd, 1, 0.0)
                continue
            action = next_action(rd)
            if action == "done":
                self._tell(entry, rd, 0, 0.0)
                continue
            job = self._job(number, action)
            entry["since"] = 0.0 if action == "resume" else None
            self.live[id(job)] = entry
            jobs.append(job)
        return jobs

    def _job(self, number: int, action: str) -> Job:
        rd, config = self.dir.run_dir(number), self.dir.config_path(number)
        epochs = TrainConfig.load(config).epochs
        rel = TuneDir(".")
        start = self.train_argv(rel.config_path(number), out=rel.run_dir(number).path, force=True)
        resume = self.train_argv(resume=rel.run_dir(number).path)
        argv = (self.train_argv(resume=rd.path) if action == "resume"
                else self.train_argv(config, out=rd.path, force=True))
        return Job(f"trial {number}", rd, argv, action, epochs,
                   Remote(rel.run_dir(number).path, [rel.config_path(number)], start, resume))

    def ask(self) -> Job:
        """A new trial, asked of the study, its config file written: a job to start."""
        for _ in range(INVALID_SAMPLES):
            # Asked and written whole, so that a stop never leaves a trial of ours that
            # the next start cannot find.
            with signals.deferred():
                trial = self.study.ask(self.distributions)
                trial.set_user_attr("owner", self.owner)
                try:
                    config = self.plan.config(trial.params)
                except UsageError as e:
                    trial.set_user_attr("error", f"kvt train refuses this sample: {e}")
                    self.study.tell(trial, state=self.states.FAIL)
                    continue
                self.dir.write_trial_config(trial.number, config)
                trial.set_user_attr("run", str(Path("trials") / f"trial-{trial.number:04d}"))
            job = self._job(trial.number, "start")
            self.live[id(job)] = {"number": trial.number, "trial": trial,
                                  "params": trial.params, "reported": set(),
                                  "seconds": 0.0, "since": None}
            return job
        raise UsageError(f"{INVALID_SAMPLES} samples in a row were values kvt train refuses "
                         f"(see tune.json): narrow the --search ranges")

    # --- the executor's callbacks ---------------------------------------------------

    def started(self, job: Job) -> None:
        entry = self.live[id(job)]
        if entry["since"] is None:
            entry["since"] = time.time()  # a history.csv older than this is not its own
        entry["started"] = time.perf_counter()
        verb = "continuing" if job.action == "resume" else "starting"
        print(f"kvt tune: {verb} trial {entry['number']} ({describe(entry['params'])})",
              file=self.stream, flush=True)

    def tick(self) -> None:
        """Reports each new epoch's holdout accuracy to the study and stops a trial the
        pruner gives up on."""
        signals.check()  # a signal whose KeyboardInterrupt a library swallowed
        now = time.monotonic()
        if now < self.due:
            return
        self.due = now + FEED_EVERY
        # Signals wait for the end of the study's calls: an interrupt inside one of its
        # SQLAlchemy transactions would leave the session unusable for the stop's own
        # writes (the trials' seconds, the interim results).
        with signals.deferred():
            if self.plan.storage is not None:  # shared: other machines finish trials too
                self.finished = max(self.finished, len(self.study.get_trials(
                    deepcopy=False, states=self._finished())))
            for entry in list(self.live.values()):
                if entry.get("since") is not None and "pruned_at" not in entry:
                    self._feed(entry)

    def _feed(self, entry: dict[str, Any]) -> None:
        """Reports the epochs of one trial's history.csv that the study has not seen."""
        rd = self.dir.run_dir(entry["number"])
        for epoch, accuracy in enumerate(_holdout_curve(rd, entry["since"]), start=1):
            if epoch in entry["reported"]:
                continue
            entry["trial"].report(accuracy, epoch)
            entry["reported"].add(epoch)
            print(f"kvt tune: trial {entry['number']}: epoch {epoch}, holdout accuracy "
                  f"{100 * accuracy:.2f}%", file=self.stream, flush=True)
            if self.prune and entry["trial"].should_prune():
                entry["pruned_at"] = epoch
                entry["trial"].set_user_attr("pruned_at", epoch)
                stopped = _stop_run(rd)
                print(f"kvt tune: trial {entry['number']}: pruned at epoch {epoch} (its best "
                      f"so far is below the median of earlier trials there)"
                      f"{'' if stopped else '; it runs to its end'}",
                      file=self.stream, flush=True)
                return

    def stopped(self) -> None:
        """After a stop: the trials under way stay RUNNING, with this command's seconds
        added, for the next --resume to continue; a trial whose run finished as the stop
        came (the executor stopped before it said so) is told its result now."""
        with signals.deferred():
            for entry in self.live.values():
                if "started" not in entry:
                    continue
                seconds = time.perf_counter() - entry["started"]
                try:
                    rd = self.dir.run_dir(entry["number"])
                    if rd.status() == "complete" and "pruned_at" not in entry:
                        self._tell(entry, rd, 0, seconds)
                    else:
                        entry["trial"].set_user_attr("seconds", entry["seconds"] + seconds)
                except Exception:  # bookkeeping only: the stop itself must go on
                    pass

    def ended(self, job: Job, code: int, seconds: float) -> None:
        entry = self.live.pop(id(job))
        if job.run_dir.status() == "interrupted" and "pruned_at" not in entry:
            # stopped by the same Ctrl-C as this process: the trial stays RUNNING and the
            # next --resume continues it (the executor's own stop follows)
            entry["trial"].set_user_attr("seconds", entry["seconds"] + seconds)
            return
        with signals.deferred():
            self._tell(entry, job.run_dir, code, seconds)

    def _tell(self, entry: dict[str, Any], rd: RunDir, code: int, seconds: float) -> None:
        """Tells the study what the trial's run came to, and says it."""
        trial, number = entry["trial"], entry["number"]
        total = entry["seconds"] + seconds
        trial.set_user_attr("seconds", total)
        head = f"kvt tune: [{self.finished + 1}/{self.plan.trials}] trial {number}"
        if code == 0 and rd.status() == "complete":
            metrics = rd.read_json("metrics.json")
            if metrics.get("eval_split") != "validation":  # never a test-set objective
                trial.set_user_attr("error", "the run was judged on the test split")
                self.study.tell(trial, state=self.states.FAIL)
                self.failed_in_a_row += 1
                print(f"kvt tune: trial {number}: FAILED: judged on the test split",
                      file=self.stream, flush=True)
                return
            self.study.tell(trial, float(metrics["accuracy"]))
            self.finished += 1
            self.failed_in_a_row = 0
            best = self.study.best_trial
            print(f"{head}: holdout accuracy {100 * metrics['accuracy']:.2f}% in {total:.0f} s "
                  f"(best: trial {best.number}, {100 * best.value:.2f}%)",
                  file=self.stream, flush=True)
        elif "pruned_at" in entry:
            at = entry["pruned_at"]
            if rd.path.is_dir():
                with rd.claim(create=False):
                    rd.mark("pruned", f"pruned by kvt tune after epoch {at}")
            self.study.tell(trial, state=self.states.PRUNED)
            self.finished += 1
            print(f"{head}: pruned after epoch {at} in {total:.0f} s", file=self.stream,
                  flush=True)
        else:
            reason = (failure_message(rd) if rd.path.is_dir()
                      else "interrupted before its run started")
            trial.set_user_attr("error", reason)
            self.study.tell(trial, state=self.states.FAIL)
            self.failed_in_a_row += 1
            print(f"kvt tune: trial {number}: FAILED (exit {code}): {reason}",
                  file=self.stream, flush=True)


class TrialQueue:
    """The `todo` list an executor pops from: the trials to continue first, then new
    trials asked of the study, for as long as `Search.wanted()` says.

    The next new trial is asked when the executor, with a slot free, checks whether the
    list is empty, so that a search that cannot ask one (its space holds only values kvt
    train refuses) reads as an empty list to the executor, which then lets the trials
    under way finish, instead of an error inside it that would leave them running;
    `error` holds it."""

    def __init__(self, search: Search, recovered: list[Job]):
        self.search, self.recovered = search, recovered
        self.pending: Job | None = None
        self.error: UsageError | None = None

    def _ask(self) -> None:
        if (self.pending is None and not self.recovered and self.error is None
                and self.search.wanted() > 0):
            try:
                self.pending = self.search.ask()
            except UsageError as e:
                self.error = e

    def __len__(self) -> int:
        self._ask()
        return len(self.recovered) + (self.pending is not None) + self.search.wanted()

    def __bool__(self) -> bool:
        if self.recovered or self.pending is not None:
            return True
        if self.error is not None:
            return False
        if 0 < self.search.plan.jobs <= len(self.search.live):
            # every slot is taken: the executor only asks whether anything is left, and
            # the trial is asked when a slot frees, with the results told by then
            return self.search.wanted() > 0
        self._ask()
        return self.pending is not None

    def pop(self, index: int = 0) -> Job:
        if self.recovered:
            return self.recovered.pop(index)
        self._ask()
        if self.pending is None:
            raise IndexError("pop from an empty TrialQueue")
        job, self.pending = self.pending, None
        return job


def _holdout_curve(rd: RunDir, since: float) -> list[float]:
    """The per-epoch holdout accuracy of a run's history.csv (val_accuracy: the run holds
    out --val-split of its training images and validates on them, never on the test
    split), if the file was written at `since` or later; [] if not or unreadable."""
    try:
        if (rd / "history.csv").stat().st_mtime < since - 1:
            return []
        return rd.read_history().get("val_accuracy", [])
    except (OSError, ValueError, KeyError):
        return []


def _stop_run(rd: RunDir) -> bool:
    """Sends SIGTERM to the `kvt train` that holds `rd` on the local machine (it checkpoints
    and marks itself interrupted). The pid is the one its status.json and its lock file
    both name, so that a process that has ended and whose pid was reused is not hit.
    False where the run trains elsewhere."""
    state = rd.state()
    try:
        pid, host = (rd / LOCK).read_text().split()
        if (state.get("status") != "running" or host != socket.gethostname()
                or int(pid) != state.get("pid")):
            return False
        os.kill(int(pid), signal.SIGTERM)
    except (OSError, ValueError):
        return False
    return True
