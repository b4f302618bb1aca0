"""Checkpoint and resume: a killed or interrupted run continues from its last finished
epoch and ends exactly where an uninterrupted run ends (--deterministic)."""

import json
import math
import os
import shutil
import signal

import numpy as np
import pytest

from conftest import FAST_DIGITS, run_cli
from processes import event_files, history, weights


@pytest.mark.process
def test_sigkill_mid_run_resumes_to_the_uninterrupted_result(killed_and_resumed):
    run = killed_and_resumed
    full, part, killed = run.full, run.part, run.killed
    assert killed.code == -signal.SIGKILL
    assert killed.status == "running"  # what a killed process leaves: not "complete"
    assert killed.checkpoint and not killed.model

    assert run.resumed.returncode == 0, run.resumed.stderr[-2000:]
    assert json.loads((part / "status.json").read_text())["status"] == "complete"
    assert not (part / "checkpoint.npz").exists()
    assert len(history(part)) == 4 and history(part) == history(full)  # one contiguous history
    wa, wb = weights(full), weights(part)
    assert wa.keys() == wb.keys()
    for name in wa:
        np.testing.assert_array_equal(wa[name], wb[name], err_msg=name)
    metrics = json.loads((part / "metrics.json").read_text())
    assert metrics["starts"] == 2
    assert metrics["accuracy"] == json.loads((full / "metrics.json").read_text())["accuracy"]


@pytest.mark.process
def test_tensorboard_logs_continue_across_a_resume(killed_and_resumed):
    """Each session writes one event file per folder: the first session's holds the
    epochs it checkpointed, the resumed session's the rest, none twice; together they
    hold what history.csv holds."""
    run = killed_and_resumed
    done = len(run.killed.history)  # epochs checkpointed when the first session was killed
    assert 1 <= done < 4
    for path, sessions in ((run.full, [range(4)]), (run.part, [range(done), range(done, 4)])):
        train, validation = event_files(path, "train"), event_files(path, "validation")
        for files, tags in ((train, {"epoch_loss", "epoch_accuracy", "epoch_learning_rate",
                                     "epoch_images_per_second"}),
                            (validation, {"epoch_loss", "epoch_accuracy"})):
            assert len(files) == len(sessions), path
            for scalars, epochs in zip(files, sessions):
                assert set(scalars) == tags
                for tag, values in scalars.items():
                    assert [step for step, _ in values] == list(epochs), (path, tag)

        def series(files, tag):
            return [v for scalars in files for _, v in scalars[tag]]

        rows = history(path)
        for files, name in ((train, "loss"), (train, "accuracy"), (validation, "val_loss"),
                            (validation, "val_accuracy")):
            np.testing.assert_allclose(series(files, "epoch_" + name.removeprefix("val_")),
                                       [float(r[name]) for r in rows], rtol=1e-5)
        # The fast recipe's schedule after each epoch's 30 steps (RESUME_ARGS: 480 images,
        # batch 16, 4 epochs, lr 0.02): the peak after the 1-epoch warm-up, then a cosine
        # over the other 90 steps, 0 at the last
        cosine = [0.02 * 0.5 * (1 + math.cos(math.pi * 30 * e / 90)) for e in (0, 1, 2, 3)]
        np.testing.assert_allclose(series(train, "epoch_learning_rate"), cosine,
                                   rtol=1e-5, atol=1e-9)
        assert all(v > 0 for v in series(train, "epoch_images_per_second"))


@pytest.mark.process
def test_ctrl_c_saves_says_how_to_resume_and_exits_130(signalled_trainings, tmp_path,
                                                        capsys):
    """A real SIGINT after epoch 1 (one of conftest's signalled processes)."""
    stopped = signalled_trainings["sigint after epoch 1"]
    run, err = stopped.run, stopped.err
    assert stopped.code == 130, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    assert lines[0].startswith("kvt train: cancelled: stopped during epoch")
    assert lines[0].endswith(f"continue with kvt train --resume {run}")
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "interrupted" and "--resume" in status["message"]
    assert (run / "checkpoint.npz").is_file()

    run = shutil.copytree(run, tmp_path / "run")  # the fixture's runs stay as the signal left them
    code, out, err = run_cli(capsys, "train", "--resume", str(run))
    assert code == 0, err
    rows = history(run)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert json.loads((run / "metrics.json").read_text())["starts"] == 2


