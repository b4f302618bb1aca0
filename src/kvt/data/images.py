"""Decoding image files into uint8 arrays: the one decoder of training data and predict.

Whatever Pillow opens becomes the 8-bit picture a person sees in an image viewer:
EXIF orientation applied, transparency composited over white, 16-bit samples scaled
(65535 -> 255, never clipped), palettes and CMYK/YCbCr turned into RGB. Sample formats
whose meaning kvt cannot know are refused with one line instead of guessed.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from kvt.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# Pillow warns (two lines on stderr) about images between its pixel limit and twice that,
# and refuses larger ones (DecompressionBombError, one line from load_image). The ones it
# only warns about are decoded and resized like any other: nothing for the user to do. A
# process-wide filter, as images are decoded on threads, where catch_warnings is unsafe.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
# Modes Pillow turns into 8-bit RGB/L by itself, without losing what a viewer shows.
EIGHT_BIT = ("1", "L", "P", "RGB", "RGBX", "CMYK", "YCbCr", "LAB", "HSV")
SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")
BACKGROUND = (255, 255, 255)  # what transparent pixels show through, as in a browser


def is_image_file(name: str) -> bool:
    """Whether a file name (not a path) is a PNG/JPEG kvt reads; hidden files are not."""
    return name.lower().endswith(IMAGE_SUFFIXES) and not name.startswith(".")


def find_images(folder: str | Path) -> list[Path]:
    """The image files under `folder` and its subfolders (hidden ones skipped), sorted."""
    found = []
    for parent, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(parent) / f for f in sorted(files) if is_image_file(f)]
    return found


def load_image(path: str | Path, size: int | None = None, channels: int = 3) -> np.ndarray:
    """Reads one image file as a (height, width, channels) uint8 array.

    Args:
        path: the image file.
        size: resize to `size` x `size` if given. Defaults to `None` (keep the size).
        channels: 3 for RGB, 1 for grayscale. Defaults to `3`.
    """
    mode = {1: "L", 3: "RGB"}.get(channels)
    if mode is None:
        raise DataError(f"images with {channels} channels are not supported: use 1 or 3")
    if Path(path).is_dir():
        raise DataError(f"{path} is a folder, not an image file: pass image files, or the "
                        f"folder where a folder of images is accepted")
    try:
        with Image.open(path) as img:
            img = to_eight_bit(img, path).convert(mode)
            if size is not None and img.size != (size, size):
                img = img.resize((size, size), Image.Resampling.BILINEAR)
            array = np.asarray(img, dtype=np.uint8)
    except FileNotFoundError:
        raise DataError(f"image {path} does not exist: check the path") from None
    except PermissionError as e:
        raise DataError(f"cannot read image {path} ({e.strerror}): give kvt read permission "
                        f"or remove it") from None
    except Image.DecompressionBombError as e:
        raise DataError(f"image {path} is too large to decode safely ({e}): shrink it or "
                        f"remove it") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(
            f"cannot decode image {path} ({e}): the file is corrupt or in a format Pillow "
            f"does not read (kvt reads PNG, JPEG, WebP, GIF, TIFF, BMP and the others "
            f"Pillow opens); replace or remove it"
        ) from None
    return array.reshape(array.shape[0], array.shape[1], channels)


def to_eight_bit(img: Image.Image, path: str | Path = "image") -> Image.Image:
    """`img` as an 8-bit "L" or "RGB" image that looks as it does in a viewer."""
    img = ImageOps.exif_transpose(img)
    if img.mode in SIXTEEN_BIT or img.mode == "I":
        return Image.fromarray(_integer_samples(np.asarray(img), img.mode, path), "L")
    if img.mode == "F":
        return Image.fromarray(_float_samples(np.asarray(img), path), "L")
    if img.has_transparency_data:
        rgba = img.convert("RGBA")
        flat = Image.new("RGB", rgba.size, BACKGROUND)
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    if img.mode in EIGHT_BIT:
        return img if img.mode in ("L", "RGB") else img.convert("RGB")
    raise DataError(f"image {path} has Pillow mode {img.mode!r}, which kvt cannot turn into "
                    f"8-bit RGB: save it as an 8- or 16-bit PNG")


def _integer_samples(a: np.ndarray, mode: str, path) -> np.ndarray:
    """16-bit samples scaled to 8 bits. Mode "I" (32-bit) says nothing about its range:
    values within 0..255 are taken as 8-bit, within 0..65535 as 16-bit."""
    a = a.astype(np.int64)
    low, high = (int(a.min()), int(a.max())) if a.size else (0, 0)
    if mode == "I" and low >= 0 and high <= 255:
        return a.astype(np.uint8)
    if low < 0 or high > 65535:
        raise DataError(f"image {path} holds 32-bit integers from {low} to {high}, outside "
                        f"8- and 16-bit ranges: save it as an 8- or 16-bit PNG")
    return ((a * 255 + 32767) // 65535).astype(np.uint8)  # rounded a / 257


def _float_samples(a: np.ndarray, path) -> np.ndarray:
    """Float samples in 0..1 (the usual convention) or 0..255 as 8 bits."""
    finite = bool(np.isfinite(a).all())
    low, high = (float(a.min()), float(a.max())) if a.size and finite else (0.0, 0.0)
    if not finite or low < 0 or high > 255:
        shown = "non-finite values" if not finite else f"values from {low:g} to {high:g}"
        raise DataError(f"image {path} holds floating-point {shown}, outside 0..1 and "
                        f"0..255: save it as an 8- or 16-bit PNG")
    scale = 255.0 if high <= 1.0 else 1.0
    return np.clip(np.rint(a * scale), 0, 255).astype(np.uint8)


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """(N, H, W, C) uint8 images resized to `size` x `size` as `load_image` resizes a
    file (Pillow, bilinear), one or three channels kept."""
    if images.shape[1:3] == (size, size):
        return images
    out = np.empty((len(images), size, size, images.shape[3]), dtype=np.uint8)
    for i, image in enumerate(images):
        picture = Image.fromarray(image[..., 0] if image.shape[2] == 1 else image)
        resized = np.asarray(picture.resize((size, size), Image.Resampling.BILINEAR))
        out[i] = resized.reshape(size, size, -1)
    return out


def convert_channels(images: np.ndarray, channels: int) -> np.ndarray:
    """(N, H, W, C) uint8 images with `channels` channels, as Pillow's convert("RGB") and
    convert("L") make them: gray copied to R, G and B; or ITU-R 601-2 luma,
    L = R*299/1000 + G*587/1000 + B*114/1000, in Pillow's fixed point."""
    if images.shape[-1] == channels:
        return images
    if channels == 3:
        return np.ascontiguousarray(np.repeat(images, 3, axis=-1))
    rgb = images.astype(np.uint32)
    luma = (rgb[..., 0] * 19595 + rgb[..., 1] * 38470 + rgb[..., 2] * 7471 + 0x8000) >> 16
    return luma.astype(np.uint8)[..., np.newaxis]
