"""`kvt compare`: configurations x seeds, each a kvt run in its own process, and a
statistical answer to "is this one better?"."""

from __future__ import annotations

import argparse
import contextlib
import shlex
import sys
import time
from pathlib import Path

from kvt.cli.common import (CONFIG_FLAGS, add_config_arguments, add_threads_argument,
                            apply_threads, cifar10_data_dir, config_from_args,
                            given_flags, positive, train_argv)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "compare", help="train configurations x seeds and compare them statistically",
        description="Train every configuration of a grid with several seeds (each run an "
                    "ordinary run directory, trained in its own process) and compare mean "
                    "accuracy against a baseline with confidence intervals, Welch's t-test "
                    "and a bootstrap check (a paired interval beside them where the runs "
                    "pair up by seed; configurations whose runs are identical at every seed "
                    "counted once). Writes compare.md, compare.json, compare.png "
                    "and curves.png. The flags of kvt train set what every configuration "
                    "shares.",
        epilog="examples: kvt compare --preset tutorial --seeds 5 | kvt compare --preset "
               "tutorial-2x2 --seeds 5 | kvt compare --vary activation=relu,crelu --vary "
               "backend=tensorflow,jax --seeds 3 --epochs 10 -j 2 | kvt compare --resume "
               "runs/compare-20261201-120000 | kvt compare --extend "
               "runs/compare-20261201-120000 --seeds 10 | kvt compare --report "
               "runs/compare-20261201-120000")
    grid = p.add_argument_group("grid")
    grid.add_argument("--preset", default=None,
                      help="named configurations: tutorial (keras/relu against tf/crelu), "
                           "tutorial-2x2 ({keras, tf} x {relu, crelu}: the API's effect, the "
                           "activation's and their interaction)")
    grid.add_argument("--vary", action="append", default=[], metavar="FIELD=A,B",
                      help="try each value of a config field (repeatable; the grid is every "
                           "combination), e.g. activation=relu,crelu")
    grid.add_argument("--arm", action="append", default=[], metavar="NAME=FILE",
                      help="arms tuned separately (repeatable): every configuration whose "
                           "label has the level NAME as a part (crelu matches keras/crelu "
                           "and tf/crelu) starts from FILE's config (kvt tune's best.json, "
                           "val_split null) instead of --config/--recipe, with its own "
                           "level and the flags typed on top, e.g. crelu=results/tune/"
                           "crelu/best.json")
    grid.add_argument("--seeds", default=None,
                      help="how many seeds (5 = seeds 0..4) or which (1,7,9) (default: 3); "
                           "with --extend, a count is how many the sweep should have, a list "
                           "the seeds to add")
    grid.add_argument("--baseline", default=None, metavar="LABEL",
                      help="the configuration the others are compared with (default: the "
                           "first)")
    add_config_arguments(p, seed=False)
    out = p.add_argument_group("execution and output")
    out.add_argument("-j", "--jobs", type=int, default=None,
                     help="runs at a time, each in its own process (default: 1, with "
                          "--executor ray as many as the cluster's CPUs hold; --resume keeps "
                          "the sweep's own); each gets its share of the cores unless "
                          "--threads says otherwise")
    out.add_argument("--executor", choices=EXECUTORS, default=None,
                     help="where the runs train: local (child processes of this one) or ray "
                          "(Ray tasks, on whichever node of a Ray cluster has room; needs "
                          f"{INSTALL}) (default: local; --resume keeps the sweep's own)")
    out.add_argument("--out", default=None,
                     help="sweep directory (default: runs/compare-<time>)")
    out.add_argument("--resume", default=None, metavar="SWEEP_DIR",
                     help="continue an interrupted sweep: finished runs are kept (with "
                          "--data-dir DIR, on a machine that keeps the sweep's CIFAR-10 "
                          "elsewhere: each run checks that DIR holds the same data)")
    out.add_argument("--extend", default=None, metavar="SWEEP_DIR",
                     help="add seeds to a sweep (with --seeds): its runs are kept, the new "
                          "seeds' runs are trained, and the results are written again")
    out.add_argument("--report", default=None, metavar="SWEEP_DIR",
                     help="write a sweep's results (compare.md, compare.json, the plots) from "
                          "the runs it has finished so far, training nothing: a look at a "
                          "sweep that is still running or was stopped, marked interim, with "
                          "its unfinished runs listed; of a folder that kept only "
                          "compare.json, from the run records it holds (curves.png kept)")
    out.add_argument("--force", action="store_true", help="start over in an existing --out")
    add_threads_argument(out)
    ray = p.add_argument_group("Ray (with --executor ray; --resume keeps the sweep's own)")
    ray.add_argument("--ray-address", default=None, metavar="ADDR",
                     help="join a running Ray cluster: auto (the one RAY_ADDRESS names, or "
                          "that `ray start` started on the local machine) or HOST:PORT of its "
                          "head (default: start a Ray instance on the local machine for the "
                          "sweep, stopped at its end)")
    ray.add_argument("--cpus-per-run", type=int, default=None, metavar="N",
                     help="CPUs Ray reserves for each run, which trains with as many threads "
                          "(default: 1)")
    ray.add_argument("--ray-storage", choices=STORAGE, default=None,
                     help="where runs write: shared (the sweep directory, which every node "
                          "must see at the same path), copy (a temporary directory on the "
                          "node, copied back when the run ends) or auto (shared on nodes "
                          "that see it, copy elsewhere) (default: auto)")
    p.set_defaults(run=run)


