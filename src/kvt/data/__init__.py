"""Datasets as uint8 image arrays with integer labels and class names.

`load_dataset("cifar10" | "cifar100" | "cifar100-coarse" | "mnist" | "fashion_mnist" |
"digits" | "<path to an image folder>")` returns a `Dataset`.
Images are (N, height, width, channels) uint8 in 0..255; labels are (N,) int64.
Decoded file-based datasets are cached on disk (`KVT_CACHE_DIR`, default
`~/.cache/kvt`), keyed by the path, size and modification time of every source file.
A dataset's `fingerprint` (`fingerprint()`) names its content, wherever it is stored.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np

from kvt.backends import cache_dir
from kvt.errors import DataError

# Datasets by name; those of OFFICIAL are read from their published files (`--data-dir`,
# the Keras cache or a verified download), each by its module.
OFFICIAL = ("cifar10", "cifar100", "cifar100-coarse", "mnist", "fashion_mnist")
NAMED = ("cifar10", "digits", *OFFICIAL[1:])
DECODER_VERSION = 2  # part of the cache key: a new decoder never reads old arrays


@dataclasses.dataclass
class Dataset:
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]
    source: str = ""
    eval_split: str = "test"  # what x_test holds: "test", or "validation" after holdout()
    # `fingerprint()` of the source's arrays, before any `limit` or `holdout`: the same
    # data in another place or format has the same one.
    fingerprint: str = ""

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def limit(self, train: int | None, test: int | None, seed: int) -> Dataset:
        """A stratified, seeded slice: at most `train` and `test` images."""
        x_train, y_train = _stratified(self.x_train, self.y_train, train, seed)
        x_test, y_test = _stratified(self.x_test, self.y_test, test, seed + 1)
        self._warn_untrained(y_train, f"--train-limit {train}",
                             f"use --train-limit {self.num_classes} or more")
        return dataclasses.replace(self, x_train=x_train, y_train=y_train,
                                   x_test=x_test, y_test=y_test)

    def _warn_untrained(self, y_kept: np.ndarray, cause: str, fix: str) -> None:
        """Warns when `cause` leaves classes of the training split without images. Not
        an error: a quick smoke run may want it. But such a model can never predict
        those classes, which a user should not find out from the report."""
        lost = set(np.unique(self.y_train).tolist()) - set(np.unique(y_kept).tolist())
        missing = [self.class_names[c] for c in sorted(lost)]
        if missing:
            shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
            print(f"kvt: warning: {cause} leaves {len(missing)} of {self.num_classes} "
                  f"classes without training images ({shown}): the model cannot learn "
                  f"them; {fix}", file=sys.stderr, flush=True)

    def holdout(self, fraction: float, seed: int = 0) -> Dataset:
        """Trains on the rest of the training split and evaluates on a stratified
        `fraction` of it; the test split is dropped, so nothing can peek at it."""
        n_val = int(round(fraction * len(self.y_train)))
        if n_val < self.num_classes or len(self.y_train) - n_val < 1:
            raise DataError(
                f"--val-split {fraction:g} of {len(self.y_train)} training images leaves "
                f"{n_val} for validation and {len(self.y_train) - n_val} for training: "
                f"choose a split that leaves both at least {self.num_classes} images")
        val_idx = _stratified_index(self.y_train, n_val, seed)
        rest = np.setdiff1d(np.arange(len(self.y_train)), val_idx)
        self._warn_untrained(self.y_train[rest], f"--val-split {fraction:g}",
                             "use a smaller --val-split, or add training images to those "
                             "classes")
        return dataclasses.replace(
            self, x_train=self.x_train[rest], y_train=self.y_train[rest],
            x_test=self.x_train[val_idx], y_test=self.y_train[val_idx],
            eval_split="validation")


def load_dataset(name: str, data_dir: str | None = None, image_size: int | None = None,
                 cache: bool = True, channels: int | None = None) -> Dataset:
    """Loads a dataset by name (`NAMED`) or as an image folder by path; `channels` (1 or
    3) converts its images as Pillow converts a folder's (`images.convert_channels`)."""
    if name == "digits":
        from kvt.data import digits

        if image_size not in (None, digits.SIDE):  # ignoring it would train on 8x8 unasked
            raise DataError(f"--image-size {image_size} applies to image folders only; "
                            f"digits is {digits.SIDE}x{digits.SIDE}")
        arrays, source = digits.load(), "scikit-learn load_digits()"
        arrays = (*arrays, fingerprint(arrays))
    elif name == "cifar10":
        from kvt.data import cifar10

        kind, path = cifar10.resolve(data_dir)
        arrays = _cached(f"cifar10:{kind}", path, image_size, lambda: _read_cifar(kind, path, image_size))
        source = str(path)
    elif name in OFFICIAL:
        kind, path = _resolve_official(name, data_dir)
        arrays = _cached(f"{name}:{kind}", path, image_size,
                         lambda: _read_official(name, kind, path, image_size))
        source = str(path)
    else:
        from kvt.data import folder

        path = Path(name).expanduser()
        if not path.exists():
            raise DataError(
                f"unknown dataset {name!r}: use one of {', '.join(NAMED)} or the path of a "
                f"folder with train/<class>/ and test/<class>/ images"
            )
        arrays = _cached("folder", path, image_size, lambda: folder.load(path, image_size))
        source = str(path.resolve())
        name = path.resolve().name
    x_train, y_train, x_test, y_test, class_names, content = arrays
    from kvt.data.classes import nfc

    class_names = [nfc(n) for n in class_names]  # as an older kvt may have cached them
    if channels is not None and x_train.shape[-1] != channels:
        from kvt.data.images import convert_channels

        # The fingerprint stays the source's: the same data, converted on the way in.
        x_train, x_test = convert_channels(x_train, channels), convert_channels(x_test, channels)
    return Dataset(name, x_train, y_train, x_test, y_test, class_names, source,
                   fingerprint=content)


