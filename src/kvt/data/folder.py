"""Image-folder datasets: `root/{train,test}/<class>/*.{png,jpg,jpeg}`.

Class names are the folder names under `train/` (in Unicode NFC), in sorted order (for
CIFAR-10's PNG tree this is also the official label order). A class's images are every
image file in its folder and the folder's subfolders. Files that are not images by their
suffix (a README, `.DS_Store`) and hidden files and folders are skipped.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from kvt.data.classes import nfc, show
from kvt.data.images import is_image_file, load_image
from kvt.errors import DataError

SPLITS = ("train", "test")


def looks_like_image_folder(root: Path) -> bool:
    return all((root / split).is_dir() for split in SPLITS)


def list_files(root: Path) -> tuple[list[str], dict[str, list[tuple[str, int]]], str]:
    """Returns the class names, per split the sorted (file, label) pairs, and a signature.

    The signature hashes every file's name, size and modification time: it is the
    key of the decoded-array cache. Raises `DataError` if the layout is wrong: a split
    missing, no class folders, train and test with different classes, or a class
    folder without images.
    """
    if not root.exists():
        raise DataError(f"dataset folder {root} does not exist: check the path")
    missing = [split for split in SPLITS if not (root / split).is_dir()]
    if missing:
        raise DataError(
            f"{root} has no {' or '.join(m + '/' for m in missing)} folder: an image "
            f"dataset needs {root}/train/<class>/*.png and {root}/test/<class>/*.png"
        )
    # Class folders are matched by name in Unicode NFC: the same name written in two
    # normal forms (macOS writes NFD) is one class, wherever the folders were made.
    folders = {split: _class_folders(root / split) for split in SPLITS}
    classes = {split: sorted(folders[split]) for split in SPLITS}
    if not classes["train"]:
        raise DataError(
            f"{root / 'train'} has no class folders: put each class's images in "
            f"{root}/train/<class>/"
        )
    if classes["train"] != classes["test"]:
        only_train = sorted(set(classes["train"]) - set(classes["test"]))
        only_test = sorted(set(classes["test"]) - set(classes["train"]))
        raise DataError(
            f"train and test of {root} have different class folders (only in train: "
            f"{_listed(only_train)}; only in test: {_listed(only_test)}): give both the "
            f"same classes"
        )
    names = classes["train"]
    if len(names) < 2:
        # One class trains to a perfect, meaningless score: softmax of one output is 1.
        raise DataError(
            f"{root / 'train'} has {len(names)} class folder ({names[0]}): a classifier "
            f"needs at least two classes; add a folder of images for each other class"
        )
    files: dict[str, list[tuple[str, int]]] = {}
    stamp: list[str] = []
    # Images in subfolders of a class folder belong to the class, as `kvt predict` reads
    # a folder's subfolders: one rule wherever kvt reads a folder of images.
    for split in SPLITS:
        files[split] = []
        for label, name in enumerate(names):
            folder_name = folders[split][name]
            class_dir = root / split / folder_name
            entries = _image_entries(class_dir)
            if not entries:
                raise DataError(
                    f"{class_dir} holds no PNG or JPEG images: add images or remove the folder"
                )
            for rel, e in entries:
                st = e.stat()
                stamp.append(f"{split}/{folder_name}/{rel}\0{st.st_size}\0{st.st_mtime_ns}")
                files[split].append((e.path, label))
    signature = hashlib.sha256("\n".join(stamp).encode()).hexdigest()
    return names, files, signature


def _listed(names: list[str]) -> str:
    return f"[{', '.join(map(show, names))}]" if names else "none"


def _class_folders(split_dir: Path) -> dict[str, str]:
    """{class name in NFC: folder name} of a split's (non-hidden) class folders."""
    found: dict[str, str] = {}
    for e in os.scandir(split_dir):
        if e.is_dir() and not e.name.startswith("."):
            name = nfc(e.name)
            if name in found:
                raise DataError(
                    f"{split_dir} has two class folders named {name!r}, written "
                    f"{' and '.join(sorted(map(ascii, (found[name], e.name))))}: the same "
                    f"name in two Unicode forms; merge them into one folder")
            found[name] = e.name
    return found


def _image_entries(folder: Path) -> list[tuple[str, os.DirEntry]]:
    """(path relative to `folder`, entry) of every image file under `folder` and its
    subfolders, hidden ones skipped, in sorted order (a folder's files, then its
    subfolders'). Symbolic links to folders are not followed (no loops)."""
    found: list[tuple[str, os.DirEntry]] = []
    entries = sorted((e for e in os.scandir(folder) if not e.name.startswith(".")),
                     key=lambda e: e.name)
    found += [(e.name, e) for e in entries if e.is_file() and is_image_file(e.name)]
    for e in entries:
        if e.is_dir(follow_symlinks=False):
            found += [(f"{e.name}/{rel}", sub) for rel, sub in _image_entries(Path(e.path))]
    return found


def read_split(pairs: list[tuple[str, int]], image_size: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Decodes the images of one split into (N, H, W, 3) uint8 and (N,) int64 arrays."""
    paths = [p for p, _ in pairs]
    # Pillow releases the GIL while decoding, so threads use every core.
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        images = list(pool.map(lambda p: load_image(p, size=image_size), paths))
    shapes = {}
    for path, image in zip(paths, images):
        shapes.setdefault(image.shape, path)
        if len(shapes) > 1:
            (shape_a, path_a), (shape_b, path_b) = list(shapes.items())[:2]
            raise DataError(
                f"images differ in size: {path_a} is {shape_a[1]}x{shape_a[0]} but {path_b} "
                f"is {shape_b[1]}x{shape_b[0]}: pass --image-size N to resize all to NxN"
            )
    x = np.stack(images)
    y = np.asarray([label for _, label in pairs], dtype=np.int64)
    return x, y


def load(root: Path, image_size: int | None = None):
    """Reads a whole image-folder dataset; see `kvt.data.load_dataset` for caching."""
    names, files, _ = list_files(root)
    x_train, y_train = read_split(files["train"], image_size)
    x_test, y_test = read_split(files["test"], image_size)
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(
            f"train images are {x_train.shape[2]}x{x_train.shape[1]} but test images are "
            f"{x_test.shape[2]}x{x_test.shape[1]}: pass --image-size N to resize all to NxN"
        )
    return x_train, y_train, x_test, y_test, names
