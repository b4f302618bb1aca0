"""Decoding image files into uint8 arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from kvt.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def is_image_file(name: str) -> bool:
    """Whether a file name (not a path) is a PNG/JPEG kvt reads; hidden files are not."""
    return name.lower().endswith(IMAGE_SUFFIXES) and not name.startswith(".")


def load_image(path: str | Path, size: int | None = None, channels: int = 3) -> np.ndarray:
    """Reads one PNG/JPEG as a (height, width, channels) uint8 array.

    Args:
        path: the image file.
        size: resize to `size` x `size` if given. Defaults to `None` (keep the size).
        channels: 3 for RGB, 1 for grayscale. Defaults to `3`.
    """
    mode = {1: "L", 3: "RGB"}.get(channels)
    if mode is None:
        raise DataError(f"images with {channels} channels are not supported: use 1 or 3")
    try:
        with Image.open(path) as img:
            img = img.convert(mode)
            if size is not None and img.size != (size, size):
                img = img.resize((size, size), Image.Resampling.BILINEAR)
            array = np.asarray(img, dtype=np.uint8)
    except FileNotFoundError:
        raise DataError(f"image {path} does not exist: check the path") from None
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError,
            ValueError) as e:
        raise DataError(
            f"cannot decode image {path} ({e}): the file is corrupt or not a PNG/JPEG; "
            f"replace or remove it"
        ) from None
    return array.reshape(array.shape[0], array.shape[1], channels)