def fingerprint(arrays) -> str:
    """SHA-256 of a dataset's content: (x_train, y_train, x_test, y_test, class_names)'s
    shapes, bytes and order and the class names. Two copies of CIFAR-10 in different
    places or formats that decode to the same arrays have the same fingerprint; the same
    images in another order (which a seeded run would visit differently) do not."""
    h = hashlib.sha256(b"kvt dataset v1\n")
    for key, array in zip(_ARRAYS, arrays[:4]):
        # Labels as int64 whatever a reader made them: the content, not the reader.
        array = np.ascontiguousarray(array, dtype=np.int64 if key.startswith("y") else None)
        h.update(f"{key} {array.dtype.str} {array.shape}\n".encode())
        h.update(memoryview(array).cast("B"))
    h.update(json.dumps([str(n) for n in arrays[4]]).encode())
    return h.hexdigest()


def check_name(name: str) -> None:
    """Refuses (DataError) a dataset that is neither named nor a folder, before anything
    is loaded (the parent of a sweep checks its runs' datasets so)."""
    if name not in NAMED and not Path(name).expanduser().exists():
        raise DataError(
            f"unknown dataset {name!r}: use one of {', '.join(NAMED)} or the path of a "
            f"folder with train/<class>/ and test/<class>/ images")


def _resolve_official(name: str, data_dir: str | None) -> tuple[str, Path]:
    from kvt.data import cifar100, mnist

    if name in mnist.DATASETS:
        return mnist.resolve(name, data_dir)
    return cifar100.resolve(data_dir)


def _read_official(name: str, kind: str, path: Path, image_size: int | None):
    """The arrays of an official dataset other than CIFAR-10, resized to `image_size`
    as a folder's images are (Pillow, bilinear)."""
    from kvt.data import cifar100, mnist
    from kvt.data.images import resize_images

    if name in mnist.DATASETS:
        arrays = mnist.load(name, kind, path)
    else:
        arrays = cifar100.load(name, kind, path)
    if image_size is None:
        return arrays
    x_train, y_train, x_test, y_test, names = arrays
    return (resize_images(x_train, image_size), y_train, resize_images(x_test, image_size),
            y_test, names)


def _read_cifar(kind: str, path: Path, image_size: int | None):
    from kvt.data import cifar10, folder

    if kind == "folder":
        return folder.load(path, image_size)
    if image_size not in (None, cifar10.SIDE):
        raise DataError(
            f"--image-size {image_size} applies to image folders only; CIFAR-10 from "
            f"{path} is {cifar10.SIDE}x{cifar10.SIDE}"
        )
    return cifar10.load(kind, path)


