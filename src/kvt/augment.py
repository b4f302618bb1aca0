"""Training-set augmentation for one epoch, in NumPy, drawn from (seed, epoch).

kvt augments the epoch's images before they become batches rather than inside the
model: the model (and so each backend's jit-compiled step) is untouched, every backend
sees the same images, and a resumed run draws what the uninterrupted run drew. Keras'
RandomTranslation/RandomCrop layers would turn jit off for the whole model on JAX.
Imports no framework.
"""

from __future__ import annotations

import numpy as np

from kvt.config import AUGMENTS

# "flip-translate" shifts each image by -TRANSLATE..TRANSLATE pixels on each axis.
TRANSLATE = 2
# The random stream of augmentation, apart from the epoch order's (seed, epoch).
STREAM = 1


def augment_epoch(images: np.ndarray, kind: str, seed: int, epoch: int) -> np.ndarray:
    """`images` (N, H, W, C) augmented as `kind` says; the input is never modified.

    "flip" mirrors each image left-right with probability 1/2; "flip-translate" then
    moves each image by a uniform (dy, dx) in -TRANSLATE..TRANSLATE, filling the border
    it uncovers by reflection. The draw depends only on (seed, epoch).
    """
    if kind not in AUGMENTS:
        raise ValueError(f"unknown augmentation {kind!r}")
    if kind == "none":
        return images
    rng = np.random.default_rng([seed, epoch, STREAM])
    n = len(images)
    flip = rng.random(n) < 0.5
    out = images.copy()
    out[flip] = images[flip, :, ::-1]
    if kind == "flip-translate":
        out = translate(out, rng.integers(0, 2 * TRANSLATE + 1, size=(2, n)))
    return out


def translate(images: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Each image moved by (offsets[0] - TRANSLATE, offsets[1] - TRANSLATE) pixels: a
    crop of the reflect-padded image at those offsets, in one gather."""
    r = TRANSLATE
    padded = np.pad(images, ((0, 0), (r, r), (r, r), (0, 0)), mode="reflect")
    h, w = images.shape[1:3]
    # (N, 2r+1, 2r+1, C, H, W): every crop of every image, as a view
    windows = np.lib.stride_tricks.sliding_window_view(padded, (h, w), axis=(1, 2))
    crops = windows[np.arange(len(images)), offsets[0], offsets[1]]  # (N, C, H, W)
    return np.ascontiguousarray(crops.transpose(0, 2, 3, 1))
