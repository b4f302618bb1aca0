"""kvt compare: the grid, the results of finished run directories, and whole sweeps on
digits (in subprocesses, killed and resumed, with failing runs)."""

import io
import json
import os
import re
import signal

import pytest

from conftest import run_cli
from events import wait_until
from kvt.compare import Sweep, build_plan, collect, parse_seeds, parse_vary, write_results
from kvt.compare.render import render_text
from kvt.compare.sweep import train_jobs
from kvt.executors import Job, Progress
from kvt.recipes import from_recipe
from kvt.errors import UsageError
from kvt.runs import RunDir, write_json
from processes import HANG, start_kvt

TINY = ["--dataset", "digits", "--epochs", "1", "--batch-size", "8", "--train-limit", "400",
        "--test-limit", "100"]


def test_vary_values_take_the_type_of_their_field():
    assert parse_vary("activation=relu,crelu") == ("activation", ["relu", "crelu"])
    assert parse_vary("lr=0.01,1e-3") == ("lr", [0.01, 0.001])
    assert parse_vary("batch-size=16,32") == ("batch_size", [16, 32])
    assert parse_vary("native_ops=off,on") == ("native_ops", [False, True])
    assert parse_vary("train_limit=none,500") == ("train_limit", [None, 500])
    for spec, words in [("lr", "write FIELD=VALUE1,VALUE2"), ("seed=1,2", "set with --seeds"),
                        ("colour=red,blue", "cannot vary 'colour'"),
                        ("epochs=3,x", "'x' is not a valid int for epochs"),
                        ("activation=relu,relu", "repeats a value")]:
        with pytest.raises(UsageError, match=words):
            parse_vary(spec)


def test_seeds():
    assert parse_seeds("3") == [0, 1, 2]
    assert parse_seeds("7,1,9") == [7, 1, 9]
    assert parse_seeds("0,4294967295") == [0, 2**32 - 1]
    for bad in ("0", "-2", "a", "1,1", "1,-1", "1,4294967296"):
        with pytest.raises(UsageError, match="--seeds"):
            parse_seeds(bad)


def test_grid_labels_baseline_and_refusals():
    base = from_recipe(dataset="digits", epochs=1)
    plan = build_plan(base, "tutorial", [], [0, 1], None)
    assert [v.label for v in plan.variants] == ["keras/relu", "tf/crelu"]
    assert plan.baseline == "keras/relu" and plan.variants[1].slug == "tf_crelu"
    assert plan.config(plan.variants[1], 1).api == "tf" and plan.config(plan.variants[1], 1).seed == 1
    grid = build_plan(base, None, ["activation=relu,crelu", "lr=0.01,0.1"], [0], "crelu/lr=0.1")
    assert [v.label for v in grid.variants] == ["relu/lr=0.01", "relu/lr=0.1", "crelu/lr=0.01",
                                                "crelu/lr=0.1"]
    with pytest.raises(UsageError, match="needs backend tensorflow"):  # --vary's field
        build_plan(base, "tutorial", ["backend=tensorflow,jax"], [0], None)
    with pytest.raises(UsageError, match="already sets activation"):
        build_plan(base, "tutorial", ["activation=relu,gelu"], [0], None)
    with pytest.raises(UsageError, match="at least two configurations"):
        build_plan(base, None, ["activation=relu"], [0], None)
    with pytest.raises(UsageError, match="--baseline 'gelu' is not one of"):
        build_plan(base, None, ["activation=relu,crelu"], [0], "gelu")
    with pytest.raises(UsageError, match="unknown --preset 'paper'"):
        build_plan(base, "paper", [], [0], None)


def _fake_run(rd: RunDir, accuracy: float, split: str = "test",
              environment: dict | None = None):
    rd.create()
    if environment is not None:
        write_json(rd / "config.json", {"environment": environment})
    rd.write_history({"loss": [1.0, 0.5], "accuracy": [0.5, accuracy],
                      "val_loss": [1.1, 0.6], "val_accuracy": [0.4, accuracy],
                      "epoch_seconds": [2.0, 2.0], "train_seconds": [1.5, 1.5]})
    write_json(rd / "metrics.json", {"accuracy": accuracy, "eval_split": split,
                                     "eval_images": 100, "train_seconds": 4.0})
    rd.mark("complete")


