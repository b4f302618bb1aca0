"""TensorFlow's own op inside a Keras model: `TFCReLU`, the CReLU of `--api tf`.

The tutorial's `minivggnettf.py` made the move Keras users make when Keras lacks
something: drop down to the engine and use a TensorFlow op (`tf.nn.crelu`) inside the
Keras model. Here that op sits in `TFCReLU`, a registered, serializable layer (not a
Python lambda), so the saved model reloads in safe mode; `--api tf` models
(`kvt.models.minivggnet.build_tf`) use it. Imports TensorFlow: only the TensorFlow
backend can run it, and `kvt.layers` imports this module on that backend alone.
"""

from __future__ import annotations

import tensorflow as tf
from tensorflow import keras  # tf.keras: Keras 3 itself with TensorFlow >= 2.16

from kvt.layers.portable import crelu_output_shape


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
