"""Arguments and steps that several subcommands share: the flags that make up a
TrainConfig (kvt train, kvt compare), the backend and thread flags, model loading, and
the one builder of a `kvt train` command line (the runs of kvt compare)."""

from __future__ import annotations

import argparse
from pathlib import Path

from kvt.backends import DEFAULT_BACKEND
from kvt.config import (APIS, AUGMENTS, BACKENDS, CHANNELS, DISTRIBUTES, MAX_IMAGE_SIDE,
                        PRECISIONS, SCHEDULES, TTAS, check_positive)
from kvt.models import BUILTIN_MODELS, min_side
from kvt.recipes import RECIPES


def positive(name: str, value) -> None:
    """Refuses a count flag below 1: positive("jobs", 0) says "--jobs must be a positive
    integer, got 0" (argparse only checks the type)."""
    check_positive(f"--{name}", value)


def add_backend_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend", choices=BACKENDS, default=None,
        help=f"Keras backend (default: $KERAS_BACKEND, else {DEFAULT_BACKEND})")


def backend_name(args: argparse.Namespace) -> str:
    """--backend, else $KERAS_BACKEND (checked), else the default backend."""
    from kvt.backends import env_backend

    return args.backend or env_backend() or DEFAULT_BACKEND


def add_threads_argument(parser) -> None:
    parser.add_argument(
        "--threads", type=int, default=None, metavar="N",
        help="use at most N CPU threads: sets OMP_NUM_THREADS and TF_NUM_INTRAOP_THREADS "
             "to N, TF_NUM_INTEROP_THREADS to 1 (default: the environment's, else every "
             "core; JAX's XLA:CPU has no such setting)")


def apply_threads(args: argparse.Namespace) -> None:
    """--threads, checked and set before any framework starts."""
    if getattr(args, "threads", None) is not None:
        from kvt import backends

        positive("threads", args.threads)
        backends.set_threads(args.threads)


def select_backend(args: argparse.Namespace) -> str:
    """Selects the backend of `args` (before Keras is imported) and returns its name."""
    from kvt import backends

    apply_threads(args)
    name = backend_name(args)
    backends.select(name, deterministic=getattr(args, "deterministic", False))
    backends.import_keras()
    return name


def add_loading_arguments(parser: argparse.ArgumentParser) -> None:
    add_threads_argument(parser)
    parser.add_argument(
        "--import", dest="imports", action="append", default=[], metavar="MODULE",
        help="import MODULE before loading, so that a model trained with --activation "
             "MODULE:function can find it (repeatable)")
    parser.add_argument(
        "--unsafe", action="store_true",
        help="load model files that need arbitrary Python code (Lambda layers); only "
             "for files from a source you trust")


def add_tta_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tta", choices=TTAS, default=None,
        help="test-time augmentation: none judges each image once, flip averages the image "
             "and its mirror image (default: what the model was trained with, recorded in "
             "its file)")


def load_model_from_args(args: argparse.Namespace, target: str):
    """The model of a run directory or .keras file, on the backend of `args`.

    Checks the path before the backend is imported, so a typo costs no framework
    start-up. Returns (path, model, kvt metadata).
    """
    from kvt.saving import resolve_model_path

    path = resolve_model_path(target)
    select_backend(args)
    from kvt.saving import load_model

    model, meta = load_model(path, unsafe=args.unsafe, imports=args.imports)
    return path, model, meta


# A --test-limit sample does not depend on any run's seed, so that two models are always
# evaluated (or an export checked) on the same images.
SAMPLE_SEED = 0


def add_class_map_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--class-map", action="append", default=None, metavar="DATA=MODEL",
        help="score the dataset's class DATA as the model's class MODEL (repeatable); "
             "classes are matched by name, and names that differ are refused without it")


