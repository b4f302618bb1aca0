import numpy as np
import pytest
from PIL import Image

from kvt.data import load_dataset
from kvt.errors import DataError


def make_folder(root, classes=("cats", "dogs"), size=(12, 12), per_class=3, splits=("train", "test")):
    rng = np.random.default_rng(0)
    for split in splits:
        for c in classes:
            d = root / split / c
            d.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
                Image.fromarray(pixels).save(d / f"{i}.png")
    return root


def test_user_folder_with_class_names_from_folders(tmp_path):
    root = make_folder(tmp_path / "pets", classes=("dogs", "cats", "birds"))
    (root / "train" / "cats" / "notes.txt").write_text("not an image")  # stray files skipped
    (root / "train" / "cats" / ".DS_Store").write_bytes(b"\0")
    Image.new("RGB", (12, 12)).save(root / "train" / "cats" / "extra.JPG", format="JPEG")
    ds = load_dataset(str(root))
    assert ds.name == "pets"
    assert ds.class_names == ["birds", "cats", "dogs"]
    assert ds.x_train.shape == (10, 12, 12, 3) and ds.x_test.shape == (9, 12, 12, 3)
    assert list(np.bincount(ds.y_train)) == [3, 4, 3]


def test_mixed_sizes_are_refused_unless_resized(tmp_path):
    root = make_folder(tmp_path / "d")
    Image.new("RGB", (40, 30)).save(root / "train" / "dogs" / "big.png")
    with pytest.raises(DataError, match=r"images differ in size: .* is 12x12 but .*big.png is "
                                        r"40x30: pass --image-size N"):
        load_dataset(str(root))
    ds = load_dataset(str(root), image_size=16)
    assert ds.x_train.shape[1:] == (16, 16, 3) and ds.x_test.shape[1:] == (16, 16, 3)


def test_grayscale_images_become_rgb(tmp_path):
    root = make_folder(tmp_path / "d")
    Image.new("L", (12, 12), 7).save(root / "test" / "cats" / "gray.png")
    ds = load_dataset(str(root))
    assert ds.x_test.shape[-1] == 3


@pytest.mark.parametrize("damage, words", [
    ("truncated", "cannot decode image .*0.png"),
    ("not-png", "cannot decode image .*0.png"),
])
def test_corrupt_images_name_the_file(tmp_path, damage, words):
    root = make_folder(tmp_path / "d")
    victim = root / "test" / "dogs" / "0.png"
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"hello world")
    with pytest.raises(DataError, match=words):
        load_dataset(str(root))


def test_layout_errors(tmp_path):
    root = make_folder(tmp_path / "onlytrain", splits=("train",))
    with pytest.raises(DataError, match="has no test/ folder"):
        load_dataset(str(root))
    root = make_folder(tmp_path / "diff", classes=("a", "b"))
    (root / "test" / "b").rename(root / "test" / "c")
    with pytest.raises(DataError, match=r"different class folders \(only in train: \['b'\]; "
                                        r"only in test: \['c'\]\)"):
        load_dataset(str(root))
    root = make_folder(tmp_path / "empty", classes=("a", "b"))
    for f in (root / "train" / "b").iterdir():
        f.unlink()
    with pytest.raises(DataError, match="b holds no PNG or JPEG images"):
        load_dataset(str(root))
    (tmp_path / "noclasses" / "train").mkdir(parents=True)
    (tmp_path / "noclasses" / "test").mkdir()
    with pytest.raises(DataError, match="has no class folders"):
        load_dataset(str(tmp_path / "noclasses"))


def test_unknown_dataset_name(tmp_path):
    with pytest.raises(DataError, match="unknown dataset 'imagenet': use one of cifar10, digits"):
        load_dataset("imagenet")


