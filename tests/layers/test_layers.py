import keras
import numpy as np
import pytest
import tensorflow as tf

from kvt.layers import CReLU
from kvt.layers.tf_crelu import TFCReLU


@pytest.fixture
def x():
    return np.random.default_rng(0).normal(size=(4, 5, 5, 3)).astype("float32")


@pytest.mark.parametrize("layer_cls", [CReLU, TFCReLU])
def test_crelu_matches_tensorflow_op_exactly(layer_cls, x):
    out = keras.ops.convert_to_numpy(layer_cls()(x))
    np.testing.assert_array_equal(out, tf.nn.crelu(x).numpy())
    assert out.shape == (4, 5, 5, 6)
    assert layer_cls().compute_output_shape((None, 5, 5, 3)) == (None, 5, 5, 6)


def test_portable_and_tensorflow_crelu_gradients_agree(x):
    xt = tf.constant(x)
    grads = []
    for layer in (CReLU(), TFCReLU()):
        with tf.GradientTape() as tape:
            tape.watch(xt)
            y = tf.reduce_sum(layer(xt) * tf.range(6, dtype=tf.float32))
        grads.append(tape.gradient(y, xt).numpy())
    np.testing.assert_array_equal(grads[0], grads[1])


@pytest.mark.parametrize("layer_cls", [CReLU, TFCReLU])
def test_config_round_trip_and_validation(layer_cls):
    layer = layer_cls(axis=1, name="c")
    again = layer_cls.from_config(layer.get_config())
    assert again.axis == 1 and again.name == "c"
    with pytest.raises(ValueError, match="Received: axis=x"):
        layer_cls(axis="x")


@pytest.mark.parametrize("layer_cls", [CReLU, TFCReLU])
def test_model_with_crelu_reloads_in_safe_mode(tmp_path, layer_cls, x):
    model = keras.Sequential([keras.Input((5, 5, 3)), keras.layers.Conv2D(2, 3), layer_cls(),
                              keras.layers.Flatten(), keras.layers.Dense(3)])
    path = tmp_path / "m.keras"
    model.save(path)
    again = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(again.layers[1], layer_cls)
    np.testing.assert_array_equal(again.predict(x, verbose=0), model.predict(x, verbose=0))


@pytest.mark.parametrize("name", ["relu", "elu", "gelu", "swish"])
def test_native_activation_matches_keras_activation(name, x):
    from kvt.layers import NativeActivation

    native = keras.ops.convert_to_numpy(NativeActivation(name)(x))
    portable = keras.ops.convert_to_numpy(keras.layers.Activation(name)(x))
    np.testing.assert_allclose(native, portable, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="Received: activation=tanh"):
        NativeActivation("tanh")


def test_native_crelu_is_tf_nn_crelu(x):
    out = keras.ops.convert_to_numpy(CReLU(native=True)(x))
    np.testing.assert_array_equal(out, tf.nn.crelu(x).numpy())
    assert CReLU.from_config(CReLU(native=True).get_config()).native is True
