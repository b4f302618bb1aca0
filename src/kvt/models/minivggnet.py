"""MiniVGGNet written against the portable Keras 3 API (any backend).

The tutorial's `minivggnetkeras.py`:

    [Conv2D(32, 3x3, same) -> act -> BN] x2 -> MaxPool 2x2 -> Dropout .25 ->
    [Conv2D(64, 3x3, same) -> act -> BN] x2 -> MaxPool 2x2 -> Dropout .25 ->
    Flatten -> Dense 512 -> act -> BN -> Dropout .5 -> Dense classes -> softmax

With `activation="crelu"` every hidden activation but the first conv's is a CReLU
(the tutorial's placement), computed by `kvt.layers.CReLU` with `keras.ops`, or with
the backend's own ops when `native_ops=True`.
"""

from __future__ import annotations

import keras
from keras import layers

from kvt.layers import hidden_activation
from kvt.models.registry import register_model


@register_model("minivggnet", api="keras")
class MiniVGGNetKeras:
    """The tutorial's MiniVGGNet in Keras 3; `build()` keeps its signature."""

    @staticmethod
    def build(width: int, height: int, depth: int, classes: int,
              activation: str = "relu", native_ops: bool = False) -> keras.Model:
        """Returns the uncompiled model for `height x width x depth` inputs.

        Args:
            width, height, depth: input image size and channels (channels last).
            classes: number of output classes.
            activation: hidden activation. Defaults to `"relu"`; `"crelu"` uses the
                tutorial's placement; also "elu", "gelu", "swish" or "module:function".
            native_ops: use the backend's own ops for the built-in activations.
                Defaults to `False` (`keras.ops`).
        """

        def act(first: bool = False) -> layers.Layer:
            return hidden_activation(activation, native=native_ops, first=first)

        model = keras.Sequential(name="minivggnet_keras")
        model.add(keras.Input(shape=(height, width, depth)))
        # first CONV => ACT => BN, twice, then POOL
        model.add(layers.Conv2D(32, (3, 3), padding="same"))
        model.add(act(first=True))
        model.add(layers.BatchNormalization(axis=-1))
        model.add(layers.Conv2D(32, (3, 3), padding="same"))
        model.add(act())
        model.add(layers.BatchNormalization(axis=-1))
        model.add(layers.MaxPooling2D(pool_size=(2, 2)))
        model.add(layers.Dropout(0.25))
        # second CONV => ACT => BN, twice, then POOL
        model.add(layers.Conv2D(64, (3, 3), padding="same"))
        model.add(act())
        model.add(layers.BatchNormalization(axis=-1))
        model.add(layers.Conv2D(64, (3, 3), padding="same"))
        model.add(act())
        model.add(layers.BatchNormalization(axis=-1))
        model.add(layers.MaxPooling2D(pool_size=(2, 2)))
        model.add(layers.Dropout(0.25))
        # FC => ACT => BN, then the softmax classifier
        model.add(layers.Flatten())
        model.add(layers.Dense(512))
        model.add(act())
        model.add(layers.BatchNormalization())
        model.add(layers.Dropout(0.5))
        model.add(layers.Dense(classes))
        model.add(layers.Activation("softmax"))
        return model
