"""kvt with --model module:function and the official datasets, from the command line."""

import hashlib
import json
import sys
import textwrap
from pathlib import Path

import pytest

import official_files as of
from conftest import run_cli

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "resnet_small.py"
TINY = ["--dataset", "digits", "--epochs", "1", "--batch-size", "16", "--train-limit", "200",
        "--test-limit", "40", "--seed", "0"]


def _forget(prefix: str) -> None:
    for name in [m for m in sys.modules if m == prefix or m.startswith(prefix + ".")]:
        sys.modules.pop(name, None)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KVT_CACHE_DIR", str(tmp_path / "cache"))


def test_the_example_trains_reloads_without_its_module_and_exports(tmp_path, monkeypatch,
                                                                   capsys, cache):
    monkeypatch.chdir(ROOT)
    monkeypatch.syspath_prepend(str(ROOT))  # as `python -m kvt` run here has it
    _forget("examples")  # a copy that another test of this worker imported from elsewhere
    out = tmp_path / "run"
    code, stdout, err = run_cli(capsys, "train", *TINY, "--model",
                                "examples/resnet_small.py:build", "--out", str(out), "--quiet")
    assert code == 0, err
    record = json.loads((out / "config.json").read_text())
    assert record["config"]["model"] == "examples/resnet_small.py:build"
    assert record["model_source"] == {
        "import": "examples.resnet_small:build", "file": "examples/resnet_small.py",
        "sha256": hashlib.sha256(EXAMPLE.read_bytes()).hexdigest()}
    summary = (out / "summary.txt").read_text().splitlines()
    assert summary[0].startswith("model: examples/resnet_small.py:build, --api keras")
    assert summary[3].startswith("FLOPs per image:") and "not counted" not in summary[3]
    assert (out / "logs").is_dir()  # TensorBoard
    # Elsewhere, without the module: standard layers load in safe mode.
    _forget("examples")
    monkeypatch.chdir(tmp_path)
    code, stdout, err = run_cli(capsys, "evaluate", str(out))
    assert code == 0, err
    assert "examples" not in sys.modules
    code, stdout, err = run_cli(capsys, "export", str(out), "--format", "onnx",
                                "--check-images", "40")
    assert code == 0 and "top-1 agreement 40/40 (100.00%)" in stdout, err
    from PIL import Image

    Image.new("L", (20, 20), 128).save(tmp_path / "gray.png")
    code, stdout, err = run_cli(capsys, "predict", str(out), str(tmp_path / "gray.png"))
    assert code == 0 and "gray.png" in stdout, err


BAD = """
import keras


def no_model(input_shape, classes):
    return "a model"


def ten_classes(input_shape, classes):
    inputs = keras.Input(input_shape)
    x = keras.layers.Flatten()(inputs)
    return keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))
"""