def load_test_data(args: argparse.Namespace, path: Path, model, meta: dict, limit: int | None,
                   verb: str):
    """The test split to judge `model` (loaded from `path`) on: the dataset of --dataset
    (with --data-dir), else the one its file says it was trained on; a stratified sample
    of `limit` images, the same every time. Its classes are matched with the model's by
    name (`kvt.data.classes`, with --class-map) and its labels renumbered in the model's
    order. Refuses images or classes that do not fit the model ("`verb` on the dataset
    the model was trained on"). Returns (dataset, the model's class names)."""
    import dataclasses

    import numpy as np

    from kvt.data import load_dataset
    from kvt.data.classes import match_classes, parse_class_map
    from kvt.errors import DataError, UsageError

    class_map = parse_class_map(getattr(args, "class_map", None))  # before the data loads
    dataset_name = args.dataset or meta.get("dataset")
    if not dataset_name:
        raise UsageError(f"{path} does not say which dataset it was trained on: pass --dataset")
    data_dir = args.data_dir if args.dataset else (args.data_dir or meta.get("data_dir"))
    dataset = load_dataset(dataset_name, data_dir, meta.get("image_size"),
                           channels=meta.get("channels"))
    if limit:
        dataset = dataset.limit(None, limit, seed=SAMPLE_SEED)
    expected = tuple(model.input_shape[1:])
    if dataset.input_shape != expected:
        raise DataError(
            f"{dataset.name} has images of shape {dataset.input_shape} but the model takes "
            f"{expected}: {verb} on the dataset the model was trained on"
        )
    class_names = meta.get("class_names")
    if not class_names:  # a model file without names: only the count can be checked
        if class_map:
            raise UsageError(f"{path} does not store its class names: --class-map cannot "
                             f"apply; drop it")
        class_names = dataset.class_names
        if model.output_shape[-1] != dataset.num_classes:
            raise DataError(
                f"the model knows {model.output_shape[-1]} classes but {dataset.name} has "
                f"{dataset.num_classes}: {verb} on the dataset the model was trained on")
        return dataset, list(class_names)
    to_model = np.asarray(match_classes(list(class_names), dataset.class_names, dataset.name,
                                        class_map, verb), dtype=np.int64)
    dataset = dataclasses.replace(dataset, y_train=to_model[dataset.y_train],
                                  y_test=to_model[dataset.y_test], class_names=list(class_names))
    return dataset, list(class_names)


# --- the flags of a TrainConfig (kvt train, kvt compare) -----------------------------

SEED = RECIPES["seed"]  # the defaults --help shows


# The flags that make up a TrainConfig: argparse dests, each named as its config field
# (except --config, the file they start from). All default to None so that `--config
# FILE` and `--recipe` can supply what the user did not type.
CONFIG_FLAGS = (
    "model", "api", "activation", "native_ops", "backend", "dataset", "data_dir",
    "image_size", "train_limit", "test_limit", "val_split", "epochs", "batch_size", "lr",
    "decay", "momentum", "nesterov", "schedule", "warmup_epochs", "weight_decay",
    "label_smoothing", "augment", "tta", "seed", "deterministic", "precision",
    "steps_per_execution", "distribute", "devices", "channels", "recipe", "config",
)
FAST = RECIPES["fast"]
FAST_CPU = RECIPES["fast-cpu"]


