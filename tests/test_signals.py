"""A Ctrl-C or SIGTERM at any moment of `kvt train` or `kvt compare` ends the command
as "cancelled" (exit 130), the run as "interrupted" with the resume hint (once a run
exists), never as "failed", never with a traceback, and with nothing half-written.

In-process tests raise the signal from inside each phase in turn (the handler then runs
exactly there, as a real signal landing there would); subprocess tests send real signals
at moments taken from the process's own output, and at a few delays.
"""

import gc
import json
import os
import shutil
import signal

import pytest

from conftest import run_cli
from events import wait_for_file, wait_for_text
from kvt import runs, train
from kvt.runs import RunDir
from processes import HANG, start_kvt

TINY = ["--dataset", "digits", "--epochs", "2", "--batch-size", "16", "--train-limit", "160",
        "--test-limit", "60"]


def assert_cancelled_or_complete(run, code, out, err, expect_run=True):
    """The one contract: complete with exit 0, or interrupted (resumable) with exit 130 and
    one line saying how to continue; nothing failed, no traceback, no half-written file."""
    assert "Traceback" not in out + err and "Exception ignored" not in err, err
    # (these short runs end with BatchNormalization's warning: a finished run's advice)
    lines = [ln for ln in err.strip().splitlines()
             if not (ln.startswith("kvt: warning: ") and "BatchNormalization" in ln)]
    status = RunDir(run).status() if run.exists() else None
    if code == 0:
        assert status == "complete", (status, err)
        assert (run / "model.keras").is_file() and not lines, err
        return status
    assert code == 130 and len(lines) == 1 and lines[0].startswith("kvt train: cancelled"), \
        (code, err)
    if status is None:  # stopped before the run existed: nothing of it is left
        assert not expect_run, err
    else:
        assert status == "interrupted", (status, err)
        assert lines[0].endswith(f"continue with kvt train --resume {run}"), err
        assert "--resume" in RunDir(run).state()["message"]
        assert not (run / "model.keras").exists() or (run / "checkpoint.npz").exists()
    assert not list(run.glob(".*.tmp*")) if run.exists() else True
    return status


def _signal_after(monkeypatch, owner, name, when=lambda *a, **k: True, then=None):
    """Wraps `owner.name` so that SIGINT lands right after the call `when` picks; `then`
    (optional) runs next, inside the handler's KeyboardInterrupt."""
    real = getattr(owner, name)
    fired = []

    def wrapper(*args, **kwargs):
        result = real(*args, **kwargs)
        if not fired and when(*args, **kwargs):
            fired.append(1)
            try:
                signal.raise_signal(signal.SIGINT)
            except KeyboardInterrupt:
                if then is None:
                    raise
                then()
        return result

    monkeypatch.setattr(owner, name, wrapper)
    return fired


def _swallowed_by_gc():
    """The reported case: the interrupt lands in a garbage-collector callback (XLA's),
    where Python prints "Exception ignored" and carries on."""
    def callback(phase, info):
        gc.callbacks.remove(callback)
        signal.raise_signal(signal.SIGINT)

    gc.callbacks.append(callback)
    gc.collect()


def _framework_error():
    """TensorFlow unwound half-way by the interrupt fails with an error of its own
    ("Nesting violated for default stack of FuncGraph", a bare AssertionError)."""
    raise AssertionError()


def _mark(status):
    return lambda self, s, message="": s == status


# Where SIGINT lands: (what to wrap, after which call, what follows inside the interrupt).
BEFORE_THE_RUN = {
    "run directory claimed": ("DirLock", "acquire", None, None),
    "framework import": ("backends", "import_keras", None, None),
    "data loaded": ("train", "load_data", None, None),
    "gc callback while loading": ("train", "load_data", None, _swallowed_by_gc),
    "graph building": ("train", "build_and_compile", None, None),
    "error after the signal": ("train", "build_and_compile", None, _framework_error),
}
# One run, stopped at each moment in turn and resumed after each: (moment, wrap, epochs in
# its history once stopped there).
DURING_THE_RUN = [
    ("run directory set up", ("RunDir", "mark", _mark("running"), None), 0),
    ("gc callback in an epoch", ("train", "epoch_order", None, _swallowed_by_gc), 0),
    ("error after the signal in an epoch", ("train", "epoch_order", None, _framework_error), 0),
    ("checkpoint", ("train", "save_checkpoint", None, None), 1),
    ("between epochs", ("train", "epoch_order", None, None), 1),
    ("predicting", ("train", "evaluate_predictions", None, None), 2),
    ("plots", ("train", "plot_confusion", None, None), 2),
    ("model file", ("train", "save_model", None, None), 2),
    ("metrics", ("train", "write_json", lambda path, data: path.name == "metrics.json", None),
     2),
    ("marked complete", ("RunDir", "mark", _mark("complete"), None), 2),
]


