import keras
import numpy as np
import pytest

from kvt.errors import ModelError
from kvt.layers import CReLU
from kvt.models import (MiniVGGNetKeras, MiniVGGNetTF, build_model, get_model,
                        list_models)
from kvt.layers.tf_crelu import TFCReLU


def kinds(model):
    return [type(layer).__name__ for layer in model.layers]


def activations(model):
    return [layer for layer in model.layers
            if isinstance(layer, (CReLU, TFCReLU, keras.layers.Activation))][:-1]  # not softmax


def test_tutorial_driver_code_still_works():
    model = MiniVGGNetTF.build(width=32, height=32, depth=3, classes=10)
    assert model.name == "minivggnet_tf" and model.output_shape == (None, 10)
    model = MiniVGGNetKeras.build(width=32, height=32, depth=3, classes=10)
    assert model.name == "minivggnet_keras" and model.output_shape == (None, 10)


@pytest.mark.parametrize("cls", [MiniVGGNetKeras, MiniVGGNetTF])
def test_architecture_is_the_tutorials(cls):
    model = cls.build(width=32, height=32, depth=3, classes=10, activation="relu")
    k = kinds(model)
    assert k.count("Conv2D") == 4 and k.count("BatchNormalization") == 5
    assert k.count("MaxPooling2D") == 2 and k.count("Dropout") == 3 and k.count("Dense") == 2
    assert [layer.filters for layer in model.layers if hasattr(layer, "filters")] == [32, 32, 64, 64]
    assert [layer.rate for layer in model.layers if hasattr(layer, "rate")] == [0.25, 0.25, 0.5]
    # conv 3x3x3x32 .. dense 4096x512 .. 512x10, BN with 4 values per channel
    expected = (3 * 9 * 32 + 32) + (32 * 9 * 32 + 32) + (32 * 9 * 64 + 64) + (64 * 9 * 64 + 64) \
        + (8 * 8 * 64 * 512 + 512) + (512 * 10 + 10) + 4 * (32 + 32 + 64 + 64 + 512)
    assert model.count_params() == expected


@pytest.mark.parametrize("cls, crelu", [(MiniVGGNetKeras, CReLU), (MiniVGGNetTF, TFCReLU)])
def test_crelu_placement_is_every_hidden_activation_but_the_first(cls, crelu):
    model = cls.build(width=32, height=32, depth=3, classes=10, activation="crelu")
    acts = activations(model)
    assert len(acts) == 5
    assert isinstance(acts[0], keras.layers.Activation) and not isinstance(acts[0], crelu)
    assert all(isinstance(a, crelu) for a in acts[1:])
    # CReLU doubles the channels the next layer sees
    assert [layer.kernel.shape[2] for layer in model.layers if hasattr(layer, "filters")] == [3, 32, 64, 128]


def test_keras_and_tf_models_compute_the_same_function():
    x = np.random.default_rng(0).random((3, 32, 32, 3), dtype=np.float32)
    a = MiniVGGNetKeras.build(32, 32, 3, 10, activation="crelu")
    b = MiniVGGNetTF.build(32, 32, 3, 10, activation="crelu")
    b.set_weights(a.get_weights())
    np.testing.assert_allclose(a.predict(x, verbose=0), b.predict(x, verbose=0), rtol=1e-5, atol=1e-7)


def test_registry():
    assert list_models("keras") == list_models("tf") == ["minivggnet", "quicknet"]
    assert get_model("minivggnet", "tf") is MiniVGGNetTF
    with pytest.raises(ModelError, match="unknown model 'resnet' for --api keras: known models "
                                         "are minivggnet, quicknet"):
        get_model("resnet", "keras")
    with pytest.raises(ModelError, match="unknown activation 'tanhh'"):
        build_model("minivggnet", "keras", (8, 8, 1), 10, "tanhh")


def test_small_and_grayscale_inputs():
    model = build_model("minivggnet", "keras", (8, 8, 1), 4, "crelu")
    assert model.input_shape == (None, 8, 8, 1) and model.output_shape == (None, 4)


def test_help_lists_every_registered_model():
    from kvt.models import list_models
    from kvt.models import BUILTIN_MODELS

    for api in ("keras", "tf"):
        assert list_models(api) == sorted(BUILTIN_MODELS)
