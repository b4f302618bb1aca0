"""--deterministic: two processes, same seed, backend and machine -> identical runs."""

import csv
import io
import os
import subprocess
import sys
import zipfile

import h5py
import numpy as np
import pytest

from kvt import backends

INSTALLED = [b for b, ok in backends.installed().items() if ok]


def train(out, backend, tmp_path):
    env = dict(os.environ, KVT_CACHE_DIR=str(tmp_path / "cache"))
    env.pop("KERAS_BACKEND", None)
    proc = subprocess.run(
        [sys.executable, "-m", "kvt", "train", "--dataset", "digits", "--epochs", "2",
         "--batch-size", "16", "--train-limit", "480", "--test-limit", "120", "--seed", "5",
         "--activation", "crelu", "--backend", backend, "--deterministic", "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


def history(run):
    with open(run / "history.csv", newline="") as f:
        return [{k: v for k, v in row.items() if not k.endswith("seconds")}
                for row in csv.DictReader(f)]


def weights(run):
    with zipfile.ZipFile(run / "model.keras") as z:
        data = z.read("model.weights.h5")
    found = {}
    with h5py.File(io.BytesIO(data), "r") as f:
        f.visititems(lambda name, obj: found.__setitem__(name, obj[()])
                     if isinstance(obj, h5py.Dataset) else None)
    return found


@pytest.mark.parametrize("backend", INSTALLED)
def test_two_deterministic_runs_are_identical(tmp_path, backend):
    a, b = tmp_path / "a", tmp_path / "b"
    train(a, backend, tmp_path)
    train(b, backend, tmp_path)
    assert history(a) == history(b)
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys() and len(wa) > 20
    for name in wa:
        np.testing.assert_array_equal(wa[name], wb[name], err_msg=name)
