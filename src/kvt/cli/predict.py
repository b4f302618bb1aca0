"""`kvt predict`: classify image files with a saved model."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from kvt.cli.common import (add_backend_argument, add_loading_arguments, add_tta_argument,
                            load_model_from_args, positive)

FORMATS = ("text", "csv", "json")
CHUNK = 256  # images decoded and predicted at a time: a folder of any size fits in memory


def add_parser(sub) -> None:
    p = sub.add_parser(
        "predict", help="classify images with a saved model",
        description="Load a model (safe mode) and print the top-k classes of each PNG/JPEG "
                    "image; images of any size are resized to the model's input. Folders "
                    "are searched recursively for images. A file that cannot be read gets "
                    "one line on stderr; the others are still predicted, and kvt exits "
                    "with 3.")
    p.add_argument("model", help="model.keras file or run directory")
    p.add_argument("images", nargs="+", metavar="IMAGE",
                   help="PNG or JPEG files, or folders of them")
    p.add_argument("--top", type=int, default=3, help="how many classes to show (default: 3)")
    p.add_argument("--format", choices=FORMATS, default="text",
                   help="text: 'image: class p, ...' per image; csv: image,rank,class,"
                        "probability rows with a header; json: one array of {image, top: "
                        "[{class, probability}]} (default: text)")
    add_tta_argument(p)
    add_backend_argument(p)
    add_loading_arguments(p)
    p.set_defaults(run=run)


def expand(inputs: list[str]) -> list[str]:
    """Files as given, folders replaced by the images under them (recursively)."""
    from kvt.data.images import find_images
    from kvt.errors import DataError

    paths: list[str] = []
    for item in inputs:
        if Path(item).is_dir():
            found = find_images(item)
            if not found:
                raise DataError(f"folder {item} holds no PNG or JPEG images: pass image "
                                f"files or a folder of them")
            paths += [str(p) for p in found]
        else:
            paths.append(item)
    return paths


def run(args: argparse.Namespace) -> int:
    from kvt.errors import EXIT_DATA
    from kvt.saving import classify, model_tta

    positive("top", args.top)
    paths = expand(args.images)  # before the framework starts: a typo costs nothing
    path, model, meta = load_model_from_args(args, args.model)
    names = _class_names(path, model, meta)
    tta = model_tta(meta, args.tta)
    writer = Writer(args.format, sys.stdout)
    failed = 0
    for start in range(0, len(paths), CHUNK):
        chunk = paths[start:start + CHUNK]
        images, batch = _decode(chunk, model)
        failed += len(chunk) - len(images)
        if images:
            probs = classify(model, batch, meta, tta)
            for image, p in zip(images, probs):
                writer.write(image, _top(p, names, args.top))
    writer.close()
    return EXIT_DATA if failed else 0


def _class_names(path, model, meta) -> list[str]:
    from kvt.errors import ModelError

    height, width, _ = model.input_shape[1:]
    if height != width:
        raise ModelError(f"{path} takes {width}x{height} inputs; kvt predicts for square inputs")
    n_classes = model.output_shape[-1]
    names = meta.get("class_names") or [str(i) for i in range(n_classes)]
    if len(names) != n_classes:
        raise ModelError(
            f"{path} stores {len(names)} class names for {n_classes} outputs: the file is "
            f"inconsistent; retrain or re-save it")
    return list(names)


def _decode(paths: list[str], model):
    """The readable images of `paths` and their pixels; one stderr line per other."""
    import numpy as np

    from kvt.data.images import load_image
    from kvt.errors import DataError

    size, channels = model.input_shape[1], model.input_shape[3]
    images, arrays = [], []
    for p in paths:
        try:
            arrays.append(load_image(p, size=size, channels=channels))
            images.append(p)
        except DataError as e:
            print(f"kvt predict: error: {e}", file=sys.stderr, flush=True)
    return images, (np.stack(arrays) if arrays else None)


def _top(p, names: list[str], k: int) -> list[tuple[str, float]]:
    import numpy as np

    return [(names[i], float(p[i])) for i in np.argsort(-p)[:min(k, len(names))]]


class Writer:
    """Prints predictions as text, csv or json, flushing each chunk for pipes."""

    def __init__(self, fmt: str, stream):
        self.fmt, self.stream = fmt, stream
        self.rows: list[dict] = []
        self.csv = csv.writer(stream, lineterminator="\n") if fmt == "csv" else None
        if self.csv:
            self.csv.writerow(["image", "rank", "class", "probability"])

    def write(self, image: str, top: list[tuple[str, float]]) -> None:
        if self.fmt == "text":
            print(f"{image}: " + ", ".join(f"{c} {p:.3f}" for c, p in top), file=self.stream)
        elif self.csv:
            self.csv.writerows([image, rank, c, f"{p:.6g}"] for rank, (c, p) in
                               enumerate(top, start=1))
        else:
            self.rows.append({"image": image, "top": [{"class": c, "probability": p}
                                                      for c, p in top]})
        self.stream.flush()

    def close(self) -> None:
        if self.fmt == "json":
            json.dump(self.rows, self.stream, indent=2, ensure_ascii=False)
            self.stream.write("\n")
        self.stream.flush()
