"""CIFAR-10 from any of its official forms, found locally or downloaded and verified.

Sources, in the order `resolve()` tries them:

1. an explicit folder or file (`--data-dir` / `KVT_DATA_DIR`), holding any of: the
   python tarball `cifar-10-python.tar.gz` or its extracted `cifar-10-batches-py/`,
   the binary tarball `cifar-10-binary.tar.gz` or its `cifar-10-batches-bin/`, or an
   image-folder tree `train/<class>/*.png`, `test/<class>/*.png`;
2. the Keras cache (`$KERAS_HOME/datasets`, default `~/.keras/datasets`), in the
   layouts Keras 2 and Keras 3 leave there;
3. a download of the python tarball into the Keras cache, checked against its SHA-256.
"""

from __future__ import annotations

import os
import tarfile
import zlib
from pathlib import Path
from typing import Callable

import numpy as np

from kvt.data import folder, safe_pickle
from kvt.data.download import fetch, locate
from kvt.errors import DataError

CLASS_NAMES = ["airplane", "automobile", "bird", "cat", "deer",
               "dog", "frog", "horse", "ship", "truck"]
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
SHA256 = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
TARBALL = "cifar-10-python.tar.gz"
BINARY_TARBALL = "cifar-10-binary.tar.gz"
TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_BATCH = "test_batch"
SIDE, CHANNELS = 32, 3
RECORD = SIDE * SIDE * CHANNELS  # bytes of one image, channels first

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]


# --- finding the data ---------------------------------------------------------------

def keras_cache_dir() -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")).expanduser() / "datasets"


def find_source(path: Path, allow_image_folder: bool = True) -> tuple[str, Path] | None:
    """Which CIFAR-10 form lies at `path`: (kind, location), or None.

    kind is one of "py-dir", "bin-dir", "tar" (either official tarball, or any file:
    `load` tells python from binary by the archive's members) or "folder".
    """
    if path.is_file():
        return ("tar", path)
    if not path.is_dir():
        return None
    candidates = [
        ("py-dir", path, "data_batch_1"),
        ("py-dir", path / "cifar-10-batches-py", "data_batch_1"),
        ("py-dir", path / "cifar-10-batches-py-target" / "cifar-10-batches-py", "data_batch_1"),
        ("bin-dir", path, "data_batch_1.bin"),
        ("bin-dir", path / "cifar-10-batches-bin", "data_batch_1.bin"),
    ]
    for kind, where, marker in candidates:
        if (where / marker).is_file():
            return (kind, where)
    for name in (TARBALL, BINARY_TARBALL, "cifar-10-batches-py-target_archive",
                 "cifar-10-batches-py.tar.gz"):
        if (path / name).is_file():
            return ("tar", path / name)
    if allow_image_folder and folder.looks_like_image_folder(path):
        return ("folder", path)
    return None


def resolve(data_dir: str | Path | None, download: bool = True) -> tuple[str, Path]:
    """Finds CIFAR-10, downloading it into the Keras cache if nothing local is found."""
    cache = keras_cache_dir()
    return locate(
        "CIFAR-10", data_dir, find_source,
        f"{TARBALL}, cifar-10-batches-py/, cifar-10-batches-bin/ or train/<class>/*.png + "
        f"test/<class>/*.png", cache, lambda c: find_source(c, allow_image_folder=False),
        (lambda: ("tar", fetch(URL, cache / TARBALL, SHA256, "CIFAR-10"))) if download
        else None)


# --- reading ------------------------------------------------------------------------

def load(kind: str, path: Path) -> Arrays:
    """Reads the CIFAR-10 form `kind` at `path` (as returned by `resolve`)."""
    if kind == "folder":
        return folder.load(path)
    if kind == "py-dir":
        return _read_python(_dir_reader(path), str(path))
    if kind == "bin-dir":
        return _read_binary(_dir_reader(path), str(path))
    if kind == "tar":
        return _read_tarball(path)
    raise ValueError(f"unknown CIFAR-10 source kind {kind!r}")


def _dir_reader(root: Path) -> Callable[[str], bytes | None]:
    def read(name: str) -> bytes | None:
        p = root / name
        return p.read_bytes() if p.is_file() else None
    return read