def _stratified(x: np.ndarray, y: np.ndarray, n: int | None, seed: int):
    if n is None or n >= len(y):
        return x, y
    keep = _stratified_index(y, n, seed)
    return x[keep], y[keep]


def _stratified_index(y: np.ndarray, n: int, seed: int):
    """Sorted indices of a seeded sample of `n` labels, classes in proportion."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    # Round-robin over classes so that every class is represented in proportion.
    per_class = [order[y[order] == c] for c in np.unique(y)]
    picked: list[int] = []
    depth = 0
    while len(picked) < n:
        for idx in per_class:
            if depth < len(idx) and len(picked) < n:
                picked.append(int(idx[depth]))
        depth += 1
    return np.sort(np.asarray(picked, dtype=np.int64))


# --- on-disk cache of decoded arrays ----------------------------------------------

def _signature(kind: str, path: Path, image_size: int | None) -> str:
    from kvt.data import folder

    # The version names the decoder: v2 scales 16-bit images and flattens transparency,
    # so arrays that v1 decoded (16-bit clipped to white) are never read back.
    h = hashlib.sha256(f"v{DECODER_VERSION}\0{kind}\0{path.resolve()}\0{image_size}\n".encode())
    if kind.endswith("folder"):
        h.update(folder.list_files(path)[2].encode())
    else:
        targets = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file())
        for p in targets:
            st = p.stat()
            h.update(f"{p.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:32]


_ARRAYS = ("x_train", "y_train", "x_test", "y_test")
FINGERPRINT = "fingerprint.txt"


def _cached(kind: str, path: Path, image_size: int | None, read):
    """`read()`'s arrays and their `fingerprint`, from the cache when the source files
    are unchanged.

    An entry is a folder of .npy files (plain `np.load`, no pickle, no zip: about
    0.1 s for CIFAR-10) and the fingerprint (hashing CIFAR-10 takes longer than loading
    it), written under a temporary name and renamed when complete.
    """
    if os.environ.get("KVT_NO_CACHE"):
        arrays = read()
        return (*arrays, fingerprint(arrays))
    entry = cache_dir() / "datasets" / _signature(kind, path, image_size)
    if entry.is_dir():
        try:
            arrays = [np.load(entry / f"{k}.npy", allow_pickle=False) for k in _ARRAYS]
            names = json.loads((entry / "class_names.json").read_text())
            arrays = (*arrays, [str(n) for n in names])
        except (OSError, ValueError, EOFError):
            shutil.rmtree(entry, ignore_errors=True)  # damaged: rebuild, never trust it
        else:
            return (*arrays, _cached_fingerprint(entry, arrays))
    arrays = read()
    content = fingerprint(arrays)
    _write_cache(entry, arrays, content)
    return (*arrays, content)


def _cached_fingerprint(entry: Path, arrays) -> str:
    """The entry's fingerprint, computed (and added to it) if an older kvt wrote it."""
    try:
        content = (entry / FINGERPRINT).read_text().strip()
        if len(content) == 64:
            return content
    except OSError:
        pass
    content = fingerprint(arrays)
    tmp = entry / f"{FINGERPRINT}.{os.getpid()}.tmp"
    with contextlib.suppress(OSError):  # only a saving: a read-only cache still works
        tmp.write_text(content + "\n")
        os.replace(tmp, entry / FINGERPRINT)
    with contextlib.suppress(OSError):
        tmp.unlink(missing_ok=True)
    return content


def _write_cache(entry: Path, arrays, content: str) -> None:
    tmp = entry.with_name(f"{entry.name}.{os.getpid()}.tmp")
    try:
        tmp.mkdir(parents=True, exist_ok=True)
        for key, array in zip(_ARRAYS, arrays[:4]):
            np.save(tmp / f"{key}.npy", array, allow_pickle=False)
        (tmp / "class_names.json").write_text(json.dumps(list(arrays[4])))
        (tmp / FINGERPRINT).write_text(content + "\n")
        os.replace(tmp, entry)
    except OSError as e:
        if entry.is_dir():
            # Another process (a sweep's other run) cached the same arrays first; its
            # entry appeared whole, by a rename, and is as good as this one.
            return
        # The cache only saves time; a read-only home must not stop training.
        print(f"kvt: warning: could not cache decoded data in {entry.parent} ({e})",
              file=sys.stderr)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
