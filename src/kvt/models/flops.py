"""FLOPs per image of a built Keras model, counted from its layers.

The convention (forward pass, one image; written out in `kvt.bench`, which reports it):
2 per multiply-add in Conv2D and Dense (plus the bias), 4 per element in
BatchNormalization, k-1 comparisons per pooled output, 3 per element in the softmax, 1
per element in any other activation; Dropout, Flatten, Reshape, Concatenate: 0. Training
counts `TRAIN_FACTOR` times the forward pass. Used by a run's summary.txt and by
`kvt bench`. Importing this module imports no framework.
"""

from __future__ import annotations

from typing import Any, Iterable

TRAIN_FACTOR = 3  # training FLOPs per image = 3 x forward


def conv2d_flops(h_out: int, w_out: int, k_h: int, k_w: int, c_in: int, c_out: int,
                 bias: bool = True, groups: int = 1) -> int:
    """Forward FLOPs of one image through a 2-D convolution (2 per multiply-add)."""
    flops = 2 * h_out * w_out * k_h * k_w * (c_in // groups) * c_out
    return flops + (h_out * w_out * c_out if bias else 0)


def dense_flops(n_in: int, n_out: int, bias: bool = True) -> int:
    """Forward FLOPs of one input vector through a dense layer."""
    return 2 * n_in * n_out + (n_out if bias else 0)


def size_of(shape: Iterable[Any]) -> int:
    """The number of elements of a tensor of `shape` (one image's, without the batch)."""
    n = 1
    for d in shape:
        n *= int(d)
    return n


def keras_layer_flops(layer) -> int | None:
    """Forward FLOPs per image of one built Keras layer; None if it has weights kvt does
    not know how to count (it is then left out, and named by `keras_flops`)."""
    import keras

    L = keras.layers
    if isinstance(layer, keras.Model):
        total, uncounted = keras_flops(layer)
        return None if uncounted else total  # a nested model is counted whole or named
    inputs = layer.input if not isinstance(layer, L.InputLayer) else None
    if isinstance(inputs, (list, tuple)):  # Add, Concatenate: the first input's shape
        inputs = inputs[0] if inputs else None
    in_shape = tuple(inputs.shape[1:]) if inputs is not None else ()
    out_shape = tuple(layer.output.shape[1:])
    out = size_of(out_shape)
    if isinstance(layer, L.Conv2D):
        channels_last = layer.data_format == "channels_last"
        c_in = in_shape[-1] if channels_last else in_shape[0]
        h_out, w_out = out_shape[:2] if channels_last else out_shape[1:]
        return conv2d_flops(h_out, w_out, *layer.kernel_size, c_in, layer.filters,
                            layer.use_bias, layer.groups)
    if isinstance(layer, L.Dense):
        return size_of(in_shape[:-1]) * dense_flops(in_shape[-1], layer.units, layer.use_bias)
    if isinstance(layer, L.BatchNormalization):
        return 4 * out
    if isinstance(layer, (L.MaxPooling2D, L.AveragePooling2D)):
        window = size_of(layer.pool_size)
        return out * (window - 1 if isinstance(layer, L.MaxPooling2D) else window)
    if isinstance(layer, (L.GlobalAveragePooling2D, L.GlobalMaxPooling2D)):
        return size_of(in_shape)
    if isinstance(layer, L.Softmax) or (
            isinstance(layer, L.Activation)
            and getattr(layer.activation, "__name__", "") == "softmax"):
        return 3 * out
    if isinstance(layer, (L.InputLayer, L.Dropout, L.Flatten, L.Reshape, L.Concatenate)):
        return 0
    if not layer.weights:  # an activation, an Add: elementwise
        return out
    return None


def keras_flops(model) -> tuple[int, list[str]]:
    """(forward FLOPs per image, names of the layers that could not be counted). A layer
    of a nested model is named "outer/inner"; what is not counted is left out of the total
    (a user's own layer with weights: kvt does not guess what it computes)."""
    import keras

    total, uncounted = 0, []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            inner, missing = keras_flops(layer)
            total += inner
            uncounted += [f"{layer.name}/{name}" for name in missing]
            continue
        f = keras_layer_flops(layer)
        if f is None:
            uncounted.append(f"{layer.name} ({type(layer).__name__})")
        else:
            total += f
    return total, uncounted
