"""MNIST, Fashion-MNIST and CIFAR-100 from tiny files in their official formats."""

import gzip
import hashlib
import io

import numpy as np
import pytest

import official_files as of
from kvt.data import download, load_dataset, mnist
from kvt.errors import DataError


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No real Keras cache, no kvt cache, no $KVT_DATA_DIR, and no download."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    monkeypatch.setenv("KVT_CACHE_DIR", str(tmp_path / "kvt-cache"))
    monkeypatch.delenv("KVT_DATA_DIR", raising=False)

    def no_network(*args, **kwargs):
        raise AssertionError("a test tried to download")
    monkeypatch.setattr(download.urllib.request, "urlopen", no_network)


def _same(dataset, arrays):
    np.testing.assert_array_equal(dataset.x_train[..., 0], arrays["x_train"])
    np.testing.assert_array_equal(dataset.y_train, arrays["y_train"])
    np.testing.assert_array_equal(dataset.x_test[..., 0], arrays["x_test"])
    np.testing.assert_array_equal(dataset.y_test, arrays["y_test"])


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_from_the_four_idx_files(tmp_path, gz):
    arrays = of.mnist_arrays()
    of.write_idx(tmp_path / "data", arrays, gz=gz)
    dataset = load_dataset("mnist", str(tmp_path / "data"))
    assert dataset.input_shape == (28, 28, 1) and dataset.class_names == list("0123456789")
    assert dataset.y_train.dtype == np.int64
    _same(dataset, arrays)


def test_every_form_of_mnist_has_one_fingerprint(tmp_path, monkeypatch):
    arrays = of.mnist_arrays()
    idx = load_dataset("mnist", str(of.write_idx(tmp_path / "idx", arrays)))
    npz = load_dataset("mnist", str(of.write_npz(tmp_path / "npz" / "mnist.npz", arrays)))
    torchvision = load_dataset("mnist", str(of.write_idx(tmp_path / "tv" / "MNIST" / "raw",
                                                         arrays).parents[1]))
    # Keras' cache: ~/.keras/datasets/mnist.npz, found without --data-dir
    of.write_npz(tmp_path / "keras-home" / "datasets" / "mnist.npz", arrays)
    cached = load_dataset("mnist")
    _same(cached, arrays)
    assert idx.fingerprint == npz.fingerprint == torchvision.fingerprint == cached.fingerprint
    # The decoded arrays are cached: a second load reads them back, not the files.
    monkeypatch.setattr(mnist, "read_idx", lambda path: pytest.fail("read the files again"))
    assert load_dataset("mnist", str(tmp_path / "idx")).fingerprint == idx.fingerprint


def test_fashion_mnist_from_the_keras_cache_and_kvt_data_dir(tmp_path, monkeypatch):
    arrays = of.mnist_arrays(seed=1)
    of.write_idx(tmp_path / "keras-home" / "datasets" / "fashion-mnist", arrays)
    dataset = load_dataset("fashion_mnist")
    _same(dataset, arrays)
    assert dataset.class_names[0] == "T-shirt/top" and dataset.class_names[-1] == "Ankle boot"
    other = of.mnist_arrays(seed=2)
    of.write_idx(tmp_path / "mine" / "fashion-mnist", other)
    monkeypatch.setenv("KVT_DATA_DIR", str(tmp_path / "mine"))
    _same(load_dataset("fashion_mnist"), other)


def test_image_size_resizes_grayscale_as_folders_do(tmp_path):
    of.write_idx(tmp_path / "data", of.mnist_arrays())
    dataset = load_dataset("fashion_mnist", str(tmp_path / "data"), image_size=32)
    assert dataset.input_shape == (32, 32, 1) and dataset.x_train.dtype == np.uint8


@pytest.mark.parametrize("name, classes, names", [("cifar100", 100, of.FINE),
                                                  ("cifar100-coarse", 20, of.COARSE)])
@pytest.mark.parametrize("form", ["tar", "dir", "keras3"])
def test_cifar100_fine_and_coarse_from_each_form(tmp_path, name, classes, names, form):
    splits = of.cifar100_arrays()
    if form == "tar":
        data_dir = of.write_cifar100_tar(tmp_path / "d" / "cifar-100-python.tar.gz", splits)
    elif form == "dir":
        data_dir = of.write_cifar100_dir(tmp_path / "d" / "cifar-100-python", splits).parent
    else:  # what Keras 3 leaves in its cache
        of.write_cifar100_dir(tmp_path / "keras-home" / "datasets" / "cifar-100-python-target"
                              / "cifar-100-python", splits)
        data_dir = None
    dataset = load_dataset(name, None if data_dir is None else str(data_dir))
    key = b"fine_labels" if name == "cifar100" else b"coarse_labels"
    assert dataset.input_shape == (32, 32, 3) and dataset.class_names == names
    np.testing.assert_array_equal(dataset.y_train, splits["train"][key])
    # Rows are channel-first in the file, channels last in the dataset.
    first = splits["test"][b"data"][0].reshape(3, 32, 32).transpose(1, 2, 0)
    np.testing.assert_array_equal(dataset.x_test[0], first)


