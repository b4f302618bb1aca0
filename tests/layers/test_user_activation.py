"""--activation module:function: the tutorial's move with your own TensorFlow function."""

import sys
import textwrap

import keras
import numpy as np
import pytest

from conftest import run_cli
from kvt.errors import ModelError
from kvt.layers import FunctionActivation, hidden_activation


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    pkg = tmp_path / "userpkg_acts"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "acts.py").write_text(textwrap.dedent("""
        import tensorflow as tf

        def swish2(x):
            return x * tf.sigmoid(2.0 * x)

        def crelu_tf(x):
            return tf.nn.crelu(x)  # doubles the channels

        NOT_CALLABLE = 3
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "userpkg_acts.acts"
    for name in ("userpkg_acts.acts", "userpkg_acts"):
        sys.modules.pop(name, None)


def test_function_layer_computes_the_function_and_infers_shape(user_module):
    x = np.linspace(-2, 2, 24, dtype="float32").reshape(1, 2, 3, 4)
    layer = FunctionActivation(f"{user_module}:swish2")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x)), x / (1 + np.exp(-2 * x)),
                               rtol=1e-6)
    model = keras.Sequential([keras.Input((2, 3, 4)), FunctionActivation(f"{user_module}:crelu_tf")])
    assert model.output_shape == (None, 2, 3, 8)


@pytest.mark.parametrize("spec, words", [
    ("nosuchmodule_xyz:f", "cannot import module 'nosuchmodule_xyz'"),
    ("{m}:missing", "has no attribute 'missing'"),
    ("{m}:NOT_CALLABLE", "is not a function of one tensor"),
])
def test_bad_function_names_are_model_errors(user_module, spec, words):
    with pytest.raises(ModelError, match=words):
        hidden_activation(spec.format(m=user_module))


def test_train_save_and_load_with_a_user_function(user_module, tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, err = run_cli(capsys, "train", "--dataset", "digits", "--epochs", "1",
                                "--batch-size", "16", "--train-limit", "300", "--test-limit", "60",
                                "--activation", f"{user_module}:swish2", "--out", str(out))
    assert code == 0, err
    model_file = str(out / "model.keras")
    # Loaded while the module is imported (the user's own process): fine in safe mode.
    code, stdout, err = run_cli(capsys, "evaluate", model_file)
    assert code == 0, err
    # A fresh process has not imported it; safe mode does not import on the file's say.
    for name in ("userpkg_acts.acts", "userpkg_acts"):
        sys.modules.pop(name, None)
    code, stdout, err = run_cli(capsys, "evaluate", model_file)
    assert code == 4 and "safe mode does not import module 'userpkg_acts.acts'" in err
    assert "--import userpkg_acts.acts" in err and len(err.strip().splitlines()) == 1
    code, stdout, err = run_cli(capsys, "evaluate", model_file, "--import", user_module)
    assert code == 0, err
    code, stdout, err = run_cli(capsys, "evaluate", model_file, "--import", "nosuchmodule_xyz")
    assert code == 4 and "cannot import --import nosuchmodule_xyz" in err
    # kvt export loads it the same way; the artifact holds the traced function, not the module
    for name in ("userpkg_acts.acts", "userpkg_acts"):
        sys.modules.pop(name, None)
    code, stdout, err = run_cli(capsys, "export", model_file, "--format", "onnx")
    assert code == 4 and "--import userpkg_acts.acts" in err and not (out / "model.onnx").exists()
    code, stdout, err = run_cli(capsys, "export", model_file, "--format", "onnx",
                                "--import", user_module, "--check-images", "60")
    assert code == 0 and "top-1 agreement 60/60 (100.00%)" in stdout, err
