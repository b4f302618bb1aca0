"""Serializable custom layers.

Every layer here is registered with `keras.saving.register_keras_serializable` under the
package name "kvt", so a model that uses it saves to `.keras` and loads back with
`safe_mode=True` once `kvt.layers` is imported (kvt's loaders do that).
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="kvt")
class CReLU(keras.layers.Layer):
    """Concatenated ReLU: `concat([relu(x), relu(-x)], axis)`.

    Keeps the negative half of the signal as separate channels, so the output has
    twice the input's channels along `axis`. Written with `keras.ops`, so it runs on
    every backend; it computes what TensorFlow's `tf.nn.crelu` computes.

    Example:

    >>> layer = CReLU()
    >>> layer(np.array([[-1.0, 2.0]]))  # [[0., 2., 1., 0.]]

    Args:
        axis: the axis to concatenate along. Defaults to `-1` (channels last).
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.
    """

    def __init__(self, axis: int = -1, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(axis, int) or isinstance(axis, bool):
            raise ValueError(f"`axis` must be an integer. Received: axis={axis}")
        self.axis = axis
        self.supports_masking = True

    def call(self, inputs):
        return ops.concatenate([ops.relu(inputs), ops.relu(-inputs)], axis=self.axis)

    def compute_output_shape(self, input_shape):
        return crelu_output_shape(input_shape, self.axis)

    def get_config(self):
        config = super().get_config()
        config.update({"axis": self.axis})
        return config


def crelu_output_shape(input_shape, axis: int):
    """The input shape with the `axis` dimension doubled (None stays None)."""
    shape = list(input_shape)
    if shape[axis] is not None:
        shape[axis] *= 2
    return tuple(shape)
