"""A model that needs no training, and data it classifies perfectly: for tests of what
kvt does around a model (class matching, export, ...) rather than of learning."""

from pathlib import Path

import numpy as np
from PIL import Image

SIDE = 8


def brightness_model(path: Path, names=("nuit", "café")) -> Path:
    """Saves a model whose class 0 (`names[0]`) is a dark image and class 1 a bright one,
    with kvt's metadata, at `path`."""
    import keras

    from kvt.saving import SCALE, save_model

    inputs = keras.Input((SIDE, SIDE, 3))
    mean = keras.layers.GlobalAveragePooling2D()(inputs)
    dense = keras.layers.Dense(2, activation="softmax")
    model = keras.Model(inputs, dense(mean), name="brightness")
    dense.set_weights([np.array([[-10.0, 10.0]] * 3) / 3, np.array([5.0, -5.0])])
    save_model(model, path, {"class_names": list(names), "input_shape": [SIDE, SIDE, 3],
                             "scale": SCALE, "tta": "none"})
    return path


def dark_and_bright(root: Path, dark: str, bright: str, per_class: int = 3) -> Path:
    """An image-folder dataset: class `dark`'s images dark, class `bright`'s bright."""
    for split in ("train", "test"):
        for name, value in ((dark, 20), (bright, 230)):
            d = root / split / name
            d.mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(np.full((SIDE, SIDE, 3), value + i, np.uint8)).save(d / f"{i}.png")
    return root