def _read_tarball(path: Path) -> Arrays:
    try:
        with tarfile.open(path, "r:*") as tar:
            members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}

            def read(name: str) -> bytes | None:
                member = members.get(name)
                if member is None:
                    return None
                f = tar.extractfile(member)
                return f.read() if f is not None else None

            if "data_batch_1" in members:
                return _read_python(read, str(path))
            if "data_batch_1.bin" in members:
                return _read_binary(read, str(path))
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise DataError(
            f"{path} is not a readable tar archive ({e}): the file is corrupt or "
            f"truncated; download it again"
        ) from None
    raise DataError(
        f"{path} holds neither cifar-10-batches-py/ nor cifar-10-batches-bin/: it is not "
        f"an official CIFAR-10 archive"
    )


def _require(read: Callable[[str], bytes | None], name: str, source: str) -> bytes:
    data = read(name)
    if data is None:
        raise DataError(
            f"{source} has no {name}: CIFAR-10 needs data_batch_1..5 and test_batch; the "
            f"copy is incomplete, download it again"
        )
    return data


def _read_python(read: Callable[[str], bytes | None], source: str) -> Arrays:
    names = CLASS_NAMES
    meta = read("batches.meta")
    if meta is not None:
        meta_dict = safe_pickle.loads(meta, f"{source}/batches.meta")
        labels = meta_dict.get(b"label_names") if isinstance(meta_dict, dict) else None
        if isinstance(labels, list) and all(isinstance(n, (bytes, str)) for n in labels):
            names = [n.decode() if isinstance(n, bytes) else n for n in labels]

    def batch(name: str) -> tuple[np.ndarray, np.ndarray]:
        where = f"{source}/{name}"
        d = safe_pickle.loads(_require(read, name, source), where)
        if not isinstance(d, dict) or b"data" not in d or b"labels" not in d:
            raise DataError(f"{where} is not a CIFAR-10 batch (no data/labels): download it again")
        data, labels = d[b"data"], d[b"labels"]
        if (not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2
                or data.shape[1] != RECORD):
            raise DataError(
                f"{where} holds data of shape {getattr(data, 'shape', '?')} and dtype "
                f"{getattr(data, 'dtype', type(data).__name__)}, expected (N, {RECORD}) uint8"
            )
        return data, _labels(labels, len(data), len(names), where)

    return _assemble([batch(n) for n in TRAIN_BATCHES], batch(TEST_BATCH), names)


def _read_binary(read: Callable[[str], bytes | None], source: str) -> Arrays:
    names = CLASS_NAMES
    meta = read("batches.meta.txt")
    if meta is not None:
        lines = [ln.strip() for ln in meta.decode("utf-8", "replace").splitlines() if ln.strip()]
        if lines:
            names = lines

    def batch(name: str) -> tuple[np.ndarray, np.ndarray]:
        where = f"{source}/{name}"
        raw = np.frombuffer(_require(read, name, source), dtype=np.uint8)
        if raw.size == 0 or raw.size % (RECORD + 1):
            raise DataError(
                f"{where} has {raw.size} bytes, not a whole number of {RECORD + 1}-byte "
                f"records: the file is truncated or corrupt, download it again"
            )
        records = raw.reshape(-1, RECORD + 1)
        return records[:, 1:], _labels(records[:, 0], len(records), len(names), where)

    return _assemble([batch(f"{n}.bin") for n in TRAIN_BATCHES], batch(f"{TEST_BATCH}.bin"), names)


def _labels(labels: object, n: int, n_classes: int, where: str) -> np.ndarray:
    if isinstance(labels, np.ndarray):
        ok = labels.dtype.kind in "iu"
    else:
        ok = isinstance(labels, list) and all(isinstance(v, int) for v in labels)
    if not ok:
        raise DataError(f"{where} has labels that are not integers: the file is corrupt")
    y = np.asarray(labels, dtype=np.int64)
    if y.shape != (n,):
        raise DataError(f"{where} has {y.size} labels for {n} images: the file is corrupt")
    if n and (y.min() < 0 or y.max() >= n_classes):
        raise DataError(
            f"{where} has labels from {y.min()} to {y.max()}, outside 0..{n_classes - 1}: "
            f"the file is corrupt or not CIFAR-10"
        )
    return y


def _assemble(train: list[tuple[np.ndarray, np.ndarray]], test: tuple[np.ndarray, np.ndarray],
              names: list[str]) -> Arrays:
    def images(flat: np.ndarray) -> np.ndarray:
        # Rows are channel-first (1024 red, 1024 green, 1024 blue); Keras wants HWC.
        return np.ascontiguousarray(flat.reshape(-1, CHANNELS, SIDE, SIDE).transpose(0, 2, 3, 1))

    x_train = images(np.concatenate([x for x, _ in train]))
    y_train = np.concatenate([y for _, y in train])
    return x_train, y_train, images(test[0]), test[1], list(names)
