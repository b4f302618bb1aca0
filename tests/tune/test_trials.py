"""The search loop in this process, with an executor that writes each run's files as
`kvt train` would (no framework): the pruner is fed each epoch's holdout accuracy from
history.csv, a pruned trial is stopped and marked PRUNED, failures stop the search, and a
run judged on the test split never becomes an objective."""

import io
import json

import pytest

from kvt.recipes import from_recipe
from kvt.tune import TuneDir, TunePlan, parse_space, storage, trials
from kvt.tune.study import execute, open_study

GOOD = [0.5, 0.8, 0.9]
BAD = [0.4, 0.1, 0.1]  # below the median of the good ones from epoch 2 on


@pytest.fixture
def search(tmp_path, monkeypatch):
    """(tune dir, plan, study, stopped runs) for a 3-epoch search of lr on digits."""
    monkeypatch.setattr(trials, "FEED_EVERY", 0.0)  # every tick reads the histories
    stopped = []
    monkeypatch.setattr(trials, "_stop_run", lambda rd: stopped.append(rd.path) or True)
    base = from_recipe("seed", dataset="digits", val_split=0.1, epochs=3)
    plan = TunePlan(base, parse_space(["lr=log:0.01:0.5"]), trials=7, command=["tune"])
    tune_dir = TuneDir(tmp_path / "tune")
    tune_dir.path.mkdir()
    tune_dir.create(plan, force=False)
    study = open_study(storage.default_url(tune_dir.path), plan)
    return tune_dir, plan, study, stopped


def fake_executor(curve, stopped, outcome=lambda n: ("complete", "validation")):
    """An executor whose trial n "trains" `curve(n)`, one history.csv row per epoch, then
    ends as `outcome(n)`: (status, eval_split); once its run is in `stopped` (what the
    search asked to stop) it stops after the epoch, interrupted."""
    def executor(todo, jobs, started, finished, tick):
        while todo:
            job = todo.pop(0)
            started(job)
            number, rd = int(job.name.split()[1]), job.run_dir
            rd.path.mkdir(parents=True, exist_ok=True)
            rd.mark("running")
            history = {"loss": [], "accuracy": [], "val_loss": [], "val_accuracy": []}
            code = None
            for accuracy in curve(number):
                for key in history:
                    history[key].append(accuracy)
                rd.write_history(history)
                tick()
                if rd.path in stopped:
                    rd.mark("interrupted", "continue with kvt train --resume")
                    code = 130
                    break
            if code is None:
                status, split = outcome(number)
                (rd / "metrics.json").write_text(json.dumps(
                    {"eval_split": split, "accuracy": curve(number)[-1]}))
                rd.mark(status)
                code = 0 if status == "complete" else 7
            finished(job, code, 1.5)
    return executor


def test_a_trial_below_the_median_is_pruned_and_stopped(search):
    tune_dir, plan, study, stopped = search
    out = io.StringIO()
    data = execute(tune_dir, plan, study, lambda *a, **k: ["train"], out, "kvt tune",
                   fake_executor(lambda n: GOOD if n < 5 else BAD, stopped))
    states = [r["state"] for r in data["trials"]]
    assert states == ["COMPLETE"] * 5 + ["PRUNED"] * 2, out.getvalue()
    assert [p.name for p in stopped] == ["trial-0005", "trial-0006"]
    for number in (5, 6):
        assert tune_dir.run_dir(number).status() == "pruned"
        assert data["trials"][number]["pruned_at"] == 2
        assert data["trials"][number]["holdout_accuracy"] is None
    assert "pruned after epoch 2" in out.getvalue()
    assert data["best"]["holdout_accuracy"] == 0.9
    assert tune_dir.status.status() == "complete"
    for name in ("best.json", "tune.md", "tune.json", "history.png", "params.png",
                 "importance.png"):
        assert (tune_dir.path / name).is_file()
    assert json.loads((tune_dir.path / "best.json").read_text())["val_split"] is None


def test_failures_stop_the_search_and_a_test_split_is_never_an_objective(search):
    tune_dir, plan, study, stopped = search
    out = io.StringIO()
    # trial 0 says it was judged on the test split, the others fail
    data = execute(tune_dir, plan, study, lambda *a, **k: ["train"], out, "kvt tune",
                   fake_executor(lambda n: GOOD, stopped,
                                 lambda n: ("complete", "test") if n == 0 else ("failed", "")))
    # the test-split one counts as a failure: three in a row stop the search
    assert [r["state"] for r in data["trials"]] == ["FAIL"] * 3, out.getvalue()
    assert data["trials"][0]["error"] == "the run was judged on the test split"
    assert data["best"] is None and not (tune_dir.path / "best.json").exists()
    assert tune_dir.status.status() == "failed"
    # importance with no complete trial: a note in the plot, no crash
    assert data["importance"] is None and (tune_dir.path / "importance.png").is_file()


