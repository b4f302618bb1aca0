"""`kvt tune` from the command line: refusals (one line, exit code, nothing written), a
tiny study on digits whose storage URL carries a password, a SIGINT then --resume and
--extend, and `kvt train --config best.json`."""

import json
import signal
import subprocess

import optuna
import pytest

from conftest import run_cli
from processes import HANG, child_env, kvt, start_and_stop

# the test reads the study with a password-carrying SQLite URL; SQLAlchemy warns that
# pysqlite ignores the password (kvt itself silences it)
pytestmark = pytest.mark.filterwarnings("ignore:Query string argument")

SEARCH = ["--dataset", "digits", "--search", "lr=log:0.01:0.5"]


def _one_line(code, err, expected_code, words):
    assert code == expected_code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert words in lines[0], err


@pytest.mark.parametrize("argv, words", [
    (["--val-split", "0"], "--val-split 0 would judge every trial on the test split"),
    (["--search", "val-split=0.05:0.3"], "--val-split cannot be searched"),
    (["--search", "momentum=0.5:0.5"], "the range is empty"),
    (["--search", "momentum=0.9:0.5"], "the range is inverted"),
    (["--search", "weight-decay=log:0:1e-3"], "a log range must be above 0"),
    (["--search", "lerning-rate=log:0.01:1"], "unknown flag --lerning-rate"),
    (["--search", "label-smoothing=0:1"], "1.0 is not a valid --label-smoothing"),
])
def test_bad_input_is_refused_with_exit_2_and_nothing_written(capsys, tmp_path, argv, words):
    out = tmp_path / "tune"
    code, _, err = run_cli(capsys, "tune", *SEARCH, *argv, "--out", str(out))
    _one_line(code, err, 2, words)
    assert not out.exists()


def test_an_unreachable_storage_is_exit_6_masked_and_leaves_no_tune_dir(capsys, tmp_path,
                                                                          monkeypatch):
    out = tmp_path / "tune"
    for url in ("sqlite://kvt:hunter2@/nowhere/study.db",
                f"sqlite:///{tmp_path}/no/such/dir/study.db?password=hunter2"):
        code, stdout, err = run_cli(capsys, "tune", *SEARCH, "--storage", url, "--out", str(out))
        _one_line(code, err, 6, "cannot open the study storage")
        assert "hunter2" not in stdout + err and "***" in err
        assert not out.exists()
        monkeypatch.setenv("KVT_TUNE_STORAGE", url)  # the same through the environment
        code, stdout, err = run_cli(capsys, "tune", *SEARCH, "--out", str(out))
        _one_line(code, err, 6, "cannot open the study storage")
        assert "hunter2" not in stdout + err and not out.exists()
        monkeypatch.delenv("KVT_TUNE_STORAGE", raising=False)  # kvt tune drops it itself


def test_continuing_needs_a_search_and_its_saved_plan(capsys, tmp_path):
    code, _, err = run_cli(capsys, "tune", "--resume", str(tmp_path))
    _one_line(code, err, 6, "is not a kvt tune directory")
    code, _, err = run_cli(capsys, "tune", "--resume", str(tmp_path), *SEARCH)
    _one_line(code, err, 2, "--resume continues a search with its saved plan: drop --dataset")
    code, _, err = run_cli(capsys, "tune", "--extend", str(tmp_path))
    _one_line(code, err, 2, "--extend needs --trials")


def _study(tune_dir, url=None):
    url = url or f"sqlite:///{tune_dir}/study.db"
    return optuna.load_study(study_name="kvt-tune", storage=url)


def _status(tune_dir, number):
    path = tune_dir / "trials" / f"trial-{number:04d}" / "status.json"
    return json.loads(path.read_text())["status"] if path.is_file() else None


