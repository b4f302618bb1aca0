"""MNIST and Fashion-MNIST from their official files, found locally or downloaded and
verified. Both are 28x28 grayscale images of 10 classes, 60,000 to train and 10,000 to
test, in the same IDX format.

Sources, in the order `resolve()` tries them:

1. an explicit folder or file (`--data-dir` / `KVT_DATA_DIR`): the four official IDX
   files (`train-images-idx3-ubyte.gz`, `train-labels-idx1-ubyte.gz`,
   `t10k-images-idx3-ubyte.gz`, `t10k-labels-idx1-ubyte.gz`; gzipped or not) in it or in
   its `mnist/`, `fashion-mnist/` (Keras' name) or torchvision's `MNIST/raw`,
   `FashionMNIST/raw` subfolder; for MNIST also Keras' `mnist.npz`;
2. the Keras cache (`$KERAS_HOME/datasets`): `mnist.npz`, `fashion-mnist/*.gz`;
3. a download into the Keras cache, from the URLs Keras uses: MNIST's `mnist.npz`
   checked against the SHA-256 Keras publishes; Fashion-MNIST's four files (Keras gives
   no hash for them) against the MD5s that Fashion-MNIST's authors publish.
"""

from __future__ import annotations

import gzip
import zipfile
import zlib
from pathlib import Path

import numpy as np

from kvt.data.cifar10 import keras_cache_dir
from kvt.data.download import locate
from kvt.errors import DataError

SIDE = 28
FILES = {  # what each official file holds: (split, "images" | "labels")
    "train-images-idx3-ubyte": ("train", "images"),
    "train-labels-idx1-ubyte": ("train", "labels"),
    "t10k-images-idx3-ubyte": ("test", "images"),
    "t10k-labels-idx1-ubyte": ("test", "labels"),
}
IMAGES_MAGIC, LABELS_MAGIC = 0x00000803, 0x00000801  # unsigned bytes, 3 and 1 dimensions
KERAS_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"

DATASETS = {
    "mnist": {
        "title": "MNIST",
        "class_names": [str(d) for d in range(10)],
        "subfolders": ("mnist", "MNIST/raw"),
        "npz": "mnist.npz",  # Keras' form, in the Keras cache
        # keras/src/datasets/mnist.py: the URL and SHA-256 Keras downloads and checks
        "npz_sha256": "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1",
        "keras_dir": None,
        "md5": {},
    },
    "fashion_mnist": {
        "title": "Fashion-MNIST",
        "class_names": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                        "Shirt", "Sneaker", "Bag", "Ankle boot"],
        "subfolders": ("fashion-mnist", "fashion_mnist", "FashionMNIST/raw"),
        "npz": None,
        "keras_dir": "fashion-mnist",  # keras/src/datasets/fashion_mnist.py's cache_subdir
        # The MD5s of the official files (github.com/zalandoresearch/fashion-mnist README),
        # the files Keras downloads from KERAS_URL without a hash.
        "md5": {"train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
                "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
                "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310"},
    },
}

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]


# --- finding the data ---------------------------------------------------------------

def _idx_file(folder: Path, stem: str) -> Path | None:
    for name in (f"{stem}.gz", stem, stem.replace("-idx", ".idx")):  # the last: a rename
        if (folder / name).is_file():
            return folder / name
    return None


def find_source(name: str, path: Path) -> tuple[str, Path] | None:
    """Which form of dataset `name` lies at `path`: ("idx", folder), ("npz", file) or
    None."""
    spec = DATASETS[name]
    if path.is_file():
        return ("npz", path) if path.suffix == ".npz" else None
    if not path.is_dir():
        return None
    for folder in (path, *(path / s for s in spec["subfolders"])):
        if all(_idx_file(folder, stem) for stem in FILES):
            return ("idx", folder)
    if spec["npz"] and (path / spec["npz"]).is_file():
        return ("npz", path / spec["npz"])
    return None