@pytest.mark.process
def test_a_pruned_run_is_stopped_by_the_pid_its_status_and_lock_both_name(tmp_path):
    """_stop_run sends SIGTERM to the process that holds the run (a stand-in for kvt
    train, which would checkpoint and mark itself interrupted), and to nothing when the
    status and the lock disagree (a pid reused after the run ended)."""
    import subprocess
    import sys

    from kvt.runs import RunDir

    rd = RunDir(tmp_path / "run")
    holder = ("import sys, time; from kvt.runs import RunDir\n"
              "rd = RunDir(sys.argv[1])\n"
              "with rd.claim():\n"
              "    rd.mark('running'); print('ready', flush=True); time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", holder, str(rd.path)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "ready\n"
        state = rd.state()
        rd.mark("running")  # now status.json names this process, the lock the child
        assert trials._stop_run(rd) is False and proc.poll() is None
        (rd / "status.json").write_text(json.dumps(state))
        assert trials._stop_run(rd) is True
        assert proc.wait(timeout=60) == -15  # SIGTERM
    finally:
        proc.kill()


def test_a_space_of_only_refused_combinations_ends_in_one_usage_error(tmp_path):
    """Each bound is valid alone, every combination is not (warm-up longer than the
    epochs): the search fails those samples, then stops with exit 2, nothing running."""
    from kvt.errors import EXIT_USAGE, UsageError

    base = from_recipe("fast", dataset="digits", val_split=0.1, epochs=4)
    plan = TunePlan(base, parse_space(["epochs=int:1:2", "warmup-epochs=3:4"]), trials=3)
    tune_dir = TuneDir(tmp_path / "tune")
    tune_dir.path.mkdir()
    tune_dir.create(plan, force=False)
    study = open_study(storage.default_url(tune_dir.path), plan)
    with pytest.raises(UsageError, match="narrow the --search ranges") as e:
        execute(tune_dir, plan, study, lambda *a, **k: ["train"], io.StringIO(), "kvt tune",
                fake_executor(lambda n: GOOD, []))
    assert e.value.exit_code == EXIT_USAGE
    assert {t.state.name for t in study.get_trials()} == {"FAIL"}
    assert "warmup" in study.get_trials()[0].user_attrs["error"]
    assert tune_dir.status.status() == "failed" and not (tune_dir.path / "trials").exists()


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_a_signal_during_a_call_to_the_study_stops_the_search_cleanly(search, monkeypatch,
                                                                      sig):
    """SIGINT or SIGTERM while the pruner reads the study: the call finishes (no SQLAlchemy session
    left half-way), then the search stops with the resume hint; the trial stays RUNNING
    (never COMPLETE) with its seconds, its run interrupted."""
    import signal

    import optuna

    from kvt import signals
    from kvt.errors import Cancelled

    tune_dir, plan, study, stopped = search
    real = optuna.trial.Trial.should_prune

    def should_prune(self):
        signal.raise_signal(getattr(signal, sig))  # lands inside the study's call
        return real(self)

    monkeypatch.setattr(optuna.trial.Trial, "should_prune", should_prune)

    def executor(todo, jobs, started, finished, tick):
        job = todo.pop(0)
        started(job)
        job.run_dir.path.mkdir(parents=True)
        job.run_dir.write_history({"val_accuracy": [0.5]})
        try:
            tick()
        except KeyboardInterrupt:
            job.run_dir.mark("interrupted", "continue with kvt train --resume")
            raise

    with signals.policy(), pytest.raises(Cancelled, match="kvt tune --resume"):
        execute(tune_dir, plan, study, lambda *a, **k: ["train"], io.StringIO(), "kvt tune",
                executor)
    (trial,) = study.get_trials()
    assert trial.state.name == "RUNNING" and trial.intermediate_values == {1: 0.5}
    assert trial.user_attrs["seconds"] >= 0
    assert tune_dir.status.status() == "interrupted"
    assert json.loads((tune_dir.path / "tune.json").read_text())["interim"] is True