def test_results_of_finished_and_failed_runs(tmp_path):
    base = from_recipe(dataset="digits", epochs=2)
    plan = build_plan(base, None, ["activation=relu,crelu"], [0, 1, 2], None)
    sweep = Sweep(tmp_path / "sweep")
    sweep.create(plan, force=False)
    for seed, (a, b) in enumerate([(0.70, 0.73), (0.72, 0.75), (0.74, None)]):
        _fake_run(sweep.run_dir(plan.variants[0], seed), a)
        if b is None:
            rd = sweep.run_dir(plan.variants[1], seed).create()
            rd.mark("failed", "the loss became nan at epoch 1, step 3: ...")
        else:
            _fake_run(sweep.run_dir(plan.variants[1], seed), b)
    analysis = write_results(sweep.path, plan, collect(sweep.path, sweep.run_dir, plan),
                             "kvt compare ...")
    relu, crelu = analysis["configurations"]
    assert (relu["n"], relu["failed"], crelu["n"], crelu["failed"]) == (3, 0, 2, 1)
    assert relu["mean"] == pytest.approx(0.72) and crelu["mean"] == pytest.approx(0.74)
    (d,) = analysis["comparisons"]
    assert d["other"] == "crelu" and d["diff"] == pytest.approx(0.02)
    assert analysis["eval_split"] == "test"
    md = (sweep.path / "compare.md").read_text()
    assert "| relu (baseline) | 3 | 0 | 72.00 | 2.00 |" in md
    assert "## Runs that did not finish" in md and "crelu seed 2 (failed" in md
    assert "test split (100 images)" in md
    saved = json.loads((sweep.path / "compare.json").read_text())
    assert saved["plan"]["seeds"] == [0, 1, 2] and len(saved["runs"]) == 6
    for name in ("compare.png", "curves.png"):
        assert (sweep.path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_progress_shows_each_new_epoch_with_the_time_left_at_its_pace(tmp_path):
    plan = build_plan(from_recipe(dataset="digits", epochs=30), None,
                      ["activation=relu,crelu"], [0], None)
    sweep = Sweep(tmp_path / "sweep")
    sweep.create(plan, force=False)
    relu, crelu = (Job(f"{v.label} seed 0", sweep.run_dir(v, 0).create(), epochs=30)
                   for v in plan.variants)
    # crelu is resumed: the epochs it trained before this sweep started it are not news
    crelu.run_dir.write_history({"loss": [2.0, 1.5], "epoch_seconds": [790.0, 800.0]})
    os.utime(crelu.run_dir / "history.csv", (1e9, 1e9))
    now, stream = [0.0], io.StringIO()
    progress = Progress(stream, "kvt compare", every=5, clock=lambda: now[0])
    progress.add(relu)
    progress.add(crelu)
    progress.poll()
    assert stream.getvalue() == ""  # relu has no history yet, crelu's is old

    relu.run_dir.write_history({"loss": [2.0], "epoch_seconds": [120.0]})
    progress.poll()  # within 5 s of the last look: not read yet
    assert stream.getvalue() == ""
    now[0] = 5.0
    progress.poll()
    progress.poll()  # nothing new: nothing printed again
    assert stream.getvalue() == ("kvt compare: relu seed 0: epoch 1/30 in 120 s, about 58 min "
                                 "to go at that pace\n")

    crelu.run_dir.write_history({"loss": [2.0, 1.5, 1.2], "epoch_seconds": [790.0, 800.0, 790.0]})
    relu.run_dir.write_history({"loss": [1.0] * 30, "epoch_seconds": [120.0] * 30})
    now[0] = 10.0
    progress.poll()
    assert stream.getvalue().splitlines()[1:] == [
        "kvt compare: relu seed 0: epoch 30/30 in 120 s",
        "kvt compare: crelu seed 0: epoch 3/30 in 790 s, about 5.9 h to go at that pace"]

    progress.remove(crelu)  # it ended: its run directory is no longer watched
    crelu.run_dir.write_history({"loss": [1.0] * 4, "epoch_seconds": [790.0] * 4})
    now[0] = 15.0
    progress.poll()
    assert len(stream.getvalue().splitlines()) == 3


def test_a_sweep_prints_the_progress_its_executor_lets_it_see(tmp_path):
    plan = build_plan(from_recipe(dataset="digits", epochs=2), None,
                      ["activation=relu,crelu"], [0], None)
    sweep = Sweep(tmp_path / "sweep")
    sweep.create(plan, force=False)

    def executor(todo, jobs, started, finished, tick):  # trains the first job only
        job = todo[0]
        started(job)
        rd = job.run_dir.create()
        rd.write_history({"loss": [1.0], "epoch_seconds": [3.0]})
        tick()
        write_json(rd / "metrics.json", {"accuracy": 0.7})
        rd.mark("complete")
        finished(job, 0, 6.0)

    stream = io.StringIO()
    train_jobs(sweep, plan, 1, stream, lambda *a, **k: [], executor)
    assert stream.getvalue().splitlines() == [
        "kvt compare: starting relu seed 0",
        "kvt compare: relu seed 0: epoch 1/2 in 3 s, about 3 s to go at that pace",
        "kvt compare: [1/2] relu seed 0: 70.00% in 6 s"]


def _compare(argv, tmp_path, **kw):
    return start_kvt(tmp_path, "compare", *argv, start_new_session=True, **kw)


@pytest.mark.process
def test_sweep_killed_then_resumed_keeps_finished_runs(tmp_path):
    out = tmp_path / "sweep"
    argv = ["--vary", "activation=relu,crelu", "--seeds", "2", *TINY, "--out", str(out)]
    proc = _compare(argv, tmp_path)
    for line in proc.stdout:
        if "[1/4]" in line:  # one run finished, the next one starting: kill them all
            os.killpg(proc.pid, signal.SIGKILL)
            break
    proc.communicate(timeout=HANG)
    first = out / "runs" / "relu" / "seed-0"
    assert RunDir(first).status() == "complete"
    stamp = (first / "model.keras").stat().st_mtime_ns
    assert not (out / "compare.md").exists()

    proc = _compare(["--resume", str(out), "-j", "2"], tmp_path)
    stdout, stderr = proc.communicate(timeout=HANG)
    assert proc.returncode == 0, stdout + stderr
    assert "1 runs already finished, 3 to go" in stdout
    assert (first / "model.keras").stat().st_mtime_ns == stamp  # not trained again
    saved = json.loads((out / "compare.json").read_text())
    assert [c["n"] for c in saved["configurations"]] == [2, 2]
    assert saved["eval_split"] == "test" and saved["eval_images"] == 100
    assert "relu (baseline)" in stdout and "crelu:" in stdout
    for name in ("compare.md", "compare.png", "curves.png"):
        assert (out / name).is_file()
    assert RunDir(out).status() == "complete"
    # `tensorboard --logdir SWEEP` finds every run's logs, named by configuration and seed
    from tensorboard.backend.event_processing.plugin_event_multiplexer import EventMultiplexer

    board = EventMultiplexer().AddRunsFromDirectory(str(out)).Reload()
    assert sorted(board.Runs()) == sorted(f"runs/{c}/seed-{s}/logs/{f}"
                                          for c in ("relu", "crelu") for s in (0, 1)
                                          for f in ("train", "validation"))
    assert [e.step for e in board.Tensors("runs/crelu/seed-1/logs/validation",
                                          "epoch_accuracy")] == [0]


@pytest.mark.process
def test_failed_runs_are_reported_and_do_not_sink_the_sweep(tmp_path):
    out = tmp_path / "sweep"
    # --decay 0: the recipe's decay, lr / epochs, would tame lr 1e6 after its first step
    proc = _compare(["--vary", "lr=0.01,1e6", "--decay", "0", "--seeds", "2", "-j", "2", *TINY,
                     "--val-split", "0.25", "--out", str(out)], tmp_path)
    stdout, stderr = proc.communicate(timeout=HANG)
    assert proc.returncode == 7, stdout + stderr
    assert stderr.strip() == ("kvt compare: 2 of 4 runs did not finish (see the table); the "
                              "others were compared")
    saved = json.loads((out / "compare.json").read_text())
    ok, bad = saved["configurations"]
    assert (ok["n"], bad["n"], bad["failed"]) == (2, 0, 2)
    assert saved["eval_split"] == "validation"
    failed = [r for r in saved["runs"] if r["status"] != "complete"]
    assert len(failed) == 2 and all("learning rate is too high" in r["message"] for r in failed)
    md = (out / "compare.md").read_text()
    assert "validation split (100 images held out of the training set" in md
    assert "the test set was not used" in md and "too few finished runs" in md


def test_compare_refusals(tmp_path, capsys):
    sweep = tmp_path / "s"
    (sweep).mkdir()
    (sweep / "sweep.json").write_text("{}")
    cases = [
        (["--seeds", "0", "--preset", "tutorial"], 2, "--seeds '0'"),
        (["--vary", "colour=a,b"], 2, "cannot vary 'colour'"),
        (["--preset", "tutorial", "-j", "0"], 2, "--jobs must be a positive integer"),
        (["--preset", "tutorial", "--out", str(sweep)], 6, "already holds a sweep"),
        (["--resume", str(sweep)], 6, "cannot read"),
        (["--resume", str(tmp_path / "nope")], 6, "is not a kvt compare directory"),
        (["--resume", str(sweep), "--epochs", "3"], 2, "drop --epochs"),
        (["--preset", "tutorial", "--val-split", "1.5"], 2, "--val-split must be a finite"),
        (["--preset", "tutorial", "--ray-address", "auto"], 2,
         "--ray-address goes with --executor ray"),
        (["--preset", "tutorial", "--executor", "ray", "--threads", "2"], 2,
         "--threads does not apply to --executor ray"),
        (["--preset", "tutorial", "--executor", "ray", "--cpus-per-run", "0"], 2,
         "--cpus-per-run must be a positive integer, got 0"),
        # each configuration's image side against its own family's smallest
        (["--vary", "model=minivggnet,quicknet", "--image-size", "4", "--out",
          str(tmp_path / "sides")], 2, "--image-size must be at least 8 for quicknet"),
    ]
    for argv, code, words in cases:
        got, out, err = run_cli(capsys, "compare", *argv)
        lines = err.strip().splitlines()
        assert got == code and len(lines) == 1 and words in lines[0], (argv, err)
        assert "Traceback" not in out + err
    assert (sweep / "sweep.json").read_text() == "{}" and not (tmp_path / "sides").exists()


def test_holdout_is_stratified_disjoint_and_seed_independent():
    from kvt.data import load_dataset

    ds = load_dataset("digits")
    held = ds.holdout(0.2)
    assert held.eval_split == "validation"
    assert len(held.y_test) == round(0.2 * len(ds.y_train))
    assert len(held.y_train) + len(held.y_test) == len(ds.y_train)
    counts = [int((held.y_test == c).sum()) for c in range(10)]
    assert max(counts) - min(counts) <= 2  # every class in proportion
    assert (held.x_test == ds.holdout(0.2).x_test).all()


def test_val_split_run_never_reports_the_test_set(tmp_path, capsys):
    code, out, err = run_cli(capsys, "train", "--dataset", "digits", "--epochs", "1",
                             "--batch-size", "8", "--val-split", "0.2", "--out",
                             str(tmp_path / "run"))
    assert code == 0, err
    assert "1078 train, 269 validation (held out of train) images" in out and "validation accuracy" in out
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["eval_split"] == "validation" and metrics["eval_images"] == 269
    assert "test_accuracy" not in metrics and metrics["validation_accuracy"] == metrics["accuracy"]
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["config"]["val_split"] == 0.2
    assert config["dataset"]["eval_split"] == "validation"


@pytest.mark.process
def test_sigterm_stops_the_sweep_and_its_children_resumably(tmp_path):
    out = tmp_path / "sweep"
    proc = _compare(["--vary", "activation=relu,crelu", "--seeds", "1", *TINY, "--epochs",
                     "30", "--out", str(out)], tmp_path)  # far from done when stopped
    run = out / "runs" / "relu" / "seed-0"
    for line in proc.stdout:
        if "starting relu seed 0" in line:
            break
    wait_until(lambda: _status(run) == "running", [run], f"{run} to be running", proc)
    proc.send_signal(signal.SIGTERM)  # the sweep only: it must stop its child itself
    _, stderr = proc.communicate(timeout=HANG)
    assert proc.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1].endswith(f"kvt compare --resume {out}")
    assert RunDir(out).status() == "interrupted"
    assert RunDir(run).status() == "interrupted"


