import hashlib
import http.server
import os
import pickle
import threading
from pathlib import Path

import numpy as np
import pytest

import cifar_files as cf
from kvt.data import cifar10, load_dataset
from kvt.errors import DataError


@pytest.fixture(scope="module")
def batches():
    return cf.make_arrays(seed=1)


def assert_loads_as(ds, batches, by_class=False):
    x_train, y_train, x_test, y_test = cf.expected(batches)
    if by_class:  # an image folder lists class by class, files in name order
        tr, te = np.argsort(y_train, kind="stable"), np.argsort(y_test, kind="stable")
        x_train, y_train, x_test, y_test = x_train[tr], y_train[tr], x_test[te], y_test[te]
    np.testing.assert_array_equal(ds.x_train, x_train)
    np.testing.assert_array_equal(ds.y_train, y_train)
    np.testing.assert_array_equal(ds.x_test, x_test)
    np.testing.assert_array_equal(ds.y_test, y_test)
    assert ds.class_names == cf.NAMES
    assert ds.x_train.dtype == np.uint8 and ds.x_train.shape[1:] == (32, 32, 3)


@pytest.mark.parametrize("layout", ["py-dir", "py-dir-parent", "py-tar", "py-tar-protocol5",
                                    "bin-dir", "bin-dir-parent", "bin-tar", "png-folder"])
def test_every_official_form_loads_identically(tmp_path, batches, layout):
    if layout == "py-dir":
        where = cf.write_dir(tmp_path / "b", cf.python_files(batches))
    elif layout == "py-dir-parent":
        cf.write_dir(tmp_path / "cifar-10-batches-py", cf.python_files(batches))
        where = tmp_path
    elif layout == "py-tar":
        where = cf.write_tar(tmp_path / "cifar-10-python.tar.gz", "cifar-10-batches-py",
                             cf.python_files(batches))
    elif layout == "py-tar-protocol5":
        cf.write_tar(tmp_path / "cifar-10-python.tar.gz", "cifar-10-batches-py",
                     cf.python_files(batches, protocol=5))
        where = tmp_path
    elif layout == "bin-dir":
        where = cf.write_dir(tmp_path / "b", cf.binary_files(batches))
    elif layout == "bin-dir-parent":
        cf.write_dir(tmp_path / "cifar-10-batches-bin", cf.binary_files(batches))
        where = tmp_path
    elif layout == "bin-tar":
        where = cf.write_tar(tmp_path / "cifar-10-binary.tar.gz", "cifar-10-batches-bin",
                             cf.binary_files(batches))
    else:
        where = cf.write_image_folder(tmp_path / "png", batches)
    assert_loads_as(load_dataset("cifar10", str(where)), batches, by_class=layout == "png-folder")


def test_kvt_data_dir_environment_variable(tmp_path, batches, monkeypatch):
    cf.write_dir(tmp_path / "cifar-10-batches-py", cf.python_files(batches))
    monkeypatch.setenv("KVT_DATA_DIR", str(tmp_path))
    assert_loads_as(load_dataset("cifar10"), batches)


@pytest.mark.parametrize("layout", ["keras3", "keras2", "tarball"])
def test_keras_cache_is_used_before_any_download(tmp_path, batches, monkeypatch, layout):
    cache = Path(os.environ["KERAS_HOME"]) / "datasets"
    if layout == "keras3":
        cf.write_dir(cache / "cifar-10-batches-py-target" / "cifar-10-batches-py",
                     cf.python_files(batches))
    elif layout == "keras2":
        cf.write_dir(cache / "cifar-10-batches-py", cf.python_files(batches))
    else:
        cf.write_tar(cache / "cifar-10-python.tar.gz", "cifar-10-batches-py",
                     cf.python_files(batches))
    monkeypatch.setattr(cifar10, "URL", "http://127.0.0.1:9/never-contacted")
    assert_loads_as(load_dataset("cifar10"), batches)


# --- the download path, against a file server on this machine ---------------------

