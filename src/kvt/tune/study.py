"""A search from start to end: open the Optuna study, train the trials, write results."""

from __future__ import annotations

import shlex
import warnings
from typing import Any, Callable, TextIO

from kvt import signals
from kvt.errors import Cancelled, RunError, first_line
from kvt.executors import Executor, local_pool
from kvt.tune import storage
from kvt.tune.plan import TunePlan, TuneDir
from kvt.tune.render import write_results
from kvt.tune.trials import Search, TrialQueue

# TPE samples at random until this many trials are complete, then models the good ones.
STARTUP_TRIALS = 5
# The pruner stops a trial whose best holdout accuracy so far is below the median of the
# earlier trials' at that epoch, once this many trials are complete, from this epoch on
# (the first epoch's accuracy says too little of where a run ends).
PRUNER_STARTUP_TRIALS = 5
PRUNE_FROM_EPOCH = 2


def open_study(url: str, plan: TunePlan):
    """The plan's study in `url` (created, or loaded if it exists: a shared study that
    other machines work on too). Errors are one line with the password masked."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rdb = storage.connect(url)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(
            n_startup_trials=STARTUP_TRIALS, seed=plan.base.seed,
            constant_liar=True)  # several trials under way are not asked the same point
    # the steps reported are epochs, counted from 1
    pruner = optuna.pruners.MedianPruner(n_startup_trials=PRUNER_STARTUP_TRIALS,
                                         n_warmup_steps=PRUNE_FROM_EPOCH)
    try:
        study = optuna.create_study(storage=rdb, study_name=plan.study_name,
                                    direction="maximize", sampler=sampler, pruner=pruner,
                                    load_if_exists=True)
    except Exception as e:  # an existing study that minimises, a damaged database
        raise RunError(f"cannot open the study {plan.study_name} in {storage.masked(url)} "
                       f"({storage.redacted(first_line(e), url)}): choose another "
                       f"--study-name") from None
    # A sampler seeded as the first start's would draw its first random points again
    # after --resume: each start's seed also counts the trials the study has.
    told = len(study.get_trials(deepcopy=False))
    if told:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.sampler = optuna.samplers.TPESampler(
                n_startup_trials=STARTUP_TRIALS, seed=(plan.base.seed + 7919 * told) % 2**32,
                constant_liar=True)
    return study


def execute(tune_dir: TuneDir, plan: TunePlan, study, train_argv: Callable[..., list[str]],
            stream: TextIO, command: str, executor: Executor | None = None
            ) -> dict[str, Any]:
    """Trains trials until the plan's count of them is finished (complete or pruned),
    then writes the results. Returns tune.json's content; its "counts" say whether the
    search got there (trials that keep failing stop it early)."""
    search = Search(tune_dir, plan, study, train_argv, stream, plan.owner)
    try:
        with signals.deferred():  # what the last start left, told whole
            recovered = search.recovered()
        left = search.wanted() + len(recovered)
        how = f"{plan.jobs} at a time" if plan.executor == "local" else "as Ray tasks"
        print(f"kvt tune: {search.finished} of {plan.trials} trials finished, {left} to go, "
              f"{how}", file=stream, flush=True)
        tune_dir.status.mark("running", f"{search.finished} of {plan.trials} trials finished")
        queue = TrialQueue(search, recovered)
        (executor or local_pool)(queue, plan.jobs, search.started, search.ended, search.tick)
    except KeyboardInterrupt:
        search.stopped()
        raise _cancelled(tune_dir, study, plan, command) from None
    if queue.error is not None:  # the trials under way have finished: say why no more
        write_results(study, tune_dir, plan, command, interim=True)
        tune_dir.status.mark("failed", str(queue.error))
        raise queue.error
    try:
        with signals.deferred():
            signals.check()
            data = write_results(study, tune_dir, plan, command)
            finished = search.finished >= plan.trials
            tune_dir.status.mark("complete" if finished else "failed",
                                 f"{search.finished} of {plan.trials} trials finished")
            signals.settled()  # the results are whole: a late signal changes nothing
    except KeyboardInterrupt:
        raise _cancelled(tune_dir, study, plan, command) from None
    return data


def _cancelled(tune_dir: TuneDir, study, plan: TunePlan, command: str) -> Cancelled:
    """Marks the search interrupted (its results interim); the error that says how to
    go on."""
    hint = f"kvt tune --resume {shlex.quote(str(tune_dir.path))}"
    with signals.deferred():
        try:
            write_results(study, tune_dir, plan, command, interim=True)
        except Exception:  # the study or the disk went away with the stop: hint anyway
            pass
        tune_dir.status.mark("interrupted", f"continue with {hint}")
    return Cancelled(f"stopped; complete trials are kept, the trials under way continue "
                     f"from their last finished epoch with {hint}")