@pytest.fixture
def bad_module(tmp_path, monkeypatch):
    (tmp_path / "userpkg_bad.py").write_text(textwrap.dedent(BAD))
    (tmp_path / "userpkg_broken.py").write_text("raise RuntimeError('no GPU here')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    _forget("userpkg_bad")
    _forget("userpkg_broken")


@pytest.mark.parametrize("model, extra, words", [
    ("nosuch_module_xyz:build", [], "module 'nosuch_module_xyz' does not import"),
    ("userpkg_broken:build", [], "does not import (RuntimeError: no GPU here)"),
    ("userpkg_bad:missing", [], "module 'userpkg_bad' has no function 'missing'"),
    ("userpkg_bad:no_model", ["--activation", "gelu"], "--activation gelu cannot be applied: "
     "userpkg_bad:no_model takes no 'activation' argument"),
    ("userpkg_bad:no_model", [], "returned str, not a Keras model"),
])
def test_bad_builders_exit_4_in_one_line_before_training(tmp_path, capsys, bad_module, cache,
                                                         model, extra, words):
    out = tmp_path / "run"
    code, stdout, err = run_cli(capsys, "train", *TINY, "--model", model, *extra,
                                "--out", str(out))
    assert code == 4 and words in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (out / "model.keras").exists()
    assert "accuracy" not in stdout  # no epoch trained


def test_the_wrong_class_count_is_refused(tmp_path, capsys, bad_module, cache):
    code, stdout, err = run_cli(capsys, "train", "--model", "userpkg_bad:ten_classes",
                                "--dataset", "cifar100-coarse", "--data-dir",
                                str(of.write_cifar100_dir(tmp_path / "c" / "cifar-100-python",
                                                          of.cifar100_arrays()).parent),
                                "--epochs", "1", "--out", str(tmp_path / "run"))
    assert code == 4 and "output has shape (None, 10), but the dataset has 20 classes" in err


def test_compare_and_bench_refuse_a_model_before_any_run(tmp_path, capsys, cache, monkeypatch):
    monkeypatch.chdir(ROOT)
    sweep = tmp_path / "sweep"
    code, _, err = run_cli(capsys, "compare", "--vary", "model=minivggnet,nosuch_mod_xyz:build",
                           "--dataset", "digits", "--seeds", "1", "--out", str(sweep))
    assert code == 4 and "cannot import module 'nosuch_mod_xyz'" in err and not sweep.exists()
    code, _, err = run_cli(capsys, "compare", "--vary", "dataset=digits,mnsit", "--seeds", "1",
                           "--out", str(sweep))
    assert code == 3 and "unknown dataset 'mnsit'" in err and not sweep.exists()
    code, _, err = run_cli(capsys, "bench", "--model", "examples.resnet_small:nothere",
                           "--steps", "1")
    assert code == 4 and "defines no 'nothere'" in err and len(err.strip().splitlines()) == 1


def test_train_on_fashion_mnist_in_its_official_files(tmp_path, capsys, cache):
    data = of.write_idx(tmp_path / "fashion", of.mnist_arrays(n_train=60, n_test=20))
    out = tmp_path / "run"
    code, stdout, err = run_cli(capsys, "train", "--dataset", "fashion_mnist", "--data-dir",
                                str(data), "--epochs", "1", "--batch-size", "20", "--out",
                                str(out), "--quiet")
    assert code == 0, err
    record = json.loads((out / "config.json").read_text())
    assert record["dataset"]["input_shape"] == [28, 28, 1]
    assert record["dataset"]["class_names"][0] == "T-shirt/top"
    code, _, err = run_cli(capsys, "train", "--dataset", "fashion_mnst", "--out",
                           str(tmp_path / "r2"))
    assert code == 3 and "unknown dataset 'fashion_mnst'" in err
    code, _, err = run_cli(capsys, "train", "--dataset", "digits", "--channels", "2")
    assert code == 2 and "--channels: invalid choice: 2" in err


def test_rgb_from_grayscale_is_recorded_and_evaluated_so(tmp_path, capsys, cache):
    data = of.write_idx(tmp_path / "mnist", of.mnist_arrays(n_train=40, n_test=20))
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--dataset", "mnist", "--data-dir", str(data),
                           "--channels", "3", "--image-size", "32", "--epochs", "1",
                           "--batch-size", "20", "--out", str(out), "--quiet")
    assert code == 0, err
    assert json.loads((out / "config.json").read_text())["dataset"]["input_shape"] == [32, 32, 3]
    code, stdout, err = run_cli(capsys, "evaluate", str(out))
    assert code == 0 and "20" in stdout, err


def test_the_bench_table_widens_its_model_column_for_a_builder():
    from kvt import bench

    peak = {"peak_fp32_gflop_s": 100.0, "peak_fp32_source": "numpy", "peak_fp32_n": 2048,
            "peak_bf16_gflop_s": None, "peak_bf16_source": None, "peak_bf16_n": None}
    measured = {"train_img_s": 500.0, "infer_img_s": 2000.0, "compile_s": 1.5,
                "peak_rss_mb": 900.0, "gflops_per_img": 0.16, "data": "synthetic"}
    rows = [bench.finish(bench.RowSpec("kvt", model=model), measured, peak)
            for model in ("examples/resnet_small.py:build", "minivggnet",
                          "a.very.long.package.path.of.models:build_the_network")]
    lines = bench.table(peak, rows, []).splitlines()
    assert lines[2].split()[1] == "examples/resnet_small.py:build"
    cut = lines[4].split()[1]  # 32 characters: "~" and the builder's end
    assert len(cut) == 32 and cut.startswith("~") and cut.endswith("models:build_the_network")
    assert len({len(line) for line in lines[:5]}) == 1  # fixed columns
