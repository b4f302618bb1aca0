"""`kvt bench`: train and inference images/s, compile time, memory and % of the
machine's matmul peak, for any mix of backends, APIs, activations, precisions and batch
sizes, beside a plain-framework yardstick measured in the same run.

Each row runs in its own process (`kvt bench --row SPEC`, one process, one backend),
one at a time. See `kvt.bench` for what is measured and the FLOP convention.

    kvt bench                     # keras/relu on TensorFlow, float32, batch 32 + torch loop
    kvt bench --backend tensorflow,jax,torch --activation relu,crelu \
        --precision float32,bf16 --batch-size 32,128 --yardstick torch,tf --json bench.json
    kvt bench --dataset cifar10 --data-dir ../shared/data/cifar10-png --steps 100
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable

from kvt.bench import PRECISIONS, YARDSTICKS  # kvt.bench imports no framework at import
from kvt.config import APIS, BACKENDS
from kvt.models import BUILTIN_MODELS  # imports no framework


def comma_list(choices: tuple[str, ...] | None = None) -> Callable[[str], list[str]]:
    """An argparse type: "a,b" -> ["a", "b"], each one of `choices` if given."""
    def parse(text: str) -> list[str]:
        items = [item.strip() for item in text.split(",") if item.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"empty list {text!r}")
        bad = [item for item in items if choices is not None and item not in choices]
        if bad:
            raise argparse.ArgumentTypeError(
                f"{', '.join(bad)} not one of {', '.join(choices or ())}")
        return list(dict.fromkeys(items))  # each once, in the order given
    return parse


def model_list(text: str) -> list[str]:
    """An argparse type: families (checked as `comma_list` does) and user builders
    ("module:function", checked by `kvt.models.check_model_name` before any row runs)."""
    items = comma_list()(text)
    bad = [m for m in items if ":" not in m and m not in BUILTIN_MODELS]
    if bad:
        raise argparse.ArgumentTypeError(
            f"{', '.join(bad)} not one of {', '.join(BUILTIN_MODELS)} nor module.path:function")
    return items


def positive_list(text: str) -> list[int]:
    """An argparse type: "32,128" -> [32, 128], each a positive integer."""
    try:
        values = [int(item) for item in comma_list()(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma list of integers") from None
    if any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: each value must be a positive integer")
    return list(dict.fromkeys(values))


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be a positive integer")
    return value


def add_parser(sub) -> None:
    p = sub.add_parser(
        "bench", help="measure images/s, compile time, memory and %% of peak",
        description="Measure steady-state train and inference images/s, warm-up/compile "
                    "time, peak memory and training FLOPs per image (so: % of this "
                    "machine's matmul peak, measured in the same run) for every "
                    "combination of the comma lists given, beside a plain-framework "
                    "yardstick (the same network as a plain PyTorch loop and/or a plain "
                    "tf.function loop). Each row runs in its own process, one at a time. "
                    "Synthetic 32x32x3 data unless --dataset is given. Exit code 7 if a "
                    "row failed (the others are still reported).")
    what = p.add_argument_group("rows (comma lists: the rows are every combination)")
    what.add_argument("--model", type=model_list, default=["minivggnet"],
                      metavar="LIST",
                      help=f"model families of the kvt rows, from {', '.join(BUILTIN_MODELS)}, "
                           f"or your own builders as module.path:function or "
                           f"path/to/file.py:function (the yardsticks train MiniVGGNet) "
                           f"(default: minivggnet)")
    what.add_argument("--backend", type=comma_list(BACKENDS), default=None, metavar="LIST",
                      help=f"from {', '.join(BACKENDS)} (default: $KERAS_BACKEND, else "
                           f"tensorflow)")
    what.add_argument("--api", type=comma_list(APIS), default=["keras"], metavar="LIST",
                      help="keras, tf (tf needs --backend tensorflow; other pairs are "
                           "skipped with a note) (default: keras)")
    what.add_argument("--activation", type=comma_list(), default=["relu"], metavar="LIST",
                      help="relu, crelu, elu, gelu, swish or module:function (default: relu)")
    what.add_argument("--precision", type=comma_list(PRECISIONS), default=["float32"],
                      metavar="LIST",
                      help="float32, bf16 (Keras mixed_bfloat16: bf16 compute, float32 "
                           "variables and softmax) (default: float32)")
    what.add_argument("--batch-size", type=positive_list, default=[32], metavar="LIST",
                      help="images per step (default: 32, the seed recipe's)")
    what.add_argument("--steps-per-execution", type=positive_list, default=[1],
                      metavar="LIST",
                      help="Keras' steps_per_execution for the kvt rows (default: 1)")
    what.add_argument("--yardstick", type=comma_list((*YARDSTICKS, "none")), default=["torch"],
                      metavar="LIST",
                      help="plain loops to measure beside kvt: torch (nn.Sequential, SGD, "
                           "bf16 autocast), tf (tf.function + GradientTape over the Keras "
                           "model), none (default: torch)")
    how = p.add_argument_group("measurement")
    how.add_argument("--steps", type=positive_int, default=20, metavar="N",
                     help="timed steps per row, train and inference each (default: 20)")
    how.add_argument("--warmup", type=positive_int, default=3, metavar="N",
                     help="untimed steps first, where tracing/compilation happens "
                          "(default: 3)")
    how.add_argument("--dataset", default=None,
                     help="time the real data through kvt's loader: a dataset of kvt train "
                          "(cifar10, cifar100, mnist, fashion_mnist, digits, ...) or an image "
                          "folder (default: synthetic uint8 images, CIFAR-10's shape)")
    how.add_argument("--data-dir", default=None, help="where --dataset lies")
    how.add_argument("--json", default=None, metavar="FILE",
                     help="also write the rows as a JSON list to FILE")
    # One row, in its own process: what the parent runs for each row.
    p.add_argument("--row", default=None, help=argparse.SUPPRESS)
    p.add_argument("--row-out", default=None, help=argparse.SUPPRESS)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.row is not None:
        return _run_row(args)
    from kvt import bench
    from kvt.cli.common import backend_name
    from kvt.config import check_activation
    from kvt.errors import EXIT_TRAINING, RunError, UsageError
    from kvt.runs import write_json

    if args.json and not os.path.isdir(os.path.dirname(os.path.abspath(args.json))):
        # Found out now, not after minutes of measuring.
        raise RunError(f"cannot write --json {args.json}: its folder does not exist")
    backends = args.backend or [backend_name(args)]
    for activation in args.activation:
        check_activation(activation)
    from kvt.models import check_model_name

    for model in args.model:  # a builder no row could import fails once, before any row
        for api in args.api:
            check_model_name(model, api)
    bench.check_installed(backends)
    yardsticks = [y for y in args.yardstick if y != "none"]
    rows, notes = bench.plan(backends, args.api, args.activation, args.precision,
                             args.batch_size, args.steps_per_execution, yardsticks,
                             models=args.model, steps=args.steps, warmup=args.warmup,
                             dataset=args.dataset, data_dir=args.data_dir)
    if not any(r.kind == "kvt" for r in rows):
        raise UsageError(f"nothing to measure: {'; '.join(notes)}")
    if args.dataset:
        from kvt.data import load_dataset

        # A missing dataset fails here once, not in every row; the rows then read it from
        # kvt's cache of decoded arrays.
        load_dataset(args.dataset, args.data_dir)
    for note in notes:
        print(f"kvt bench: {note}", file=sys.stderr)

    def progress(message: str) -> None:
        print(f"kvt bench: {message}", file=sys.stderr, flush=True)

    peak, results = bench.bench(rows, progress)
    print(bench.table(peak, results, notes), flush=True)
    if args.json:
        try:
            write_json(args.json, results)
        except OSError as e:
            raise RunError(f"cannot write --json {args.json} ({e.strerror or e}): check the "
                           f"path") from None
    return EXIT_TRAINING if any("error" in r for r in results) else 0


def _run_row(args: argparse.Namespace) -> int:
    from kvt import bench
    from kvt.runs import write_json

    spec = bench.RowSpec.from_json(args.row)
    result = bench.run_row(spec)
    if args.row_out:
        write_json(args.row_out, result)
    else:
        import json

        print(json.dumps(result))
    return 0
