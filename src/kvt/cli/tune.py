"""`kvt tune`: a hyperparameter search over the flags of kvt train, judged on a holdout."""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

from kvt.cli.common import (CONFIG_FLAGS, add_config_arguments, add_threads_argument,
                            apply_threads, config_from_args, given_flags, positive, train_argv)

DEFAULT_TRIALS = 20
DEFAULT_VAL_SPLIT = 0.1
EXECUTORS = ("local", "ray")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "tune", help="search kvt train's hyperparameters with Optuna, on a holdout",
        description="Search hyperparameters of kvt train with Optuna (TPE sampler, median "
                    "pruner fed each epoch's holdout accuracy). Each trial is an ordinary "
                    "kvt train run in its own process, judged on the --val-split holdout "
                    "of the training images: the test split is never looked at. Writes "
                    "best.json (for kvt train --config), tune.md, tune.json and plots. "
                    "The flags of kvt train set what every trial shares.",
        epilog="space: --search FLAG=LOW:HIGH (uniform), FLAG=log:LOW:HIGH (log-uniform), "
               "FLAG=int:LOW:HIGH (integers), FLAG=cat:A,B,C (one of the values), FLAG a "
               "flag of kvt train without its dashes.\n\n"
               "examples: kvt tune --dataset digits --search lr=log:0.01:0.5 --trials 6 -j 2 "
               "| kvt tune --recipe fast-cpu --model quicknet --search lr=log:0.01:1 --search "
               "weight-decay=log:1e-5:1e-3 --search epochs=int:1:4 --trials 30 | kvt tune "
               "--resume runs/tune-20261207-120000 | kvt tune --extend "
               "runs/tune-20261207-120000 --trials 40")
    search = p.add_argument_group("search")
    search.add_argument("--search", action="append", default=[], metavar="FLAG=SPEC",
                        help="a dimension of the space (repeatable), e.g. lr=log:0.01:1, "
                             "label-smoothing=0:0.2, epochs=int:1:4, activation=cat:relu,crelu")
    search.add_argument("--trials", type=int, default=None, metavar="N",
                        help=f"trials to finish, complete or pruned; failed ones do not count "
                             f"(default: {DEFAULT_TRIALS}; with --extend, how many the search "
                             f"should have in all)")
    search.add_argument("--storage", default=None, metavar="URL",
                        help="the study's database, shared by several machines, e.g. "
                             "postgresql://user:PASSWORD@host/db (default: $KVT_TUNE_STORAGE, "
                             "else study.db in the tune directory); the password is never "
                             "written or printed: give it again (or through "
                             "$KVT_TUNE_STORAGE) to --resume")
    search.add_argument("--study-name", default=None, metavar="NAME",
                        help="the study's name in --storage (default: kvt-tune); an existing "
                             "study of that name is joined")
    add_config_arguments(p)
    out = p.add_argument_group("execution and output")
    out.add_argument("-j", "--jobs", type=int, default=None,
                     help="trials at a time, each in its own process (default: 1, with "
                          "--executor ray as many as the cluster's CPUs hold; --resume keeps "
                          "the search's own); each gets its share of the cores")
    out.add_argument("--executor", choices=EXECUTORS, default=None,
                     help="where trials train: local (child processes) or ray (Ray tasks; "
                          "no pruning: a task cannot be stopped alone) (default: local)")
    out.add_argument("--ray-address", default=None, metavar="ADDR",
                     help="with --executor ray: join this Ray cluster (auto or HOST:PORT) "
                          "(default: a local Ray instance)")
    out.add_argument("--cpus-per-run", type=int, default=None, metavar="N",
                     help="with --executor ray: CPUs per trial (default: 1)")
    out.add_argument("--out", default=None, help="tune directory (default: runs/tune-<time>)")
    out.add_argument("--resume", default=None, metavar="TUNE_DIR",
                     help="continue a stopped search: trials under way go on from their last "
                          "finished epoch, until --trials are finished")
    out.add_argument("--extend", default=None, metavar="TUNE_DIR",
                     help="add trials to a search (with --trials, the new total)")
    out.add_argument("--force", action="store_true", help="start over in an existing --out")
    add_threads_argument(out)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    for name in ("jobs", "trials", "cpus_per_run"):
        if getattr(args, name) is not None:
            positive(name.replace("_", "-"), getattr(args, name))
    apply_threads(args)  # through the environment, every trial gets --threads threads
    if args.resume or args.extend:
        return _continue(args)
    from kvt.tune import TuneDir, TunePlan, parse_space, storage
    from kvt.tune.space import check_against

    space = parse_space(args.search)
    base = holdout_config(args)
    check_against(space, base)
    executor = check_executor(args)
    url = storage.resolve(args.storage)
    _keep_from_trials(storage.ENV)
    # -j's default: 1 trial at a time here; with Ray (0) as many as the cluster holds
    jobs = args.jobs or (0 if executor == "ray" else 1)
    plan = TunePlan(base, space, args.trials or DEFAULT_TRIALS, jobs, executor,
                    ray_settings(args), storage.masked(url) if url else None,
                    args.study_name or "kvt-tune", storage.masked_argv(_argv() or ["tune"]))
    tune_dir = TuneDir(args.out or Path("runs") / f"tune-{time.strftime('%Y%m%d-%H%M%S')}")
    if url:  # a shared database that cannot be reached leaves no tune directory behind
        storage.connect(url)
    with tune_dir.claim(create=True):
        with _executor(tune_dir, plan) as pool:
            tune_dir.create(plan, force=args.force)
            try:
                study = _open(tune_dir, plan, url)
            except BaseException:
                tune_dir.remove_new()
                raise
            return _search(tune_dir, plan, study, pool, "")