def _check_trials(tune_dir, study):
    """Every COMPLETE trial's run is complete and judged on the holdout with the value
    the study holds; every RUNNING one's run is not complete."""
    for t in study.get_trials():
        run = tune_dir / "trials" / f"trial-{t.number:04d}"
        status = json.loads((run / "status.json").read_text())["status"]
        if t.state.name == "COMPLETE":
            metrics = json.loads((run / "metrics.json").read_text())
            assert status == "complete" and metrics["eval_split"] == "validation"
            assert metrics["accuracy"] == t.value
        else:
            assert status != "complete", (t.number, t.state)


@pytest.mark.process
def test_a_tiny_study_keeps_its_password_secret_and_best_json_trains(tmp_path):
    secret = "hunter2-5f1c"
    url = f"sqlite:///{tmp_path}/shared.db?password={secret}"
    env = dict(child_env(tmp_path), KVT_TUNE_STORAGE=url)
    tune = tmp_path / "tune"
    done = subprocess.run(kvt("tune", *SEARCH, "--trials", "3", "-j", "2", "--epochs", "1",
                              "--out", str(tune)), env=env, capture_output=True, text=True,
                          timeout=HANG)
    assert done.returncode == 0, done.stderr
    assert "best trial" in done.stdout and "Traceback" not in done.stderr
    study = _study(tune, url)
    assert [t.state.name for t in study.get_trials()] == ["COMPLETE"] * 3
    _check_trials(tune, study)
    for name in ("best.json", "tune.md", "tune.json", "history.png", "params.png",
                 "importance.png", "tune-plan.json"):
        assert (tune / name).is_file(), name
    table = json.loads((tune / "tune.json").read_text())
    assert [r["state"] for r in table["trials"]] == ["COMPLETE"] * 3
    assert all(r["seconds"] > 0 and "lr" in r["params"] for r in table["trials"])
    # the password: in no file of the tune directory, nowhere in the output
    assert secret not in done.stdout + done.stderr
    files = [p for p in tune.rglob("*") if p.is_file()]
    assert len(files) > 20
    assert not [p for p in files if secret.encode() in p.read_bytes()]
    assert "password=***" in (tune / "tune-plan.json").read_text()
    # --resume without the password: refused, masked
    env.pop("KVT_TUNE_STORAGE")
    again = subprocess.run(kvt("tune", "--resume", str(tune)), env=env, capture_output=True,
                           text=True, timeout=HANG)
    _one_line(again.returncode, again.stderr, 2, "give it with --storage or $KVT_TUNE_STORAGE")
    assert secret not in again.stdout + again.stderr
    # best.json: the chosen recipe, trained on the whole training split, judged on test
    run = tmp_path / "final"
    trained = subprocess.run(kvt("train", "--config", str(tune / "best.json"), "--out", str(run),
                                 "--quiet"), env=env, capture_output=True, text=True, timeout=HANG)
    assert trained.returncode == 0, trained.stderr
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["eval_split"] == "test"
    config = json.loads((run / "config.json").read_text())["config"]
    assert config["lr"] == table["best"]["params"]["lr"]


