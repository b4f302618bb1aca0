"""Model registry: families registered by name and API, looked up with a helpful error.

A model family is a class with a static `build(width, height, depth, classes,
activation)` that returns an uncompiled Keras model, as the tutorial's classes had.
"""

from __future__ import annotations

import importlib
from typing import Callable, TypeVar

from kvt.errors import ModelError

# Which module defines the models of each API. The "tf" module imports TensorFlow, so
# it is imported only when a tf model is asked for.
API_MODULES = {
    "keras": "kvt.models.minivggnet",
    "tf": "kvt.models.minivggnet_tf",
}

# The families the modules above register, named here so that --help can list them
# without importing a framework (a test keeps the two in step).
BUILTIN_MODELS = ("minivggnet",)

_REGISTRY: dict[tuple[str, str], type] = {}

T = TypeVar("T", bound=type)


def register_model(name: str, api: str) -> Callable[[T], T]:
    """Class decorator: makes `cls` buildable as `--model name --api api`."""
    def decorate(cls: T) -> T:
        if (name, api) in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered for api {api!r}")
        _REGISTRY[(name, api)] = cls
        return cls
    return decorate


def list_models(api: str = "keras") -> list[str]:
    _import_api(api)
    return sorted(name for name, a in _REGISTRY if a == api)


def get_model(name: str, api: str = "keras") -> type:
    """The family class for `name` under `api`; unknown names list the known ones."""
    _import_api(api)
    try:
        return _REGISTRY[(name, api)]
    except KeyError:
        raise ModelError(
            f"unknown model {name!r} for --api {api}: known models are "
            f"{', '.join(list_models(api))}"
        ) from None


def _import_api(api: str) -> None:
    if api not in API_MODULES:
        raise ModelError(f"unknown api {api!r}: choose one of {', '.join(API_MODULES)}")
    importlib.import_module(API_MODULES[api])
