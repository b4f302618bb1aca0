"""`kvt export`: a trained model as a TensorFlow SavedModel, ONNX or LiteRT artifact,
checked in its own runtime against the Keras model before kvt says it is done.

The work is `kvt.export`'s; this module checks the paths and the format's packages
before any framework starts, loads the model and the check images, and prints what the
artifact takes and how it compared. Exporting runs on TensorFlow whatever backend the
model was trained on; called in a process where Keras already runs another backend, the
command runs itself again in a child process.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from kvt.cli.common import (add_class_map_argument, add_loading_arguments, add_tta_argument,
                            load_test_data, positive)
from kvt.export import FORMATS, QUANTIZE

CHECK_IMAGES = 1000  # default number of test images an export is checked on


def add_parser(sub) -> None:
    p = sub.add_parser(
        "export", help="export a trained model as SavedModel, ONNX or LiteRT, checked",
        description="Export a trained model (run directory or .keras file) with Keras' "
                    "model.export as a TensorFlow SavedModel folder, an ONNX file or a LiteRT "
                    ".tflite file. The artifact takes float32 pixels 0..255, shape (batch, "
                    "height, width, channels), any batch size (the model's input scale is "
                    "built in), and returns class probabilities. Before kvt says it is done, "
                    "it runs the artifact in its own runtime (tf.saved_model.load, "
                    "onnxruntime, the LiteRT interpreter) on test images of the model's "
                    "dataset and compares with the Keras model; a mismatch (exit 4) leaves "
                    "nothing behind. Runs on TensorFlow whatever the model was trained on. "
                    "ONNX and LiteRT need pip install 'kvt[export]'.")
    p.add_argument("target", metavar="RUN_OR_MODEL", help="run directory or .keras model file")
    p.add_argument("--format", required=True, choices=tuple(FORMATS),
                   help="saved_model (a folder), onnx or litert (a .tflite file)")
    p.add_argument("--out", default=None, metavar="PATH",
                   help="where to write it (default: beside model.keras: model_saved_model/, "
                        "model.onnx or model.tflite)")
    p.add_argument("--force", action="store_true", help="replace an existing --out")
    p.add_argument("--dataset", default=None,
                   help="dataset whose test images check the export (default: the one the "
                        "model was trained on)")
    p.add_argument("--data-dir", default=None, help="where CIFAR-10 lies (see kvt train)")
    p.add_argument("--check-images", type=int, default=CHECK_IMAGES, metavar="N",
                   help=f"check on a stratified sample of N test images, the same every "
                        f"time (default: {CHECK_IMAGES})")
    p.add_argument("--quantize", choices=QUANTIZE, default=None,
                   help="litert only: int8 weights and activations, calibrated on 200 "
                        "training images; checked by accuracy (at most 2 points below the "
                        "Keras model's) instead of probabilities")
    add_tta_argument(p)
    add_class_map_argument(p)
    add_loading_arguments(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from kvt import backends
    from kvt import export as exporting
    from kvt.cli.common import apply_threads
    from kvt.errors import UsageError
    from kvt.saving import resolve_model_path

    positive("check-images", args.check_images)
    if args.quantize and args.format != "litert":
        raise UsageError(f"--quantize {args.quantize} is for --format litert: drop it or "
                         f"export as litert")
    # Everything that can be checked before a framework starts (seconds) is checked first.
    path = resolve_model_path(args.target)
    out = Path(args.out) if args.out else exporting.default_out(path, args.format)
    exporting.check_out(out, args.format, args.force)
    exporting.require(args.format)
    if "keras" in sys.modules and backends.active() != "tensorflow":
        return _in_child(args, out)
    apply_threads(args)
    backends.select("tensorflow")  # whatever $KERAS_BACKEND says: the file is engine-neutral
    backends.import_keras()
    from kvt.saving import load_model, model_tta

    model, meta = load_model(path, unsafe=args.unsafe, imports=args.imports)
    tta = model_tta(meta, args.tta)
    exporting.check_exportable(model, path, args.format)
    dataset, class_names = load_test_data(args, path, model, meta, args.check_images,
                                          "check the export")
    spec = FORMATS[args.format]
    shape = ", ".join(str(d) for d in model.input_shape[1:])
    trained = f", trained on {meta['backend']}" if meta.get("backend") else ""
    print(f"kvt: exporting {path} ({model.name}{trained}) as {spec.title}, on tensorflow")
    averaged = " (of the image and its mirror image averaged: --tta flip)" if tta == "flip" \
        else ""
    print(f"kvt: the artifact takes float32 pixels 0..255, shape (batch, {shape}) (the input "
          f"scale is built in), and returns {len(class_names)} class probabilities"
          f"{averaged}: {', '.join(class_names)}")
    representative = None
    if args.quantize:
        representative = dataset.limit(exporting.REPRESENTATIVE_IMAGES, None,
                                       seed=0).x_train
    check = exporting.export(model, meta, args.format, out, dataset.x_test, dataset.y_test,
                             quantize=args.quantize, representative=representative, tta=tta)
    print(f"kvt: {check.line()}")
    print(f"exported to {out}")
    return 0


def _in_child(args: argparse.Namespace, out: Path) -> int:
    """This command again, in a process of its own (Keras runs another backend here)."""
    from kvt.backends import active

    argv = [sys.executable, "-m", "kvt", "export", str(args.target), "--format", args.format,
            "--out", str(out), "--check-images", str(args.check_images)]
    for flag, value in (("--dataset", args.dataset), ("--data-dir", args.data_dir),
                        ("--quantize", args.quantize), ("--threads", args.threads),
                        ("--tta", args.tta)):
        if value is not None:
            argv += [flag, str(value)]
    for module in args.imports:
        argv += ["--import", module]
    for item in args.class_map or []:
        argv += ["--class-map", item]
    argv += ["--force"] * args.force + ["--unsafe"] * args.unsafe
    print(f"kvt: Keras runs on {active()} in this process: exporting in a TensorFlow process",
          flush=True)
    sys.stdout.flush()
    sys.stderr.flush()
    return subprocess.run(argv).returncode
