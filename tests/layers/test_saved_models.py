"""Model files saved by an earlier kvt still load: the files of tests/fixtures/models_873959a
(written by kvt at commit 873959a, before kvt.layers became a package; see make_models.py
there) load in safe mode and predict what they predicted when saved."""

import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from kvt.saving import load_model
from processes import HANG

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"  # tests/fixtures, shared
SAVED = FIXTURES / "models_873959a"
MODELS = ["tf_crelu", "keras_crelu", "keras_crelu_native", "keras_gelu_native", "keras_user_fn"]


@pytest.fixture(scope="module")
def expected():
    with np.load(SAVED / "expected.npz") as npz:
        return dict(npz)


@pytest.fixture
def user_functions(monkeypatch):
    """The module of keras_user_fn's `--activation kvt_fixture_acts:swish2`, imported
    (safe mode resolves only functions of modules already imported)."""
    monkeypatch.syspath_prepend(str(FIXTURES))
    import kvt_fixture_acts  # noqa: F401
    yield
    sys.modules.pop("kvt_fixture_acts", None)


@pytest.mark.parametrize("name", MODELS)
def test_saved_model_loads_in_safe_mode_and_predicts_as_saved(name, expected, user_functions):
    import kvt.layers  # noqa: F401  (what docs/deploy.md tells plain-Keras users to import)

    path = SAVED / f"{name}.keras"
    plain = keras.saving.load_model(path, safe_mode=True)
    model, meta = load_model(path)
    assert meta["kvt"] == "873959a"
    for m in (plain, model):
        np.testing.assert_allclose(m.predict(expected["x"], verbose=0), expected[name],
                                   rtol=1e-5, atol=1e-6)


@pytest.mark.process
def test_importing_kvt_layers_alone_registers_tfcrelu():
    """A fresh process that imports only kvt.layers (not kvt.models) reads the --api tf
    file: the package registers the TensorFlow module on TensorFlow."""
    code = ("import os; os.environ['KERAS_BACKEND'] = 'tensorflow'\n"
            "import sys, keras, kvt.layers\n"
            "keras.saving.load_model(sys.argv[1], safe_mode=True)\n"
            "assert 'kvt.models' not in sys.modules\n")
    done = subprocess.run([sys.executable, "-c", code, str(SAVED / "tf_crelu.keras")],
                          capture_output=True, text=True, timeout=HANG)
    assert done.returncode == 0, done.stderr[-2000:]
