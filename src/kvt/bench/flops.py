"""FLOPs per image, counted from a built model's layers (Keras) or with forward hooks
(torch.nn), by the convention written in `kvt.bench`."""

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


def _size(shape: Iterable[Any]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def keras_layer_flops(layer) -> int | None:
    """Forward FLOPs per image of one built Keras layer; None if it has weights kvt does
    not know how to count (it is then left out and named in the table's footer)."""
    import keras

    L = keras.layers
    if isinstance(layer, keras.Model):
        total = 0
        for inner in layer.layers:
            f = keras_layer_flops(inner)
            total += f or 0
        return total
    in_shape = tuple(layer.input.shape[1:]) if not isinstance(layer, L.InputLayer) else ()
    out_shape = tuple(layer.output.shape[1:])
    out = _size(out_shape)
    if isinstance(layer, L.Conv2D):
        channels_last = layer.data_format == "channels_last"
        c_in = in_shape[-1] if channels_last else in_shape[0]
        h_out, w_out = out_shape[:2] if channels_last else out_shape[1:]
        return conv2d_flops(h_out, w_out, *layer.kernel_size, c_in, layer.filters,
                            layer.use_bias, layer.groups)
    if isinstance(layer, L.Dense):
        return _size(in_shape[:-1]) * dense_flops(in_shape[-1], layer.units, layer.use_bias)
    if isinstance(layer, L.BatchNormalization):
        return 4 * out
    if isinstance(layer, (L.MaxPooling2D, L.AveragePooling2D)):
        window = _size(layer.pool_size)
        return out * (window - 1 if isinstance(layer, L.MaxPooling2D) else window)
    if isinstance(layer, (L.GlobalAveragePooling2D, L.GlobalMaxPooling2D)):
        return _size(in_shape)
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
    """(forward FLOPs per image, names of the layers that could not be counted)."""
    total, uncounted = 0, []
    for layer in model.layers:
        f = keras_layer_flops(layer)
        if f is None:
            uncounted.append(layer.name)
        else:
            total += f
    return total, uncounted


def torch_flops(model, image) -> tuple[int, list[str]]:
    """`keras_flops` for a `torch.nn` model (NCHW), counted with forward hooks on its
    leaf modules while one image goes through."""
    import torch
    from torch import nn

    counts: list[int] = []
    uncounted: list[str] = []

    def hook(module, inputs, output):
        shape_in, shape_out = tuple(inputs[0].shape[1:]), tuple(output.shape[1:])
        out = _size(shape_out)
        if isinstance(module, nn.Conv2d):
            counts.append(conv2d_flops(shape_out[1], shape_out[2], *module.kernel_size,
                                       shape_in[0], module.out_channels,
                                       module.bias is not None, module.groups))
        elif isinstance(module, nn.Linear):
            counts.append(dense_flops(module.in_features, module.out_features,
                                      module.bias is not None))
        elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            counts.append(4 * out)
        elif isinstance(module, nn.MaxPool2d):
            counts.append(out * (_size(_pair(module.kernel_size)) - 1))
        elif isinstance(module, nn.Softmax):
            counts.append(3 * out)
        elif isinstance(module, (nn.Dropout, nn.Flatten)):
            counts.append(0)
        elif not any(True for _ in module.parameters()):
            counts.append(out)
        else:
            uncounted.append(type(module).__name__)

    leaves = [m for m in model.modules() if not any(True for _ in m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        was_training = model.training
        model.eval()
        with torch.no_grad():
            model(image)
        model.train(was_training)
    finally:
        for h in handles:
            h.remove()
    return sum(counts), uncounted


def _pair(k) -> tuple[int, int]:
    return (k, k) if isinstance(k, int) else tuple(k)
