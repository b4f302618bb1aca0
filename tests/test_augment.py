"""The per-epoch augmentation: what each kind does to an image, and that its draw
depends on (seed, epoch) alone; test-time augmentation's average."""

import numpy as np
import pytest

from kvt.augment import (CHUNK, STREAM, TRANSLATE, augment_epoch, mirror, reflect_pad, translate,
                         tta_probs)


def images(n=64, side=8, channels=3):
    return np.random.default_rng(0).random((n, side, side, channels), dtype=np.float32)


def test_none_returns_the_images_as_they_are():
    x = images()
    assert augment_epoch(x, "none", seed=1, epoch=0) is x


def test_flip_mirrors_about_half_left_right_and_leaves_the_rest():
    x = images(n=400)
    before = x.copy()
    out = augment_epoch(x, "flip", seed=3, epoch=2)
    np.testing.assert_array_equal(x, before)  # the input is not modified
    same = np.all(out == x, axis=(1, 2, 3))
    mirrored = np.all(out == x[:, :, ::-1], axis=(1, 2, 3))
    assert np.all(same | mirrored)
    assert 120 < mirrored.sum() < 280  # Binomial(400, 1/2): 5 standard deviations is 50


def test_translate_moves_each_image_by_its_offset_with_reflected_borders():
    x = images(n=3, side=8)
    offsets = np.array([[TRANSLATE, 0, 2 * TRANSLATE], [TRANSLATE, 2 * TRANSLATE, 1]])
    out = translate(x, offsets)
    assert out.shape == x.shape and out.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(out[0], x[0])  # offset (r, r): no move
    padded = np.pad(x, ((0, 0), (TRANSLATE,) * 2, (TRANSLATE,) * 2, (0, 0)), mode="reflect")
    for i in range(3):
        dy, dx = offsets[0, i], offsets[1, i]
        np.testing.assert_array_equal(out[i], padded[i, dy:dy + 8, dx:dx + 8])
    # image 1 moved 2 pixels left: its column 0 is the original's column 2
    np.testing.assert_array_equal(out[1, TRANSLATE:, 0], x[1, :8 - TRANSLATE, 2])


@pytest.mark.parametrize("kind", ["flip", "flip-translate"])
def test_the_draw_depends_on_seed_and_epoch_only(kind):
    x = images()
    a = augment_epoch(x, kind, seed=5, epoch=1)
    np.testing.assert_array_equal(a, augment_epoch(x, kind, seed=5, epoch=1))
    assert not np.array_equal(a, augment_epoch(x, kind, seed=5, epoch=2))
    assert not np.array_equal(a, augment_epoch(x, kind, seed=6, epoch=1))


def test_flip_translate_keeps_dtype_and_values_from_the_image():
    x = (images() * 255).astype(np.uint8)
    out = augment_epoch(x, "flip-translate", seed=0, epoch=0)
    assert out.dtype == np.uint8 and out.shape == x.shape
    for i in range(len(x)):  # every pixel comes from the same image
        assert set(np.unique(out[i])) <= set(np.unique(x[i]))


@pytest.mark.parametrize("shape", [(2, 32, 32, 3), (3, 5, 7, 1), (1, 3, 3, 2), (2, 3, 4, 1)])
def test_reflect_pad_is_numpys(shape):
    x = np.random.default_rng(1).random(shape, dtype=np.float32)
    expected = np.pad(x, ((0, 0), (TRANSLATE,) * 2, (TRANSLATE,) * 2, (0, 0)), mode="reflect")
    np.testing.assert_array_equal(reflect_pad(x, TRANSLATE), expected)
    with pytest.raises(ValueError, match="cannot reflect-pad 2x2 images by 2 pixels"):
        reflect_pad(x[:, :2, :2], TRANSLATE)


def test_flip_translate_across_chunks_is_the_documented_draw_also_in_place():
    """More images than one chunk: each image is flipped and moved as the (seed, epoch)
    stream's draws say, whichever chunk it falls in, into a new array or in place."""
    n = 2 * CHUNK + 37
    x = images(n=n, side=6, channels=2)
    rng = np.random.default_rng([7, 4, STREAM])
    flip = rng.random(n) < 0.5
    offsets = rng.integers(0, 2 * TRANSLATE + 1, size=(2, n))
    expected = np.where(flip[:, None, None, None], x[:, :, ::-1], x)
    padded = np.pad(expected, ((0, 0), (TRANSLATE,) * 2, (TRANSLATE,) * 2, (0, 0)),
                    mode="reflect")
    expected = np.stack([padded[i, dy:dy + 6, dx:dx + 6]
                         for i, (dy, dx) in enumerate(offsets.T)])
    np.testing.assert_array_equal(augment_epoch(x, "flip-translate", seed=7, epoch=4), expected)
    buffer = x.copy()
    assert augment_epoch(buffer, "flip-translate", seed=7, epoch=4, out=buffer) is buffer
    np.testing.assert_array_equal(buffer, expected)


def test_mirror_reverses_each_row_into_a_new_array():
    x = images(n=3, side=5, channels=2)
    m = mirror(x)
    for j in range(5):
        np.testing.assert_array_equal(m[:, :, j], x[:, :, 4 - j])
    assert m.flags.c_contiguous and not np.shares_memory(m, x)


def test_tta_flip_averages_the_image_and_its_mirror():
    """"none" returns the model's probabilities untouched; "flip" averages them with the
    model's for the mirrored images (a model that sees left from right: its outputs differ)."""
    x = images(n=4, side=3, channels=1)

    def predict(v):  # the first and last column of each row: not mirror-symmetric
        return np.stack([v[:, 0, 0, 0], v[:, 0, -1, 0]], axis=1)

    probs = predict(x)
    assert tta_probs(probs, predict, x, "none") is probs
    flipped = np.stack([x[:, 0, -1, 0], x[:, 0, 0, 0]], axis=1)
    np.testing.assert_allclose(tta_probs(probs, predict, x, "flip"), (probs + flipped) / 2)
    with pytest.raises(ValueError, match="unknown test-time augmentation 'crops'"):
        tta_probs(probs, predict, x, "crops")
