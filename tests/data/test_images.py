"""Every image mode Pillow opens decodes to the 8-bit picture a person sees, or is
refused with one line: each mode is generated here from an 8-bit original."""

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from kvt.data import load_dataset
from kvt.data.images import find_images, load_image
from kvt.errors import DataError

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (6, 5, 3), dtype=np.uint8)
GRAY = RNG.integers(0, 256, (6, 5), dtype=np.uint8)


def _sixteen(gray8: np.ndarray) -> np.ndarray:
    return gray8.astype(np.uint16) * 257  # the standard 8 -> 16 bit widening: 255 -> 65535


def png16(path, rgb8: np.ndarray):
    """A 16-bit-per-sample RGB PNG (Pillow cannot write one), written by hand."""
    h, w, _ = rgb8.shape
    rows = (_sixteen(rgb8).astype(">u2")).reshape(h, w * 3)
    raw = b"".join(b"\0" + row.tobytes() for row in rows)

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return path


def opaque(mode):
    return lambda: Image.fromarray(np.dstack([RGB, np.full(GRAY.shape, 255, np.uint8)]),
                                   "RGBA").convert(mode)


# mode -> (how to make it from the originals, file format, expected 8-bit picture,
# tolerance in grey levels: colour-space conversions round)
COLOUR = {
    "RGB": (lambda: Image.fromarray(RGB), "PNG", 0),
    "RGBA": (opaque("RGBA"), "PNG", 0),
    "P": (lambda: Image.fromarray(RGB).quantize(256, dither=Image.Dither.NONE), "PNG", None),
    "PA": (lambda: Image.fromarray(RGB).convert("PA"), "TIFF", None),
    "CMYK": (lambda: Image.fromarray(RGB).convert("CMYK"), "TIFF", 0),
    "YCbCr": (lambda: Image.fromarray(RGB).convert("YCbCr"), "TIFF", 3),
}
GREY = {
    "L": (lambda: Image.fromarray(GRAY), "PNG"),
    "LA": (lambda: Image.fromarray(np.dstack([GRAY, np.full_like(GRAY, 255)]), "LA"), "PNG"),
    "I;16": (lambda: Image.fromarray(_sixteen(GRAY)), "PNG"),
    "I;16B": (lambda: Image.frombytes("I;16B", GRAY.shape[::-1],
                                      _sixteen(GRAY).astype(">u2").tobytes()), "TIFF"),
    "I (16-bit values)": (lambda: Image.fromarray(_sixteen(GRAY).astype(np.int32)), "TIFF"),
    "I (8-bit values)": (lambda: Image.fromarray(GRAY.astype(np.int32)), "TIFF"),
    "F (0..1)": (lambda: Image.fromarray(GRAY.astype(np.float32) / 255), "TIFF"),
    "F (0..255)": (lambda: Image.fromarray(GRAY.astype(np.float32)), "TIFF"),
}


def _save(tmp_path, img, fmt):
    path = tmp_path / f"image.{fmt.lower()}"
    img.save(path, fmt)
    return path


@pytest.mark.parametrize("mode", COLOUR)
def test_colour_modes_decode_to_the_8_bit_original(tmp_path, mode):
    make, fmt, tolerance = COLOUR[mode]
    img = make()
    path = _save(tmp_path, img, fmt)
    got = load_image(path)
    # A palette image shows its palette's colours, whatever they are.
    expected = RGB if tolerance is not None else np.asarray(img.convert("RGB"))
    assert got.dtype == np.uint8 and got.shape == RGB.shape
    assert np.abs(got.astype(int) - expected).max() <= (tolerance or 0)


@pytest.mark.parametrize("mode", GREY)
def test_grey_and_high_depth_modes_decode_to_the_8_bit_original(tmp_path, mode):
    make, fmt = GREY[mode]
    img = make()
    assert img.mode == mode.split(" ")[0]
    path = _save(tmp_path, img, fmt)
    assert np.array_equal(load_image(path, channels=1)[..., 0], GRAY)
    assert np.array_equal(load_image(path), np.dstack([GRAY] * 3))


def test_sixteen_bit_rgb_png_is_scaled_not_clipped(tmp_path):
    path = png16(tmp_path / "rgb16.png", RGB)
    assert np.array_equal(load_image(path), RGB)


def test_sixteen_bit_extremes_scale_to_the_8_bit_range(tmp_path):
    path = tmp_path / "ramp.png"
    Image.fromarray(np.array([[0, 128, 257, 32896, 65535]], dtype=np.uint16)).save(path)
    assert load_image(path, channels=1)[0, :, 0].tolist() == [0, 0, 1, 128, 255]


def test_bilevel_image_is_black_and_white(tmp_path):
    path = _save(tmp_path, Image.fromarray(GRAY > 127), "PNG")
    assert set(np.unique(load_image(path))) <= {0, 255}
    assert np.array_equal(load_image(path, channels=1)[..., 0], np.where(GRAY > 127, 255, 0))


def test_transparency_shows_the_white_background(tmp_path):
    alpha = np.zeros(GRAY.shape, np.uint8)
    alpha[:, :2] = 255
    path = _save(tmp_path, Image.fromarray(np.dstack([RGB, alpha]), "RGBA"), "PNG")
    got = load_image(path)
    assert np.array_equal(got[:, :2], RGB[:, :2]) and (got[:, 2:] == 255).all()


def test_exif_orientation_is_applied(tmp_path):
    img = Image.fromarray(RGB)
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    path = tmp_path / "rotated.png"
    img.save(path, exif=exif)
    assert np.array_equal(load_image(path), np.rot90(RGB, k=-1))


@pytest.mark.parametrize("array, words", [
    (np.array([[-5, 70000]], dtype=np.int32), "32-bit integers from -5 to 70000"),
    (np.array([[0.0, 300.0]], dtype=np.float32), "floating-point values from 0 to 300"),
    (np.array([[0.0, np.nan]], dtype=np.float32), "floating-point non-finite values"),
], ids=["int32-range", "float-range", "float-nan"])
def test_samples_of_unknown_meaning_are_refused_in_one_line(tmp_path, array, words):
    path = _save(tmp_path, Image.fromarray(array), "TIFF")
    with pytest.raises(DataError, match=words) as e:
        load_image(path)
    assert "\n" not in str(e.value) and "8- or 16-bit PNG" in str(e.value)


def test_a_folder_is_not_called_a_corrupt_image(tmp_path):
    with pytest.raises(DataError, match="is a folder, not an image file"):
        load_image(tmp_path)


def test_training_folder_of_16_bit_pngs_matches_its_8_bit_copy(tmp_path):
    for depth, convert in (("8", lambda a: a), ("16", _sixteen)):
        for split in ("train", "test"):
            for c, label in enumerate(("a", "b")):
                folder = tmp_path / depth / split / label
                folder.mkdir(parents=True)
                Image.fromarray(convert(np.roll(GRAY, c))).save(folder / "0.png")
    eight, sixteen = load_dataset(str(tmp_path / "8")), load_dataset(str(tmp_path / "16"))
    assert np.array_equal(eight.x_train, sixteen.x_train)
    assert np.array_equal(eight.x_test, sixteen.x_test)


def test_find_images_walks_subfolders_and_skips_other_files(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / ".hidden").mkdir()
    for name in ("a/1.png", "a/b/2.JPG", "3.jpeg", ".hidden/4.png", "a/notes.txt", "a/.5.png"):
        (tmp_path / name).write_bytes(b"")
    assert [p.relative_to(tmp_path).as_posix() for p in find_images(tmp_path)] == \
        ["3.jpeg", "a/1.png", "a/b/2.JPG"]
