"""QuickNet: kvt's own small network for the fast recipe on a CPU.

    [Conv2D(c, 3x3) -> MaxPool 2x2 -> BN -> act -> Conv2D(c, 3x3) -> BN -> act]
        for c in WIDTHS -> GlobalMaxPool -> Dense classes -> softmax

Three blocks, each halving the image: the first convolution of a block runs at the
block's input size and the second after the pooling, at a quarter of the pixels (the
layout of Keller Jordan's airbench CIFAR-10 trainers). The convolutions have no bias
(a BatchNormalization follows each). It is the MiniVGGNet plan's kind of network, with
the same activations (`activation="crelu"` puts a CReLU everywhere but after the first
convolution, the tutorial's placement) and both APIs: `--api tf` computes CReLU with
TensorFlow's `tf.nn.crelu`. Importing this module imports no framework.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kvt.models.minivggnet import build_keras, build_tf, min_side
from kvt.models.registry import register_model

if TYPE_CHECKING:
    from keras import Model

WIDTHS = (32, 64, 128)
# The moving statistics' momentum: Keras' 0.99 averages over ~100 steps, longer than the
# few hundred steps of a fast run in which the weights change the most; at 0.99 the
# statistics lagged so far that a model at 74% training accuracy scored 51% on the test
# set.
BN_MOMENTUM = 0.9


def _block(width: int) -> tuple[tuple[Any, ...], ...]:
    return (("conv_nobias", width), ("pool",), ("bn", BN_MOMENTUM), ("act",),
            ("conv_nobias", width), ("bn", BN_MOMENTUM), ("act",))


PLAN: tuple[tuple[Any, ...], ...] = (
    *(layer for width in WIDTHS for layer in _block(width)),
    ("globalmaxpool",),
)


@register_model("quicknet", api="keras")
class QuickNetKeras:
    """QuickNet in Keras 3, for any backend."""

    MIN_SIDE = min_side(PLAN)  # three 2x2 poolings: 8

    @staticmethod
    def build(width: int, height: int, depth: int, classes: int,
              activation: str = "relu", native_ops: bool = False) -> Model:
        """Returns the uncompiled model; the arguments are `MiniVGGNetKeras.build`'s."""
        return build_keras("quicknet_keras", (height, width, depth), classes, activation,
                           native_ops, PLAN)


@register_model("quicknet", api="tf")
class QuickNetTF:
    """QuickNet in tf.keras, CReLU computed by `tf.nn.crelu`."""

    MIN_SIDE = min_side(PLAN)

    @staticmethod
    def build(width: int, height: int, depth: int, classes: int,
              activation: str = "crelu", native_ops: bool = False) -> Model:
        """Returns the uncompiled model; the arguments are `MiniVGGNetTF.build`'s."""
        return build_tf("quicknet_tf", (height, width, depth), classes, activation,
                        native_ops, PLAN)