def holdout_config(args: argparse.Namespace):
    """The config every trial starts from, judged on a holdout: --val-split (default
    0.1, or what --config says). A search judged on the test split is refused."""
    from kvt.errors import UsageError

    if args.val_split is not None and args.val_split <= 0:
        raise UsageError(f"--val-split {args.val_split:g} would judge every trial on the test "
                         f"split, and a recipe chosen on the test split has no honest test "
                         f"left: kvt tune judges trials on a holdout of the training images; "
                         f"give --val-split between 0 and 1 (default: {DEFAULT_VAL_SPLIT})")
    base = config_from_args(args)
    if base.val_split is None:
        import dataclasses

        base = dataclasses.replace(base, val_split=DEFAULT_VAL_SPLIT)
    return base


def check_executor(args: argparse.Namespace, saved: str = "local") -> str:
    from kvt.errors import UsageError

    executor = args.executor or saved
    ray_flags = given_flags(args, ("ray_address", "cpus_per_run"))
    if executor != "ray" and ray_flags:
        raise UsageError(f"{', '.join(ray_flags)} go with --executor ray")
    if executor == "ray":
        from kvt.executors.ray_executor import import_ray

        import_ray()
    return executor


def ray_settings(args: argparse.Namespace, saved: dict | None = None) -> dict:
    settings = {"address": None, "cpus_per_run": 1, **(saved or {})}
    if args.ray_address is not None:
        settings["address"] = args.ray_address
    if args.cpus_per_run is not None:
        settings["cpus_per_run"] = args.cpus_per_run
    return settings