def add_config_arguments(p: argparse.ArgumentParser, seed: bool = True) -> None:
    """The flags that make up a TrainConfig (shared with kvt compare, which sets seeds
    itself)."""
    what = p.add_argument_group("model")
    what.add_argument("--api", choices=APIS, default=None,
                      help="keras: portable Keras 3 model; tf: tf.keras model calling "
                           "TensorFlow ops (default: keras)")
    add_backend_argument(what)
    what.add_argument("--model", default=None,
                      help=f"model family: {', '.join(BUILTIN_MODELS)} (default: minivggnet; "
                           f"fast-cpu recipe: {FAST_CPU['model']}), or your own builder as "
                           f"module.path:function or path/to/file.py:function, called as "
                           f"function(input_shape, classes, **options) to return an "
                           f"uncompiled Keras model")
    what.add_argument("--activation", default=None,
                      help="hidden activation: relu, crelu (tutorial placement), elu, gelu, "
                           "swish, or your own function as module.path:function "
                           "(default: relu)")
    what.add_argument("--native-ops", action="store_true", default=None,
                      help="compute activations with the backend's own ops (tf.nn.crelu, "
                           "jax.nn.relu, torch.relu, ...) instead of keras.ops")
    what.add_argument("--distribute", choices=DISTRIBUTES, default=None,
                      help="spread each step's batch over the local machine's devices: mirrored "
                           "(TensorFlow's MirroredStrategy), data-parallel (Keras' "
                           "DataParallel on JAX); --batch-size stays the global batch; "
                           "multi-worker is refused with the reason (default: none)")
    what.add_argument("--devices", type=int, default=None, metavar="N",
                      help="with --distribute: use N devices (the first N GPUs; without "
                           "GPUs, N logical CPU devices) (default: every GPU, or the CPU)")
    data = p.add_argument_group("data")
    data.add_argument("--dataset", default=None,
                      help="cifar10, cifar100 (fine labels), cifar100-coarse (20 "
                           "superclasses), mnist, fashion_mnist, digits (offline, bundled) "
                           "or a folder with train/<class>/ and test/<class>/ images "
                           "(default: cifar10)")
    data.add_argument("--data-dir", default=None,
                      help="where the official files of a named dataset lie (default: "
                           "$KVT_DATA_DIR, then the Keras cache, then a verified download)")
    data.add_argument("--image-size", type=int, default=None, metavar="N",
                      help=f"resize folder images to NxN, from the model's smallest side "
                           f"({', '.join(f'{m}: {min_side(m)}' for m in BUILTIN_MODELS)}) "
                           f"to {MAX_IMAGE_SIDE}")
    data.add_argument("--channels", type=int, choices=CHANNELS, default=None,
                      help="convert the images to 1 (grayscale) or 3 (RGB) channels, as "
                           "folder images are converted (default: the dataset's own: 1 for "
                           "mnist, fashion_mnist and digits, 3 for the others)")
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
                        help="named hyperparameters: seed (the tutorial's, the default), fast "
                             "(a modern schedule for the same network) or fast-cpu (the fast "
                             "schedule, shorter, for kvt's small quicknet on a CPU)")
    recipe.add_argument("--epochs", type=int, default=None, metavar="N",
                        help=f"passes over the training set (seed recipe: {SEED['epochs']}; "
                             f"fast: {FAST['epochs']}; fast-cpu: {FAST_CPU['epochs']})")
    recipe.add_argument("--batch-size", type=int, default=None, metavar="N",
                        help=f"images per SGD step (seed recipe: {SEED['batch_size']}; "
                             f"fast: {FAST['batch_size']}; fast-cpu: {FAST_CPU['batch_size']})")
    recipe.add_argument("--lr", type=float, default=None,
                        help=f"initial learning rate, the peak for warmup-cosine (seed recipe: "
                             f"{SEED['lr']:g}; fast: {FAST['lr']:g}; fast-cpu: {FAST_CPU['lr']:g})")
    recipe.add_argument("--decay", type=float, default=None,
                        help="per-step inverse-time decay, lr_t = lr / (1 + decay * step); "
                             "0 for none (seed recipe: lr / epochs, the tutorial's: 0.01/30 "
                             "at 30 epochs)")
    recipe.add_argument("--momentum", type=float, default=None,
                        help=f"SGD momentum, 0 to <1 (seed recipe: {SEED['momentum']:g}, "
                             f"plain SGD; fast, fast-cpu: {FAST['momentum']:g})")
    recipe.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=None,
                        help="Nesterov momentum (seed recipe: off; fast, fast-cpu: on)")
    recipe.add_argument("--schedule", choices=SCHEDULES, default=None,
                        help="keras2: --lr / (1 + --decay * step), the tutorial's; "
                             "warmup-cosine: linear from 0 to --lr over --warmup-epochs, "
                             "then a cosine to 0 (seed recipe: keras2; fast, fast-cpu: "
                             "warmup-cosine)")
    recipe.add_argument("--warmup-epochs", type=float, default=None, metavar="E",
                        help=f"warm-up of --schedule warmup-cosine, in epochs (fast: "
                             f"{FAST['warmup_epochs']:g}; fast-cpu: {FAST_CPU['warmup_epochs']:g})")
    recipe.add_argument("--weight-decay", type=float, default=None, metavar="W",
                        help=f"Keras' decoupled weight decay: each step shrinks every "
                             f"weight by lr*W (seed recipe: 0; fast, fast-cpu: "
                             f"{FAST['weight_decay']:g})")
    recipe.add_argument("--label-smoothing", type=float, default=None, metavar="S",
                        help=f"label smoothing of the cross-entropy, 0 to <1 (seed recipe: 0; "
                             f"fast, fast-cpu: {FAST['label_smoothing']:g})")
    recipe.add_argument("--augment", choices=AUGMENTS, default=None,
                        help="per-epoch training augmentation, the same on every backend: "
                             "left-right flips, and shifts of up to 2 pixels (seed recipe: "
                             "none; fast, fast-cpu: flip-translate)")
    recipe.add_argument("--tta", choices=TTAS, default=None,
                        help="test-time augmentation of the final evaluation (and of "
                             "evaluate, predict, export with the saved model): flip "
                             "averages each image and its mirror image; the per-epoch "
                             "validation is one pass (seed, fast: none; fast-cpu: flip)")
    if seed:
        recipe.add_argument("--seed", type=int, default=None,
                            help="random seed, 0 to 2**32-1 (default: 42)")
    recipe.add_argument("--deterministic", action="store_true", default=None,
                        help="deterministic kernels: same seed, backend and machine give "
                             "identical results (may be slower)")
    recipe.add_argument("--precision", choices=PRECISIONS, default=None,
                        help="what the layers compute in: float32, or bf16 (bfloat16 "
                             "compute, float32 weights and softmax; fast only on CPUs and "
                             "GPUs with bf16 units) (default: float32)")
    recipe.add_argument("--steps-per-execution", type=int, default=None, metavar="N",
                        help="training steps per call into the compiled step: fewer "
                             "returns to Python per epoch (TensorFlow, JAX) (default: 1)")


