"""What kvt writes holds no path of the machine that wrote it: a run and a sweep made
with absolute paths, as a user types them, can be published (results/) or moved."""

import json
import os

import pytest

from conftest import run_cli
from kvt.record_paths import ELIDED, portable_argv, portable_path
from processes import HANG, start_kvt

QUICK = ["--model", "quicknet", "--epochs", "1", "--batch-size", "20"]


def test_portable_path(tmp_path):
    run = tmp_path / "sweep" / "runs" / "relu" / "seed-0"
    sweep = tmp_path / "sweep"
    assert portable_path("data/cifar") == "data/cifar"  # relative: as typed
    assert portable_path(str(run), run) == "."
    assert portable_path(str(sweep / "configs" / "relu.json"), run, sweep) == \
        "../../../configs/relu.json"
    assert portable_path("/somewhere/else/cifar10-png", run) == ELIDED + "cifar10-png"
    assert portable_path(os.path.expanduser("~/.keras/datasets/x")) == "~/.keras/datasets/x"
    assert portable_argv(["train", f"--out={run}", "--data-dir", "/a/b"], run) == \
        ["train", "--out=.", "--data-dir", ELIDED + "b"]


def test_a_data_dir_given_as_an_absolute_path_is_recorded_by_name():
    """Even under the home folder: `kvt train --resume` asks for it again by the name."""
    from kvt.recipes import from_recipe
    from kvt.record_paths import recorded_data_dir, recorded_source

    home = os.path.expanduser("~/data/cifar")
    config = from_recipe(data_dir=home)
    assert recorded_data_dir(home) is None and recorded_source(config, home) == ELIDED + "cifar"
    relative = from_recipe(data_dir="data/cifar")
    assert recorded_data_dir("data/cifar") == "data/cifar"
    assert recorded_source(relative, "data/cifar") == "data/cifar"  # as typed


def _kvt(tmp_path, *argv):
    proc = start_kvt(tmp_path, *argv)
    stdout, stderr = proc.communicate(timeout=HANG)
    assert proc.returncode == 0, stdout + stderr
    return stdout


def _written(folder):
    """Every text file kvt wrote under `folder`: {path: text}."""
    texts = {}
    for root, _, names in os.walk(folder):
        for name in names:
            if name.endswith((".json", ".md", ".log", ".txt")):
                path = os.path.join(root, name)
                with open(path, encoding="utf-8") as f:
                    texts[path] = f.read()
    return texts


@pytest.mark.process
def test_run_and_sweep_records_hold_no_machine_path(tmp_path, capsys):
    import cifar_files as cf

    data = cf.write_dir(tmp_path / "cifar", cf.python_files(cf.make_arrays(0)))
    run, sweep = tmp_path / "run", tmp_path / "sweep"
    _kvt(tmp_path, "train", "--data-dir", str(data), *QUICK, "--out", str(run))
    _kvt(tmp_path, "compare", "--vary", "activation=relu,crelu", "--seeds", "1", *QUICK,
         "--data-dir", str(data), "--out", str(sweep))
    # an absolute data directory is asked for again, then checked to hold the same data
    code, _, err = run_cli(capsys, "compare", "--resume", str(sweep))
    assert code == 2 and f"read CIFAR-10 from {ELIDED}cifar" in err, err
    code, out, err = run_cli(capsys, "compare", "--resume", str(sweep), "--data-dir", str(data))
    assert code == 0 and "2 runs already finished, 0 to go" in out, err
    assert run_cli(capsys, "compare", "--report", str(sweep))[0] == 0

    texts = {**_written(run), **_written(sweep)}
    names = {os.path.relpath(p, tmp_path) for p in texts}
    assert {"run/config.json", "sweep/sweep.json", "sweep/compare.json",
            "sweep/compare.md", "sweep/runs/relu/seed-0/config.json"} <= names
    machine = {str(tmp_path), os.path.realpath(tmp_path)}
    for path, text in texts.items():
        assert not any(m in text for m in machine), (path, text)
    for path in [p for p in texts if p.endswith(".json")]:
        json.loads(texts[path])  # whole

    record = json.loads((run / "config.json").read_text())
    assert record["config"]["data_dir"] is None
    assert record["dataset"]["source"] == f"{ELIDED}cifar"
    assert record["command"][:2] == ["kvt", "train"] and "." in record["command"]
    child = json.loads((sweep / "runs" / "relu" / "seed-0" / "config.json").read_text())
    assert "../../../configs/relu.json" in child["command"]
    log = (sweep / "runs" / "relu" / "seed-0" / "train.log").read_text()
    assert "--config ../../../configs/relu.json" in log and "run saved to runs/relu/seed-0" in log
    assert "--out . " in (sweep / "compare.md").read_text()
