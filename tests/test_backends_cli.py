import importlib.util

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