def config_from_args(args: argparse.Namespace):
    """The TrainConfig of `args`: --config (or --recipe), then every flag given, its image
    size checked against the model family's smallest. Errors name config fields, and carry
    the flags for `kvt.cli.main` to say (a --config file's field is named as the field)."""
    from kvt.models import check_image_size

    config = _config_from_args(args)
    check_image_size(config.model, config.api, config.image_size)
    return config


def _config_from_args(args: argparse.Namespace):
    from kvt.config import TrainConfig
    from kvt.errors import RunError, UsageError
    from kvt.recipes import from_recipe

    overrides = {field: getattr(args, field, None) for field in CONFIG_FLAGS
                 if field not in ("recipe", "config")}
    if overrides["backend"] is None and not args.config:
        overrides["backend"] = backend_name(args)
    if not args.config:
        return from_recipe(args.recipe or "seed", **overrides)
    try:
        base = TrainConfig.load(args.config).to_dict()
    except UsageError as e:  # a field of the file: named by the check, the file named here
        raise UsageError(f"--config {args.config}: {e}") from None
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


def given_flags(args: argparse.Namespace, dests) -> list[str]:
    """The flags among `dests` that the user typed (their value is not the default
    None/False), spelled as on the command line."""
    return [f"--{dest.replace('_', '-')}" for dest in dests
            if getattr(args, dest, None) not in (None, False)]


def cifar10_data_dir(data_dir: str, datasets, what: str) -> str:
    """`--resume/--extend ... --data-dir DIR` of a run or sweep (`what`) that trains on
    `datasets`: DIR as an absolute path (for this command's processes, whatever their
    folder; records keep none), or a usage error when any of them is not read from
    official files (CIFAR-10, CIFAR-100, MNIST, Fashion-MNIST)."""
    from kvt.data import OFFICIAL
    from kvt.errors import UsageError

    others = sorted(set(datasets) - set(OFFICIAL))
    if others:
        raise UsageError(f"--data-dir says where CIFAR-10, CIFAR-100, MNIST or "
                         f"Fashion-MNIST lies; this {what} trains on {', '.join(others)}: "
                         f"drop --data-dir")
    return str(Path(data_dir).expanduser().resolve())


def train_argv(config: str | Path | None = None, *, seed: int | None = None,
               out: str | Path | None = None, force: bool = False,
               resume: str | Path | None = None, data_dir: str | None = None) -> list[str]:
    """The one builder of a `kvt train` command line (after the program): a run from a
    config file (`--config`, then `--seed`, `--out`, `--force`, `--data-dir` as given),
    or `--resume` of a run directory (with `--data-dir` if given). kvt compare hands it
    to its sweep, whose runs are these."""
    if resume is not None:
        return ["train", "--resume", str(resume), *(["--data-dir", data_dir] if data_dir else [])]
    argv = ["train"]
    if config is not None:
        argv += ["--config", str(config)]
    if seed is not None:
        argv += ["--seed", str(seed)]
    if out is not None:
        argv += ["--out", str(out)]
    if force:
        argv.append("--force")
    if data_dir is not None:
        argv += ["--data-dir", data_dir]
    return argv
