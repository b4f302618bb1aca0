"""`kvt train`: train a model on a dataset and write a run directory."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from kvt.cli.common import add_backend_argument, backend_name, select_backend
from kvt.config import APIS, RECIPES


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train", help="train a model and save a run directory",
        description="Train a model and write config, history, metrics, report, plots and "
                    "model.keras to a run directory. Defaults: the tutorial's recipe "
                    "(MiniVGGNet, CIFAR-10, SGD lr 0.01 with decay, batch 32, 30 epochs).")
    what = p.add_argument_group("model")
    what.add_argument("--api", choices=APIS, default="keras",
                      help="keras: portable Keras 3 model; tf: tf.keras model calling "
                           "TensorFlow ops (default: keras)")
    add_backend_argument(what)
    what.add_argument("--model", default="minivggnet", help="model family (default: minivggnet)")
    what.add_argument("--activation", default="relu",
                      help="hidden activation: relu, crelu (tutorial placement), elu, gelu, "
                           "swish, or your own function as module.path:function "
                           "(default: relu)")
    what.add_argument("--native-ops", action="store_true",
                      help="compute activations with the backend's own ops (tf.nn.crelu, "
                           "jax.nn.relu, torch.relu, ...) instead of keras.ops")
    data = p.add_argument_group("data")
    data.add_argument("--dataset", default="cifar10",
                      help="cifar10, digits (offline, bundled) or a folder with "
                           "train/<class>/ and test/<class>/ images (default: cifar10)")
    data.add_argument("--data-dir", default=None,
                      help="where CIFAR-10 lies (default: $KVT_DATA_DIR, then the Keras "
                           "cache, then a verified download)")
    data.add_argument("--image-size", type=int, default=None, metavar="N",
                      help="resize folder images to NxN")
    data.add_argument("--train-limit", type=int, default=None, metavar="N",
                      help="train on a stratified sample of N images")
    data.add_argument("--test-limit", type=int, default=None, metavar="N",
                      help="test on a stratified sample of N images")
    recipe = p.add_argument_group("recipe (defaults from --recipe)")
    recipe.add_argument("--recipe", default="seed", choices=sorted(RECIPES),
                        help="named hyperparameters (default: seed, the tutorial's)")
    recipe.add_argument("--epochs", type=int, default=None)
    recipe.add_argument("--batch-size", type=int, default=None)
    recipe.add_argument("--lr", type=float, default=None, help="initial learning rate")
    recipe.add_argument("--decay", type=float, default=None,
                        help="per-step inverse-time decay: lr / (1 + decay * step)")
    recipe.add_argument("--momentum", type=float, default=None)
    recipe.add_argument("--seed", type=int, default=None, help="random seed (default: 42)")
    recipe.add_argument("--deterministic", action="store_true",
                        help="deterministic kernels: same seed, backend and machine give "
                             "identical results (may be slower)")
    out = p.add_argument_group("output")
    out.add_argument("--out", default=None,
                     help="run directory (default: runs/<time>-<dataset>-<api>-<activation>)")
    out.add_argument("--plot", default=None, metavar="PATH",
                     help="also write the loss/accuracy plot here (as the tutorial did)")
    out.add_argument("--force", action="store_true", help="overwrite an existing run directory")
    p.set_defaults(run=run)


def config_from_args(args: argparse.Namespace, backend: str):
    from kvt.config import TrainConfig

    return TrainConfig.from_recipe(
        args.recipe, model=args.model, api=args.api, activation=args.activation,
        native_ops=args.native_ops or None, backend=backend, dataset=args.dataset,
        data_dir=args.data_dir, image_size=args.image_size, train_limit=args.train_limit,
        test_limit=args.test_limit,
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, decay=args.decay,
        momentum=args.momentum, seed=args.seed, deterministic=args.deterministic or None)


def default_out(config) -> Path:
    name = Path(config.dataset).name if config.dataset not in ("cifar10", "digits") else config.dataset
    activation = config.activation.replace(":", ".")
    return Path("runs") / (f"{time.strftime('%Y%m%d-%H%M%S')}-{name}-{config.api}-"
                           f"{config.backend}-{activation}")


def announce(config, dataset) -> None:
    h, w, c = dataset.input_shape
    print(f"kvt: {dataset.name} from {dataset.source}: {len(dataset.y_train)} train, "
          f"{len(dataset.y_test)} test images, {w}x{h}x{c}, {dataset.num_classes} classes",
          flush=True)
    native = ", native ops" if config.native_ops else ""
    print(f"kvt: training {config.model} (--api {config.api}, {config.activation}{native}) on "
          f"{config.backend} for {config.epochs} epochs, batch {config.batch_size}, "
          f"lr {config.lr:g}, seed {config.seed}", flush=True)


def run(args: argparse.Namespace) -> int:
    from kvt.runs import RunDir

    config = config_from_args(args, backend_name(args))  # validates before anything heavy
    select_backend(args)
    from kvt.models import get_model
    from kvt.train import fit, load_data

    get_model(config.model, config.api)  # an unknown model fails before anything is written
    run_dir = RunDir(args.out or default_out(config))
    fresh = not run_dir.path.exists()
    run_dir.create(force=args.force)
    try:
        dataset = load_data(config)
        announce(config, dataset)
        result = fit(config, dataset, run_dir, plot_path=args.plot)
    except BaseException:
        # A failure before training started (data, batch size, activation) leaves nothing
        # behind; one after it leaves status.json saying "failed" or "interrupted".
        if fresh and run_dir.path.is_dir() and not any(run_dir.path.iterdir()):
            run_dir.path.rmdir()
        raise
    m = result.metrics
    print()
    print(result.report)
    print(f"test accuracy {100 * m['test_accuracy']:.2f}% (loss {m['test_loss']:.4f}) after "
          f"{config.epochs} epochs; {m['seconds_per_epoch']:.1f} s/epoch, "
          f"{m['images_per_second']:.0f} train images/s")
    print(f"run saved to {run_dir.path}" + (f"; plot also at {args.plot}" if args.plot else ""))
    sys.stdout.flush()
    return 0
