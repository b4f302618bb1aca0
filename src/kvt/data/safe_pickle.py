"""A pickle reader that accepts plain data only.

CIFAR-10's python version is a set of pickles. A pickle can name any callable and have
it called on load, so a file from an untrusted place could run code. This unpickler
resolves only the handful of globals that NumPy arrays of numbers need; anything else
(`os.system`, `builtins.eval`, an object array, a class) is refused before it runs.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

import numpy as np

from kvt.errors import DataError


class Refused(pickle.UnpicklingError):
    """The pickle asks for something that is not plain data."""


def _checked_dtype(*args: Any, **kwargs: Any) -> np.dtype:
    dtype = np.dtype(*args, **kwargs)
    if dtype.hasobject or dtype.kind not in "biuf":
        raise Refused(f"dtype {dtype} is not plain numeric data")
    return dtype


def _reconstruct(cls: Any, *args: Any) -> np.ndarray:
    if cls is not np.ndarray:
        raise Refused(f"array subclass {cls!r} is not allowed")
    return np.ndarray.__new__(np.ndarray, *args)


def _frombuffer(buffer: Any, dtype: Any, shape: Any, order: str) -> np.ndarray:
    # NumPy's reduction for pickle protocol 5.
    array = np.frombuffer(buffer, dtype=_checked_dtype(dtype))
    return array.reshape(shape, order=order).copy()


def _encode(text: str, encoding: str = "latin1") -> bytes:
    # Python 3 writes bytes as _codecs.encode(str, "latin1") under pickle protocol 2.
    if not isinstance(text, str) or encoding != "latin1":
        raise Refused("_codecs.encode is allowed only for latin1 strings")
    return text.encode("latin1")


_ALLOWED = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _checked_dtype,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("_codecs", "encode"): _encode,
}


class _PlainDataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise Refused(
                f"it asks for {module}.{name}, and only plain arrays, lists, numbers, "
                f"bytes and strings are accepted"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise Refused("persistent ids are not allowed")


def loads(data: bytes, source: str) -> Any:
    """Unpickles `data` (Python 2 pickles included), refusing anything but plain data.

    Raises `DataError` naming `source` if the pickle is corrupt or unsafe.
    """
    try:
        return _PlainDataUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Refused as e:
        raise DataError(
            f"refused to read {source}: {e}. Use the official CIFAR-10 files from a "
            f"trusted source"
        ) from e
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            OverflowError, MemoryError, RecursionError, UnicodeError) as e:
        raise DataError(
            f"{source} is not a readable pickle ({type(e).__name__}: {e}); the file is "
            f"corrupt or truncated: download it again"
        ) from e
