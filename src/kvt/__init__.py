"""kvt: train, evaluate, compare and benchmark small Keras CNNs on any backend.

Importing `kvt` imports no framework; pick the backend with `kvt.backends.select()`
(or `KERAS_BACKEND`) before importing `kvt.train` or `kvt.layers`, or before building a
model of `kvt.models` or calling the functions below, which import Keras when called.
"""

from kvt._version import __version__

__all__ = ["__version__", "keras2_decay", "load_model"]


def load_model(path, unsafe: bool = False, imports=()):
    """Loads a kvt model file (`model.keras`) in Keras' safe mode, every kvt layer
    registered, the tf.keras model's too (which needs the TensorFlow backend).

    Example:

    >>> model = kvt.load_model("runs/demo/model.keras")

    Args:
        path: the `.keras` file.
        unsafe: allow files that need arbitrary Python code (Lambda layers); only for
            files you trust. Defaults to `False`.
        imports: modules to import first, for `--activation module:function` models.
    """
    from kvt.saving import load_model as _load

    return _load(path, unsafe=unsafe, imports=list(imports))[0]


def keras2_decay(learning_rate: float, decay: float):
    """Keras 2's `SGD(lr=learning_rate, decay=decay)` schedule in Keras 3:
    lr_t = learning_rate / (1 + decay * t), t counting optimizer steps.

    Example:

    >>> opt = keras.optimizers.SGD(learning_rate=kvt.keras2_decay(0.01, 0.01 / 30))

    Args:
        learning_rate: the initial learning rate (Keras 2's `lr`).
        decay: Keras 2's per-step `decay`.
    """
    import keras

    return keras.optimizers.schedules.InverseTimeDecay(learning_rate, decay_steps=1,
                                                       decay_rate=decay)
