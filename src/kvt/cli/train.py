"""`kvt train`: train a model on a dataset and write a run directory."""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import sys
import time
from pathlib import Path

from kvt.cli.common import (add_backend_argument, add_threads_argument, apply_threads,
                            backend_name)
from kvt.config import APIS, RECIPES
from kvt.models import BUILTIN_MODELS

SEED = RECIPES["seed"]  # the defaults --help shows


# The flags that make up a TrainConfig: argparse dests, each named as its config field
# (except --config, the file they start from). All default to None so that `--config
# FILE` and `--recipe` can supply what the user did not type.
CONFIG_FLAGS = (
    "model", "api", "activation", "native_ops", "backend", "dataset", "data_dir",
    "image_size", "train_limit", "test_limit", "val_split", "epochs", "batch_size", "lr",
    "decay", "momentum", "seed", "deterministic", "recipe", "config",
)


def given_flags(args: argparse.Namespace, dests) -> list[str]:
    """The flags among `dests` that the user typed (their value is not the default
    None/False), spelled as on the command line."""
    return [f"--{dest.replace('_', '-')}" for dest in dests
            if getattr(args, dest, None) not in (None, False)]


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
                          "its saved config")
    out.add_argument("--plot", default=None, metavar="PATH",
                     help="also write the loss/accuracy plot here (as the tutorial did)")
    out.add_argument("--force", action="store_true", help="overwrite an existing run directory")
    out.add_argument("--quiet", action="store_true",
                     help="print only the final result line (and errors, warnings): no "
                          "dataset and epoch lines, progress bar or report")
    add_threads_argument(out)
    p.set_defaults(run=run)


def add_config_arguments(p: argparse.ArgumentParser, seed: bool = True) -> None:
    """The flags that make up a TrainConfig (shared with kvt compare, which sets seeds
    itself)."""
    what = p.add_argument_group("model")
    what.add_argument("--api", choices=APIS, default=None,
                      help="keras: portable Keras 3 model; tf: tf.keras model calling "
                           "TensorFlow ops (default: keras)")
    add_backend_argument(what)
    what.add_argument("--model", default=None,
                      help=f"model family: {', '.join(BUILTIN_MODELS)} (default: minivggnet)")
    what.add_argument("--activation", default=None,
                      help="hidden activation: relu, crelu (tutorial placement), elu, gelu, "
                           "swish, or your own function as module.path:function "
                           "(default: relu)")
    what.add_argument("--native-ops", action="store_true", default=None,
                      help="compute activations with the backend's own ops (tf.nn.crelu, "
                           "jax.nn.relu, torch.relu, ...) instead of keras.ops")
    data = p.add_argument_group("data")
    data.add_argument("--dataset", default=None,
                      help="cifar10, digits (offline, bundled) or a folder with "
                           "train/<class>/ and test/<class>/ images (default: cifar10)")
    data.add_argument("--data-dir", default=None,
                      help="where CIFAR-10 lies (default: $KVT_DATA_DIR, then the Keras "
                           "cache, then a verified download)")
    data.add_argument("--image-size", type=int, default=None, metavar="N",
                      help="resize folder images to NxN, 4 <= N <= 1024")
    data.add_argument("--train-limit", type=int, default=None, metavar="N",
                      help="train on a stratified sample of N images")
    data.add_argument("--test-limit", type=int, default=None, metavar="N",
                      help="evaluate on a stratified sample of N images")
    data.add_argument("--val-split", type=float, default=None, metavar="F",
                      help="hold out a stratified fraction F of the training images and "
                           "report accuracy on it instead of the test set")
    recipe = p.add_argument_group("recipe (defaults from --recipe or --config)")
    recipe.add_argument("--config", default=None, metavar="FILE",
                        help="start from a saved config (a run's config.json); flags "
                             "override its values")
    recipe.add_argument("--recipe", default=None, choices=sorted(RECIPES),
                        help="named hyperparameters (default: seed, the tutorial's)")
    recipe.add_argument("--epochs", type=int, default=None, metavar="N",
                        help=f"passes over the training set (seed recipe: {SEED['epochs']})")
    recipe.add_argument("--batch-size", type=int, default=None, metavar="N",
                        help=f"images per SGD step (seed recipe: {SEED['batch_size']})")
    recipe.add_argument("--lr", type=float, default=None,
                        help=f"initial learning rate (seed recipe: {SEED['lr']:g})")
    recipe.add_argument("--decay", type=float, default=None,
                        help="per-step inverse-time decay, lr_t = lr / (1 + decay * step); "
                             "0 for none (seed recipe: lr / epochs, the tutorial's: 0.01/30 "
                             "at 30 epochs)")
    recipe.add_argument("--momentum", type=float, default=None,
                        help=f"SGD momentum, 0 to <1 (seed recipe: {SEED['momentum']:g}, "
                             f"plain SGD)")
    if seed:
        recipe.add_argument("--seed", type=int, default=None,
                            help="random seed, 0 to 2**32-1 (default: 42)")
    recipe.add_argument("--deterministic", action="store_true", default=None,
                        help="deterministic kernels: same seed, backend and machine give "
                             "identical results (may be slower)")