def resolve(name: str, data_dir: str | Path | None, download: bool = True) -> tuple[str, Path]:
    """Finds dataset `name`, downloading it into the Keras cache if nothing local is found."""
    spec = DATASETS[name]
    npz = f", or Keras' {spec['npz']}" if spec["npz"] else ""
    cache = keras_cache_dir()
    return locate(spec["title"], data_dir, lambda path: find_source(name, path),
                  f"the four official files ({', '.join(f'{s}.gz' for s in FILES)}){npz}",
                  cache / spec["keras_dir"] if spec["keras_dir"] else cache,
                  lambda path: find_source(name, path),
                  (lambda: _download(name, cache)) if download else None, contents="files")


def _download(name: str, cache: Path) -> tuple[str, Path]:
    from kvt.data.download import fetch  # looked up when called: tests stand in for it

    spec = DATASETS[name]
    if spec["npz"]:
        return ("npz", fetch(KERAS_URL + spec["npz"], cache / spec["npz"], spec["npz_sha256"],
                             spec["title"]))
    folder = cache / spec["keras_dir"]
    for file, md5 in spec["md5"].items():
        if not (folder / file).is_file():
            fetch(KERAS_URL + file, folder / file, md5, spec["title"], algorithm="md5")
    return ("idx", folder)


# --- reading ------------------------------------------------------------------------

def load(name: str, kind: str, path: Path) -> Arrays:
    """Reads dataset `name` in form `kind` at `path` (as returned by `resolve`): images
    (N, 28, 28, 1) uint8, labels (N,) int64."""
    names = list(DATASETS[name]["class_names"])
    if kind == "npz":
        x_train, y_train, x_test, y_test = _read_npz(path)
    else:
        parts = {FILES[stem]: read_idx(_idx_file(path, stem) or path / stem) for stem in FILES}
        x_train, y_train = parts[("train", "images")], parts[("train", "labels")]
        x_test, y_test = parts[("test", "images")], parts[("test", "labels")]
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if len(x) != len(y):
            raise DataError(f"{path}: the {split} split has {len(x)} images but {len(y)} "
                            f"labels: the files do not belong together; download them again")
        if len(y) and y.max() >= len(names):
            raise DataError(f"{path}: {split} labels go up to {y.max()}, but "
                            f"{DATASETS[name]['title']} has {len(names)} classes: the files "
                            f"are corrupt or of another dataset")
    return (x_train[..., np.newaxis], y_train.astype(np.int64),
            x_test[..., np.newaxis], y_test.astype(np.int64), names)


def read_idx(path: Path) -> np.ndarray:
    """One IDX file of unsigned bytes (gzipped or not): images (N, rows, cols) or labels (N,)."""
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise DataError(f"{path} is not a readable gzip file ({e}): the file is corrupt or "
                        f"truncated; download it again") from None
    magic = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
    if magic not in (IMAGES_MAGIC, LABELS_MAGIC):
        raise DataError(f"{path} is not an IDX file of unsigned bytes (magic number "
                        f"{magic!r}): the file is corrupt or not MNIST-format data")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    expected = header + int(np.prod(dims))
    if len(raw) != expected or (ndim == 3 and dims[1:] != [SIDE, SIDE]):
        raise DataError(f"{path} holds {len(raw)} bytes for {ndim}-D data of shape "
                        f"{tuple(dims)} ({expected} expected, images {SIDE}x{SIDE}): the file "
                        f"is truncated or corrupt; download it again")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _read_npz(path: Path):
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = [np.asarray(f[k]) for k in ("x_train", "y_train", "x_test", "y_test")]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{path} is not Keras' mnist.npz (x_train, y_train, x_test, y_test) "
                        f"({e}): the file is corrupt; download it again") from None
    x_train, y_train, x_test, y_test = arrays
    for x in (x_train, x_test):
        if x.dtype != np.uint8 or x.shape[1:] != (SIDE, SIDE):
            raise DataError(f"{path} holds images of shape {x.shape[1:]} and dtype {x.dtype}, "
                            f"expected ({SIDE}, {SIDE}) uint8: not MNIST")
    for y in (y_train, y_test):
        if y.dtype.kind not in "iu" or y.ndim != 1:
            raise DataError(f"{path} holds labels of shape {y.shape} and dtype {y.dtype}, "
                            f"expected integers: not MNIST")
    return x_train, y_train, x_test, y_test