@pytest.fixture
def file_server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(root), **kw)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_download_verifies_hash_and_lands_in_keras_cache(file_server, batches, monkeypatch):
    root, base = file_server
    tar = cf.write_tar(root / "cifar.tar.gz", "cifar-10-batches-py", cf.python_files(batches))
    monkeypatch.setattr(cifar10, "URL", f"{base}/cifar.tar.gz")
    monkeypatch.setattr(cifar10, "SHA256", hashlib.sha256(tar.read_bytes()).hexdigest())
    ds = load_dataset("cifar10")
    assert_loads_as(ds, batches)
    landed = Path(os.environ["KERAS_HOME"]) / "datasets" / "cifar-10-python.tar.gz"
    assert landed.read_bytes() == tar.read_bytes()
    assert not list(landed.parent.glob("*.part"))


def test_download_with_wrong_hash_is_refused_and_removed(file_server, batches, monkeypatch):
    root, base = file_server
    cf.write_tar(root / "cifar.tar.gz", "cifar-10-batches-py", cf.python_files(batches))
    monkeypatch.setattr(cifar10, "URL", f"{base}/cifar.tar.gz")
    with pytest.raises(DataError, match="has SHA-256 .* expected 6d958be0"):
        load_dataset("cifar10")
    assert not any((Path(os.environ["KERAS_HOME"]) / "datasets").iterdir())


def test_download_failure_says_what_to_do(file_server, monkeypatch):
    _, base = file_server
    monkeypatch.setattr(cifar10, "URL", f"{base}/missing.tar.gz")
    with pytest.raises(DataError, match="could not download CIFAR-10 .*pass --data-dir"):
        load_dataset("cifar10")


# --- unsafe and damaged files -------------------------------------------------------

class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_without_running_it(tmp_path, batches):
    files = cf.python_files(batches)
    marker = tmp_path / "pwned"
    files["data_batch_3"] = pickle.dumps({b"data": _Exploit(marker), b"labels": []}, protocol=2)
    where = cf.write_dir(tmp_path / "b", files)
    with pytest.raises(DataError, match=r"refused to read .*data_batch_3: it asks for "
                                        r"(posix|os)\.system"):
        load_dataset("cifar10", str(where))
    assert not marker.exists()


def test_object_arrays_are_refused(tmp_path, batches):
    files = cf.python_files(batches)
    files["test_batch"] = pickle.dumps({b"data": np.array([1, "x"], dtype=object),
                                        b"labels": [0]}, protocol=2)
    with pytest.raises(DataError, match="refused to read .*test_batch"):
        load_dataset("cifar10", str(cf.write_dir(tmp_path / "b", files)))