@pytest.mark.process
def test_sigint_then_resume_then_extend(tmp_path):
    tune = tmp_path / "tune"
    env = child_env(tmp_path)
    # Stopped at a trial's first epoch line: with 4 epochs a trial is nearly always still
    # training when the stop lands; one that finished in between is told at the stop.
    code, err = start_and_stop(["tune", *SEARCH, "--trials", "3", "-j", "2", "--epochs", "4",
                                "--out", str(tune)], env, "kvt tune: trial ", signal.SIGINT)
    _one_line(code, err, 130, f"continue from their last finished epoch with kvt tune "
                              f"--resume {tune}")
    assert json.loads((tune / "status.json").read_text())["status"] == "interrupted"
    study = _study(tune)
    _check_trials(tune, study)
    assert sum(t.state.name == "COMPLETE" for t in study.get_trials()) < 3
    stopped = [t.number for t in study.get_trials() if t.state.name == "RUNNING"
               and _status(tune, t.number) == "interrupted"]

    resumed = subprocess.run(kvt("tune", "--resume", str(tune)), env=env, capture_output=True,
                             text=True, timeout=HANG)
    assert resumed.returncode == 0, resumed.stderr
    for number in stopped:  # each from its checkpoint, not from epoch 1
        assert f"continuing trial {number}" in resumed.stdout, resumed.stdout
    study = _study(tune)
    assert [t.state.name for t in study.get_trials()] == ["COMPLETE"] * 3, resumed.stdout
    _check_trials(tune, study)
    assert json.loads((tune / "status.json").read_text())["status"] == "complete"

    extended = subprocess.run(kvt("tune", "--extend", str(tune), "--trials", "4"), env=env,
                              capture_output=True, text=True, timeout=HANG)
    assert extended.returncode == 0, extended.stderr
    study = _study(tune)
    assert [t.state.name for t in study.get_trials()] == ["COMPLETE"] * 4
    table = json.loads((tune / "tune.json").read_text())
    assert table["trials_wanted"] == 4 and len(table["trials"]) == 4
    assert "(extended with kvt tune --extend" in (tune / "tune.md").read_text()


@pytest.mark.process
def test_help_and_bad_searches_import_neither_optuna_nor_a_framework():
    code = ("import sys\n"
            "from kvt.cli import build_parser, main\n"
            "build_parser()\n"
            "assert 'kvt.tune' not in sys.modules\n"
            "codes = []\n"
            "for argv in (['tune', '--help'], ['tune', '--search', 'lr=1:0.1'],\n"
            "             ['tune', '--val-split', '0', '--search', 'lr=log:0.01:1']):\n"
            "    try:\n"
            "        codes.append(main(argv))\n"
            "    except SystemExit as e:\n"
            "        codes.append(e.code)\n"
            "heavy = [m for m in ('optuna', 'tensorflow', 'keras', 'jax', 'torch', 'ray')\n"
            "         if m in sys.modules]\n"
            "print('CODES', codes, 'HEAVY', heavy)\n")
    done = subprocess.run([*kvt()[:1], "-c", code], capture_output=True, text=True,
                          timeout=HANG)
    assert "CODES [0, 2, 2] HEAVY []" in done.stdout, done.stdout + done.stderr


@pytest.mark.process
def test_a_pruned_trial_is_stopped_and_marked(capsys, tmp_path, monkeypatch):
    """The pruner's whole path with real runs: after trial 0 (lr 0.3) is complete, trial 1
    (lr 0.0005, stuck at chance) falls below it at epoch 2, gets SIGTERM, checkpoints, and
    ends PRUNED with its run marked pruned. (Pruning waits for 5 complete trials by
    default; one here, to keep the test short.)"""
    from kvt.tune import study as tune_study

    monkeypatch.setattr(tune_study, "PRUNER_STARTUP_TRIALS", 1)
    tune = tmp_path / "tune"
    code, out, err = run_cli(capsys, "tune", "--dataset", "digits", "--search",
                             # epochs after the 2nd leave the stop time to land
                             "lr=cat:0.0005,0.3", "--trials", "2", "--epochs", "5",
                             "--out", str(tune))
    assert code == 0, err
    study = _study(tune)
    lrs = [t.params["lr"] for t in study.get_trials()]
    assert lrs == [0.3, 0.0005], "the sampler's seed gave another order: " + out
    assert [t.state.name for t in study.get_trials()] == ["COMPLETE", "PRUNED"], out
    assert "trial 1: pruned at epoch 2" in out
    run = tune / "trials" / "trial-0001"
    assert json.loads((run / "status.json").read_text())["status"] == "pruned"
    assert "kvt train: cancelled" in (run / "train.log").read_text()
    assert not (run / "metrics.json").exists()
    table = json.loads((tune / "tune.json").read_text())["trials"]
    assert table[1]["state"] == "PRUNED" and table[1]["pruned_at"] == 2
