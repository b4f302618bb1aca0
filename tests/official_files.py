"""Writers of tiny MNIST, Fashion-MNIST and CIFAR-100 files in their official formats,
for tests (as tests/cifar_files.py writes CIFAR-10's)."""

from __future__ import annotations

import gzip
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np

IDX = {"train-images-idx3-ubyte": "x_train", "train-labels-idx1-ubyte": "y_train",
       "t10k-images-idx3-ubyte": "x_test", "t10k-labels-idx1-ubyte": "y_test"}


def mnist_arrays(n_train: int = 40, n_test: int = 20, seed: int = 0) -> dict[str, np.ndarray]:
    """28x28 uint8 images, each class's images brighter in its own rows (learnable)."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        y = (np.arange(n) % 10).astype(np.uint8)
        x = rng.integers(0, 60, size=(n, 28, 28), dtype=np.uint8)
        for i, label in enumerate(y):
            x[i, 2 * label:2 * label + 3] = 250
        arrays[f"x_{split}"], arrays[f"y_{split}"] = x, y
    return arrays


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file of unsigned bytes: magic 0x08 0x<ndim>, big-endian dimensions, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx(folder: Path, arrays: dict[str, np.ndarray], gz: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for stem, key in IDX.items():
        data = idx_bytes(arrays[key])
        if gz:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / stem).write_bytes(data)
    return folder


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return path


def cifar100_arrays(n_train: int = 40, n_test: int = 20, seed: int = 0):
    """Channel-first rows as in the official pickles, fine labels 0..99, coarse 0..19."""
    rng = np.random.default_rng(seed)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        fine = [int(v) for v in rng.permutation(np.arange(n) % 100)]
        out[split] = {b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
                      b"fine_labels": fine, b"coarse_labels": [f // 5 for f in fine],
                      b"filenames": [b"x.png"] * n, b"batch_label": split.encode()}
    return out


FINE = [f"fine{i}" for i in range(100)]
COARSE = [f"coarse{i}" for i in range(20)]


def cifar100_files(splits) -> dict[str, bytes]:
    files = {name: pickle.dumps(d, protocol=2) for name, d in splits.items()}
    files["meta"] = pickle.dumps({b"fine_label_names": [n.encode() for n in FINE],
                                  b"coarse_label_names": [n.encode() for n in COARSE]},
                                 protocol=2)
    return files


def write_cifar100_dir(folder: Path, splits) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in cifar100_files(splits).items():
        (folder / name).write_bytes(data)
    return folder


def write_cifar100_tar(path: Path, splits) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, data in cifar100_files(splits).items():
            info = tarfile.TarInfo(f"cifar-100-python/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path
