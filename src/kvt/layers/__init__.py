"""kvt's serializable layers, registered under the package name "kvt".

A model that uses them saves to `.keras` and loads back with `safe_mode=True` once
`kvt.layers` is imported (kvt's loaders do that): Keras finds each layer by its
registered name ("kvt>CReLU"), not by the module that defined it.

- `portable`: `CReLU`, `NativeActivation`, `FunctionActivation` and `hidden_activation`,
  the layer for one hidden activation of a model; any backend.
- `tf_crelu`: `TFCReLU`, TensorFlow's `tf.nn.crelu` (the CReLU of `--api tf`). It imports
  TensorFlow, so it is imported (and registered) only when the backend is TensorFlow:
  the other backends cannot run it anyway.
"""

import keras

from kvt.layers.portable import (CReLU, FunctionActivation, NativeActivation,
                                 UnresolvableFunction, crelu_output_shape, hidden_activation,
                                 native_ops, resolve_function)

__all__ = ["CReLU", "FunctionActivation", "NativeActivation", "UnresolvableFunction",
           "crelu_output_shape", "hidden_activation", "native_ops", "resolve_function"]

# So that plain `keras.saving.load_model` reads a `--api tf` model file after
# `import kvt.layers`.
if keras.backend.backend() == "tensorflow":
    from kvt.layers.tf_crelu import TFCReLU  # noqa: F401

    __all__.append("TFCReLU")
