"""Model families, registered by name and API.

One file per family; importing this package imports each, and each registers its
classes with `register_model` (timm style), so a new family needs only its file and one
import line here. Importing the package imports no framework: a family's `build()`
imports Keras (or TensorFlow) when it is called. The tutorial's driver code keeps
working::

    from kvt.models import MiniVGGNetKeras, MiniVGGNetTF
    model = MiniVGGNetTF.build(width=32, height=32, depth=3, classes=10)
"""

from __future__ import annotations

import contextlib
from typing import Iterator

# Each family module registers its classes as it is imported.
from kvt.models.minivggnet import MiniVGGNetKeras, MiniVGGNetTF
from kvt.models.quicknet import QuickNetKeras, QuickNetTF
from kvt.models import user
from kvt.models.registry import get_model, list_models, register_model
from kvt.models.user import is_user_model

__all__ = ["MiniVGGNetKeras", "MiniVGGNetTF", "QuickNetKeras", "QuickNetTF", "get_model",
           "list_models", "register_model", "build_model", "check_model",
           "check_model_name", "check_image_size", "min_side", "BUILTIN_MODELS"]

# The families registered above, for --help (known without importing a framework).
BUILTIN_MODELS = tuple(list_models(api=None))


def build_model(name: str, api: str, input_shape, num_classes: int, activation: str,
                native_ops: bool = False, precision: str = "float32"):
    """Builds the registered family `name` for `api` (uncompiled), its layers computing
    in `precision` (`kvt.config.PRECISIONS`; the output layer always in float32)."""
    from kvt.config import check_activation, refuse
    from kvt.errors import DataError

    check_activation(activation)
    if is_user_model(name):
        with precision_policy(precision):
            model = user.build(name, api, input_shape, num_classes, activation, native_ops)
        if precision != "float32":
            model.layers[-1].dtype_policy = "float32"  # as below
        return model
    height, width, depth = input_shape
    family = get_model(name, api)
    side = family.MIN_SIDE
    if min(height, width) < side:
        raise refuse(DataError, lambda n: (
            f"the images are {width}x{height} but {name} needs at least {side}x{side} "
            f"({_halvings(name, side)}): set {n('image_size')} {side} or more"))
    with precision_policy(precision):
        model = family.build(width=width, height=height, depth=depth, classes=num_classes,
                             activation=activation, native_ops=native_ops)
    if precision != "float32":
        # The softmax in float32, so that probabilities and the loss keep float32's
        # range and resolution (Keras' advice for mixed precision).
        model.layers[-1].dtype_policy = "float32"
    return model


def min_side(name: str, api: str = "keras") -> int | None:
    """The smallest image side family `name` can take (its `MIN_SIDE`: what its poolings
    leave at least one pixel of); None for a user's builder, whose build reports its own."""
    return None if is_user_model(name) else get_model(name, api).MIN_SIDE


def check_image_size(name: str, api: str, image_size: int | None) -> None:
    """Raises `UsageError` naming the family when `image_size` is below its `min_side`
    (`flag_message` names the flag, as `TrainConfig`'s errors do)."""
    from kvt.config import refuse
    from kvt.errors import UsageError

    side = None if image_size is None else min_side(name, api)
    if side is not None and image_size < side:
        raise refuse(UsageError, lambda n: f"{n('image_size')} must be at least {side} for "
                                           f"{name} ({_halvings(name, side)}), got {image_size}")


def _halvings(name: str, side: int) -> str:
    """Why `side` is the least: kvt's families pool 2x2, so MIN_SIDE is 2 ** poolings."""
    times = side.bit_length() - 1
    if side != 2 ** times:
        return f"{name}'s layers leave nothing of a smaller image"
    words = {1: "once", 2: "twice", 3: "three times"}.get(times, f"{times} times")
    return f"{name} halves the image {words} with 2x2 pooling"


def check_model(name: str, api: str, activation: str = "relu", native_ops: bool = False) -> None:
    """Refuses (ModelError) an unknown family, or a user's builder that does not import,
    is missing or cannot take the options asked for, before any data is loaded."""
    if is_user_model(name):
        user.check(name, api, activation, native_ops)
    else:
        get_model(name, api)


def check_model_name(name: str, api: str) -> None:
    """`check_model` without importing anything of the user's, nor a framework: a
    registered family, or a builder whose module's source defines the function. For the
    parent of a sweep or bench, whose runs import and call it."""
    if is_user_model(name):
        user.check_spec(name)
        if api != "keras":
            user.check(name, api, "relu", False)  # refuses the API before importing
    else:
        get_model(name, api)


@contextlib.contextmanager
def precision_policy(precision: str) -> Iterator[None]:
    """Layers built inside compute in `precision` ("bf16": Keras' `mixed_bfloat16`,
    variables stay float32); the previous global policy comes back afterwards."""
    import keras

    previous = keras.mixed_precision.global_policy()
    if precision == "bf16":
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)