def _status(run):
    return RunDir(run).status() if (run / "status.json").exists() else None


def test_intervals_at_two_seeds_stay_within_0_and_100_with_a_note(tmp_path):
    base = from_recipe(dataset="digits", epochs=2)
    plan = build_plan(base, None, ["activation=relu,crelu"], [0, 1], None)
    sweep = Sweep(tmp_path / "sweep")
    sweep.create(plan, force=False)
    for seed, (a, b) in enumerate([(0.50, 0.55), (0.90, 0.60)]):
        _fake_run(sweep.run_dir(plan.variants[0], seed), a)
        _fake_run(sweep.run_dir(plan.variants[1], seed), b)
    analysis = write_results(sweep.path, plan, collect(sweep.path, sweep.run_dir, plan),
                             "kvt compare ...")
    relu, crelu = analysis["configurations"]
    assert (relu["ci_low"], relu["ci_high"], relu["ci_clipped"]) == (0.0, 1.0, True)
    assert 0 <= crelu["ci_low"] <= crelu["ci_high"] <= 1
    md = (sweep.path / "compare.md").read_text()
    assert "| relu (baseline) | 2 | 0 | 70.00 | 28.28 | 0.00 to 100.00 * |" in md
    assert "with 2 runs the 95% interval is wider than the scale" in md
    for line in md.splitlines():  # no interval outside the scale anywhere
        for number in re.findall(r"-?\d+\.\d+", line):
            assert abs(float(number)) <= 100, line