def _continue(args: argparse.Namespace) -> int:
    """--resume / --extend of an existing search, with its saved plan."""
    from kvt.errors import UsageError
    from kvt.tune import TuneDir, storage

    if args.resume and args.extend:
        raise UsageError("--resume and --extend both continue a search: give one (--extend "
                         "also finishes what a stopped search left)")
    flag = "--resume" if args.resume else "--extend"
    given = given_flags(args, (*CONFIG_FLAGS, "out", "force", "study_name"))
    given += ["--search"] if args.search else []
    if args.resume and args.trials is not None:
        given.append("--trials (to add trials, use --extend TUNE_DIR --trials N)")
    if given:
        raise UsageError(f"{flag} continues a search with its saved plan: drop "
                         f"{', '.join(given)}")
    if args.extend and args.trials is None:
        raise UsageError("--extend needs --trials: how many trials the search should have "
                         "in all")
    tune_dir = TuneDir(args.resume or args.extend)
    check_executor(args, tune_dir.load().executor)  # not a search: refused before the claim
    with tune_dir.claim(create=False):
        plan = tune_dir.load()
        url = storage.resolve_saved(args.storage, plan.storage)
        _keep_from_trials(storage.ENV)
        if args.extend:
            if args.trials <= plan.trials:
                raise UsageError(f"--extend --trials {args.trials}: {tune_dir.path} already "
                                 f"wants {plan.trials} trials; give more than {plan.trials}")
            plan.trials = args.trials
        if args.jobs is not None:
            plan.jobs = args.jobs
        if args.executor is not None and args.executor != plan.executor:
            plan.executor = args.executor
            plan.jobs = args.jobs or (0 if plan.executor == "ray" else 1)
        if plan.executor == "ray":
            plan.ray = ray_settings(args, plan.ray)
        study = _open(tune_dir, plan, url)
        with _executor(tune_dir, plan) as pool:
            tune_dir.save(plan)
            words = f"{flag} {args.resume or args.extend}"
            if args.extend:
                words += f" --trials {args.trials}"
            verb = "resumed" if args.resume else "extended"
            return _search(tune_dir, plan, study, pool, f" ({verb} with kvt tune {words})")


def _keep_from_trials(name: str) -> None:
    """The trials need no database password: their processes, which inherit this
    environment, do not get it (read, it lives on only in this process)."""
    import os

    os.environ.pop(name, None)


def _argv() -> list[str] | None:
    return sys.argv[1:] if sys.argv[1:2] == ["tune"] else None


def _open(tune_dir, plan, url):
    from kvt.tune.storage import default_url
    from kvt.tune.study import open_study

    return open_study(url or default_url(tune_dir.path), plan)


def _executor(tune_dir, plan):
    """The search's executor as a context: None (the local pool) or a RayExecutor."""
    if plan.executor != "ray":
        return contextlib.nullcontext(None)
    from kvt.executors.ray_executor import RayExecutor

    return RayExecutor(tune_dir.path, plan.ray["address"], plan.ray["cpus_per_run"], "auto",
                       sys.stdout)


def _search(tune_dir, plan, study, pool, how: str) -> int:
    from kvt.errors import EXIT_TRAINING
    from kvt.tune import RESULTS
    from kvt.tune.render import command_line
    from kvt.tune.study import execute

    names = ", ".join(p.text for p in plan.space)
    print(f"kvt tune: {plan.trials} trials of {names} in {tune_dir.path}, judged on the "
          f"--val-split {plan.base.val_split:g} holdout", flush=True)
    data = execute(tune_dir, plan, study, train_argv, sys.stdout,
                   command_line(plan.command) + how, pool)
    best = data["best"]
    if best:
        print(f"\nkvt tune: best trial {best['number']}: holdout accuracy "
              f"{100 * best['holdout_accuracy']:.2f}% with "
              + ", ".join(f"--{k.replace('_', '-')} {v:.4g}" if isinstance(v, float) else
                          f"--{k.replace('_', '-')} {v}" for k, v in best["params"].items()))
        print(f"kvt tune: kvt train --config {tune_dir.path / 'best.json'} trains it on the "
              f"whole training split and judges it on the test split")
    written = [r for r in RESULTS if (tune_dir.path / r).exists()]
    print(f"results in {tune_dir.path}: {', '.join(written)}")
    finished = data["counts"]["COMPLETE"] + data["counts"]["PRUNED"]
    if finished < plan.trials:
        print(f"kvt tune: {finished} of {plan.trials} trials finished: trials kept failing "
              f"(see tune.md); fix the cause and go on with kvt tune --resume "
              f"{tune_dir.path}", file=sys.stderr)
        return EXIT_TRAINING
    return 0