def test_truncated_tarball(tmp_path, batches):
    tar = cf.write_tar(tmp_path / "cifar-10-python.tar.gz", "cifar-10-batches-py",
                       cf.python_files(batches))
    tar.write_bytes(tar.read_bytes()[: tar.stat().st_size // 2])
    with pytest.raises(DataError, match="not a readable tar archive.*download it again"):
        load_dataset("cifar10", str(tar))


def test_tarball_of_something_else(tmp_path):
    tar = cf.write_tar(tmp_path / "cifar-10-python.tar.gz", "other", {"readme": b"hi"})
    with pytest.raises(DataError, match="neither cifar-10-batches-py/ nor"):
        load_dataset("cifar10", str(tar))


def test_truncated_binary_batch(tmp_path, batches):
    files = cf.binary_files(batches)
    files["data_batch_2.bin"] = files["data_batch_2.bin"][:-100]
    with pytest.raises(DataError, match="data_batch_2.bin has .* bytes, not a whole number"):
        load_dataset("cifar10", str(cf.write_dir(tmp_path / "b", files)))


def test_labels_out_of_range(tmp_path, batches):
    files = cf.binary_files(batches)
    raw = bytearray(files["test_batch.bin"])
    raw[0] = 12
    files["test_batch.bin"] = bytes(raw)
    with pytest.raises(DataError, match=r"labels from 0 to 12, outside 0\.\.9"):
        load_dataset("cifar10", str(cf.write_dir(tmp_path / "b", files)))


def test_missing_batch(tmp_path, batches):
    files = cf.python_files(batches)
    del files["data_batch_5"]
    with pytest.raises(DataError, match="has no data_batch_5"):
        load_dataset("cifar10", str(cf.write_dir(tmp_path / "b", files)))


def test_corrupt_pickle(tmp_path, batches):
    files = cf.python_files(batches)
    files["data_batch_1"] = files["data_batch_1"][:50]
    with pytest.raises(DataError, match="data_batch_1 is not a readable pickle"):
        load_dataset("cifar10", str(cf.write_dir(tmp_path / "b", files)))


def test_explicit_folder_without_data(tmp_path):
    with pytest.raises(DataError, match="holds no CIFAR-10 data: point --data-dir"):
        load_dataset("cifar10", str(tmp_path))
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("cifar10", str(tmp_path / "nope"))


# --- the decoded-array cache ---------------------------------------------------------

def test_cache_hit_and_invalidation(tmp_path, batches):
    where = cf.write_image_folder(tmp_path / "png", batches)
    first = load_dataset("cifar10", str(where))
    entries = list((Path(os.environ["KVT_CACHE_DIR"]) / "datasets").iterdir())
    assert len(entries) == 1

    from kvt.data import folder

    def no_decoding(*a, **kw):
        raise AssertionError("decoded again although the files did not change")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(folder, "read_split", no_decoding)
        assert_loads_as(load_dataset("cifar10", str(where)), batches, by_class=True)

    victim = sorted((where / "test" / "cat").iterdir())[0]
    from PIL import Image
    Image.new("RGB", (32, 32), (255, 0, 0)).save(victim)
    changed = load_dataset("cifar10", str(where))
    assert not np.array_equal(changed.x_test, first.x_test)


def test_damaged_cache_entry_is_rebuilt(tmp_path, batches):
    where = cf.write_dir(tmp_path / "b", cf.python_files(batches))
    load_dataset("cifar10", str(where))
    entry = next((Path(os.environ["KVT_CACHE_DIR"]) / "datasets").iterdir())
    (entry / "x_train.npy").write_bytes(b"garbage")
    assert_loads_as(load_dataset("cifar10", str(where)), batches)


# --- the fingerprint: what the data is, wherever it lies ---------------------------

def test_fingerprint_names_the_content_not_its_place_format_or_cache(tmp_path, batches,
                                                                       monkeypatch):
    import kvt.data as data

    forms = [cf.write_dir(tmp_path / "py", cf.python_files(batches)),
             cf.write_dir(tmp_path / "bin", cf.binary_files(batches)),
             cf.write_tar(tmp_path / "tar" / "cifar-10-python.tar.gz", "cifar-10-batches-py",
                          cf.python_files(batches))]
    x_train, y_train, x_test, y_test = cf.expected(batches)
    expected = data.fingerprint((x_train, y_train, x_test, y_test, cf.NAMES))
    assert len(expected) == 64 and {load_dataset("cifar10", str(f)).fingerprint
                                    for f in forms} == {expected}
    # ... from the cache (the second load of each form), and from a cache entry of an older
    # kvt (no fingerprint file), which gets one
    entries = list((Path(os.environ["KVT_CACHE_DIR"]) / "datasets").iterdir())
    assert len(entries) == 3
    for entry in entries:
        (entry / data.FINGERPRINT).unlink()
    assert {load_dataset("cifar10", str(f)).fingerprint for f in forms} == {expected}
    assert {(e / data.FINGERPRINT).read_text().strip() for e in entries} == {expected}
    monkeypatch.setenv("KVT_NO_CACHE", "1")
    assert load_dataset("cifar10", str(forms[0])).fingerprint == expected
    # ... and it stays the source's after a slice or a holdout
    ds = load_dataset("cifar10", str(forms[0]))
    assert ds.limit(20, 10, seed=0).fingerprint == ds.holdout(0.2).fingerprint == expected

    # Other content, the same images in another order, or other names: another one.
    changed = x_train.copy()
    changed[0, 0, 0, 0] ^= 1
    order = np.arange(len(y_train))[::-1]
    others = [(changed, y_train, x_test, y_test, cf.NAMES),
              (x_train, (y_train + 1) % 10, x_test, y_test, cf.NAMES),
              (x_train[order], y_train[order], x_test, y_test, cf.NAMES),
              (x_test, y_test, x_train, y_train, cf.NAMES),
              (x_train, y_train, x_test, y_test, cf.NAMES[::-1])]
    assert len({expected, *(data.fingerprint(o) for o in others)}) == 1 + len(others)
    # An image folder lists the same images class by class: another order, so another one.
    png = cf.write_image_folder(tmp_path / "png", batches)
    assert load_dataset("cifar10", str(png)).fingerprint != expected
    # Labels count as numbers, whatever integer type a reader gave them.
    assert data.fingerprint((x_train, y_train.astype(np.int32), x_test,
                             y_test.astype(np.uint8), cf.NAMES)) == expected
