"""What the decoder says: a permission problem as one, formats as they are (WebP, GIF and
TIFF are read too), and nothing from Pillow about large images it decodes."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from kvt.data import images
from kvt.data.images import load_image
from kvt.errors import DataError


def test_a_permission_error_is_named_as_one(tmp_path, monkeypatch):
    path = tmp_path / "locked.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(path)

    def denied(*args, **kwargs):  # (root reads any file: chmod would not stop the test)
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(images.Image, "open", denied)
    with pytest.raises(DataError) as e:
        load_image(path)
    assert str(e.value) == (f"cannot read image {path} (Permission denied): give kvt read "
                            f"permission or remove it")


@pytest.mark.parametrize("suffix", [".webp", ".gif", ".tiff", ".bmp"])
def test_other_formats_are_read_and_named_in_the_decode_error(tmp_path, suffix):
    path = tmp_path / f"image{suffix}"
    Image.fromarray(np.full((5, 7, 3), 200, np.uint8)).save(path)
    assert load_image(path).shape == (5, 7, 3)
    path.write_bytes(path.read_bytes()[:12])
    with pytest.raises(DataError) as e:
        load_image(path)
    assert "cannot decode image" in str(e.value) and "(PNG/JPEG)" not in str(e.value)
    assert "kvt reads PNG, JPEG, WebP, GIF, TIFF, BMP" in str(e.value)


@pytest.mark.process
def test_a_large_image_is_decoded_without_pillow_s_warning(tmp_path):
    """Between Pillow's pixel limit and twice it (lowered here: 90 megapixels take 90 MB)
    an image is decoded in silence; beyond, it is refused in one line."""
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "large.png")
    Image.fromarray(np.zeros((80, 80, 3), np.uint8)).save(tmp_path / "huge.png")
    script = textwrap.dedent(f"""
        from PIL import Image
        from kvt.data.images import load_image
        from kvt.errors import DataError
        Image.MAX_IMAGE_PIXELS = 1000  # 1,600 warns, 6,400 is refused
        print(load_image({str(tmp_path / 'large.png')!r}, size=8).shape)
        try:
            load_image({str(tmp_path / 'huge.png')!r})
        except DataError as e:
            print(e)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "(8, 8, 3)"
    assert lines[1].startswith(f"image {tmp_path / 'huge.png'} is too large to decode safely")
