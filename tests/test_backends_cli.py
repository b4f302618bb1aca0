import importlib.util
import os

import pytest

from conftest import run_cli
from kvt import backends
from kvt.errors import BackendError


def test_missing_backend_names_the_install_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "torch" else real(name, *a))
    with pytest.raises(BackendError, match=r"needs torch, which is not installed: "
                                           r"pip install 'kvt\[torch\]'"):
        backends.select("torch")


def test_one_process_one_backend():
    with pytest.raises(BackendError, match="already running on tensorflow .* start a new process"):
        backends.select("jax")
    backends.select("tensorflow")  # the current one is fine


def test_info_lists_every_backend(capsys):
    code, out, err = run_cli(capsys, "info")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("kvt ") and any(ln.startswith("cpu: ") for ln in lines)
    rows = {ln.split()[0]: ln.split() for ln in lines if ln.split()[:1] and
            ln.split()[0] in ("tensorflow", "jax", "torch")}
    assert set(rows) == {"tensorflow", "jax", "torch"}
    assert rows["tensorflow"][1] == "yes" and rows["tensorflow"][3] in ("yes", "no")
    for name, ok in backends.installed().items():
        assert (rows[name][1] == "yes") == ok or rows[name][1] == "broken"


@pytest.mark.parametrize("value, words", [
    ("nonsense", "KERAS_BACKEND=nonsense is not a Keras backend: set it to one of tensorflow, "
                 "jax, torch, unset it, or pass --backend"),
    ("numpy", "KERAS_BACKEND=numpy is a Keras backend kvt does not train on"),
])
def test_bad_keras_backend_variable_is_named_with_exit_2_everywhere(
        tmp_path, capsys, monkeypatch, digits_runs, value, words):
    from PIL import Image

    image = tmp_path / "x.png"
    Image.new("L", (8, 8)).save(image)
    run = str(digits_runs["keras"])
    monkeypatch.setenv("KERAS_BACKEND", value)
    for argv in (["train", "--dataset", "digits", "--out", str(tmp_path / "r")],
                 ["compare", "--preset", "tutorial", "--out", str(tmp_path / "c")],
                 ["evaluate", run], ["predict", run, str(image)]):
        code, out, err = run_cli(capsys, *argv)
        assert code == 2, (argv, err)
        assert err.startswith(f"kvt {argv[0]}: error: {words}") and err.count("\n") == 1, \
            (argv, err)
    assert not (tmp_path / "r").exists() and not (tmp_path / "c").exists()


def test_info_names_a_bad_keras_backend_and_probes_without_it(capsys, monkeypatch):
    from kvt.cli import info

    def probe():  # as TensorFlow does: it imports Keras, which refuses a bad variable
        assert os.environ.get("KERAS_BACKEND") != "nonsense"
        return {"version": "1", "gpu": False, "threads": 1, "devices": ["cpu"]}

    monkeypatch.setattr(info, "PROBES", {name: probe for name in info.PROBES})
    monkeypatch.setattr(backends, "installed", lambda: dict.fromkeys(backends.FRAMEWORKS, True))
    monkeypatch.setenv("KERAS_BACKEND", "nonsense")
    code, out, err = run_cli(capsys, "info")
    assert code == 0, err
    assert "KERAS_BACKEND=nonsense is not a Keras backend" in out.splitlines()[1]
    assert "broken" not in out and out.count(" yes ") == 3
    assert os.environ["KERAS_BACKEND"] == "nonsense"  # restored after probing
