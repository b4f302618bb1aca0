"""Model families, registered by name and API.

The tutorial's driver code keeps working::

    from kvt.models import MiniVGGNetKeras, MiniVGGNetTF
    model = MiniVGGNetTF.build(width=32, height=32, depth=3, classes=10)

Importing this package imports no framework; each class is imported (with Keras or
TensorFlow) on first access.
"""

from __future__ import annotations

from kvt.models.registry import get_model, list_models, register_model

__all__ = ["MiniVGGNetKeras", "MiniVGGNetTF", "get_model", "list_models", "register_model",
           "build_model"]

def build_model(name: str, api: str, input_shape, num_classes: int, activation: str,
                native_ops: bool = False):
    """Builds the registered family `name` for `api` (uncompiled)."""
    from kvt.config import MIN_IMAGE_SIDE, check_activation
    from kvt.errors import DataError

    check_activation(activation)
    height, width, depth = input_shape
    if min(height, width) < MIN_IMAGE_SIDE:
        raise DataError(
            f"the images are {width}x{height} but {name} needs at least "
            f"{MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} (it halves them twice with 2x2 pooling): "
            f"pass --image-size {MIN_IMAGE_SIDE} or more")
    return get_model(name, api).build(width=width, height=height, depth=depth,
                                      classes=num_classes, activation=activation,
                                      native_ops=native_ops)


def __getattr__(attr: str):
    if attr == "MiniVGGNetKeras":
        from kvt.models.minivggnet import MiniVGGNetKeras

        return MiniVGGNetKeras
    if attr == "MiniVGGNetTF":
        from kvt.models.minivggnet_tf import MiniVGGNetTF

        return MiniVGGNetTF
    raise AttributeError(f"module 'kvt.models' has no attribute {attr!r}")