@pytest.mark.process
def test_sigterm_stops_like_ctrl_c(signalled_trainings):
    """A real SIGTERM after epoch 1 (one of conftest's signalled processes)."""
    stopped = signalled_trainings["sigterm after epoch 1"]
    assert stopped.code == 130 and "continue with kvt train --resume" in stopped.err
    assert json.loads((stopped.run / "status.json").read_text())["status"] == "interrupted"


# Plumbing (an interrupt or a full disk, then a resume), not learning: 20 steps an epoch.
SMALL = [*FAST_DIGITS, "--train-limit", "160", "--test-limit", "64"]


def _interrupted_copy(tmp_path, digits_runs, checkpoint: bytes | None):
    """A run directory that looks interrupted, made from a finished one."""
    run = tmp_path / "stopped"
    run.mkdir()
    (run / "config.json").write_bytes((digits_runs["keras"] / "config.json").read_bytes())
    (run / "status.json").write_text(json.dumps({"status": "interrupted", "message": ""}))
    if checkpoint is not None:
        (run / "checkpoint.npz").write_bytes(checkpoint)
    return run


def test_resume_refusals(tmp_path, capsys, digits_runs):
    from kvt.runs import RunDir

    complete = digits_runs["keras"]
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "config.json").write_bytes((complete / "config.json").read_bytes())
    (busy / "status.json").write_text(json.dumps({"status": "running"}))
    corrupt = _interrupted_copy(tmp_path, digits_runs, b"PK\x03\x04 not a checkpoint")
    cases = [
        (["--resume", str(complete)], 6, "is already complete: nothing to resume"),
        (["--resume", str(tmp_path / "nope")], 6, "is not a kvt run directory"),
        (["--resume", str(complete), "--lr", "0.1"], 2,
         "--resume continues a run with its saved config: drop --lr"),
        (["--resume", str(busy), "--force"], 2, "drop --force"),
        (["--resume", str(busy)], 6, f"{busy} is in use by another kvt process (pid "
                                     f"{os.getpid()}): wait for it to finish or stop it"),
        (["--resume", str(corrupt)], 6, "cannot read the checkpoint"),
        (["--resume", str(corrupt), "--data-dir", str(tmp_path)], 2,
         "--data-dir says where CIFAR-10, CIFAR-100, MNIST or Fashion-MNIST lies; this run "
         "trains on digits: drop --data-dir"),
    ]
    with RunDir(busy).claim():  # as a live trainer holds it
        for argv, code, words in cases:
            got, out, err = run_cli(capsys, "train", *argv)
            lines = err.strip().splitlines()
            assert got == code and len(lines) == 1 and words in lines[0], (argv, err)
            assert "Traceback" not in out + err
    assert (complete / "model.keras").is_file()  # nothing of the finished run was touched
    assert json.loads((corrupt / "status.json").read_text())["status"] == "interrupted"
    assert RunDir(busy).status() == "running"


def test_checkpoint_of_another_config_is_refused(tmp_path, capsys, digits_runs):
    from kvt.checkpoint import Progress, save_checkpoint
    from kvt.recipes import from_recipe
    from kvt.runs import RunDir
    from kvt.train import build_and_compile

    other = from_recipe(dataset="digits", epochs=3, batch_size=8, lr=0.5)
    model = build_and_compile(other, (8, 8, 1), 10)
    save_checkpoint(model, other, Progress(3, 1), tmp_path / "ck.npz")
    run = _interrupted_copy(tmp_path, digits_runs, (tmp_path / "ck.npz").read_bytes())
    code, _, err = run_cli(capsys, "train", "--resume", str(run))
    assert code == 6 and "was written for another config" in err
    assert RunDir(run).status() == "interrupted"


