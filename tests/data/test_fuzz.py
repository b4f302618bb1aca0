"""Dataset parsers take arbitrary bytes: they return arrays or raise kvt's DataError."""

import io
import os
import pickle
import tarfile

import signal

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import cifar_files as cf
from kvt.data import cifar10, safe_pickle
from kvt.data.images import load_image
from kvt.errors import DataError

# Bounded for the suite; KVT_FUZZ_EXAMPLES=5000 for a longer hunt. No per-example
# deadline: on a loaded machine a slow example is not a bug, and a deadline would make the
# suite's result depend on load. The alarm below catches what a deadline was for, a hang.
FUZZ = settings(max_examples=int(os.environ.get("KVT_FUZZ_EXAMPLES", "150")),
                deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
HANG_SECONDS = 300  # a parser stuck in a loop: far beyond any load (inputs are a few KB)


@pytest.fixture(autouse=True)
def no_hang():
    """Fails, rather than hangs, a fuzz test that runs away."""
    def hung(signum, frame):
        raise TimeoutError(f"a fuzz test ran past {HANG_SECONDS} s: a parser hangs")
    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(HANG_SECONDS)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)
_VALID_PICKLE = cf.python_files(cf.make_arrays(seed=2))["test_batch"]


def _mutations():
    """Random bytes, and valid pickles/tarballs with bytes flipped, cut or appended."""
    def mutate(base):
        return st.tuples(st.integers(0, len(base) - 1), st.binary(min_size=1, max_size=8),
                         st.integers(0, len(base))).map(
            lambda t: (base[:t[0]] + t[1] + base[t[0] + len(t[1]):])[: max(t[2], 1)])
    return st.one_of(st.binary(max_size=4096), mutate(_VALID_PICKLE))


@FUZZ
@given(_mutations())
def test_restricted_unpickler_never_escapes(data):
    try:
        safe_pickle.loads(data, "fuzz")
    except DataError:
        pass


@FUZZ
@given(data=st.binary(max_size=3 * 3073 + 10))
def test_binary_batches_never_escape(data, tmp_path_factory):
    root = tmp_path_factory.mktemp("bin")
    files = cf.binary_files(cf.make_arrays(seed=3))
    files["data_batch_4.bin"] = data
    cf.write_dir(root, files)
    try:
        x_train, y_train, *_ = cifar10.load("bin-dir", root)
        assert x_train.dtype == np.uint8 and len(x_train) == len(y_train)
    except DataError:
        pass



def _valid_tarball() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in cf.python_files(cf.make_arrays(seed=4)).items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


_VALID_TAR = _valid_tarball()


@FUZZ
@given(at=st.integers(0, len(_VALID_TAR) - 1), junk=st.binary(min_size=1, max_size=16),
       keep=st.integers(1, len(_VALID_TAR)))
def test_tarballs_never_escape(at, junk, keep, tmp_path_factory):
    data = (_VALID_TAR[:at] + junk + _VALID_TAR[at + len(junk):])[:keep]
    path = tmp_path_factory.mktemp("tar") / "cifar-10-python.tar.gz"
    path.write_bytes(data)
    try:
        cifar10.load("tar", path)
    except DataError:
        pass


_PNG = io.BytesIO()
Image.fromarray(np.arange(48, dtype=np.uint8).reshape(4, 4, 3)).save(_PNG, format="PNG")


@FUZZ
@given(data=st.one_of(
    st.binary(max_size=512),
    st.tuples(st.integers(0, len(_PNG.getvalue()) - 1), st.binary(min_size=1, max_size=4))
    .map(lambda t: _PNG.getvalue()[:t[0]] + t[1] + _PNG.getvalue()[t[0] + len(t[1]):])))
def test_image_decoder_never_escapes(data, tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "x.png"
    path.write_bytes(data)
    try:
        image = load_image(path, size=8)
        assert image.shape == (8, 8, 3) and image.dtype == np.uint8
    except DataError:
        pass


def test_valid_inputs_still_parse():
    assert safe_pickle.loads(_VALID_PICKLE, "ok")[b"data"].shape == (cf.PER_BATCH, 3072)
    assert pickle.loads(_VALID_PICKLE)[b"labels"] == safe_pickle.loads(_VALID_PICKLE, "ok")[b"labels"]
