"""Portable serializable layers: CReLU, backend-native and user-function activations.

Each is registered with `keras.saving.register_keras_serializable` under the package
name "kvt" and runs on any backend; see `kvt.layers`.

- `CReLU`: concatenated ReLU, written with `keras.ops` (portable), or with the active
  backend's own ops when `native=True` (`tf.nn.crelu` on TensorFlow).
- `NativeActivation`: relu, elu, gelu or swish computed by the backend's own function
  (`tf.nn.relu`, `jax.nn.relu`, `torch.relu`, ...), for `--native-ops`.
- `FunctionActivation`: any importable function of one tensor, named "module:function",
  for `--activation mypkg.acts:swish2`.

The op is looked up when the layer is called, not when it is saved, so a model saved on
one backend runs the next backend's native op after it is loaded there.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import sys
from typing import Callable

import keras
from keras import ops

from kvt.config import FUNCTION_PATTERN


# --- backend-native ops ---------------------------------------------------------------

@functools.cache
def native_ops(backend: str) -> dict[str, Callable]:
    """The backend's own implementation of each built-in activation.

    "crelu" takes `(x, axis)`; the others take `x`. GELU is the exact (erf) form, as
    Keras' "gelu" is.
    """
    if backend == "tensorflow":
        import tensorflow as tf

        return {"relu": tf.nn.relu, "elu": tf.nn.elu, "swish": tf.nn.silu,
                "gelu": functools.partial(tf.nn.gelu, approximate=False),
                "crelu": lambda x, axis: tf.nn.crelu(x, axis=axis)}
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        return {"relu": jax.nn.relu, "elu": jax.nn.elu, "swish": jax.nn.silu,
                "gelu": functools.partial(jax.nn.gelu, approximate=False),
                "crelu": lambda x, axis: jnp.concatenate([jax.nn.relu(x), jax.nn.relu(-x)],
                                                         axis=axis)}
    if backend == "torch":
        import torch
        import torch.nn.functional as F

        return {"relu": torch.relu, "elu": F.elu, "swish": F.silu, "gelu": F.gelu,
                "crelu": lambda x, axis: torch.cat([torch.relu(x), torch.relu(-x)], dim=axis)}
    raise ValueError(f"no native ops for backend {backend!r}")


# --- layers -----------------------------------------------------------------------------

@keras.saving.register_keras_serializable(package="kvt")
class CReLU(keras.layers.Layer):
    """Concatenated ReLU: `concat([relu(x), relu(-x)], axis)`.

    Keeps the negative half of the signal as separate channels, so the output has
    twice the input's channels along `axis`. It computes what TensorFlow's
    `tf.nn.crelu` computes, on every backend.

    Example:

    >>> layer = CReLU()
    >>> layer(np.array([[-1.0, 2.0]]))  # [[0., 2., 1., 0.]]

    Args:
        axis: the axis to concatenate along. Defaults to `-1` (channels last).
        native: compute with the backend's own ops (`tf.nn.crelu` on TensorFlow,
            `jnp.concatenate` of `jax.nn.relu` on JAX, `torch.cat` of `torch.relu` on
            PyTorch) instead of `keras.ops`. Defaults to `False`.
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.
    """

    def __init__(self, axis: int = -1, native: bool = False, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(axis, int) or isinstance(axis, bool):
            raise ValueError(f"`axis` must be an integer. Received: axis={axis}")
        if not isinstance(native, bool):
            raise ValueError(f"`native` must be True or False. Received: native={native}")
        self.axis = axis
        self.native = native

    def call(self, inputs):
        if self.native:
            return native_ops(keras.backend.backend())["crelu"](inputs, self.axis)
        return ops.concatenate([ops.relu(inputs), ops.relu(-inputs)], axis=self.axis)

    def compute_output_shape(self, input_shape):
        return crelu_output_shape(input_shape, self.axis)

    def get_config(self):
        config = super().get_config()
        config.update({"axis": self.axis, "native": self.native})
        return config


@keras.saving.register_keras_serializable(package="kvt")
class NativeActivation(keras.layers.Layer):
    """An element-wise activation computed by the backend's own function.

    Example:

    >>> NativeActivation("gelu")  # tf.nn.gelu / jax.nn.gelu / torch.nn.functional.gelu

    Args:
        activation: one of "relu", "elu", "gelu", "swish". Defaults to `"relu"`.
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.
    """

    NAMES = ("relu", "elu", "gelu", "swish")

    def __init__(self, activation: str = "relu", **kwargs):
        super().__init__(**kwargs)
        if activation not in self.NAMES:
            raise ValueError(
                f"`activation` must be one of {self.NAMES}. Received: activation={activation}")
        self.activation = activation

    def call(self, inputs):
        return native_ops(keras.backend.backend())[self.activation](inputs)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"activation": self.activation})
        return config


@keras.saving.register_keras_serializable(package="kvt")
class FunctionActivation(keras.layers.Layer):
    """Wraps an importable function of one tensor, named "module:function".

    The function is found by name again when the model is loaded. In Keras' safe mode
    (the default for loading) a model file may only name functions of modules that are
    already imported in the process (kvt's `--import MODULE` does that), so loading a
    file never imports code its author chose.

    Example:

    >>> FunctionActivation("mypkg.acts:swish2")  # mypkg/acts.py: def swish2(x): ...

    Args:
        function: "module.path:function_name", the function taking and returning one
            tensor (it may change the channel count, as CReLU does).
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.
    """

    def __init__(self, function: str, **kwargs):
        super().__init__(**kwargs)
        self.function = function
        self._fn = resolve_function(function)

    def call(self, inputs):
        return self._fn(inputs)

    def get_config(self):
        config = super().get_config()
        config.update({"function": self.function})
        return config


class UnresolvableFunction(ValueError):
    """A "module:function" name that cannot (or, in safe mode, may not) be resolved."""


def resolve_function(spec: str) -> Callable:
    """The callable named by "module:attr.path"; raises UnresolvableFunction saying why not."""
    if not isinstance(spec, str) or not FUNCTION_PATTERN.match(spec):
        raise UnresolvableFunction(
            f"`function` must look like 'module.path:function'. Received: function={spec!r}")
    module_name, attr_path = spec.split(":", 1)
    if module_name not in sys.modules and _in_safe_mode():
        raise UnresolvableFunction(
            f"the model uses the function {spec}, and safe mode does not import module "
            f"{module_name!r} on a model file's say; import it first (kvt: --import "
            f"{module_name}) if you trust it")
    try:
        target = importlib.import_module(module_name)
    except ImportError as e:
        raise UnresolvableFunction(f"cannot import module {module_name!r} for {spec} ({e}): check that "
                         f"it is installed or on PYTHONPATH") from None
    for attr in attr_path.split("."):
        try:
            target = getattr(target, attr)
        except AttributeError:
            raise UnresolvableFunction(f"module {module_name!r} has no attribute {attr_path!r}") from None
    if not callable(target) or inspect.isclass(target):
        raise UnresolvableFunction(f"{spec} is not a function of one tensor")
    return target


def _in_safe_mode() -> bool:
    from keras.src.saving import serialization_lib

    return bool(serialization_lib.in_safe_mode())


def crelu_output_shape(input_shape, axis: int):
    """The input shape with the `axis` dimension doubled (None stays None)."""
    shape = list(input_shape)
    if shape[axis] is not None:
        shape[axis] *= 2
    return tuple(shape)


def hidden_activation(activation: str, native: bool = False, first: bool = False):
    """The layer for one hidden activation of a model.

    `first` marks the first conv's activation, which stays a ReLU when `activation` is
    "crelu" (the tutorial's placement).
    """
    if activation == "crelu":
        if first:
            return NativeActivation("relu") if native else keras.layers.Activation("relu")
        return CReLU(native=native)
    if activation in NativeActivation.NAMES:
        return NativeActivation(activation) if native else keras.layers.Activation(activation)
    try:
        return FunctionActivation(activation)
    except ValueError as e:
        from kvt.errors import ModelError

        raise ModelError(f"--activation {activation}: {e}") from None