def test_epoch_order_depends_only_on_seed_and_epoch():
    from kvt.train import epoch_order

    a = epoch_order(3, 1, 100)
    assert sorted(a) == list(range(100))
    np.testing.assert_array_equal(a, epoch_order(3, 1, 100))
    assert not np.array_equal(a, epoch_order(3, 2, 100))
    assert not np.array_equal(a, epoch_order(4, 1, 100))


def test_disk_full_while_checkpointing_says_how_to_continue(tmp_path, capsys, monkeypatch):
    import errno

    from kvt import train

    real = train.save_checkpoint
    calls = []

    def full_disk(model, config, progress, path):
        calls.append(progress.done)
        if progress.done == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(model, config, progress, path)

    monkeypatch.setattr(train, "save_checkpoint", full_disk)
    run = tmp_path / "run"
    code, out, err = run_cli(capsys, "train", *SMALL, "--out", str(run))
    lines = err.strip().splitlines()
    assert code == 6 and len(lines) == 1 and "Traceback" not in out + err
    assert "No space left on device); 1 finished epoch is saved" in lines[0]
    assert lines[0].endswith(f"continue with kvt train --resume {run}")
    assert json.loads((run / "status.json").read_text())["status"] == "failed"
    monkeypatch.setattr(train, "save_checkpoint", real)
    code, out, err = run_cli(capsys, "train", "--resume", str(run))
    assert code == 0, err
    assert [int(r["epoch"]) for r in history(run)] == [1, 2, 3]


def test_force_restart_removes_a_stale_checkpoint_and_logs(tmp_path, capsys):
    from kvt.runs import RunDir

    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.npz").write_bytes(b"old")
    (run / "logs" / "train").mkdir(parents=True)
    (run / "logs" / "train" / "events.out.tfevents.1.old").write_bytes(b"old")
    code, _, err = run_cli(capsys, "train", "--dataset", "digits", "--out", str(run))
    assert code == 6 and "already holds a run (checkpoint.npz, logs)" in err
    RunDir(run).create(force=True)
    assert not (run / "checkpoint.npz").exists()
    assert not (run / "logs").exists()  # no old run's curves in the new run's TensorBoard


def test_training_without_tensorboard_installed_says_so_and_trains(tmp_path, capsys,
                                                                   monkeypatch):
    from kvt import train

    monkeypatch.setattr(train, "tensorboard_installed", lambda: False)
    run = tmp_path / "run"
    code, out, err = run_cli(capsys, "train", *SMALL, "--epochs", "1", "--out", str(run))
    assert code == 0, err
    lines = err.strip().splitlines()  # then, for so short a run, BatchNormalization's warning
    assert lines[0] == ("kvt: note: no TensorBoard logs for this run: the tensorboard "
                        "package is not installed (pip install tensorboard)")
    assert all(ln.startswith("kvt: warning: ") and "BatchNormalization" in ln for ln in lines[1:])
    assert (run / "model.keras").is_file() and not (run / "logs").exists()