def test_tutorial_2x2_reports_two_effects_their_interaction_and_the_tutorials_runs(tmp_path):
    base = from_recipe()
    plan = build_plan(base, "tutorial-2x2", [], [0, 1, 2], None)
    assert [v.label for v in plan.variants] == ["keras/relu", "tf/relu", "keras/crelu",
                                                "tf/crelu"]
    sweep = Sweep(tmp_path / "sweep")
    sweep.create(plan, force=False)
    shifts = {"keras/relu": 0.0, "keras/crelu": 0.01, "tf/relu": 0.0, "tf/crelu": 0.01}
    for variant in plan.variants:
        for seed, noise in enumerate([-0.01, 0.0, 0.01]):
            _fake_run(sweep.run_dir(variant, seed), 0.74 + shifts[variant.label] + noise)
    analysis = write_results(sweep.path, plan, collect(sweep.path, sweep.run_dir, plan),
                             "kvt compare ...")
    f = analysis["factorial"]
    assert f["factors"] == ["api", "activation"]
    assert f["levels"] == [["keras", "tf"], ["relu", "crelu"]]
    api, act, inter = f["effects"]
    assert api["estimate"] == pytest.approx(0.0, abs=1e-12)
    assert act["estimate"] == pytest.approx(0.01)
    assert inter["estimate"] == pytest.approx(0.0, abs=1e-12)
    keras_relu, tf_crelu = analysis["tutorial"]
    assert keras_relu["label"] == "keras/relu" and keras_relu["tutorial"] == 0.7432
    assert keras_relu["percentile"] == pytest.approx(200 / 3)  # above 0.73 and 0.74
    assert tf_crelu["percentile"] == pytest.approx(200 / 3)  # above 0.74 and 0.75
    assert keras_relu["comparable"]  # the seed recipe, 30 epochs, the whole test split
    md = (sweep.path / "compare.md").read_text()
    assert "## Two effects and their interaction (2x2)" in md
    assert "| activation | activation crelu minus relu, averaged over api | +1.00 |" in md
    assert "98.3% CI" in md and "Holm" in md
    assert "## The tutorial's runs" in md and "the tutorial's 74.32% is at or above 67%" in md
    assert "only indicative" not in md