def _arm(monkeypatch, wrap):
    from kvt import backends

    owner_name, name, when, then = wrap
    owner = {"backends": backends, "train": train, "RunDir": runs.RunDir,
             "DirLock": runs.DirLock}[owner_name]
    return _signal_after(monkeypatch, owner, name, when or (lambda *a, **k: True), then)


@pytest.mark.parametrize("moment", list(BEFORE_THE_RUN))
def test_ctrl_c_before_the_run_exists_leaves_nothing(tmp_path, capsys, monkeypatch, moment):
    fired = _arm(monkeypatch, BEFORE_THE_RUN[moment])
    run = tmp_path / "run"
    code, out, err = run_cli(capsys, "train", *TINY, "--out", str(run))
    assert fired, "the signal was never sent"
    status = assert_cancelled_or_complete(run, code, out, err, expect_run=False)
    assert (code, status) == (130, None) and not run.exists(), err


def test_ctrl_c_at_every_moment_of_a_run_then_resume(tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    argv = ["train", *TINY, "--out", str(run)]
    for moment, wrap, epochs in DURING_THE_RUN:
        fired = _arm(monkeypatch, wrap)
        code, out, err = run_cli(capsys, *argv)
        monkeypatch.undo()
        assert fired, f"{moment}: the signal was never sent"
        status = assert_cancelled_or_complete(run, code, out, err)
        if moment == "marked complete":  # too late to stop: the run is whole on disk
            assert (code, status) == (0, "complete"), err
        else:
            assert (code, status) == (130, "interrupted"), (moment, err)
        assert _epochs(run) == [str(e) for e in range(1, epochs + 1)], moment
        argv = ["train", "--resume", str(run)]


def _epochs(run):
    if not (run / "history.csv").exists():
        return []
    return [line.split(",")[0] for line in (run / "history.csv").read_text().splitlines()[1:]]


def test_ctrl_c_while_a_resume_starts_keeps_the_run_resumable(tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    _signal_after(monkeypatch, train, "epoch_order", lambda seed, epoch, n: epoch == 1)
    assert run_cli(capsys, "train", *TINY, "--out", str(run))[0] == 130
    monkeypatch.undo()
    _signal_after(monkeypatch, train, "load_data", then=_framework_error)
    code, out, err = run_cli(capsys, "train", "--resume", str(run))
    assert code == 130 and "Traceback" not in err
    assert err.strip() == (f"kvt train: cancelled: stopped before training resumed; nothing "
                           f"was changed: continue with kvt train --resume {run}")
    assert RunDir(run).status() == "interrupted" and (run / "checkpoint.npz").is_file()


def test_a_swallowed_signal_still_cancels_any_command(capsys, monkeypatch):
    """evaluate, predict, info: no checkpoints, but a Ctrl-C lost in a gc callback still
    ends the command as cancelled once it is done, not as a success."""
    from kvt.cli import info

    def run(args):
        _swallowed_by_gc()
        print("done")
        return 0

    monkeypatch.setattr(info, "run", run)
    code, out, err = run_cli(capsys, "info")
    assert (code, out, err) == (130, "done\n", "kvt info: cancelled\n")


def test_ctrl_c_while_a_sweep_writes_its_results(tmp_path, capsys, monkeypatch):
    from kvt.compare import render as compare
    from kvt.compare import Sweep, build_plan
    from kvt.recipes import from_recipe
    from test_compare import _fake_run

    plan = build_plan(from_recipe(dataset="digits", epochs=2), None,
                      ["activation=relu,crelu"], [0, 1], None)
    sweep = Sweep(tmp_path / "sweep")
    sweep.create(plan, force=False)
    for variant in plan.variants:
        for seed in plan.seeds:
            _fake_run(sweep.run_dir(variant, seed), 0.7 + 0.01 * seed)
    _signal_after(monkeypatch, compare, "render_markdown")
    code, out, err = run_cli(capsys, "compare", "--resume", str(sweep.path))
    assert code == 130 and "Traceback" not in err, err
    assert err.strip() == (f"kvt compare: cancelled: stopped while writing the results; every "
                           f"run is kept: write them with: kvt compare --resume {sweep.path}")
    assert RunDir(sweep.path).status() == "interrupted"
    monkeypatch.undo()
    code, out, err = run_cli(capsys, "compare", "--resume", str(sweep.path))
    assert code == 0 and RunDir(sweep.path).status() == "complete", err


# --- real signals, real processes -------------------------------------------------------

@pytest.mark.process
def test_real_signal_during_framework_start_up(tmp_path):
    run = tmp_path / "run"
    proc = start_kvt(tmp_path, "train", *TINY, "--out", str(run))
    # the lock file: the process has claimed its run directory and is about to load the
    # framework; no output marks that moment
    wait_for_file(run / runs.LOCK, proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=HANG)
    status = assert_cancelled_or_complete(run, proc.returncode, out, err, expect_run=False)
    assert (proc.returncode, status) == (130, None) and not run.exists()


@pytest.mark.process
def test_signal_while_a_child_interpreter_starts_is_held_for_kvts_policy(tmp_path):
    """kvt compare starts its children with the signals blocked (signals.children_held):
    a Ctrl-C to the process group that lands while a child's interpreter is still
    starting (before kvt has imported anything) waits for kvt's policy, and the child
    ends "cancelled", not with Python's KeyboardInterrupt traceback."""
    from kvt import signals

    run = tmp_path / "run"
    with signals.children_held():
        proc = start_kvt(tmp_path, "train", *TINY, "--out", str(run))
    proc.send_signal(signal.SIGINT)  # at once: the child has not yet imported kvt
    out, err = proc.communicate(timeout=HANG)
    status = assert_cancelled_or_complete(run, proc.returncode, out, err, expect_run=False)
    assert (proc.returncode, status) == (130, None) and not run.exists()


@pytest.mark.process
def test_real_signals_at_moments_and_delays(signalled_trainings, tmp_path, capsys):
    """The report: Ctrl-C a few seconds in (while the model's graph was built; where an
    interrupt used to vanish into XLA's gc callback, or surface as a TensorFlow error)
    trained on to the end, or ended "failed". Runs side by side, each signalled at its
    own moment (conftest.SIGNAL_MOMENTS). Each ends complete (it finished first) or
    cancelled, and an interrupted one resumes."""
    outcomes = {name: assert_cancelled_or_complete(t.run, t.code, t.out, t.err,
                                                   expect_run=False)
                for name, t in signalled_trainings.items()}
    # done: shutting down is not stopping
    assert outcomes["sigint after the run is saved"] == "complete", outcomes
    for name in ("sigterm after epoch 1", "sigint after epoch 1"):  # stopped in epoch 2
        assert outcomes[name] == "interrupted", outcomes
    # resumed as a copy: the fixture's runs stay as the signals left them
    run = shutil.copytree(signalled_trainings["sigterm after epoch 1"].run, tmp_path / "run")
    code, out, err = run_cli(capsys, "train", "--resume", str(run))
    assert code == 0 and RunDir(run).status() == "complete", err
    assert _epochs(run) == ["1", "2", "3"]


# --- kvt compare --------------------------------------------------------------------------

def _compare(tmp_path, *argv):
    return start_kvt(tmp_path, "compare", *argv, start_new_session=True)


def _assert_sweep_stopped(sweep, proc, out, err):
    assert proc.returncode == 130, out + err
    assert err.strip().splitlines()[-1].endswith(f"kvt compare --resume {sweep}"), err
    assert RunDir(sweep).status() == "interrupted"
    statuses = []
    for run in sorted((sweep / "runs").glob("*/seed-*")):
        log = (run / "train.log").read_text(errors="replace")
        assert "Traceback" not in log and "Exception ignored" not in log, log
        status = RunDir(run).status() if (run / "status.json").exists() else "not started"
        assert status in ("interrupted", "complete", "not started"), (run, status, log)
        if status == "interrupted":
            assert log.strip().splitlines()[-1].endswith(f"kvt train --resume {run}"), log
        statuses.append(status)
    return statuses


@pytest.mark.process
def test_ctrl_c_to_a_sweep_at_several_moments_never_fails_a_run(tmp_path):
    """Ctrl-C reaches the whole process group: the sweep and every child at once (then
    the sweep's SIGTERM reaches the children again). Stopped while its children start
    up, then while they train, then resumed with the saved -j to the end."""
    sweep = tmp_path / "sweep"
    proc = _compare(tmp_path, "--vary", "activation=relu,crelu", "--seeds", "1", *TINY,
                    "--epochs", "3", "-j", "2", "--out", str(sweep))
    started = 0
    for line in proc.stdout:
        started += line.startswith("kvt compare: starting")
        if started == 2:  # both children are loading the framework
            os.killpg(proc.pid, signal.SIGINT)
            break
    out, err = proc.communicate(timeout=HANG)
    _assert_sweep_stopped(sweep, proc, out, err)

    proc = _compare(tmp_path, "--resume", str(sweep))
    assert "2 at a time" in proc.stdout.readline()  # -j as the sweep was started
    # a child's progress shows only in its train.log
    wait_for_text(sweep / "runs" / "relu" / "seed-0" / "train.log", "epoch 1/3", proc)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=HANG)
    assert "interrupted" in _assert_sweep_stopped(sweep, proc, out, err)

    done = _compare(tmp_path, "--resume", str(sweep), "-j", "1")
    out, err = done.communicate(timeout=HANG)
    assert done.returncode == 0, out + err
    assert "1 at a time" in out.splitlines()[0]
    assert json.loads((sweep / "sweep.json").read_text())["jobs"] == 1  # the next resume's
    for run in (sweep / "runs").glob("*/seed-*"):
        assert RunDir(run).status() == "complete"
        assert _epochs(run) == ["1", "2", "3"]
