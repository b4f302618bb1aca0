"""Images below a class folder belong to its class (train, evaluate and predict read a
folder the same way), and a validation holdout that takes a class's only training images
warns as --train-limit does."""

import numpy as np
from PIL import Image

from kvt.data import load_dataset


def image(path, value=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((6, 6, 3), value, np.uint8)).save(path)


def test_images_in_subfolders_of_a_class_folder_are_read(tmp_path):
    for split in ("train", "test"):
        for c in ("a", "b"):
            for i in range(2):
                image(tmp_path / split / c / f"{i}.png")
    for i in range(3):  # 3 more "a" images, two levels down; a hidden folder is skipped
        image(tmp_path / "train" / "a" / "2026" / "june" / f"{i}.png", 255)
    image(tmp_path / "train" / "a" / ".thumbs" / "x.png")
    ds = load_dataset(str(tmp_path))
    assert len(ds.y_train) == 7 and ds.class_names == ["a", "b"]
    assert list(np.bincount(ds.y_train)) == [5, 2]
    assert (ds.x_train[ds.y_train == 0].max(axis=(1, 2, 3)) == 255).sum() == 3


def test_subfolder_images_are_part_of_the_cache_key(tmp_path):
    for split in ("train", "test"):
        for c in ("a", "b"):
            image(tmp_path / split / c / "0.png")
    assert len(load_dataset(str(tmp_path)).y_train) == 2
    image(tmp_path / "train" / "b" / "more" / "1.png")
    assert len(load_dataset(str(tmp_path)).y_train) == 3  # not the cached 2


def test_val_split_taking_a_class_s_only_image_warns(tmp_path, capsys):
    for c, n in (("a", 8), ("b", 8), ("rare", 1)):
        for i in range(n):
            image(tmp_path / "train" / c / f"{i}.png", i)
            image(tmp_path / "test" / c / f"{i}.png", i)
    held = load_dataset(str(tmp_path)).holdout(0.2)
    err = capsys.readouterr().err
    assert 2 not in set(held.y_train.tolist())
    assert err.strip() == ("kvt: warning: --val-split 0.2 leaves 1 of 3 classes without "
                           "training images (rare): the model cannot learn them; use a "
                           "smaller --val-split, or add training images to those classes")


def test_val_split_that_leaves_every_class_warns_nothing(capsys):
    load_dataset("digits").holdout(0.2)
    assert capsys.readouterr().err == ""
