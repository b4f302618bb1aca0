"""Training on a slice of the real CIFAR-10 (../shared/data/cifar10-png)."""

import json

import pytest

from conftest import TEST_SEED, learned, run_cli

CLASSES = {"airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck"}


@pytest.mark.learning
def test_train_and_evaluate_on_a_slice_of_real_cifar10(tmp_path, capsys, cifar_slice):
    out = tmp_path / "cifar"
    code, stdout, err = run_cli(
        capsys, "train", "--dataset", "cifar10", "--data-dir", str(cifar_slice),
        "--train-limit", "3000", "--epochs", "2", "--batch-size", "32", "--seed", TEST_SEED,
        "--out", str(out))
    assert code == 0, err
    assert "3000 train, 1000 test images, 32x32x3, 10 classes" in stdout
    metrics = json.loads((out / "metrics.json").read_text())
    # It learns from real images with the right labels: the second epoch's training
    # accuracy (train mode, so BatchNorm's lagging moving averages play no part) is far
    # above chance (0.1; its sd over 3,000 images is 0.55 points). The test accuracy after
    # 188 steps is not a guarantee: it depends on how far BatchNorm's moving averages have
    # come (seen from 10% to 29% across seeds, batch sizes and machines). Measured by
    # make test-stress (2-core AMD EPYC, 2026-11-27; seeds 0-9 at 1 thread, seeds 0-4
    # at 2 threads, n = 15): 0.355-0.388 (mean 0.372, sd 0.0095).
    learned("cifar10 slice train accuracy, epoch 2", metrics["final_train_accuracy"], 0.15)
    assert set(metrics["per_class"]) == CLASSES and metrics["test_images"] == 1000

    # evaluate reloads the model and reproduces the run's test accuracy on the same images
    code, stdout, err = run_cli(capsys, "evaluate", str(out), "--dataset", "cifar10",
                                "--data-dir", str(cifar_slice))
    assert code == 0, err
    assert "on the cifar10 test split (1000 images)" in stdout
    assert f"test accuracy {100 * metrics['test_accuracy']:.2f}%" in stdout
