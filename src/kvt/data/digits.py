"""scikit-learn's bundled 8x8 digits: the offline dataset of demos and tests."""

from __future__ import annotations

import numpy as np

SIDE = 8  # pixels
TEST_FRACTION = 0.25  # held out for testing, stratified, with a fixed split seed


def load():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    # Pixel values are 0..16; store them as 0..255 like every other dataset.
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., np.newaxis]
    labels = bunch.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=TEST_FRACTION, random_state=0, stratify=labels
    )
    return x_train, y_train, x_test, y_test, [str(d) for d in range(10)]