def config_from_args(args: argparse.Namespace):
    """The TrainConfig of `args`: --config (or --recipe), then every flag given."""
    from kvt.config import TrainConfig
    from kvt.errors import RunError

    overrides = {field: getattr(args, field, None) for field in CONFIG_FLAGS
                 if field not in ("recipe", "config")}
    if overrides["backend"] is None and not args.config:
        overrides["backend"] = backend_name(args)
    if not args.config:
        return TrainConfig.from_recipe(args.recipe or "seed", **overrides)
    try:
        base = TrainConfig.load(args.config).to_dict()
    except OSError as e:
        raise RunError(f"cannot read --config {args.config} ({e.strerror or e}): check the "
                       f"path") from None
    except (ValueError, TypeError, AttributeError) as e:
        raise RunError(f"--config {args.config} is not a kvt config ({e}): pass a run's "
                       f"config.json") from None
    if args.recipe:  # the recipe's hyperparameters only; the rest stays as saved
        base.update(RECIPES[args.recipe], recipe=args.recipe)
    base.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig.from_dict(base)


def default_out(config) -> Path:
    name = Path(config.dataset).name if config.dataset not in ("cifar10", "digits") else config.dataset
    activation = config.activation.replace(":", ".")
    return Path("runs") / (f"{time.strftime('%Y%m%d-%H%M%S')}-{name}-{config.api}-"
                           f"{config.backend}-{activation}")


def announce(config, dataset) -> None:
    h, w, c = dataset.input_shape
    split = "test" if dataset.eval_split == "test" else "validation (held out of train)"
    print(f"kvt: {dataset.name} from {dataset.source}: {len(dataset.y_train)} train, "
          f"{len(dataset.y_test)} {split} images, {w}x{h}x{c}, {dataset.num_classes} classes",
          flush=True)
    native = ", native ops" if config.native_ops else ""
    print(f"kvt: training {config.model} (--api {config.api}, {config.activation}{native}) on "
          f"{config.backend} for {config.epochs} epochs, batch {config.batch_size}, "
          f"lr {config.lr:g} (decay {config.resolved_decay:.3g} per step), seed {config.seed}",
          flush=True)


def resume_target(args: argparse.Namespace):
    """The run directory `--resume` names, if it is one (checked before it is claimed)."""
    from kvt.errors import RunError, UsageError
    from kvt.runs import RunDir

    given = given_flags(args, (*CONFIG_FLAGS, "out", "force"))
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


def run(args: argparse.Namespace) -> int:
    from kvt.runs import RunDir, check_writable_file

    if args.resume:
        run_dir = resume_target(args)
    else:
        config = config_from_args(args)  # validates before anything heavy
        run_dir = RunDir(args.out or default_out(config))
    if args.plot:  # found after an hour of training, it would cost the hour
        check_writable_file(args.plot, "--plot")
    apply_threads(args)
    # Claimed before the framework loads: a directory in use is refused at once, and
    # nothing in it is touched (not even by --force) while another process holds it.
    with run_dir.claim(create=not args.resume):
        if args.resume:
            config = resume_config(run_dir)
        result = _train(args, config, run_dir)
    print_result(result, run_dir, args.plot, args.quiet)
    return 0


def _train(args: argparse.Namespace, config, run_dir):
    from kvt import backends, signals
    from kvt.errors import Cancelled

    try:
        backends.select(config.backend, deterministic=config.deterministic)
        backends.import_keras()
        signals.check()  # a Ctrl-C that the framework's start-up swallowed
        from kvt.models import get_model
        from kvt.train import fit, load_data

        get_model(config.model, config.api)  # an unknown model fails before anything is written
        if not args.resume:
            run_dir.create(force=args.force)
        dataset = load_data(config)
        signals.check()
        if not args.quiet:
            announce(config, dataset)
        # --quiet: fit's epoch lines go nowhere, and a null stream is no terminal, so
        # Keras draws no progress bar either.
        with (open(os.devnull, "w") if args.quiet else contextlib.nullcontext(sys.stdout)) as out:
            return fit(config, dataset, run_dir, plot_path=args.plot,
                       resume=bool(args.resume), stream=out)
    except Cancelled:
        raise
    except BaseException as e:
        if args.resume and (isinstance(e, KeyboardInterrupt) or signals.received()):
            # Stopped before fit() took the run over: it is as the last session left it.
            raise Cancelled(f"stopped before training resumed; nothing was changed: continue "
                            f"with kvt train --resume {shlex.quote(str(run_dir.path))}") from None
        raise


def print_result(result, run_dir, plot: str | None, quiet: bool) -> None:
    """The report, the result line and where the run lies (all on one line if quiet)."""
    m = result.metrics
    split = "test" if m["eval_split"] == "test" else "validation"
    line = (f"{split} accuracy {100 * m['accuracy']:.2f}% (loss {m['loss']:.4f}) after "
            f"{result.config.epochs} epochs; {m['seconds_per_epoch']:.1f} s/epoch, "
            f"{m['images_per_second']:.0f} train images/s")
    saved = f"run saved to {run_dir.path}" + (f"; plot also at {plot}" if plot else "")
    if quiet:
        print(f"{line}; {saved}")
    else:
        print(f"\n{result.report}\n{line}\n{saved}")
    sys.stdout.flush()
