"""MiniVGGNet, the tutorial's network: one layer plan, built with Keras 3 or tf.keras.

    [Conv2D(32, 3x3, same) -> act -> BN] x2 -> MaxPool 2x2 -> Dropout .25 ->
    [Conv2D(64, 3x3, same) -> act -> BN] x2 -> MaxPool 2x2 -> Dropout .25 ->
    Flatten -> Dense 512 -> act -> BN -> Dropout .5 -> Dense classes -> softmax

`PLAN` is that stack, "act" marking where the hidden activations go. The tutorial wrote
it twice, and its two classes keep their names and `build()` signature:
`MiniVGGNetKeras` (its `minivggnetkeras.py`) in portable Keras 3, for any backend, and
`MiniVGGNetTF` (its `minivggnettf.py`) in `tf.keras`, whose CReLU is TensorFlow's own
`tf.nn.crelu` (`TFCReLU`, in `kvt.layers.tf_crelu`), so it needs the TensorFlow backend.
With `activation="crelu"` every hidden activation but the first conv's is a CReLU (the
tutorial's placement). Both register themselves as "minivggnet" when `kvt.models` is
imported; importing this module imports no framework: each `build()` imports its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from kvt.models.registry import register_model

if TYPE_CHECKING:
    from keras import Model

# The layers in order, each with its argument if it takes one; "act" is a hidden
# activation. Every BatchNormalization normalises the channel (last) axis.
PLAN: tuple[tuple[Any, ...], ...] = (
    # first CONV => ACT => BN, twice, then POOL
    ("conv", 32), ("act",), ("bn",),
    ("conv", 32), ("act",), ("bn",),
    ("pool",), ("dropout", 0.25),
    # second CONV => ACT => BN, twice, then POOL
    ("conv", 64), ("act",), ("bn",),
    ("conv", 64), ("act",), ("bn",),
    ("pool",), ("dropout", 0.25),
    # FC => ACT => BN, then the softmax classifier
    ("flatten",), ("dense", 512), ("act",), ("bn",), ("dropout", 0.5),
)


def build_plan(keras, name: str, input_shape: tuple[int, int, int], classes: int,
               act: Callable[[bool], Any], plan: tuple[tuple[Any, ...], ...] = PLAN) -> Model:
    """`plan` as a `keras.Sequential` named `name`, then Dense(classes) and softmax.

    Args:
        keras: the Keras to build with (`keras`, or `tensorflow.keras`).
        name: the model's name.
        input_shape: `(height, width, depth)`, channels last.
        classes: number of output classes.
        act: makes each hidden activation layer; called with `True` for the first.
        plan: the layers, as `PLAN`. Defaults to MiniVGGNet's. Besides `PLAN`'s kinds,
            "conv_nobias" (a 3x3 convolution without a bias, for one that a
            BatchNormalization follows), "globalmaxpool", and ("bn", momentum) for a
            BatchNormalization whose moving statistics move faster than Keras' 0.99.
    """
    layers = keras.layers
    make = {
        "conv": lambda filters: layers.Conv2D(filters, (3, 3), padding="same"),
        "conv_nobias": lambda filters: layers.Conv2D(filters, (3, 3), padding="same",
                                                     use_bias=False),
        "bn": lambda momentum=0.99: layers.BatchNormalization(axis=-1, momentum=momentum),
        "pool": lambda: layers.MaxPooling2D(pool_size=(2, 2)),
        "globalmaxpool": lambda: layers.GlobalMaxPooling2D(),
        "dropout": lambda rate: layers.Dropout(rate),
        "flatten": lambda: layers.Flatten(),
        "dense": lambda units: layers.Dense(units),
    }
    model = keras.Sequential(name=name)
    model.add(keras.Input(shape=input_shape))
    first = True
    for kind, *args in plan:
        if kind == "act":
            model.add(act(first))
            first = False
        else:
            model.add(make[kind](*args))
    model.add(layers.Dense(classes))
    model.add(layers.Activation("softmax"))
    return model


def min_side(plan: tuple[tuple[Any, ...], ...]) -> int:
    """The smallest image side that `plan`'s 2x2 poolings leave at least one pixel of."""
    return 2 ** sum(kind == "pool" for kind, *_ in plan)


def build_keras(name: str, input_shape: tuple[int, int, int], classes: int, activation: str,
                native_ops: bool, plan: tuple[tuple[Any, ...], ...] = PLAN) -> Model:
    """`plan` built with portable Keras 3 (`--api keras`), for any backend."""
    import keras

    from kvt.layers import hidden_activation

    def act(first: bool = False):
        return hidden_activation(activation, native=native_ops, first=first)

    return build_plan(keras, name, input_shape, classes, act, plan)


def build_tf(name: str, input_shape: tuple[int, int, int], classes: int, activation: str,
             native_ops: bool, plan: tuple[tuple[Any, ...], ...] = PLAN) -> Model:
    """`plan` built with tf.keras (`--api tf`): a CReLU is TensorFlow's `tf.nn.crelu`
    (`TFCReLU`), everywhere but the first activation."""
    from tensorflow import keras  # tf.keras: Keras 3 itself with TensorFlow >= 2.16

    from kvt.layers import hidden_activation
    from kvt.layers.tf_crelu import TFCReLU

    def act(first: bool = False):
        if activation == "crelu" and not first:
            return TFCReLU()
        return hidden_activation(activation, native=native_ops, first=first)

    return build_plan(keras, name, input_shape, classes, act, plan)


@register_model("minivggnet", api="keras")
class MiniVGGNetKeras:
    """The tutorial's MiniVGGNet in Keras 3; `build()` keeps its signature."""

    MIN_SIDE = min_side(PLAN)  # two 2x2 poolings: 4

    @staticmethod
    def build(width: int, height: int, depth: int, classes: int,
              activation: str = "relu", native_ops: bool = False) -> Model:
        """Returns the uncompiled model for `height x width x depth` inputs.

        Args:
            width, height, depth: input image size and channels (channels last).
            classes: number of output classes.
            activation: hidden activation. Defaults to `"relu"`; `"crelu"` uses the
                tutorial's placement; also "elu", "gelu", "swish" or "module:function".
            native_ops: use the backend's own ops for the built-in activations.
                Defaults to `False` (`keras.ops`).
        """
        return build_keras("minivggnet_keras", (height, width, depth), classes, activation,
                           native_ops)


@register_model("minivggnet", api="tf")
class MiniVGGNetTF:
    """The tutorial's tf.keras MiniVGGNet; `build()` keeps its signature."""

    MIN_SIDE = min_side(PLAN)

    @staticmethod
    def build(width: int, height: int, depth: int, classes: int,
              activation: str = "crelu", native_ops: bool = False) -> Model:
        """Returns the uncompiled model for `height x width x depth` inputs.

        Args:
            width, height, depth: input image size and channels (channels last).
            classes: number of output classes.
            activation: hidden activation. Defaults to `"crelu"`, the tutorial's
                choice: `tf.nn.crelu` everywhere but after the first conv.
            native_ops: compute the other activations with TensorFlow's own ops too
                (`tf.nn.relu`, ...). Defaults to `False`.
        """
        return build_tf("minivggnet_tf", (height, width, depth), classes, activation, native_ops)
