"""`kvt compare --arm NAME=FILE`: configurations that start from their own tuned config."""

import hashlib
import json

import pytest

from conftest import run_cli
from kvt.compare import Sweep, build_plan
from kvt.compare.arms import apply_arms
from kvt.compare.plan import Plan
from kvt.errors import RunError, UsageError
from kvt.recipes import from_recipe
from processes import HANG, start_kvt

TINY = ["--dataset", "digits", "--epochs", "1", "--batch-size", "8", "--train-limit", "400",
        "--test-limit", "100"]


def _tuned(tmp_path, name, **fields):
    """A best.json as kvt tune writes it: a complete config without a holdout."""
    config = from_recipe(dataset="digits", epochs=1, **fields).to_dict()
    path = tmp_path / name
    path.write_text(json.dumps({**config, "val_split": None}, indent=2))
    return path


def test_each_configuration_starts_from_its_arms_file_then_its_level_then_the_typed_flags(
        tmp_path):
    crelu = _tuned(tmp_path, "crelu.json", lr=0.3, activation="relu", weight_decay=1e-4)
    relu = _tuned(tmp_path, "relu.json", lr=0.05, batch_size=16)
    base = from_recipe(dataset="digits", epochs=3, lr=0.01)
    plan = build_plan(base, "tutorial-2x2", [], [0, 1], None)
    apply_arms(plan, [f"crelu={crelu}", f"relu={relu}"], {"epochs": 3}, tmp_path)
    configs = {v.label: plan.config(v) for v in plan.variants}
    for api in ("keras", "tf"):
        c = configs[f"{api}/crelu"]
        # the file's lr and weight decay; the grid's activation over the file's relu; the
        # typed --epochs over the file's 1
        assert (c.lr, c.weight_decay, c.activation, c.api, c.epochs) == (0.3, 1e-4, "crelu",
                                                                          api, 3)
        r = configs[f"{api}/relu"]
        assert (r.lr, r.batch_size, r.activation, r.api, r.epochs) == (0.05, 16, "relu", api,
                                                                        3)
    arm = plan.arms[0]
    assert arm.file == "crelu.json"  # relative to the base it lies in (portable_path)
    assert arm.sha256 == hashlib.sha256(crelu.read_bytes()).hexdigest()
    # sweep.json keeps the arms' configs: the plan read back trains the same configs
    again = Plan.from_dict(json.loads(json.dumps(plan.to_dict())))
    assert {v.label: again.config(v) for v in again.variants} == configs
    assert "arms" not in build_plan(base, "tutorial-2x2", [], [0], None).to_dict()


def test_a_level_holding_an_equals_sign_and_configurations_without_an_arm(tmp_path):
    tuned = _tuned(tmp_path, "a=b.json", momentum=0.5)
    plan = build_plan(from_recipe(dataset="digits"), None, ["lr=0.01,0.1"], [0], None)
    apply_arms(plan, [f"lr=0.1={tuned}"], {}, tmp_path)
    low, high = (plan.config(v) for v in plan.variants)
    assert (high.lr, high.momentum) == (0.1, 0.5)
    assert (low.lr, low.momentum) == (0.01, from_recipe(dataset="digits").momentum)
    assert plan.arms[0].file == "a=b.json"


def test_arm_refusals(tmp_path):
    good = _tuned(tmp_path, "good.json")
    holdout = tmp_path / "holdout.json"
    holdout.write_text(json.dumps({**json.loads(good.read_text()), "val_split": 0.1}))
    (tmp_path / "junk.json").write_text("not json")
    (tmp_path / "field.json").write_text(json.dumps({"epochs": "ten"}))
    cases = [
        ([f"gelu={good}"], UsageError, "'gelu' matches no configuration; the grid's levels "
                                       "are keras, relu, tf, crelu"),
        (["crelu"], UsageError, "write NAME=FILE"),
        ([f"crelu={tmp_path / 'missing.json'}"], RunError, "cannot read --arm crelu="),
        ([f"crelu={tmp_path / 'junk.json'}"], RunError, "is not a kvt config"),
        ([f"crelu={tmp_path / 'field.json'}"], UsageError, "epochs"),
        ([f"crelu={holdout}"], UsageError, "its val_split is 0.1, but a comparison is judged "
                                           "once on the test split"),
        ([f"crelu={good}", f"crelu={good}"], UsageError, "would start from two files"),
        ([f"crelu={good}", f"tf={good}"], UsageError,
         "configuration 'tf/crelu' would start from two files"),
    ]
    for specs, error, words in cases:
        plan = build_plan(from_recipe(dataset="digits"), "tutorial-2x2", [], [0], None)
        with pytest.raises(error) as e:
            apply_arms(plan, specs, {}, tmp_path)
        assert words in str(e.value) and "\n" not in str(e.value), (specs, str(e.value))
        assert plan.arms == []  # nothing half-applied


