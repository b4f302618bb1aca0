"""`kvt tune`: a hyperparameter search over `kvt train`'s own flags, on Optuna.

Each trial is an ordinary `kvt train` run (its own process, run directory, lock and
status.json), trained by the executors `kvt compare` uses (`kvt.executors`), judged on
the `--val-split` holdout of the training images: the test split is never looked at.

The tune directory:

    tune-plan.json        the plan: base config, space (--search), trials wanted, -j,
                          executor, study name and storage (password masked), owner token
    status.json           running | complete | failed | interrupted (the search as a whole)
    study.db              the Optuna study (SQLite), unless --storage names another
    configs/trial-N.json  each trial's TrainConfig, as `kvt train --config` reads it
    trials/trial-N/       each trial's run directory, plus train.log
    best.json             the best trial's config (without the holdout), for kvt train
    tune.md, tune.json    every trial: parameters, holdout accuracy, state, seconds
    history.png, params.png, importance.png

A trial is RUNNING in the study while it trains, then COMPLETE (told its holdout
accuracy), PRUNED (stopped by the pruner after an epoch) or FAIL. A stop (Ctrl-C,
SIGTERM) leaves the trials under way RUNNING, their runs interrupted: `--resume`
continues each from its last finished epoch, so no trial is marked COMPLETE that did
not finish, and no epoch is trained twice.

The modules, each importing only those before it: `space` (the --search syntax),
`storage` (study URLs, masking), `plan` (the tune directory), `render` (results),
`trials` (asking, feeding the pruner, telling), `study` (a search from start to end).
Optuna is imported only inside functions, so `kvt --help` never loads it.
"""

from kvt.tune.plan import RESULTS, TuneDir, TunePlan
from kvt.tune.space import Param, parse_search, parse_space

__all__ = ["RESULTS", "Param", "TuneDir", "TunePlan", "parse_search", "parse_space"]
