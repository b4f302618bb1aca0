"""Writers of tiny CIFAR-10 files in every official format, for tests."""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
PER_BATCH = 20  # images per batch file: 5 train batches + 1 test batch


def make_arrays(seed: int = 0):
    """Six batches of random images (N, 3072, channel-first rows) with labels 0..9."""
    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(6):
        data = rng.integers(0, 256, size=(PER_BATCH, 3072), dtype=np.uint8)
        labels = [int(v) for v in np.arange(PER_BATCH) % 10]
        batches.append((data, labels))
    return batches


def expected(batches):
    """The (x_train, y_train, x_test, y_test) a correct reader returns."""
    def hwc(flat):
        return flat.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    x_train = hwc(np.concatenate([d for d, _ in batches[:5]]))
    y_train = np.concatenate([l for _, l in batches[:5]])
    return x_train, y_train, hwc(batches[5][0]), np.asarray(batches[5][1])


def _batch_names():
    return [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def python_files(batches, protocol: int = 2) -> dict[str, bytes]:
    files = {}
    for name, (data, labels) in zip(_batch_names(), batches):
        files[name] = pickle.dumps({b"batch_label": name.encode(), b"labels": labels,
                                    b"data": data, b"filenames": [b"x.png"] * len(labels)},
                                   protocol=protocol)
    files["batches.meta"] = pickle.dumps(
        {b"label_names": [n.encode() for n in NAMES], b"num_vis": 3072}, protocol=protocol)
    return files


def binary_files(batches) -> dict[str, bytes]:
    files = {}
    for name, (data, labels) in zip(_batch_names(), batches):
        records = np.concatenate([np.asarray(labels, dtype=np.uint8)[:, None], data], axis=1)
        files[f"{name}.bin"] = records.tobytes()
    files["batches.meta.txt"] = ("\n".join(NAMES) + "\n").encode()
    return files


def write_dir(root: Path, files: dict[str, bytes]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (root / name).write_bytes(data)
    return root


def write_tar(path: Path, folder: str, files: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def write_image_folder(root: Path, batches, suffix: str = ".png") -> Path:
    x_train, y_train, x_test, y_test = expected(batches)
    for split, xs, ys in (("train", x_train, y_train), ("test", x_test, y_test)):
        for i, (x, y) in enumerate(zip(xs, ys)):
            d = root / split / NAMES[y]
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(x).save(d / f"img_{i:05d}{suffix}")
    return root