def test_the_machines_the_runs_ran_on_are_counted_and_mixed_ones_flagged(tmp_path):
    cpu = {"backend": "tensorflow", "tensorflow": "2.21.0", "keras": "3.15.1",
           "python": "3.11.7", "processor": "AMD EPYC", "cpu_count": 2,
           "devices": ["/device:CPU:0"]}
    gpu = {"backend": "jax", "jax": "0.10.2", "keras": "3.15.1", "python": "3.12.3",
           "processor": "Intel(R) Xeon(R)", "cpu_count": 16,
           "devices": ["TFRT_CPU_0", "cuda:0"]}
    plan = build_plan(from_recipe(dataset="digits"), None,
                      ["activation=relu,crelu"], [0, 1, 2], None)
    sweep = Sweep(tmp_path / "sweep")
    sweep.create(plan, force=False)
    for variant in plan.variants:
        _fake_run(sweep.run_dir(variant, 0), 0.7, environment=cpu)
        _fake_run(sweep.run_dir(variant, 1), 0.71, environment=gpu)
        _fake_run(sweep.run_dir(variant, 2), 0.72)  # no config.json: counted, not placed
    analysis = write_results(sweep.path, plan, collect(sweep.path, sweep.run_dir, plan),
                             "kvt compare ...")
    assert analysis["configurations"][0]["n"] == 3
    cpu_words = "AMD EPYC (2 CPUs); tensorflow 2.21.0, Keras 3.15.1, Python 3.11.7"
    gpu_words = "Intel(R) Xeon(R) (16 CPUs), cuda:0; jax 0.10.2, Keras 3.15.1, Python 3.12.3"
    assert analysis["machines"] == [{"machine": cpu_words, "runs": 2},
                                    {"machine": gpu_words, "runs": 2}]
    md = (sweep.path / "compare.md").read_text()
    assert f"## Where the runs ran\n\n- 2 runs: {cpu_words}\n- 2 runs: {gpu_words}\n" in md
    assert "more than one kind of machine" in md
    text = render_text(plan, analysis)
    assert "more than one kind of machine" in text and f"  2 runs: {gpu_words}\n" in text
    saved = json.loads((sweep.path / "compare.json").read_text())
    assert {r["seed"]: r["machine"] for r in saved["runs"]} == {0: cpu_words, 1: gpu_words,
                                                               2: None}
    # One kind of machine: named, with no warning.
    for variant in plan.variants:
        write_json(sweep.run_dir(variant, 1) / "config.json", {"environment": cpu})
    write_results(sweep.path, plan, collect(sweep.path, sweep.run_dir, plan),
                  "kvt compare ...")
    md = (sweep.path / "compare.md").read_text()
    assert f"- 4 runs: {cpu_words}\n" in md and "more than one kind" not in md


def test_a_grid_that_is_not_2x2_has_no_factorial_analysis(tmp_path):
    plan = build_plan(from_recipe(), None, ["activation=relu,crelu,gelu"], [0, 1],
                      None)
    sweep = Sweep(tmp_path / "sweep")
    sweep.create(plan, force=False)
    for variant in plan.variants:
        for seed in (0, 1):
            _fake_run(sweep.run_dir(variant, seed), 0.7 + 0.01 * seed)
    analysis = write_results(sweep.path, plan, collect(sweep.path, sweep.run_dir, plan),
                             "kvt compare ...")
    assert analysis["factorial"] is None and analysis["tutorial"] is None


@pytest.mark.process
def test_extend_adds_seeds_and_keeps_the_finished_runs(tmp_path, capsys):
    out = tmp_path / "sweep"
    base = from_recipe(dataset="digits", epochs=1, batch_size=8, train_limit=400,
                                   test_limit=100)
    plan = build_plan(base, None, ["activation=relu,crelu"], [0, 1], None)
    sweep = Sweep(out)
    sweep.create(plan, force=False)
    for variant in plan.variants:  # seeds 0 and 1 "finished" (no model: never retrained)
        for seed in (0, 1):
            _fake_run(sweep.run_dir(variant, seed), 0.8 + 0.01 * seed)
    code, _, err = run_cli(capsys, "compare", "--extend", str(out), "--seeds", "2")
    assert code == 2 and "already has 2 seeds (0, 1); give more than 2" in err
    code, _, err = run_cli(capsys, "compare", "--extend", str(out))
    assert code == 2 and "--extend needs --seeds" in err
    code, _, err = run_cli(capsys, "compare", "--extend", str(out), "--seeds", "3", "--epochs",
                           "2")
    assert code == 2 and "--extend continues a sweep with its saved plan: drop --epochs" in err
    code, _, err = run_cli(capsys, "compare", "--resume", str(out), "--seeds", "3")
    assert code == 2 and "use --extend SWEEP --seeds N" in err

    proc = _compare(["--extend", str(out), "--seeds", "3", "-j", "2"], tmp_path)
    stdout, stderr = proc.communicate(timeout=HANG)
    assert proc.returncode == 0, stdout + stderr
    assert "4 runs already finished, 2 to go" in stdout
    saved = json.loads((out / "compare.json").read_text())
    assert saved["plan"]["seeds"] == [0, 1, 2]
    assert [c["n"] for c in saved["configurations"]] == [3, 3]
    for label in ("relu", "crelu"):
        accs = saved["configurations"][0 if label == "relu" else 1]["accuracies"]
        assert accs["0"] == 0.8 and accs["1"] == 0.81  # the finished runs, untouched
        assert RunDir(out / "runs" / label / "seed-2").status() == "complete"
    assert "extended with kvt compare --extend" in (out / "compare.md").read_text()
    code, _, err = run_cli(capsys, "compare", "--extend", str(out), "--seeds", "1,2")
    assert code == 2 and "already has every one of these seeds" in err


