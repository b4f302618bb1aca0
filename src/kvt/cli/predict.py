"""`kvt predict`: classify image files with a saved model."""

from __future__ import annotations

import argparse

from kvt.cli.common import (add_backend_argument, add_loading_arguments, load_model_from_args,
                            positive)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "predict", help="classify images with a saved model",
        description="Load a model (safe mode) and print the top-k classes of each PNG/JPEG "
                    "image; images of any size are resized to the model's input.")
    p.add_argument("model", help="model.keras file or run directory")
    p.add_argument("images", nargs="+", help="PNG or JPEG files")
    p.add_argument("--top", type=int, default=3, help="how many classes to show (default: 3)")
    add_backend_argument(p)
    add_loading_arguments(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from kvt.errors import ModelError

    positive("top", args.top)
    path, model, meta = load_model_from_args(args, args.model)

    from kvt.data.images import load_image
    from kvt.train import to_inputs

    height, width, channels = model.input_shape[1:]
    if height != width:
        raise ModelError(f"{path} takes {width}x{height} inputs; kvt predicts for square inputs")
    n_classes = model.output_shape[-1]
    names = meta.get("class_names") or [str(i) for i in range(n_classes)]
    if len(names) != n_classes:
        raise ModelError(
            f"{path} stores {len(names)} class names for {n_classes} outputs: the file is "
            f"inconsistent; retrain or re-save it")
    batch = np.stack([load_image(p, size=height, channels=channels) for p in args.images])
    probs = np.asarray(model.predict(to_inputs(batch), verbose=0))
    top = min(args.top, n_classes)
    for image, p in zip(args.images, probs):
        best = np.argsort(-p)[:top]
        print(f"{image}: " + ", ".join(f"{names[i]} {p[i]:.3f}" for i in best))
    return 0
