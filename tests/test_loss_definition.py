"""One definition of an evaluated loss: each epoch's val_loss (history.csv, the epoch
line, TensorBoard), the final loss (metrics.json, the result line) and kvt evaluate are
the same function of the same predictions (`kvt.report.scores`); the training loss is
Keras' objective (label smoothing included)."""

import json
import subprocess

import numpy as np
import pytest

from conftest import TEST_SEED, run_cli
from processes import HANG, child_env, event_files, history, kvt

# label smoothing makes Keras' own objective differ from the evaluated loss
ARGS = ["--dataset", "digits", "--epochs", "2", "--batch-size", "32", "--train-limit", "320",
        "--label-smoothing", "0.1", "--seed", TEST_SEED]


def test_scores_clip_each_probability_at_1e_7():
    from kvt.report import scores

    probs = np.array([[1.0, 0.0], [0.25, 0.75], [0.5, 0.5]])
    accuracy, loss = scores(probs, np.array([1, 1, 0]))  # the first: wrong with certainty
    assert accuracy == pytest.approx(2 / 3)
    assert loss == pytest.approx((-np.log(1e-7) - np.log(0.75) - np.log(0.5)) / 3)


@pytest.mark.process
@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_val_loss_final_loss_and_evaluate_agree(tmp_path, capsys, backend):
    from kvt import backends

    if not backends.installed().get(backend):
        pytest.skip(f"{backend} is not installed")
    run = tmp_path / "run"
    if backend == "tensorflow":  # this process's backend
        code, out, err = run_cli(capsys, "train", *ARGS, "--out", str(run))
    else:
        done = subprocess.run(kvt("train", *ARGS, "--backend", backend, "--out", str(run)),
                              env=child_env(tmp_path), capture_output=True, text=True,
                              timeout=HANG)
        code, out, err = done.returncode, done.stdout, done.stderr
    assert code == 0, err
    rows = history(run)
    metrics = json.loads((run / "metrics.json").read_text())
    val_loss = float(rows[-1]["val_loss"])
    assert val_loss == pytest.approx(metrics["loss"], rel=1e-5)
    assert float(rows[-1]["val_accuracy"]) == pytest.approx(metrics["accuracy"], abs=1e-6)
    epoch_line = next(ln for ln in out.splitlines() if ln.startswith("epoch 2/2"))
    assert f"val_loss {val_loss:.4f}" in epoch_line and f"(loss {metrics['loss']:.4f})" in out
    [logged] = event_files(run, "validation")
    assert logged["epoch_loss"][-1][1] == pytest.approx(val_loss, rel=1e-5)
    code, out, err = run_cli(capsys, "evaluate", str(run))  # the whole test split, as trained
    assert code == 0 and f"(loss {metrics['loss']:.4f})" in out, err