EXECUTORS = ("local", "ray")
# Flags that an arm's config does not take from the command line: its file replaces
# --config/--recipe, and the data directory is the sweep's (Plan.base).
NOT_TYPED = ("config", "recipe", "data_dir")
RAY_FLAGS = {"ray_address": "address", "cpus_per_run": "cpus_per_run",
             "ray_storage": "storage"}  # flag dest -> key of the plan's ray settings
STORAGE = ("auto", "shared", "copy")  # kvt.executors.ray_executor.STORAGE, without its import
INSTALL = "pip install 'kvt[ray]'"


def run(args: argparse.Namespace) -> int:
    from kvt.compare import Sweep, build_plan, parse_seeds

    if args.jobs is not None:
        positive("jobs", args.jobs)
    if args.cpus_per_run is not None:
        positive("cpus-per-run", args.cpus_per_run)
    if args.report:
        return run_report(args)
    apply_threads(args)  # through the environment, every child run gets --threads threads
    existing = args.resume or args.extend
    if existing:
        from kvt.errors import UsageError

        if args.resume and args.extend:
            raise UsageError("--resume and --extend both continue a sweep: give one (--extend "
                             "also finishes what an interrupted sweep left)")
        flag = "--resume" if args.resume else "--extend"
        # --data-dir: where the sweep's data lies on the local machine (move_data checks it)
        given = given_flags(args, (*(f for f in CONFIG_FLAGS if f != "data_dir"), "out",
                                   "preset", "baseline", "force"))
        given += ["--vary"] if args.vary else []
        given += ["--arm (the sweep keeps its arms' configs)"] if args.arm else []
        if args.resume and args.seeds is not None:
            given.append("--seeds (to add seeds, use --extend SWEEP --seeds N)")
        if given:
            raise UsageError(f"{flag} continues a sweep with its saved plan: drop "
                             f"{', '.join(given)}")
        if args.extend and args.seeds is None:
            raise UsageError("--extend needs --seeds: how many seeds the sweep should have "
                             "(10 = seeds 0..9) or which to add (12,13)")
        sweep = Sweep(existing)
        # a folder that is not a sweep is refused before it is claimed
        check_executor(args, sweep.load().executor)
    else:
        from kvt.record_paths import portable_argv

        executor = check_executor(args, "local")
        base = config_from_args(args)
        sweep = Sweep(args.out or Path("runs") / f"compare-{time.strftime('%Y%m%d-%H%M%S')}")
        command = sys.argv[1:] if sys.argv[1:2] == ["compare"] else None
        plan = build_plan(base, args.preset, args.vary, parse_seeds(args.seeds or "3"),
                          args.baseline,
                          command=command and portable_argv(command, sweep.path),
                          jobs=args.jobs or default_jobs(executor), executor=executor,
                          ray=ray_settings(args, {}) if executor == "ray" else {})
        if args.arm:
            from kvt.compare.arms import apply_arms

            typed = {f: getattr(args, f) for f in CONFIG_FLAGS if f not in NOT_TYPED
                     and getattr(args, f, None) is not None}
            apply_arms(plan, args.arm, typed, sweep.path)
        from kvt.data import check_name
        from kvt.models import check_image_size, check_model_name

        for variant in plan.variants:  # what no run could load fails before any starts
            config = plan.config(variant)
            check_model_name(config.model, config.api)
            check_image_size(config.model, config.api, config.image_size)
            check_name(config.dataset)
    # Held for the whole sweep: a second compare (or --force) on it is refused at once.
    with sweep.claim(create=not existing):
        if existing:
            plan = sweep.load()
            before = plan.to_dict()
            if args.extend:
                plan.seeds = extended_seeds(plan.seeds, args.seeds, sweep.path)
            if args.data_dir is not None:
                move_data(plan, args.data_dir)
            elif plan.base.data_dir is None and plan.data_source:
                move_data(plan, unrecorded_data_dir(plan, flag, sweep.path))
            if args.executor is not None and args.executor != plan.executor:
                plan.executor = args.executor  # -j's default follows the executor
                plan.jobs = default_jobs(plan.executor)
            if args.jobs is not None:
                plan.jobs = args.jobs  # and the next --resume keeps the new count
            if plan.executor == "ray":
                plan.ray = ray_settings(args, plan.ray)
        # Connected before the plan is written: a cluster that cannot be reached (or that
        # has no node for --cpus-per-run) leaves no new sweep directory behind, and an
        # existing sweep's saved settings as they were.
        with _executor(sweep, plan) as executor:
            if not existing:
                sweep.create(plan, force=args.force)
            elif plan.to_dict() != before:
                sweep.save(plan)
            return _run(args, sweep, plan, executor)


