import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # for tests/cifar_files.py

from kvt import backends  # noqa: E402

# One process, one backend: the suite runs on TensorFlow (the only backend with
# `--api tf`); TF's start-up chatter is filtered as in the CLI.
backends.select("tensorflow")
backends.import_keras()

SHARED_CIFAR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10-png"
# What a test's training run uses on digits: 3 epochs at batch 8 give BatchNorm's moving
# averages ~500 steps to settle (batch 32 would leave the test accuracy near chance).
FAST_DIGITS = ["--dataset", "digits", "--epochs", "3", "--batch-size", "8"]


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """No test reads or writes the user's caches or finds data through their settings."""
    monkeypatch.setenv("KVT_CACHE_DIR", str(tmp_path / "kvt-cache"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    monkeypatch.delenv("KVT_DATA_DIR", raising=False)
    monkeypatch.delenv("KVT_NO_CACHE", raising=False)


def run_cli(capsys, *argv: str):
    """Runs `kvt argv` in this process: (exit code, stdout, stderr)."""
    from kvt.cli import main

    try:
        code = main(list(argv))
    except SystemExit as e:  # argparse's own exits
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="session")
def digits_runs(tmp_path_factory):
    """Two finished runs on digits, trained once per session: {"keras": dir, "tf": dir}."""
    from kvt.cli import main

    root = tmp_path_factory.mktemp("runs")
    runs = {}
    mp = pytest.MonkeyPatch()
    mp.setenv("KVT_CACHE_DIR", str(root / "cache"))
    try:
        for api, activation in (("keras", "crelu"), ("tf", "crelu")):
            out = root / api
            code = main(["train", *FAST_DIGITS, "--api", api, "--activation", activation,
                         "--out", str(out), "--plot", str(root / f"plot_{api}.png")])
            assert code == 0
            runs[api] = out
    finally:
        mp.undo()
    return runs
