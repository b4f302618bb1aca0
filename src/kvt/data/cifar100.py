"""CIFAR-100 from its official python version, found locally or downloaded and verified:
32x32 colour images, 50,000 to train and 10,000 to test, labelled with 100 fine classes
(`cifar100`) and 20 superclasses (`cifar100-coarse`).

Sources, in the order `resolve()` tries them:

1. an explicit folder or file (`--data-dir` / `KVT_DATA_DIR`): the tarball
   `cifar-100-python.tar.gz` or its extracted `cifar-100-python/` (`train`, `test`,
   `meta`), read with the restricted unpickler (`kvt.data.safe_pickle`);
2. the Keras cache (`$KERAS_HOME/datasets`), in the layouts Keras 2 and Keras 3 leave;
3. a download of the tarball from the URL Keras uses, checked against the SHA-256 Keras
   publishes (keras/src/datasets/cifar100.py).
"""

from __future__ import annotations

import tarfile
import zlib
from pathlib import Path
from typing import Callable

import numpy as np

from kvt.data import safe_pickle
from kvt.data.cifar10 import RECORD, _assemble, _labels, keras_cache_dir
from kvt.data.download import locate
from kvt.errors import DataError

URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
SHA256 = "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7"
TARBALL = "cifar-100-python.tar.gz"
SIDE = 32
LABELS = {"cifar100": "fine", "cifar100-coarse": "coarse"}  # dataset name -> label set
COUNTS = {"fine": 100, "coarse": 20}

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]


def find_source(path: Path) -> tuple[str, Path] | None:
    """("dir", the folder with train/test/meta) or ("tar", the tarball), or None."""
    if path.is_file():
        return ("tar", path)
    if not path.is_dir():
        return None
    for where in (path, path / "cifar-100-python",
                  path / "cifar-100-python-target" / "cifar-100-python"):
        if (where / "train").is_file() and (where / "test").is_file():
            return ("dir", where)
    for name in (TARBALL, "cifar-100-python-target_archive"):
        if (path / name).is_file():
            return ("tar", path / name)
    return None


def resolve(data_dir: str | Path | None, download: bool = True) -> tuple[str, Path]:
    """Finds CIFAR-100, downloading it into the Keras cache if nothing local is found."""
    cache = keras_cache_dir()
    return locate("CIFAR-100", data_dir, find_source, f"{TARBALL} or cifar-100-python/",
                  cache, find_source,
                  (lambda: _download(cache)) if download else None)


def _download(cache: Path) -> tuple[str, Path]:
    from kvt.data.download import fetch  # looked up when called: tests stand in for it

    return ("tar", fetch(URL, cache / TARBALL, SHA256, "CIFAR-100"))


def load(name: str, kind: str, path: Path) -> Arrays:
    """Reads CIFAR-100 with the labels of dataset `name` (`LABELS`)."""
    mode = LABELS[name]
    if kind == "dir":
        def read(member: str) -> bytes | None:
            p = path / member
            return p.read_bytes() if p.is_file() else None
        return _read(read, str(path), mode)
    try:
        with tarfile.open(path, "r:*") as tar:
            members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}

            def read(member: str) -> bytes | None:
                m = members.get(member)
                f = tar.extractfile(m) if m is not None else None
                return f.read() if f is not None else None
            return _read(read, str(path), mode)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise DataError(f"{path} is not a readable tar archive ({e}): the file is corrupt or "
                        f"truncated; download it again") from None


def _read(read: Callable[[str], bytes | None], source: str, mode: str) -> Arrays:
    n_classes = COUNTS[mode]
    names = [str(i) for i in range(n_classes)]
    meta = read("meta")
    if meta is not None:
        d = safe_pickle.loads(meta, f"{source}/meta")
        labels = d.get(f"{mode}_label_names".encode()) if isinstance(d, dict) else None
        if (isinstance(labels, list) and len(labels) == n_classes
                and all(isinstance(n, (bytes, str)) for n in labels)):
            names = [n.decode() if isinstance(n, bytes) else n for n in labels]

    def split(member: str) -> tuple[np.ndarray, np.ndarray]:
        where = f"{source}/{member}"
        raw = read(member)
        if raw is None:
            raise DataError(f"{source} has no {member}: CIFAR-100 needs train and test; the "
                            f"copy is incomplete, download it again")
        d = safe_pickle.loads(raw, where)
        key = f"{mode}_labels".encode()
        if not isinstance(d, dict) or b"data" not in d or key not in d:
            raise DataError(f"{where} is not a CIFAR-100 split (no data/{mode}_labels): "
                            f"download it again")
        data = d[b"data"]
        if (not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2
                or data.shape[1] != RECORD):
            raise DataError(f"{where} holds data of shape {getattr(data, 'shape', '?')}, "
                            f"expected (N, {RECORD}) uint8: the file is corrupt")
        return data, _labels(d[key], len(data), n_classes, where)

    return _assemble([split("train")], split("test"), names)