def test_report_writes_what_a_sweep_has_finished_so_far_marked_interim(tmp_path, capsys):
    plan = build_plan(from_recipe(dataset="digits", epochs=2), None,
                      ["activation=relu,crelu"], [0, 1, 2], None)
    sweep = Sweep(tmp_path / "sweep")
    sweep.create(plan, force=False)
    sweep.status.mark("running")  # another process is training it, or it was stopped
    relu, crelu = plan.variants
    for seed in (0, 1):
        _fake_run(sweep.run_dir(relu, seed), 0.70 + 0.02 * seed)
        _fake_run(sweep.run_dir(crelu, seed), 0.73 + 0.02 * seed)
    training = sweep.run_dir(relu, 2).create()
    # its log holds the stop of an earlier session, then the epoch it has trained since
    (training / "train.log").write_text("kvt train: cancelled: stopped\n"
                                        "epoch 1/2 - 3.0s - accuracy 0.5000\n")
    training.mark("running", "1/2 epochs finished")
    code, out, err = run_cli(capsys, "compare", "--report", str(sweep.path))
    assert code == 0 and err == "", err
    assert out.startswith("Interim report: 4 of 6 runs finished;")
    assert "2 runs not finished yet:" in out
    md = (sweep.path / "compare.md").read_text()
    assert md.startswith("# kvt compare (interim)\n\n**Interim report: 4 of 6 runs finished;")
    assert "| configuration | n | unfinished |" in md
    assert "| relu (baseline) | 2 | 1 | 71.00 | 1.41 |" in md
    assert "## Runs not finished yet" in md
    assert "relu seed 2 (running" in md and "1/2 epochs finished" in md
    assert "crelu seed 2 (not run" in md and "not started" in md
    assert "(reported with kvt compare --report" in md
    saved = json.loads((sweep.path / "compare.json").read_text())
    assert saved["interim"] == {"finished": 4, "runs": 6}
    assert [c["n"] for c in saved["configurations"]] == [2, 2]
    for name in ("compare.png", "curves.png"):
        assert (sweep.path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Nothing trained, nothing claimed, no state changed: the sweep's own process goes on.
    assert not sweep.run_dir(crelu, 2).path.exists() and sweep.status.status() == "running"
    assert training.status() == "running" and not (sweep.path / ".kvt.lock").exists()

    # A finished sweep's report is its results, written again, not interim.
    (training / "status.json").unlink()
    _fake_run(training, 0.74)
    _fake_run(sweep.run_dir(crelu, 2), 0.77)
    sweep.status.mark("complete")
    code, out, err = run_cli(capsys, "compare", "--report", str(sweep.path))
    assert code == 0 and "Interim" not in out and "not finished" not in out
    md = (sweep.path / "compare.md").read_text()
    assert md.startswith("# kvt compare\n") and "| relu (baseline) | 3 | 0 | 72.00 |" in md
    assert json.loads((sweep.path / "compare.json").read_text())["interim"] is None


def test_report_refusals(tmp_path, capsys):
    cases = [
        (["--report", str(tmp_path / "nope")], 6, "is not a kvt compare directory"),
        (["--report", str(tmp_path), "--epochs", "3"], 2, "drop --epochs"),
        (["--report", str(tmp_path), "--resume", str(tmp_path)], 2, "drop --resume"),
        (["--report", str(tmp_path), "--seeds", "5", "-j", "2"], 2, "drop --seeds, --jobs"),
    ]
    for argv, code, words in cases:
        got, out, err = run_cli(capsys, "compare", *argv)
        lines = err.strip().splitlines()
        assert got == code and len(lines) == 1 and words in lines[0], (argv, err)
        assert "Traceback" not in out + err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.process
def test_resume_on_a_machine_that_keeps_the_data_elsewhere(tmp_path, capsys, monkeypatch):
    """`--resume SWEEP --data-dir DIR`: new runs train on DIR, interrupted ones continue
    from it (each checking that it holds the data it began with), and the sweep keeps
    DIR for its next --resume."""
    import shutil

    import cifar_files as cf
    from kvt import train
    from kvt.cli.common import train_argv
    from test_signals import _signal_after

    batches = cf.make_arrays(0)
    first = cf.write_dir(tmp_path / "first", cf.python_files(batches))
    same = cf.write_dir(tmp_path / "same-in-binary", cf.binary_files(batches))
    out = tmp_path / "sweep"
    base = from_recipe(model="quicknet", data_dir=str(first), epochs=2,
                                   batch_size=20)
    plan = build_plan(base, None, ["activation=relu,crelu"], [0], None)
    sweep = Sweep(out)
    sweep.create(plan, force=False)
    relu, crelu = plan.variants
    # relu seed 0 stopped after its first epoch (as a Ctrl-C leaves it); crelu not started
    _signal_after(monkeypatch, train, "epoch_order", lambda seed, epoch, n: epoch == 1)
    assert run_cli(capsys, *sweep.train_argv(relu, 0, "start", train_argv, str(first)))[0] == 130
    monkeypatch.undo()
    stopped = sweep.run_dir(relu, 0)
    assert stopped.status() == "interrupted"
    shutil.rmtree(first)  # the sweep goes on where its data lies elsewhere
    saved = (out / "sweep.json").read_text()
    for argv, code, words in [
        (["--resume", str(out), "--data-dir", str(tmp_path / "nowhere")], 3, "does not exist"),
        (["--resume", str(out), "--data-dir", str(out)], 3, "holds no CIFAR-10 data"),
    ]:
        got, stdout, err = run_cli(capsys, "compare", *argv)
        lines = err.strip().splitlines()
        assert got == code and len(lines) == 1 and words in lines[0], (argv, err)
    assert (out / "sweep.json").read_text() == saved and stopped.status() == "interrupted"

    proc = _compare(["--resume", str(out), "--data-dir", str(same), "-j", "2"], tmp_path)
    stdout, stderr = proc.communicate(timeout=HANG)
    assert proc.returncode == 0, stdout + stderr
    assert "continuing relu seed 0" in stdout and "starting crelu seed 0" in stdout
    for variant in (relu, crelu):
        rd = sweep.run_dir(variant, 0)
        assert rd.status() == "complete"
        record = json.loads((rd / "config.json").read_text())
        # records keep no absolute data_dir, only the folder's name
        assert record["config"]["data_dir"] is None
        assert record["dataset"]["source"] == ".../same-in-binary"
        config = json.loads(sweep.config_path(variant).read_text())
        assert config["data_dir"] is None
    assert json.loads((stopped / "metrics.json").read_text())["starts"] == 2
    saved = json.loads((out / "sweep.json").read_text())
    assert saved["base"]["data_dir"] is None and saved["data_source"] == ".../same-in-binary"
    assert "--resume . --data-dir .../same-in-binary)" in (out / "compare.md").read_text()

    digits = tmp_path / "digits-sweep"
    Sweep(digits).create(build_plan(from_recipe(dataset="digits"), None,
                                    ["activation=relu,crelu"], [0], None), force=False)
    code, _, err = run_cli(capsys, "compare", "--resume", str(digits), "--data-dir", str(same))
    assert code == 2 and err.strip() == ("kvt compare: error: --data-dir says where CIFAR-10, "
                                         "CIFAR-100, MNIST or Fashion-MNIST lies; this sweep "
                                         "trains on digits: drop --data-dir")


def _run(accuracy, loss=None, history=None, machine=None):
    from types import SimpleNamespace

    return SimpleNamespace(accuracy=accuracy, loss=loss, history=history, machine=machine)


def test_twins_are_configurations_identical_at_every_seed_they_share():
    from kvt.compare.design import merged, twins

    curve = {"loss": [1.0, 0.5], "val_accuracy": [0.4, 0.7]}
    timed = lambda s: {**curve, "epoch_seconds": [s, s]}  # noqa: E731 (timings may differ)
    runs = {
        "keras": {0: _run(0.70, 0.9, timed(2.0)), 1: _run(0.72, 0.8, timed(2.0))},
        "tf": {0: _run(0.70, 0.9, timed(3.0)), 1: _run(0.72, 0.8, timed(3.1)),
               2: _run(0.71, 0.85)},  # a seed the other has not finished yet
        "other loss": {0: _run(0.70, 0.91), 1: _run(0.72, 0.8)},
        "other curve": {0: _run(0.70, 0.9, {**curve, "loss": [1.0, 0.6]}),
                        1: _run(0.72, 0.8, timed(2.0))},
        "one seed": {0: _run(0.70)},  # a single equal accuracy can be chance
    }
    (group,) = twins(runs)
    assert group.labels == ["keras", "tf"] and group.seeds == 2
    assert group.evidence == "the same accuracy, test loss and learning curve at every epoch"
    assert merged(runs, group.labels) == {0: 0.70, 1: 0.72, 2: 0.71}
    only_accuracy = {"a": {0: _run(0.7), 1: _run(0.8)}, "b": {0: _run(0.7), 1: _run(0.8)}}
    assert twins(only_accuracy)[0].evidence == ("the same accuracy, the only measure both "
                                                "records hold")


def test_runs_pair_by_seed_only_on_the_same_seeds_and_machines():
    from kvt.compare.design import pairing

    def arm(machines):
        return {s: _run(0.7, machine=m) for s, m in enumerate(machines)}

    ok, words = pairing({"a": arm(["x", "y", "x"]), "b": arm(["x", "y", "x"])})
    assert ok and words == ("the configurations ran the same 3 seeds, each seed on one kind "
                            "of machine")
    ok, words = pairing({"a": arm(["x", "y", "x", "x"]), "b": arm(["x", "x", "x", "y"])})
    assert not ok and words.startswith("at seeds 1 and 3 the configurations ran on different")
    ok, words = pairing({"a": arm([None, None]), "b": arm([None, None])})
    assert ok and "the records do not say where every run ran" in words
    ok, words = pairing({"a": arm(["x", "x"]), "b": arm(["x"])})
    assert not ok and "did not finish the same seeds" in words


def test_a_2x2_with_identical_api_arms_says_so_and_counts_each_result_once(tmp_path):
    plan = build_plan(from_recipe(), "tutorial-2x2", [], [0, 1, 2, 3], None)
    sweep = Sweep(tmp_path / "sweep")
    sweep.create(plan, force=False)
    relu, crelu = [0.70, 0.72, 0.71, 0.74], [0.75, 0.74, 0.77, 0.78]
    for variant in plan.variants:
        for seed in range(4):
            is_relu = variant.overrides["activation"] == "relu"
            acc = (relu if is_relu else crelu)[seed]
            # seed 1's ReLU runs ran elsewhere: no pairing of ReLU with CReLU by seed
            where = "Xeon" if seed == 1 and is_relu else "EPYC"
            _fake_run(sweep.run_dir(variant, seed), acc,
                      environment={"backend": "tensorflow", "processor": where})
    analysis = write_results(sweep.path, plan, collect(sweep.path, sweep.run_dir, plan),
                             "kvt compare ...")
    assert [t["labels"] for t in analysis["identical"]] == [["keras/relu", "tf/relu"],
                                                            ["keras/crelu", "tf/crelu"]]
    f = analysis["factorial"]
    assert f["distinct"] == ["keras/relu", "keras/crelu"] and not f["blocked"]
    effects = {e["name"]: e for e in f["effects"]}
    act, api, inter = effects["activation"], effects["api"], effects["api x activation"]
    assert act["n"] == [4, 4] and act["estimate"] == pytest.approx(0.0425)
    assert api["identical_seeds"] == inter["identical_seeds"] == 4
    tf_relu = analysis["comparisons"][0]
    assert tf_relu["other"] == "tf/relu" and tf_relu["identical_seeds"] == 4
    assert tf_relu["verdict"].startswith("identical at every seed (4 seeds: the same accuracy")
    md = (sweep.path / "compare.md").read_text()
    assert "- keras/relu and tf/relu gave identical runs at every seed (4 seeds:" in md
    assert "no evidence of a difference" not in md
    assert "| api | api tf minus keras, averaged over activation | +0.00 | identical at every " \
           "seed (4 seeds) | n/a | n/a |" in md
    assert "the effects are estimated from 4 against 4 runs" in md
    assert "api: identical at every seed (4 seeds): exactly 0" in md
    assert "The verdicts follow Welch" in md and "at seed 1 the configurations ran on" in md
    text = render_text(plan, analysis)
    assert "tf/relu: identical at every seed (4 seeds" in text


def test_report_of_a_folder_that_kept_only_compare_json(tmp_path, capsys):
    """A published result keeps compare.json without sweep.json or runs/: --report
    analyses the run records it holds again, and leaves curves.png as it was."""
    import shutil

    plan = build_plan(from_recipe(dataset="digits"), None,
                      ["precision=float32,bf16"], [0, 1, 2], None)
    sweep = Sweep(tmp_path / "sweep")
    sweep.create(plan, force=False)
    sweep.status.mark("complete")
    for seed, (a, b) in enumerate([(0.70, 0.72), (0.74, 0.75), (0.71, 0.74)]):
        _fake_run(sweep.run_dir(plan.variants[0], seed), a)
        _fake_run(sweep.run_dir(plan.variants[1], seed), b)
    write_results(sweep.path, plan, collect(sweep.path, sweep.run_dir, plan),
                  "kvt compare ...")
    before = (sweep.path / "compare.md").read_text()
    shutil.rmtree(sweep.path / "runs")
    shutil.rmtree(sweep.path / "configs")
    (sweep.path / "sweep.json").unlink()
    (sweep.path / "status.json").unlink()
    (sweep.path / "compare.md").write_text("stale\n")
    (sweep.path / "curves.png").write_bytes(b"kept")
    code, out, err = run_cli(capsys, "compare", "--report", str(sweep.path))
    assert code == 0 and err == "", err
    assert "curves.png kept" in out
    md = (sweep.path / "compare.md").read_text()
    # the same analysis; only the command line says how it was reported
    assert md[md.index("## Accuracy"):] == before[before.index("## Accuracy"):]
    assert "from the run records in compare.json" in md
    assert "95% CI (paired by seed)" in md  # same seeds; the records say no machine
    assert (sweep.path / "curves.png").read_bytes() == b"kept"
    assert json.loads((sweep.path / "compare.json").read_text())["comparisons"][0]["paired"]
    (sweep.path / "compare.json").write_text("{}")
    code, out, err = run_cli(capsys, "compare", "--report", str(sweep.path))
    assert code == 6 and "cannot read the run records" in err and "Traceback" not in err
