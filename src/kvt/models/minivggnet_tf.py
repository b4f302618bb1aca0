"""MiniVGGNet written against `tf.keras`, calling TensorFlow's own `tf.nn.crelu`.

The tutorial's `minivggnettf.py`: the same network as `minivggnet.py`, but its point is
the move Keras users make when Keras lacks something — drop down to the engine and use
a TensorFlow op inside the Keras model. Here that op sits in `TFCReLU`, a registered,
serializable layer (not a Python lambda), so the saved model reloads in safe mode.
Needs the TensorFlow backend.
"""

from __future__ import annotations

import tensorflow as tf
from tensorflow import keras  # tf.keras: Keras 3 itself with TensorFlow >= 2.16

from kvt.layers import crelu_output_shape, hidden_activation
from kvt.models.registry import register_model

layers = keras.layers


@keras.utils.register_keras_serializable(package="kvt")
class TFCReLU(keras.layers.Layer):
    """CReLU computed by TensorFlow: `tf.nn.crelu(x, axis)`.

    Example:

    >>> TFCReLU()(tf.constant([[-1.0, 2.0]]))  # [[0., 2., 1., 0.]]

    Args:
        axis: the axis to concatenate along. Defaults to `-1` (channels last).
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.
    """

    def __init__(self, axis: int = -1, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(axis, int) or isinstance(axis, bool):
            raise ValueError(f"`axis` must be an integer. Received: axis={axis}")
        self.axis = axis

    def call(self, inputs):
        return tf.nn.crelu(inputs, axis=self.axis)

    def compute_output_shape(self, input_shape):
        return crelu_output_shape(input_shape, self.axis)

    def get_config(self):
        config = super().get_config()
        config.update({"axis": self.axis})
        return config


@register_model("minivggnet", api="tf")
class MiniVGGNetTF:
    """The tutorial's tf.keras MiniVGGNet; `build()` keeps its signature."""

    @staticmethod
    def build(width: int, height: int, depth: int, classes: int,
              activation: str = "crelu", native_ops: bool = False) -> keras.Model:
        """Returns the uncompiled model for `height x width x depth` inputs.

        Args:
            width, height, depth: input image size and channels (channels last).
            classes: number of output classes.
            activation: hidden activation. Defaults to `"crelu"`, the tutorial's
                choice: `tf.nn.crelu` everywhere but after the first conv.
            native_ops: compute the other activations with TensorFlow's own ops too
                (`tf.nn.relu`, ...). Defaults to `False`.
        """

        def act(first: bool = False) -> layers.Layer:
            if activation == "crelu" and not first:
                return TFCReLU()
            return hidden_activation(activation, native=native_ops, first=first)

        model = keras.Sequential(name="minivggnet_tf")
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
