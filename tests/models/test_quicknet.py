"""QuickNet, kvt's own small network for the CPU fast recipe: its layer plan, CReLU
placement, both APIs computing one function, its smallest input, its FLOPs."""

import keras
import numpy as np
import pytest

from kvt.bench import conv2d_flops, dense_flops, keras_flops
from kvt.errors import DataError
from kvt.layers import CReLU
from kvt.models import QuickNetKeras, QuickNetTF, build_model, get_model
from kvt.layers.tf_crelu import TFCReLU
from kvt.models.quicknet import BN_MOMENTUM


def convs(model):
    return [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]


@pytest.mark.parametrize("cls", [QuickNetKeras, QuickNetTF])
def test_plan_is_three_blocks_pooling_after_the_first_conv(cls):
    model = cls.build(width=32, height=32, depth=3, classes=10, activation="relu")
    assert get_model("quicknet", "tf" if cls is QuickNetTF else "keras") is cls
    kinds = [type(layer).__name__ for layer in model.layers]
    block = ["Conv2D", "MaxPooling2D", "BatchNormalization", "Activation",
             "Conv2D", "BatchNormalization", "Activation"]
    assert kinds == block * 3 + ["GlobalMaxPooling2D", "Dense", "Activation"]
    assert [c.filters for c in convs(model)] == [32, 32, 64, 64, 128, 128]
    assert not any(c.use_bias for c in convs(model))  # a BatchNormalization follows each
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert {bn.momentum for bn in bns} == {BN_MOMENTUM} and BN_MOMENTUM < 0.99
    weights = 9 * (3 * 32 + 32 * 32 + 32 * 64 + 64 * 64 + 64 * 128 + 128 * 128)
    assert model.count_params() == weights + 4 * 2 * (32 + 64 + 128) + 128 * 10 + 10


@pytest.mark.parametrize("cls, crelu", [(QuickNetKeras, CReLU), (QuickNetTF, TFCReLU)])
def test_crelu_everywhere_but_after_the_first_conv_doubling_what_follows_sees(cls, crelu):
    model = cls.build(width=32, height=32, depth=3, classes=10, activation="crelu")
    acts = [layer for layer in model.layers
            if isinstance(layer, (CReLU, TFCReLU, keras.layers.Activation))][:-1]
    assert len(acts) == 6 and not isinstance(acts[0], crelu)
    assert all(isinstance(a, crelu) for a in acts[1:])
    assert [c.kernel.shape[2] for c in convs(model)] == [3, 32, 64, 128, 128, 256]
    assert model.output_shape == (None, 10)


def test_keras_and_tf_quicknets_compute_the_same_function():
    x = np.random.default_rng(0).random((3, 32, 32, 3), dtype=np.float32)
    a = QuickNetKeras.build(32, 32, 3, 10, activation="crelu")
    b = QuickNetTF.build(32, 32, 3, 10, activation="crelu")
    b.set_weights(a.get_weights())
    np.testing.assert_allclose(a.predict(x, verbose=0), b.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-7)


def test_three_poolings_need_8_pixels_a_side():
    model = build_model("quicknet", "keras", (8, 8, 1), 4, "relu")
    assert model.output_shape == (None, 4)
    with pytest.raises(DataError, match=r"the images are 7x7 but quicknet needs at least "
                                        r"8x8 \(quicknet halves the image three times with "
                                        r"2x2 pooling\): set image_size 8 or more") as error:
        build_model("quicknet", "keras", (7, 7, 3), 10, "relu")
    assert error.value.flag_message.endswith(": set --image-size 8 or more")


def test_flops_by_hand():
    model = QuickNetKeras.build(32, 32, 3, 10)
    conv = sum(conv2d_flops(side, side, 3, 3, c_in, c_out, bias=False)
               for side, c_in, c_out in [(32, 3, 32), (16, 32, 32), (16, 32, 64), (8, 64, 64),
                                         (8, 64, 128), (4, 128, 128)])
    # after each block's pooling: a BN (4 per element) and an activation (1), twice
    pooled = [16 * 16 * 32, 8 * 8 * 64, 4 * 4 * 128]
    per_element = sum(2 * 5 * n for n in pooled) + sum(3 * n for n in pooled)  # 2x2 max: 3
    head = 4 * 4 * 128 + dense_flops(128, 10) + 3 * 10  # global max, dense, softmax
    assert keras_flops(model) == (conv + per_element + head, [])