def test_digits_is_offline_uint8_and_stratified():
    ds = load_dataset("digits")
    assert ds.x_train.shape == (1347, 8, 8, 1) and ds.x_test.shape == (450, 8, 8, 1)
    assert ds.x_train.dtype == np.uint8 and ds.x_train.max() == 255
    assert ds.class_names == [str(d) for d in range(10)]
    assert set(np.bincount(ds.y_test)) <= {43, 44, 45, 46}


def test_limit_is_stratified_and_seeded():
    ds = load_dataset("digits")
    a = ds.limit(100, 50, seed=1)
    b = ds.limit(100, 50, seed=1)
    c = ds.limit(100, 50, seed=2)
    assert len(a.y_train) == 100 and len(a.y_test) == 50
    assert list(np.bincount(a.y_train)) == [10] * 10
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert not np.array_equal(a.x_train, c.x_train)


def test_one_class_folder_is_refused_in_one_line(tmp_path):
    root = make_folder(tmp_path / "d", classes=("cats",))
    with pytest.raises(DataError, match=r"has 1 class folder \(cats\): a classifier needs at "
                                        r"least two classes") as e:
        load_dataset(str(root))
    assert "\n" not in str(e.value)


def test_train_limit_that_drops_classes_warns_once(tmp_path, capsys):
    ds = load_dataset(str(make_folder(tmp_path / "d", classes=("a", "b", "c", "d"))))
    small = ds.limit(2, None, seed=0)
    err = capsys.readouterr().err
    assert len(np.unique(small.y_train)) == 2
    assert err.count("\n") == 1 and err.startswith(
        "kvt: warning: --train-limit 2 leaves 2 of 4 classes without training images (")
    assert "use --train-limit 4 or more" in err
    ds.limit(4, 1, seed=0)  # every class kept: a small test slice is no reason to warn
    assert capsys.readouterr().err == ""


def test_arrays_cached_by_an_older_decoder_are_not_read_back(tmp_path, monkeypatch):
    import kvt.data as data

    root = make_folder(tmp_path / "d")
    monkeypatch.setenv("KVT_NO_CACHE", "1")
    fresh = load_dataset(str(root))
    monkeypatch.delenv("KVT_NO_CACHE")
    monkeypatch.setattr(data, "DECODER_VERSION", 1)
    stale = data.cache_dir() / "datasets" / data._signature("folder", root, None)
    white = [np.full_like(a, 255) if a.dtype == np.uint8 else a
             for a in (fresh.x_train, fresh.y_train, fresh.x_test, fresh.y_test)]
    stale_arrays = (*white, fresh.class_names)  # what v1 made of 16-bit images
    data._write_cache(stale, stale_arrays, data.fingerprint(stale_arrays))
    assert (load_dataset(str(root)).x_train == 255).all()
    monkeypatch.setattr(data, "DECODER_VERSION", 2)
    assert np.array_equal(load_dataset(str(root)).x_train, fresh.x_train)


def test_two_processes_caching_the_same_arrays_at_once_is_not_an_error(tmp_path, capsys):
    import kvt.data as data

    root = make_folder(tmp_path / "d")
    arrays = load_dataset(str(root))
    arrays = (arrays.x_train, arrays.y_train, arrays.x_test, arrays.y_test, arrays.class_names)
    entry = tmp_path / "cache" / "entry"
    content = data.fingerprint(arrays)
    data._write_cache(entry, arrays, content)  # the other process's, renamed into place first
    (entry / "marker").write_text("theirs")
    capsys.readouterr()
    data._write_cache(entry, arrays, content)  # this one's rename finds the entry there
    assert capsys.readouterr().err == ""
    assert (entry / "marker").read_text() == "theirs"
    assert [p.name for p in entry.parent.iterdir()] == ["entry"]  # no .tmp left behind
    # A cache that cannot be written at all still says so, once.
    (tmp_path / "ro").write_text("a file where the cache folder should be")
    data._write_cache(tmp_path / "ro" / "entry", arrays, content)
    err = capsys.readouterr().err
    assert err.startswith("kvt: warning: could not cache decoded data in ") and err.count("\n") == 1
