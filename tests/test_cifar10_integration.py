"""Training on a slice of the real CIFAR-10 (../shared/data/cifar10-png)."""

import json

import pytest

from conftest import SHARED_CIFAR, run_cli

pytestmark = pytest.mark.skipif(
    not (SHARED_CIFAR / "train").is_dir(),
    reason=f"real CIFAR-10 not found at {SHARED_CIFAR} (it ships beside the repo only for "
           f"developers and CI)")


def test_train_and_evaluate_on_a_slice_of_real_cifar10(tmp_path, capsys):
    out = tmp_path / "cifar"
    code, stdout, err = run_cli(
        capsys, "train", "--dataset", "cifar10", "--data-dir", str(SHARED_CIFAR),
        "--train-limit", "3000", "--test-limit", "1000", "--epochs", "1", "--batch-size", "8",
        "--out", str(out))
    assert code == 0, err
    assert "50000" not in stdout and "3000 train, 1000 test images, 32x32x3, 10 classes" in stdout
    metrics = json.loads((out / "metrics.json").read_text())
    # chance is 10%; the binomial sd at n=1000 is under 1 point
    assert metrics["test_accuracy"] > 0.2
    assert set(metrics["per_class"]) == {"airplane", "automobile", "bird", "cat", "deer", "dog",
                                         "frog", "horse", "ship", "truck"}
    code, stdout, err = run_cli(capsys, "evaluate", str(out), "--dataset", "cifar10",
                                "--data-dir", str(SHARED_CIFAR))
    assert code == 0, err
    assert "on the cifar10 test split (10000 images)" in stdout
