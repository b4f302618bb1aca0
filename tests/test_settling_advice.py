"""A run that ends with too few steps for BatchNormalization's moving averages, or with an
accuracy far below its training accuracy, says so in one line with what to do."""

from conftest import TEST_SEED, run_cli


def test_too_few_steps_for_batchnorm_is_explained():
    from kvt.report import settling_advice

    line = settling_advice(0.99, 45, 2, "test", 0.10, 0.91)
    assert line.startswith("90 training steps are too few for BatchNormalization's moving "
                           "averages (momentum 0.99), which the test evaluation uses: they "
                           "still hold 40% of their starting values (test accuracy 10.0% "
                           "against 91.0% in training); train at least 459 steps (45 per "
                           "epoch now): more --epochs or a smaller --batch-size")
    assert settling_advice(0.99, 45, 11, "test", 0.90, 0.91) is None  # 495 steps
    assert "(test accuracy" not in settling_advice(0.99, 45, 2, "test", 0.85, 0.91)


def test_an_accuracy_far_below_training_is_explained():
    from kvt.report import settling_advice

    line = settling_advice(None, 45, 20, "validation", 0.40, 0.95)
    assert line.startswith("validation accuracy 40.0% against 95.0% in training: the model "
                           "fits its training images far better than these")
    assert settling_advice(0.99, 100, 30, "test", 0.75, 0.93) is None  # ordinary overfitting


def test_a_short_run_warns_after_its_result(tmp_path, capsys):
    code, out, err = run_cli(capsys, "train", "--dataset", "digits", "--epochs", "1",
                             "--batch-size", "64", "--train-limit", "256", "--test-limit",
                             "64", "--seed", TEST_SEED, "--quiet",
                             "--out", str(tmp_path / "run"))
    assert code == 0, err
    warnings = [line for line in err.splitlines() if "BatchNormalization" in line]
    assert len(warnings) == 1 and warnings[0].startswith(
        "kvt: warning: 4 training steps are too few for BatchNormalization's moving averages")
    assert warnings[0].endswith("train at least 459 steps (4 per epoch now): more --epochs "
                                "or a smaller --batch-size")
