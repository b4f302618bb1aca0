"""Every kind of bad data, through `kvt train` as a user meets it: exit code 3, one line
naming the problem and the fix, no traceback, and no run directory left behind."""

import io
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import cifar_files as cf
from conftest import run_cli


def folder(root: Path, classes=("cats", "dogs"), splits=("train", "test"), size=(12, 12)):
    rng = np.random.default_rng(0)
    for split in splits:
        for c in classes:
            d = root / split / c
            d.mkdir(parents=True, exist_ok=True)
            for i in range(3):
                Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
                                ).save(d / f"{i}.png")
    return root


class Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os
        return (os.system, (f"touch {self.marker}",))


def _empty(tmp):
    (tmp / "empty").mkdir()
    return ["--dataset", str(tmp / "empty")]


def _no_test(tmp):
    return ["--dataset", str(folder(tmp / "d", splits=("train",)))]


def _different_classes(tmp):
    root = folder(tmp / "d")
    (root / "test" / "dogs").rename(root / "test" / "wolves")
    return ["--dataset", str(root)]


def _truncated_png(tmp):
    root = folder(tmp / "d")
    victim = root / "train" / "cats" / "1.png"
    victim.write_bytes(victim.read_bytes()[:40])
    return ["--dataset", str(root)]


def _corrupt_jpeg(tmp):
    root = folder(tmp / "d")
    (root / "test" / "dogs" / "x.jpg").write_bytes(b"\xff\xd8\xff\xe0 broken")
    return ["--dataset", str(root)]


def _mixed_sizes(tmp):
    root = folder(tmp / "d")
    Image.new("RGB", (20, 16)).save(root / "train" / "dogs" / "big.png")
    return ["--dataset", str(root)]


def _only_stray_files(tmp):
    root = folder(tmp / "d")
    for f in (root / "train" / "dogs").iterdir():
        f.unlink()
    (root / "train" / "dogs" / "notes.txt").write_text("not an image")
    return ["--dataset", str(root)]


def _one_class(tmp):
    return ["--dataset", str(folder(tmp / "d", classes=("cats",)))]


def _too_small_to_pool(tmp):
    return ["--dataset", str(folder(tmp / "d", size=(3, 3))), "--batch-size", "2"]


def _resized_digits(tmp):
    return ["--dataset", "digits", "--image-size", "16"]


def _missing_data_dir(tmp):
    return ["--data-dir", str(tmp / "nowhere")]


def _truncated_tarball(tmp):
    tar = cf.write_tar(tmp / "cifar-10-python.tar.gz", "cifar-10-batches-py",
                       cf.python_files(cf.make_arrays()))
    tar.write_bytes(tar.read_bytes()[: tar.stat().st_size // 2])
    return ["--data-dir", str(tar)]


def _truncated_batch(tmp):
    files = cf.binary_files(cf.make_arrays())
    files["data_batch_2.bin"] = files["data_batch_2.bin"][:-100]
    return ["--data-dir", str(cf.write_dir(tmp / "b", files))]


def _corrupt_pickle(tmp):
    files = cf.python_files(cf.make_arrays())
    files["data_batch_1"] = files["data_batch_1"][:50]
    return ["--data-dir", str(cf.write_dir(tmp / "b", files))]


def _labels_out_of_range(tmp):
    files = cf.binary_files(cf.make_arrays())
    raw = bytearray(files["test_batch.bin"])
    raw[0] = 12
    files["test_batch.bin"] = bytes(raw)
    return ["--data-dir", str(cf.write_dir(tmp / "b", files))]


def _malicious_pickle(tmp):
    files = cf.python_files(cf.make_arrays())
    buf = io.BytesIO()
    pickle.dump({b"data": Exploit(tmp / "pwned"), b"labels": []}, buf, protocol=2)
    files["data_batch_3"] = buf.getvalue()
    return ["--data-dir", str(cf.write_dir(tmp / "b", files))]


CASES = [
    (_empty, "has no train/ or test/ folder"),
    (_no_test, "has no test/ folder"),
    (_different_classes, "different class folders"),
    (_truncated_png, "cannot decode image"),
    (_corrupt_jpeg, "cannot decode image"),
    (_mixed_sizes, "images differ in size"),
    (_only_stray_files, "dogs holds no PNG or JPEG images"),
    (_one_class, "a classifier needs at least two classes"),
    (_too_small_to_pool, "images are 3x3 but minivggnet needs at least 4x4"),
    (_resized_digits, "--image-size 16 applies to image folders only; digits is 8x8"),
    (_missing_data_dir, "does not exist: point --data-dir"),
    (_truncated_tarball, "not a readable tar archive"),
    (_truncated_batch, "not a whole number"),
    (_corrupt_pickle, "is not a readable pickle"),
    (_labels_out_of_range, "outside 0..9"),
    (_malicious_pickle, "refused to read"),
]


@pytest.mark.parametrize("make, words", CASES, ids=[m.__name__.strip("_") for m, _ in CASES])
def test_bad_data_gets_one_line_and_exit_code_3(tmp_path, capsys, make, words):
    out = tmp_path / "run"
    code, stdout, err = run_cli(capsys, "train", *make(tmp_path), "--epochs", "1",
                                "--out", str(out))
    lines = err.strip().splitlines()
    assert code == 3, err
    assert len(lines) == 1 and lines[0].startswith("kvt train: error: ") and words in lines[0], err
    assert "Traceback" not in stdout + err
    assert not out.exists()
    assert not (tmp_path / "pwned").exists()