def test_cli_refusals_one_line_each_with_the_exit_codes_of_train_config(tmp_path, capsys):
    good = _tuned(tmp_path, "good.json")
    holdout = tmp_path / "holdout.json"
    holdout.write_text(json.dumps({**json.loads(good.read_text()), "val_split": 0.2}))
    out = tmp_path / "sweep"
    grid = ["--vary", "activation=relu,crelu", "--out", str(out)]
    cases = [
        ([*grid, "--arm", f"selu={good}"], 2, "'selu' matches no configuration"),
        ([*grid, "--arm", f"crelu={tmp_path / 'nope.json'}"], 6, "cannot read --arm"),
        ([*grid, "--arm", f"crelu={holdout}"], 2, "its val_split is 0.2"),
        ([*grid, "--arm", f"crelu={good}", "--arm", f"crelu={good}"], 2, "two files"),
        (["--report", str(out), "--arm", f"crelu={good}"], 2, "drop --arm"),
        (["--resume", str(out), "--arm", f"crelu={good}"], 2, "drop --arm"),
    ]
    for argv, code, words in cases:
        got, stdout, err = run_cli(capsys, "compare", *argv)
        lines = err.strip().splitlines()
        assert got == code and len(lines) == 1 and words in lines[0], (argv, err)
        assert "Traceback" not in stdout + err
    assert not out.exists()


@pytest.mark.process
def test_a_sweep_with_arms_records_them_and_extend_keeps_them(tmp_path):
    crelu = _tuned(tmp_path, "crelu.json", lr=0.02, train_limit=400, test_limit=100,
                   batch_size=8)
    out = tmp_path / "sweep"
    proc = start_kvt(tmp_path, "compare", "--vary", "activation=relu,crelu", "--seeds", "1",
                     *TINY, "--arm", "crelu=crelu.json", "--out", "sweep", cwd=tmp_path,
                     start_new_session=True)  # the file as typed: relative
    stdout, stderr = proc.communicate(timeout=HANG)
    assert proc.returncode == 0, stdout + stderr
    digest = hashlib.sha256(crelu.read_bytes()).hexdigest()
    saved = json.loads((out / "sweep.json").read_text())
    assert [(a["name"], a["file"], a["sha256"]) for a in saved["arms"]] == [
        ("crelu", "crelu.json", digest)]
    assert json.loads((out / "configs" / "crelu.json").read_text())["lr"] == 0.02
    assert json.loads((out / "configs" / "relu.json").read_text())["lr"] != 0.02
    md = (out / "compare.md").read_text()
    top = md.split("## Accuracy per configuration")[0]
    assert f"The arms were tuned separately: crelu from crelu.json (sha256 {digest})" in top
    assert "relu from the command line's config" in top
    report = json.loads((out / "compare.json").read_text())
    assert report["tuned_separately"].startswith("The arms were tuned separately: crelu")
    assert report["plan"]["arms"][0]["sha256"] == digest
    assert "The arms were tuned separately" in stdout

    # The file changes after the sweep began: --extend trains the new seed's runs from
    # what sweep.json recorded, and says so again.
    crelu.write_text("{}")
    proc = start_kvt(tmp_path, "compare", "--extend", "sweep", "--seeds", "2", cwd=tmp_path,
                     start_new_session=True)
    stdout, stderr = proc.communicate(timeout=HANG)
    assert proc.returncode == 0, stdout + stderr
    again = json.loads((out / "sweep.json").read_text())
    assert again["arms"] == saved["arms"] and again["typed"] == saved["typed"]
    run = json.loads((out / "runs" / "crelu" / "seed-1" / "config.json").read_text())
    assert (run["config"]["lr"], run["config"]["activation"]) == (0.02, "crelu")
    assert f"crelu from crelu.json (sha256 {digest})" in (out / "compare.md").read_text()


def test_sweep_save_writes_each_arms_resolved_config(tmp_path):
    tuned = _tuned(tmp_path, "t.json", lr=0.2)
    plan = build_plan(from_recipe(dataset="digits"), None, ["activation=relu,crelu"], [0],
                      None)
    apply_arms(plan, [f"relu={tuned}"], {"epochs": 2}, tmp_path / "s")
    sweep = Sweep(tmp_path / "s")
    with sweep.claim():
        sweep.create(plan, force=False)
    relu = json.loads((tmp_path / "s" / "configs" / "relu.json").read_text())
    assert (relu["lr"], relu["epochs"], relu["activation"]) == (0.2, 2, "relu")
    assert Sweep(tmp_path / "s").load().arms == plan.arms
