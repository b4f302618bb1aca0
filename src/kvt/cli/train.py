"""`kvt train`: train a model on a dataset and write a run directory."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import shlex
import sys
import time
from pathlib import Path

from kvt.cli.common import (CONFIG_FLAGS, add_config_arguments, add_threads_argument,
                            apply_threads, cifar10_data_dir, config_from_args, given_flags)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train", help="train a model and save a run directory",
        description="Train a model and write config, history, metrics, report, plots and "
                    "model.keras to a run directory. Defaults: the tutorial's recipe "
                    "(MiniVGGNet, CIFAR-10, SGD lr 0.01 with decay lr/epochs, batch 32, 30 "
                    "epochs). "
                    "Every finished epoch is checkpointed: an interrupted run continues "
                    "with --resume RUN_DIR.")
    add_config_arguments(p)
    out = p.add_argument_group("output")
    out.add_argument("--out", default=None,
                     help="run directory (default: runs/<time>-<dataset>-<api>-<backend>-"
                          "<activation>)")
    out.add_argument("--resume", default=None, metavar="RUN_DIR",
                     help="continue an interrupted run from its last finished epoch, with "
                          "its saved config (and --data-dir DIR if the local machine keeps the "
                          "run's CIFAR-10 elsewhere: it must hold the same data)")
    out.add_argument("--plot", default=None, metavar="PATH",
                     help="also write the loss/accuracy plot here (as the tutorial did)")
    out.add_argument("--force", action="store_true", help="overwrite an existing run directory")
    out.add_argument("--quiet", action="store_true",
                     help="print only the final result line (and errors, warnings): no "
                          "dataset and epoch lines, progress bar or report")
    add_threads_argument(out)
    procs = p.add_argument_group(
        "several processes (JAX, --distribute data-parallel)",
        "start the same command once per process, each with its --process-id; the "
        "devices of all of them form one data-parallel mesh and process 0 writes the run "
        "directory (the others write nothing)")
    procs.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                       help="process 0's address and a free port, the same on every process")
    procs.add_argument("--num-processes", type=int, default=1, metavar="N",
                       help="how many processes take part (default: 1)")
    procs.add_argument("--process-id", type=int, default=0, metavar="I",
                       help="this process's number, 0 to N-1 (default: 0)")
    p.set_defaults(run=run)


def default_out(config) -> Path:
    name = Path(config.dataset).name if config.dataset not in ("cifar10", "digits") else config.dataset
    activation = config.activation.replace(":", ".")
    return Path("runs") / (f"{time.strftime('%Y%m%d-%H%M%S')}-{name}-{config.api}-"
                           f"{config.backend}-{activation}")


def shown(path, *bases) -> str:
    """A path as the output shows it: as given, or as records spell it
    (`kvt.record_paths.portable_path`, relative to `bases`) where the output is itself a record:
    the train.log of a run that kvt compare trains (it sets PORTABLE_PATHS)."""
    from kvt.record_paths import PORTABLE_PATHS, portable_path

    return portable_path(path, *bases) if os.environ.get(PORTABLE_PATHS) else str(path)


def announce(config, dataset) -> None:
    h, w, c = dataset.input_shape
    split = "test" if dataset.eval_split == "test" else "validation (held out of train)"
    print(f"kvt: {dataset.name} from {shown(dataset.source)}: {len(dataset.y_train)} train, "
          f"{len(dataset.y_test)} {split} images, {w}x{h}x{c}, {dataset.num_classes} classes",
          flush=True)
    native = ", native ops" if config.native_ops else ""
    if config.schedule == "warmup-cosine":
        lr = (f"lr 0 to {config.lr:g} over {config.warmup_epochs:g} epochs, cosine to 0 "
              f"(--recipe {config.recipe})")
    else:
        lr = f"lr {config.lr:g} (decay {config.resolved_decay:.3g} per step)"
    print(f"kvt: training {config.model} (--api {config.api}, {config.activation}{native}) on "
          f"{config.backend} for {config.epochs} epochs, batch {config.batch_size}, "
          f"{lr}, seed {config.seed}", flush=True)


def resume_target(args: argparse.Namespace):
    """The run directory `--resume` names, if it is one (checked before it is claimed)."""
    from kvt.errors import RunError, UsageError
    from kvt.runs import RunDir

    # --data-dir says where the same data lies on the local machine (checked by relocate_data)
    given = given_flags(args, (*(f for f in CONFIG_FLAGS if f != "data_dir"), "out", "force"))
    if given:
        raise UsageError(f"--resume continues a run with its saved config: drop "
                         f"{', '.join(given)}")
    run_dir = RunDir(args.resume)
    if not (run_dir / "config.json").is_file():
        raise RunError(f"{run_dir.path} is not a kvt run directory (no config.json): pass the "
                       f"directory of the run to continue")
    return run_dir


def resume_config(run_dir):
    """The saved config of a claimed run directory, after checking it can go on."""
    from kvt.config import TrainConfig
    from kvt.errors import RunError

    if run_dir.status() == "complete":
        raise RunError(f"{run_dir.path} is already complete: nothing to resume (train again "
                       f"with --out {run_dir.path} --force to start over)")
    try:
        return TrainConfig.load(run_dir / "config.json")
    except (OSError, ValueError, TypeError, AttributeError) as e:
        raise RunError(f"cannot read {run_dir / 'config.json'} ({e}): the run cannot be "
                       f"resumed; train it again with --force") from None


def moved_data(run_dir, config, data_dir: str | None):
    """The config a resumed run continues with: its own, or with `--resume --data-dir`
    the same one reading its data from `data_dir` (None when that changes nothing). A
    run whose config.json keeps no path to its data (given as an absolute one) reads it
    from --data-dir or KVT_DATA_DIR, checked like a move."""
    if data_dir is None:
        from kvt.errors import DataError
        from kvt.runs import unrecorded_data

        where = unrecorded_data(run_dir)
        if where is None:
            return None
        data_dir = os.environ.get("KVT_DATA_DIR")
        if not data_dir:
            raise DataError(f"{run_dir.path} read CIFAR-10 from {where}, whose absolute path "
                            f"kvt does not record: resume with --data-dir DIR (or "
                            f"KVT_DATA_DIR=DIR), DIR holding the same data")
    data_dir = cifar10_data_dir(data_dir, [config.dataset], "run")
    if config.data_dir and Path(config.data_dir).expanduser().resolve() == Path(data_dir):
        return None
    return dataclasses.replace(config, data_dir=data_dir)


def run(args: argparse.Namespace) -> int:
    from kvt.distribute import Cluster
    from kvt.runs import RunDir, check_writable_file

    cluster = Cluster(args.coordinator, args.num_processes, args.process_id).check()
    if args.resume:
        run_dir = resume_target(args)
    else:
        config = config_from_args(args)  # validates before anything heavy
        cluster.check(config)
        run_dir = RunDir(args.out or default_out(config))
    if args.plot and cluster.writer:  # found after an hour of training, it would cost the hour
        check_writable_file(args.plot, "--plot")
    apply_threads(args)
    # Claimed before the framework loads: a directory in use is refused at once, and
    # nothing in it is touched (not even by --force) while another process holds it.
    # The other processes of a several-process run neither claim nor write it.
    claim = run_dir.claim(create=not args.resume) if cluster.writer else \
        contextlib.nullcontext(run_dir)
    with claim:
        moved = None
        if args.resume:
            config = resume_config(run_dir)
            moved = moved_data(run_dir, config, args.data_dir)
            config = moved or config
            cluster.check(config)
        result = _train(args, config, run_dir, cluster, moved=moved is not None)
    if cluster.writer:
        print_result(result, run_dir, args.plot, args.quiet)
    else:
        print(f"kvt: process {cluster.process_id} of {cluster.num_processes} done; process 0 "
              f"writes the run to its --out", flush=True)
    return 0


def _train(args: argparse.Namespace, config, run_dir, cluster, moved: bool = False):
    from kvt import backends, distribute, signals
    from kvt.errors import Cancelled

    try:
        backends.select(config.backend, deterministic=config.deterministic)
        distribute.prepare(config)  # logical devices: before the framework starts
        backends.import_keras()
        distribute.start(cluster)  # several processes join: before any computation
        signals.check()  # a Ctrl-C that the framework's start-up swallowed
        from kvt.models import check_model
        from kvt.train import fit, load_data

        # An unknown model, or a builder that does not import, fails before anything is
        # written.
        check_model(config.model, config.api, config.activation, config.native_ops)
        if not args.resume and cluster.writer:
            run_dir.create(force=args.force)
        dataset = load_data(config)
        if moved and cluster.writer:
            from kvt.runs import relocate_data

            relocate_data(run_dir, config, dataset)  # the same data, or refused
        signals.check()
        quiet = args.quiet or not cluster.writer  # process 0 speaks for the run
        if not quiet:
            announce(config, dataset)
        # --quiet: fit's epoch lines go nowhere, and a null stream is no terminal, so
        # Keras draws no progress bar either.
        with (open(os.devnull, "w") if quiet else contextlib.nullcontext(sys.stdout)) as out:
            return fit(config, dataset, run_dir, plot_path=args.plot, resume=bool(args.resume),
                       stream=out, cluster=cluster)
    except Cancelled:
        raise
    except BaseException as e:
        if args.resume and (isinstance(e, KeyboardInterrupt) or signals.received()):
            # Stopped before fit() took the run over: it is as its last start left it.
            raise Cancelled(f"stopped before training resumed; nothing was changed: continue "
                            f"with kvt train --resume {shlex.quote(str(run_dir.path))}") from None
        raise


def print_result(result, run_dir, plot: str | None, quiet: bool) -> None:
    """The report, the result line and where the run lies (all on one line if quiet)."""
    from kvt.record_paths import sweep_of

    m = result.metrics
    split = "test" if m["eval_split"] == "test" else "validation"
    judged, detail = f"{split} accuracy {100 * m['accuracy']:.2f}%", f"loss {m['loss']:.4f}"
    if m.get("tta", "none") != "none":  # and what the network scores alone
        judged += f" with --tta {m['tta']}"
        detail = f"one pass {100 * m['single_pass_accuracy']:.2f}%; {detail}"
    line = (f"{judged} ({detail}) after {result.config.epochs} epochs; "
            f"{m['seconds_per_epoch']:.1f} s/epoch, "
            f"{m['images_per_second']:.0f} train images/s")
    where = shown(run_dir.path, *filter(None, [sweep_of(run_dir.path)]))
    saved = f"run saved to {where}" + (f"; plot also at {shown(plot)}" if plot else "")
    if quiet:
        print(f"{line}; {saved}")
    else:
        print(f"\n{result.report}\n{line}\n{saved}")
    sys.stdout.flush()
    if result.advice:  # after the result line it qualifies
        print(f"kvt: warning: {result.advice}", file=sys.stderr, flush=True)
