"""--model module.path:function: a user's builder, its options, and what it must return."""

import hashlib
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

from kvt.errors import ModelError
from kvt.models import build_model, check_model, check_model_name
from kvt.models import user
from kvt.models.flops import keras_flops

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "resnet_small.py"

BUILDERS = """
import keras
from keras import layers


def small(input_shape, classes):
    inputs = keras.Input(input_shape)
    x = layers.Flatten()(inputs)
    return keras.Model(inputs, layers.Dense(classes, activation="softmax")(x))


def with_options(input_shape, classes, activation="relu", native_ops=False):
    inputs = keras.Input(input_shape)
    x = layers.Flatten()(inputs)
    x = layers.Dense(8, activation=activation)(x)
    model = keras.Model(inputs, layers.Dense(classes, activation="softmax")(x))
    model.seen = {"activation": activation, "native_ops": native_ops}
    return model


def everything(input_shape, classes, **options):
    model = small(input_shape, classes)
    model.seen = options
    return model


def no_model(input_shape, classes):
    return None


def ten_classes(input_shape, classes):
    return small(input_shape, 10)


def logits(input_shape, classes):
    inputs = keras.Input(input_shape)
    return keras.Model(inputs, layers.Dense(classes)(layers.Flatten()(inputs)))


def raises(input_shape, classes):
    raise ValueError("width must be even")


@keras.saving.register_keras_serializable(package="userpkg")
class Scale(layers.Layer):
    def __init__(self, factor=2.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor
        self.w = self.add_weight(shape=(), initializer="ones")

    def call(self, x):
        return x * self.factor * self.w

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


def own_layer(input_shape, classes):
    inputs = keras.Input(input_shape)
    x = Scale()(layers.Flatten()(inputs))
    return keras.Model(inputs, layers.Dense(classes, activation="softmax")(x))


NOT_A_FUNCTION = 3
"""