@pytest.mark.parametrize("when", ["config.json", "status.json"])
def test_interrupt_as_a_run_starts_never_leaves_it_running(tmp_path, capsys, monkeypatch, when):
    """A signal landing just as the run directory is set up (kvt compare stops its children
    the moment their status says "running") still marks the run interrupted."""
    from kvt import runs, train

    real_write, real_mark = train.write_json, runs.RunDir.mark

    def write_then_interrupt(path, data):
        real_write(path, data)
        if when == "config.json" and path.name == "config.json":
            raise KeyboardInterrupt

    def mark_then_interrupt(self, status, message=""):
        real_mark(self, status, message)
        if when == "status.json" and status == "running":
            raise KeyboardInterrupt

    monkeypatch.setattr(train, "write_json", write_then_interrupt)
    monkeypatch.setattr(runs.RunDir, "mark", mark_then_interrupt)
    run = tmp_path / "run"
    code, out, err = run_cli(capsys, "train", *SMALL, "--out", str(run))
    assert code == 130 and "Traceback" not in out + err
    assert err.strip().endswith(f"continue with kvt train --resume {run}")
    assert json.loads((run / "status.json").read_text())["status"] == "interrupted"
    monkeypatch.undo()
    code, out, err = run_cli(capsys, "train", "--resume", str(run))
    assert code == 0, err
    assert json.loads((run / "status.json").read_text())["status"] == "complete"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_keras_swallows_still_stops_the_run(tmp_path, capsys, monkeypatch, sig):
    """Keras converts each batch's logs inside a bare `except:`; a Ctrl-C that landed there
    used to vanish and the run trained to the end (seen as a flaky Ctrl-C test). Send the
    signal from inside that conversion, the way an unlucky Ctrl-C arrives."""
    from keras.src import backend as keras_backend

    real, calls = keras_backend.convert_to_numpy, []

    def convert_then_signal(x):
        calls.append(1)
        out = real(x)
        if len(calls) == 100:  # during the first epoch (169 batches)
            signal.raise_signal(sig)  # its handler raises here, inside Keras' try
        return out

    monkeypatch.setattr(keras_backend, "convert_to_numpy", convert_then_signal)
    run = tmp_path / "run"
    code, out, err = run_cli(capsys, "train", *FAST_DIGITS, "--out", str(run))
    assert len(calls) >= 100
    assert code == 130, out + err
    assert "stopped during epoch 1/3; no finished epoch is saved" in err
    assert json.loads((run / "status.json").read_text())["status"] == "interrupted"


def test_resume_from_another_data_dir_needs_the_same_data(tmp_path, capsys, monkeypatch):
    """A run continues on a machine that keeps its CIFAR-10 elsewhere (--data-dir), in
    another format even, when the data is the same; other data is refused in one line,
    the run left as it was."""
    import cifar_files as cf
    from kvt import train
    from kvt.runs import RunDir
    from test_signals import _signal_after

    batches = cf.make_arrays(0)
    first = cf.write_dir(tmp_path / "first", cf.python_files(batches))
    same = cf.write_dir(tmp_path / "same-in-binary", cf.binary_files(batches))
    other = cf.write_dir(tmp_path / "other", cf.python_files(cf.make_arrays(1)))
    run = tmp_path / "run"
    _signal_after(monkeypatch, train, "epoch_order", lambda seed, epoch, n: epoch == 1)
    code, _, err = run_cli(capsys, "train", "--data-dir", str(first), "--model", "quicknet",
                           "--epochs", "2", "--batch-size", "20", "--out", str(run))
    monkeypatch.undo()
    assert code == 130 and RunDir(run).status() == "interrupted", err
    shutil.rmtree(first)  # the data is elsewhere now
    older = tmp_path / "older"  # the same run, as a kvt that recorded no fingerprint left it
    shutil.copytree(run, older)
    record = json.loads((older / "config.json").read_text())
    del record["dataset"]["fingerprint"]
    (older / "config.json").write_text(json.dumps(record))
    saved = {p: (p / "config.json").read_bytes() for p in (run, older)}

    cases = [
        # config.json keeps no absolute data_dir: it is asked for, and checked like a move
        (run, [], "read CIFAR-10 from .../first, whose absolute path kvt does not record"),
        (run, ["--data-dir", str(other)], f"{other} holds other data than {run} was trained "
                                          f"on"),
        (older, ["--data-dir", str(same)], "did not record its data's fingerprint"),
    ]
    for path, argv, words in cases:
        code, out, err = run_cli(capsys, "train", "--resume", str(path), *argv)
        lines = err.strip().splitlines()
        assert code == 3 and len(lines) == 1 and words in lines[0], (argv, err)
        assert "Traceback" not in out + err
    for path in (run, older):  # refused: as it was, and still resumable
        assert (path / "config.json").read_bytes() == saved[path]
        assert RunDir(path).status() == "interrupted" and (path / "checkpoint.npz").is_file()

    code, _, err = run_cli(capsys, "train", "--resume", str(run), "--data-dir", str(same))
    assert code == 0, err
    record = json.loads((run / "config.json").read_text())
    assert record["config"]["data_dir"] is None
    assert record["dataset"]["source"] == ".../same-in-binary"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["starts"] == 2 and len(history(run)) == 2