def run_report(args: argparse.Namespace) -> int:
    """`--report SWEEP`: the results of the runs finished so far, written and printed;
    nothing trained, nothing claimed (a sweep still running is read, not stopped)."""
    from kvt.compare import RESULTS, Sweep, report
    from kvt.errors import UsageError
    from kvt.record_paths import portable_path

    given = given_flags(args, (*CONFIG_FLAGS, "out", "preset", "baseline", "force", "resume",
                               "extend", "seeds", "jobs", "executor", "threads",
                               *RAY_FLAGS))
    given += ["--vary"] if args.vary else []
    given += ["--arm"] if args.arm else []
    if given:
        raise UsageError(f"--report writes a sweep's results from its saved plan and "
                         f"finished runs: drop {', '.join(given)}")
    sweep = Sweep(args.report)
    given = shlex.quote(portable_path(args.report, sweep.path))
    reported = f" (reported with kvt compare --report {given})"
    if not (sweep.path / "sweep.json").exists() and (sweep.path / "compare.json").is_file():
        return report_record(sweep, reported)
    plan = sweep.load()
    _, text = report(sweep, plan, sweep_command(plan) + reported)
    print(text, end="")
    print(f"\nresults in {sweep.path}: {', '.join(RESULTS)}")
    return 0


def report_record(sweep, reported: str) -> int:
    """`--report DIR` of a published sweep that kept only its results (compare.json, no
    sweep.json or runs/): analysed again from the run records compare.json holds. They
    carry no learning curves, so curves.png is left as it is."""
    import json

    from kvt.compare import write_results
    from kvt.compare.render import render_text
    from kvt.compare.results import from_record
    from kvt.errors import RunError

    path = sweep.path / "compare.json"
    try:
        data = json.loads(path.read_text())
        plan, results = from_record(data)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise RunError(f"cannot read the run records of {path} ({e}): it is not a kvt "
                       f"compare result") from None
    command = sweep_command(plan) + reported + " from the run records in compare.json"
    try:
        analysis = write_results(sweep.path, plan, results, command,
                                 interim=bool(data.get("interim")), curves=False)
    except OSError as e:
        raise RunError(f"cannot write the results into {sweep.path} ({e.strerror or e}): make "
                       f"it writable") from None
    print(render_text(plan, analysis), end="")
    print(f"\nresults in {sweep.path}: compare.md, compare.json, compare.png (curves.png "
          f"kept: compare.json holds no learning curves)")
    return 0


def check_executor(args: argparse.Namespace, saved: str) -> str:
    """The executor of this command (--executor, else the sweep's `saved` one), its
    flags checked; for Ray, that Ray can be imported (exit 5 and the pip command if not)."""
    from kvt.errors import UsageError

    executor = args.executor or saved
    ray_flags = given_flags(args, RAY_FLAGS)
    if executor != "ray" and ray_flags:
        raise UsageError(f"{', '.join(ray_flags)} {'goes' if len(ray_flags) == 1 else 'go'} "
                         f"with --executor ray")
    if executor == "ray":
        if args.threads is not None:
            raise UsageError("--threads does not apply to --executor ray: each run has as "
                             "many threads as Ray grants it CPUs (--cpus-per-run)")
        from kvt.executors.ray_executor import import_ray

        import_ray()
    return executor


def move_data(plan, data_dir: str) -> None:
    """`--resume/--extend SWEEP --data-dir DIR`: the sweep's runs read CIFAR-10 from DIR
    from now on (its new runs through their config files; each run it resumes is given
    --data-dir, and `kvt train` checks that DIR holds the data the run began with)."""
    import dataclasses

    from kvt.data import cifar10

    data_dir = cifar10_data_dir(data_dir, [plan.config(v).dataset for v in plan.variants],
                                "sweep")
    cifar10.resolve(data_dir)  # a folder without CIFAR-10 is refused before anything runs
    plan.base = dataclasses.replace(plan.base, data_dir=data_dir)


