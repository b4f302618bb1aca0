"""`kvt evaluate`: test a saved model (run directory or model.keras) on a dataset."""

from __future__ import annotations

import argparse
from pathlib import Path

from kvt.cli.common import (add_backend_argument, add_class_map_argument, add_loading_arguments,
                            add_tta_argument, load_model_from_args, load_test_data, positive)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "evaluate", help="evaluate a saved model on a test set",
        description="Load a model (safe mode) from a run directory or a model.keras file and "
                    "print its classification report on the test split of the dataset it "
                    "was trained on (or of --dataset).")
    p.add_argument("target", help="run directory or model.keras file")
    p.add_argument("--dataset", default=None,
                   help="dataset to test on (default: the one the model was trained on)")
    p.add_argument("--data-dir", default=None, help="where CIFAR-10 lies (see kvt train)")
    p.add_argument("--test-limit", type=int, default=None, metavar="N",
                   help="evaluate on a stratified sample of N test images (the same sample "
                        "every time)")
    p.add_argument("--batch-size", type=int, default=256, metavar="N",
                   help="images per prediction step; changes speed and memory, not the "
                        "result (default: 256)")
    add_tta_argument(p)
    add_class_map_argument(p)
    add_backend_argument(p)
    add_loading_arguments(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    positive("batch-size", args.batch_size)
    if args.test_limit is not None:
        positive("test-limit", args.test_limit)
    path, model, meta = load_model_from_args(args, args.target)

    from kvt.report import evaluate_predictions
    from kvt.saving import classify, model_tta

    dataset, class_names = load_test_data(args, path, model, meta, args.test_limit, "evaluate")
    tta = model_tta(meta, args.tta)
    probs = classify(model, dataset.x_test, meta, tta, batch_size=args.batch_size)
    metrics, report, _ = evaluate_predictions(probs, dataset.y_test, list(class_names))
    judged = ", each image and its mirror image averaged (--tta flip)" if tta == "flip" else ""
    print(f"kvt: {Path(path)} on the {dataset.name} test split ({len(dataset.y_test)} "
          f"images{judged})")
    print(report)
    print(f"test accuracy {100 * metrics['test_accuracy']:.2f}% (loss {metrics['test_loss']:.4f})")
    return 0
