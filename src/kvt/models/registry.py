"""Model registry: families registered by name and API, looked up with a helpful error.

A model family is a class with a static `build(width, height, depth, classes,
activation, native_ops)` that returns an uncompiled Keras model, as the tutorial's
classes had, and a `MIN_SIDE`: the smallest image side it can take (`kvt.models.min_side`
asks it, so the limit is the family's own); `@register_model(name, api)` makes it
buildable as `--model name --api api`. The `kvt.models` package imports every family module, so looking a model up
needs no import here, and no framework.
"""

from __future__ import annotations

from typing import Callable, TypeVar

from kvt.config import APIS
from kvt.errors import ModelError

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


def list_models(api: str | None = "keras") -> list[str]:
    """The families registered for `api`; for every API if `api` is None."""
    if api is not None:
        _check_api(api)
    return sorted({name for name, a in _REGISTRY if api is None or a == api})


def get_model(name: str, api: str = "keras") -> type:
    """The family class for `name` under `api`; unknown names list the known ones."""
    _check_api(api)
    try:
        return _REGISTRY[(name, api)]
    except KeyError:
        raise ModelError(
            f"unknown model {name!r} for --api {api}: known models are "
            f"{', '.join(list_models(api))}"
        ) from None


def _check_api(api: str) -> None:
    if api not in APIS:
        raise ModelError(f"unknown api {api!r}: choose one of {', '.join(APIS)}")