def unrecorded_data_dir(plan, flag: str, path) -> str:
    """Where a sweep whose sweep.json keeps no path to its data (it was given as an
    absolute one) finds it now: KVT_DATA_DIR, or a usage error asking for --data-dir."""
    import os

    from kvt.errors import UsageError

    if os.environ.get("KVT_DATA_DIR"):
        return os.environ["KVT_DATA_DIR"]
    raise UsageError(f"{path} read CIFAR-10 from {plan.data_source}, whose absolute path kvt "
                     f"does not record: {flag} it with --data-dir DIR (or KVT_DATA_DIR=DIR), "
                     f"DIR holding the same data")


def default_jobs(executor: str) -> int:
    """-j's default: 1 run at a time, or (0) as many as the Ray cluster's CPUs hold."""
    return 0 if executor == "ray" else 1


def ray_settings(args: argparse.Namespace, saved: dict) -> dict:
    """The sweep's Ray settings: the flags given, else the `saved` ones, else defaults."""
    settings = {"address": None, "cpus_per_run": 1, "storage": "auto", **saved}
    for dest, key in RAY_FLAGS.items():
        if getattr(args, dest) is not None:
            settings[key] = getattr(args, dest)
    return settings


def extended_seeds(seeds: list[int], text: str, path) -> list[int]:
    """The sweep's seeds after `--extend --seeds text`: a count N means seeds 0..N-1
    (it must add some), a list adds those seeds."""
    from kvt.compare import parse_seeds
    from kvt.errors import UsageError

    wanted = parse_seeds(text)
    if "," not in text and len(wanted) <= len(seeds):
        raise UsageError(f"--extend --seeds {text}: {path} already has {len(seeds)} seeds "
                         f"({', '.join(map(str, seeds))}); give more than {len(seeds)}, or "
                         f"list the seeds to add (e.g. {max(seeds) + 1},{max(seeds) + 2})")
    added = [s for s in wanted if s not in seeds]
    if not added:
        raise UsageError(f"--extend --seeds {text}: {path} already has every one of these "
                         f"seeds; name seeds it does not have")
    return seeds + added


def _executor(sweep, plan):
    """The sweep's executor as a context: None (the local pool) or a RayExecutor,
    connected to its cluster inside the block."""
    if plan.executor != "ray":
        return contextlib.nullcontext(None)
    from kvt.executors.ray_executor import RayExecutor

    return RayExecutor(sweep.path, plan.ray["address"], plan.ray["cpus_per_run"],
                       plan.ray["storage"], sys.stdout)


def sweep_command(plan) -> str:
    """The command that started the sweep of `plan`, as compare.md quotes it."""
    return "kvt " + shlex.join(plan.command or ["compare"])


def _run(args: argparse.Namespace, sweep, plan, executor) -> int:
    from kvt.compare import RESULTS, execute, unfinished
    from kvt.errors import EXIT_TRAINING
    from kvt.record_paths import portable_path

    n = len(plan.variants) * len(plan.seeds)
    labels = ", ".join(v.label for v in plan.variants)
    how = f"{plan.jobs} at a time" if plan.executor == "local" else "as Ray tasks"
    print(f"kvt compare: {len(plan.variants)} configurations ({labels}) x {len(plan.seeds)} "
          f"seeds = {n} runs in {sweep.path}, {how}", flush=True)

    def typed(path: str) -> str:  # as compare.md quotes it: no absolute path
        return shlex.quote(portable_path(path, sweep.path))

    command = sweep_command(plan)
    moved = f" --data-dir {typed(args.data_dir)}" if args.data_dir else ""
    if args.resume:
        command += f" (resumed with kvt compare --resume {typed(args.resume)}{moved})"
    if args.extend:
        command += (f" (extended with kvt compare --extend {typed(args.extend)} --seeds "
                    f"{shlex.quote(args.seeds)}{moved})")
    analysis, text = execute(sweep, plan, plan.jobs, sys.stdout, command, train_argv,
                             executor)
    print()
    print(text, end="")
    print(f"\nresults in {sweep.path}: {', '.join(RESULTS)}")
    failed = len(unfinished(analysis))
    if failed:
        print(f"kvt compare: {failed} of {n} runs did not finish (see the table); the others "
              f"were compared", file=sys.stderr)
        return EXIT_TRAINING
    return 0
