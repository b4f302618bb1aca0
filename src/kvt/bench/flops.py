"""FLOPs per image, counted from a built model's layers (Keras: `kvt.models.flops`) or
with forward hooks (torch.nn, here), by the convention written in `kvt.bench`."""

from __future__ import annotations

from kvt.models.flops import (TRAIN_FACTOR, conv2d_flops, dense_flops, keras_flops,
                              keras_layer_flops, size_of)

__all__ = ["TRAIN_FACTOR", "conv2d_flops", "dense_flops", "keras_flops", "keras_layer_flops",
           "torch_flops"]


def torch_flops(model, image) -> tuple[int, list[str]]:
    """`keras_flops` for a `torch.nn` model (NCHW), counted with forward hooks on its
    leaf modules while one image goes through."""
    import torch
    from torch import nn

    counts: list[int] = []
    uncounted: list[str] = []

    def hook(module, inputs, output):
        shape_in, shape_out = tuple(inputs[0].shape[1:]), tuple(output.shape[1:])
        out = size_of(shape_out)
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
            counts.append(out * (size_of(_pair(module.kernel_size)) - 1))
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
