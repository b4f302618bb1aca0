"""One process at a time per run (and sweep) directory: a second `kvt train`, `--force`,
`--resume` or `kvt compare` on a directory in use is refused with one line naming the
process, and touches nothing; the claim dies with its process, however it dies."""

import json
import os
import signal

import pytest

from conftest import run_cli
from kvt.compare import Sweep, build_plan
from kvt.recipes import from_recipe
from kvt.runs import LOCK, RunDir
from processes import HANG, start_kvt

TINY = ["--dataset", "digits", "--epochs", "3", "--batch-size", "16", "--train-limit", "160",
        "--test-limit", "60"]


def _until(proc, prefix):
    """Reads `proc`'s stdout up to a line starting with `prefix`; the lines read."""
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith(prefix):
            return seen
    raise AssertionError(f"no line {prefix!r}: {''.join(seen)}{proc.stderr.read()}")


def _refused(capsys, argv, path, pid):
    code, out, err = run_cli(capsys, *argv)
    lines = err.strip().splitlines()
    assert code == 6 and len(lines) == 1 and "Traceback" not in out + err, (argv, err)
    assert f"{path} is in use by another kvt process (pid {pid})" in lines[0], (argv, err)


@pytest.mark.process
def test_second_trainer_on_a_live_run_is_refused_and_the_first_finishes(tmp_path, capsys):
    run = tmp_path / "run"
    first = start_kvt(tmp_path, "train", *TINY, "--seed", "1", "--out", str(run))
    seen = _until(first, "epoch 1/3")  # it holds the run, config.json and a checkpoint
    first.send_signal(signal.SIGSTOP)  # and keeps holding it while the others try
    try:
        files = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
        for argv in (["train", *TINY, "--seed", "2", "--out", str(run)],
                     ["train", *TINY, "--seed", "2", "--api", "tf", "--out", str(run), "--force"],
                     ["train", "--resume", str(run)]):
            _refused(capsys, argv, run, first.pid)
        assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == files
    finally:
        first.send_signal(signal.SIGCONT)
    out, err = first.communicate(timeout=HANG)
    assert first.returncode == 0, err
    assert f"run saved to {run}" in "".join(seen) + out
    assert RunDir(run).status() == "complete"
    config = json.loads((run / "config.json").read_text())["config"]
    assert (config["seed"], config["api"]) == (1, "keras")  # every artifact is the first's
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs"] == 3 and metrics["starts"] == 1


@pytest.mark.process
def test_claim_dies_with_a_killed_process(killed_and_resumed):
    """The run conftest's fixture killed (SIGKILL after epoch 2) is still marked running,
    and another process resumes it to the end: the killed one's claim died with it."""
    killed, resumed = killed_and_resumed.killed, killed_and_resumed.resumed
    assert killed.code == -signal.SIGKILL
    assert killed.status == "running"  # what SIGKILL leaves: resumable
    assert resumed.returncode == 0 and "in use by another" not in resumed.stderr, \
        resumed.stderr[-2000:]
    assert RunDir(killed_and_resumed.part).status() == "complete"


def test_force_resume_and_compare_refused_while_a_directory_is_held(tmp_path, capsys):
    """The same refusals from a holder in this process (flock conflicts between open
    files, not only between processes): a training run, and a sweep."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    (run / "status.json").write_text(json.dumps({"status": "interrupted"}))
    sweep = Sweep(tmp_path / "sweep")
    plan = build_plan(from_recipe(dataset="digits", epochs=1), None,
                      ["activation=relu,crelu"], [0], None)
    sweep.create(plan, force=False)
    seed_run = sweep.run_dir(plan.variants[0], 0).path
    seed_run.mkdir(parents=True)
    sweep = sweep.path
    before = _files(run, sweep)
    with RunDir(run).claim(), RunDir(sweep).claim():
        for argv in (["train", *TINY, "--out", str(run), "--force"],
                     ["train", "--resume", str(run)]):
            _refused(capsys, argv, run, os.getpid())
        for argv in (["compare", "--resume", str(sweep)],
                     ["compare", "--vary", "activation=relu,elu", "--seeds", "1", *TINY,
                      "--out", str(sweep), "--force"]):
            _refused(capsys, argv, sweep, os.getpid())
    with RunDir(seed_run).claim():  # one of its runs trained by someone else
        _refused(capsys, ["compare", "--resume", str(sweep)], seed_run, os.getpid())
    assert _files(run, sweep) == before
    for folder in (run, sweep, seed_run):  # free again
        with RunDir(folder).claim(create=False):
            pass


def _files(*folders):
    return {p: p.read_bytes() for folder in folders for p in folder.rglob("*")
            if p.is_file() and p.name != LOCK}


def test_a_fresh_directory_is_removed_when_nothing_was_written(tmp_path, capsys):
    run = tmp_path / "new" / "run"
    code, _, err = run_cli(capsys, "train", "--dataset", "digits", "--batch-size", "5000",
                           "--out", str(run))
    assert code == 2 and not run.exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    code, _, err = run_cli(capsys, "train", "--dataset", "digits", "--batch-size", "5000",
                           "--out", str(kept))
    assert code == 2 and kept.is_dir()  # the user's folder stays, with only the lock file
    assert [p.name for p in kept.iterdir()] == [LOCK]