def _corrupt(tmp_path, name, data):
    folder = of.write_idx(tmp_path / "bad", of.mnist_arrays())
    (folder / f"{name}.gz").write_bytes(data)
    return str(folder)


# Ids by name: the data holds gzip's time of compression, and pytest-xdist's workers
# must collect the same ids.
@pytest.mark.parametrize("name, data, words", [
    ("train-images-idx3-ubyte", b"not gzip at all", "not an IDX file of unsigned bytes"),
    ("train-images-idx3-ubyte", gzip.compress(of.idx_bytes(np.zeros((40, 28, 28), "uint8")))[:-9],
     "not a readable gzip file"),
    ("train-images-idx3-ubyte", gzip.compress(of.idx_bytes(np.zeros((40, 28, 28), "uint8"))[:-5]),
     "is truncated or corrupt"),
    ("train-labels-idx1-ubyte", gzip.compress(of.idx_bytes(np.zeros(39, "uint8"))),
     "has 40 images but 39 labels"),
    ("t10k-labels-idx1-ubyte", gzip.compress(of.idx_bytes(np.full(20, 10, "uint8"))),
     "labels go up to 10, but MNIST has 10 classes"),
], ids=["not-gzip", "gzip-cut", "idx-cut", "labels-short", "label-out-of-range"])
def test_corrupt_files_are_data_errors(tmp_path, name, data, words):
    with pytest.raises(DataError) as info:
        load_dataset("mnist", _corrupt(tmp_path, name, data), cache=False)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_a_folder_without_the_files_says_what_it_needs(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no Fashion-MNIST files: point --data-dir at a "
                                        "folder with the four official files"):
        load_dataset("fashion_mnist", str(tmp_path / "empty"))
    with pytest.raises(DataError, match="holds no CIFAR-100 data"):
        load_dataset("cifar100", str(tmp_path / "empty"))
    with pytest.raises(DataError, match="unknown dataset 'mnsit': use one of cifar10, digits, "
                                        "cifar100, cifar100-coarse, mnist, fashion_mnist"):
        load_dataset("mnsit")


class _Response(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_downloads_use_keras_urls_and_the_published_digests(tmp_path, monkeypatch):
    asked = []

    def fake_fetch(url, dest, digest, what, algorithm="sha256"):
        asked.append((url, dest.relative_to(tmp_path / "keras-home" / "datasets").as_posix(),
                      digest, algorithm))
        raise DataError("stop")
    monkeypatch.setattr(download, "fetch", fake_fetch)
    for name in ("mnist", "fashion_mnist", "cifar100"):
        with pytest.raises(DataError, match="stop"):
            load_dataset(name)
    base = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
    assert asked == [
        (base + "mnist.npz", "mnist.npz",
         "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1", "sha256"),
        (base + "train-images-idx3-ubyte.gz", "fashion-mnist/train-images-idx3-ubyte.gz",
         "8d4fb7e6c68d591d4c3dfef9ec88bf0d", "md5"),
        ("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz", "cifar-100-python.tar.gz",
         "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7", "sha256"),
    ]


def test_a_download_is_kept_only_if_its_digest_matches(tmp_path, monkeypatch):
    payload = b"the official bytes"
    monkeypatch.setattr(download.urllib.request, "urlopen",
                        lambda url, timeout: _Response(payload))
    dest = tmp_path / "f.gz"
    with pytest.raises(DataError, match="has MD5 .* expected 0+: the file is corrupt"):
        download.fetch("https://example.org/f.gz", dest, "0" * 32, "Fashion-MNIST", "md5")
    assert not dest.exists() and not (tmp_path / "f.gz.part").exists()
    good = hashlib.md5(payload).hexdigest()
    assert download.fetch("https://example.org/f.gz", dest, good, "Fashion-MNIST",
                          "md5").read_bytes() == payload


def test_channels_converts_as_pillow_converts_folder_images(tmp_path):
    from PIL import Image

    arrays = of.mnist_arrays()
    of.write_idx(tmp_path / "m", arrays)
    rgb = load_dataset("mnist", str(tmp_path / "m"), image_size=32, channels=3)
    gray = load_dataset("mnist", str(tmp_path / "m"), image_size=32)
    assert rgb.input_shape == (32, 32, 3) and rgb.fingerprint == gray.fingerprint
    expected = np.asarray(Image.fromarray(gray.x_test[0, ..., 0]).convert("RGB"))
    np.testing.assert_array_equal(rgb.x_test[0], expected)
    of.write_cifar100_dir(tmp_path / "c" / "cifar-100-python", of.cifar100_arrays())
    colour = load_dataset("cifar100", str(tmp_path / "c"))
    luma = load_dataset("cifar100", str(tmp_path / "c"), channels=1)
    assert luma.input_shape == (32, 32, 1)
    for i in range(3):
        expected = np.asarray(Image.fromarray(colour.x_train[i]).convert("L"))
        np.testing.assert_array_equal(luma.x_train[i, ..., 0], expected)
