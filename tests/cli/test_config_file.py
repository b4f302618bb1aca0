"""A config file (`kvt train --config`) and a saved sweep (`kvt compare --resume`) are
checked field by field before anything loads: one line naming the field, its value and
what it may hold, exit 2, no traceback."""

import copy
import json

import pytest

from conftest import run_cli


@pytest.mark.parametrize("values, words", [
    ({"dataset": None}, "config field 'dataset' must be a non-empty string, got null"),
    ({"dataset": 5}, "config field 'dataset' must be a non-empty string, got 5"),
    ({"native_ops": "false"}, "config field 'native_ops' must be true or false"),
    ({"deterministic": "no"}, "config field 'deterministic' must be true or false"),
    ({"nesterov": 1}, "config field 'nesterov' must be true or false"),
    ({"activation": None}, "config field 'activation' must be a non-empty string, got null"),
    ({"epochs": 3.5}, "config field 'epochs' must be a whole number, got 3.5"),
    ({"lr": "0.1"}, "config field 'lr' must be a number, got \"0.1\""),
    ({"train_limit": True}, "config field 'train_limit' must be a whole number or null"),
    # the range, after the type; a value of the file is named by its field, not a flag
    ({"epochs": 0}, ": epochs must be a positive integer, got 0"),
    ({"momentum": 1.5}, ": momentum must be a finite number >= 0.0 and < 1.0"),
    ({"api": "tf", "backend": "jax"}, ": api tf builds a tf.keras model that calls "
                                      "TensorFlow ops, so it needs backend tensorflow"),
    ([{"epochs": 3}], "a config must be a JSON object of fields"),
    ({"config": [1, 2]}, "a config must be a JSON object of fields"),
    ({"colour": "red"}, "unknown config keys ['colour']"),
])
def test_config_file_fields_are_checked_before_anything_loads(tmp_path, capsys, values, words):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(values))
    code, out, err = run_cli(capsys, "train", "--config", str(path), "--out", str(tmp_path / "r"))
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith(f"kvt train: error: --config {path}") and words in lines[0], err
    assert "Traceback" not in out + err and not (tmp_path / "r").exists()


def test_a_flag_over_a_config_file_is_named_as_the_flag(tmp_path, capsys):
    """The file's values are named by their fields (above); a value typed as a flag by
    the flag."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"dataset": "digits", "epochs": 2}))
    code, out, err = run_cli(capsys, "train", "--config", str(path), "--batch-size", "0",
                             "--out", str(tmp_path / "r"))
    assert code == 2 and err.strip() == ("kvt train: error: --batch-size must be a positive "
                                         "integer, got 0"), err
    assert "Traceback" not in out + err and not (tmp_path / "r").exists()


def test_a_run_config_json_is_still_read(tmp_path):
    from kvt.config import TrainConfig

    config = TrainConfig(dataset="digits", native_ops=True, epochs=2)
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"config": config.to_dict(), "versions": {}}))
    assert TrainConfig.load(path) == config


def _plan():
    from kvt.compare.plan import build_plan
    from kvt.config import TrainConfig

    return build_plan(TrainConfig(dataset="digits"), "tutorial", [], [0, 1], None).to_dict()


@pytest.mark.parametrize("change, words", [
    (lambda d: d["variants"][0]["overrides"].update(native_ops="false"),
     "configuration 'keras/relu': config field 'native_ops' must be true or false"),
    (lambda d: d["base"].update(dataset=None), "config field 'dataset' must be a non-empty"),
    (lambda d: d.update(seeds=["1"]), "sweep field 'seeds': each seed must be an integer"),
    (lambda d: d.update(jobs="2"), "sweep field 'jobs' must be a whole number >= 0"),
    (lambda d: d.update(variants={"a": 1}), "sweep field 'variants' must be a list"),
    (lambda d: d.update(executor="slurm"), "sweep field 'executor' must be \"local\" or \"ray\""),
    (lambda d: d.pop("baseline"), "sweep field 'baseline' is missing"),
])
def test_saved_sweep_fields_are_checked(tmp_path, capsys, change, words):
    from kvt.compare.plan import Plan

    good = _plan()
    assert Plan.from_dict(copy.deepcopy(good)).to_dict() == good
    bad = copy.deepcopy(good)
    change(bad)
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "sweep.json").write_text(json.dumps(bad))
    code, out, err = run_cli(capsys, "compare", "--resume", str(sweep))
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and words in lines[0], err
    assert str(sweep / "sweep.json") in lines[0] and "Traceback" not in out + err


@pytest.mark.parametrize("flag", ["--report", "--resume"])
def test_a_file_given_as_a_sweep_is_refused_without_advising_force(tmp_path, capsys, flag):
    path = tmp_path / "notes.txt"
    path.write_text("not a sweep\n")
    code, out, err = run_cli(capsys, "compare", flag, str(path))
    assert code == 6 and err.strip() == (f"kvt compare: error: {path} is a file, not a kvt "
                                         f"compare directory: pass the --out folder of a sweep")
    assert "--force" not in err and path.read_text() == "not a sweep\n"