@pytest.fixture
def builders(tmp_path, monkeypatch):
    pkg = tmp_path / "userpkg_models"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "nets.py").write_text(textwrap.dedent(BUILDERS))
    (pkg / "broken.py").write_text("import nosuchthing_xyz\ndef build(s, c): pass\n")
    (pkg / "syntax.py").write_text("def build(s, c):\n    return (\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "userpkg_models"
    for name in [m for m in sys.modules if m.startswith("userpkg_models")]:
        sys.modules.pop(name, None)


def test_a_builder_is_called_with_the_shape_and_classes(builders):
    model = build_model(f"{builders}.nets:small", "keras", (8, 8, 1), 7, "relu")
    assert model.input_shape == (None, 8, 8, 1) and model.output_shape == (None, 7)


def test_options_are_passed_only_when_the_builder_takes_them(builders):
    model = build_model(f"{builders}.nets:with_options", "keras", (8, 8, 1), 3, "gelu",
                        native_ops=True)
    assert model.seen == {"activation": "gelu", "native_ops": True}
    model = build_model(f"{builders}.nets:everything", "keras", (8, 8, 1), 3, "relu")
    assert model.seen == {"activation": "relu", "native_ops": False}
    # The defaults are accepted by a builder that takes no options...
    build_model(f"{builders}.nets:small", "keras", (8, 8, 1), 3, "relu")
    # ...anything else is refused with the reason, not dropped.
    with pytest.raises(ModelError, match=r"--activation gelu cannot be applied: "
                                         r"userpkg_models.nets:small takes no 'activation'"):
        check_model(f"{builders}.nets:small", "keras", "gelu")
    with pytest.raises(ModelError, match="--native-ops cannot be applied.*takes no 'native_ops'"):
        build_model(f"{builders}.nets:small", "keras", (8, 8, 1), 3, "relu", native_ops=True)


@pytest.mark.parametrize("spec, words", [
    ("userpkg_models.broken:build", "module 'userpkg_models.broken' does not import "
                                    "(ModuleNotFoundError: No module named 'nosuchthing_xyz')"),
    ("userpkg_models.syntax:build", "module 'userpkg_models.syntax' does not import "
                                    "(SyntaxError"),
    ("userpkg_models.nope:build", "module 'userpkg_models.nope' does not import"),
    ("userpkg_models.nets:missing", "has no function 'missing'"),
    ("userpkg_models.nets:NOT_A_FUNCTION", "NOT_A_FUNCTION is not a function"),
    ("userpkg_models.nets:no_model", "returned NoneType, not a Keras model"),
    ("userpkg_models.nets:ten_classes", "output has shape (None, 10), but the dataset has "
                                        "3 classes"),
    ("userpkg_models.nets:logits", "ends in a linear layer"),
    ("userpkg_models.nets:raises", "failed to build a model for input (8, 8, 1) and 3 "
                                   "classes (ValueError: width must be even)"),
    ("userpkg_models/nets.txt:build", "is not a .py file"),
    ("no/such/file.py:build", "does not exist"),
])
def test_bad_builders_are_one_line_model_errors(builders, spec, words):
    with pytest.raises(ModelError) as info:
        build_model(spec, "keras", (8, 8, 1), 3, "relu")
    assert words in str(info.value) and "\n" not in str(info.value)


def test_a_builder_is_not_given_to_the_tf_api(builders):
    with pytest.raises(ModelError, match="--api tf picks kvt's tf.keras variant"):
        check_model(f"{builders}.nets:small", "tf")


def test_the_static_check_finds_what_the_runs_would_not(builders):
    check_model_name(f"{builders}.nets:small", "keras")  # nothing imported
    assert f"{builders}.nets" not in sys.modules
    with pytest.raises(ModelError, match="cannot import module 'userpkg_models.nope'"):
        check_model_name(f"{builders}.nope:build", "keras")
    with pytest.raises(ModelError, match="defines no 'missing'"):
        check_model_name(f"{builders}.nets:missing", "keras")
    with pytest.raises(ModelError, match="does not import"):
        check_model_name(f"{builders}.syntax:build", "keras")
    with pytest.raises(ModelError, match="unknown model 'resnet'"):
        check_model_name("resnet", "keras")


def test_a_file_path_is_recorded_as_its_module_path(tmp_path, monkeypatch):
    monkeypatch.chdir(EXAMPLE.parents[1])
    assert user.import_path("examples/resnet_small.py:build") == "examples.resnet_small:build"
    elsewhere = tmp_path / "mynet.py"
    elsewhere.write_text("def build(shape, classes): pass\n")
    assert user.import_path(f"{elsewhere}:build") == "mynet:build"
    user.resolve("examples/resnet_small.py:build")
    record = user.describe("examples/resnet_small.py:build")
    assert record == {"import": "examples.resnet_small:build", "file": "examples/resnet_small.py",
                      "sha256": hashlib.sha256(EXAMPLE.read_bytes()).hexdigest()}


def test_the_example_builds_counts_its_flops_and_takes_an_activation(monkeypatch):
    monkeypatch.chdir(EXAMPLE.parents[1])
    model = build_model("examples.resnet_small:build", "keras", (28, 28, 1), 10, "swish")
    assert model.output_shape == (None, 10)
    forward, uncounted = keras_flops(model)
    assert uncounted == [] and forward > 0
    assert any(getattr(layer, "activation", None) is keras.activations.swish
               for layer in model.layers)


def test_what_cannot_be_counted_is_named(builders):
    model = build_model(f"{builders}.nets:own_layer", "keras", (4, 4, 1), 3, "relu")
    forward, uncounted = keras_flops(model)
    assert uncounted == ["scale (Scale)"]
    # The dense layer is still counted: 16 inputs to 3 outputs.
    assert forward >= 2 * 16 * 3


def test_a_model_of_its_own_layers_says_which_import_to_pass(builders, tmp_path):
    from kvt.saving import load_model, save_model

    model = build_model(f"{builders}.nets:own_layer", "keras", (4, 4, 1), 3, "relu")
    path = save_model(model, tmp_path / "m.keras",
                      {"model_source": {"import": f"{builders}.nets:own_layer"}})
    # As in a fresh process: the module's layer is not registered.
    registered = keras.saving.get_custom_objects()
    saved = registered.pop("userpkg>Scale")
    try:
        with pytest.raises(ModelError, match=r"uses layers of userpkg_models.nets, the module of "
                                             r"its builder: pass --import userpkg_models.nets"):
            load_model(path)
    finally:
        registered["userpkg>Scale"] = saved
    loaded, meta = load_model(path, imports=[f"{builders}.nets"])
    x = np.ones((2, 4, 4, 1), "float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-6)
