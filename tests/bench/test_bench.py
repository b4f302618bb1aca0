"""kvt bench: what it computes (FLOPs, rows, dtypes, JSON, % of peak), never a timing."""

import json
import subprocess
import sys

import keras
import numpy as np
import pytest

from conftest import run_cli
from kvt import bench
from kvt.models import build_model

ALL = {"tensorflow": True, "jax": True, "torch": True}


def test_flops_of_a_conv_and_a_dense_layer_by_hand():
    # Conv2D 3x3, 32 -> 64 channels, on 16x16 ("same"): 16*16 outputs of 3*3*32
    # multiply-adds for each of 64 filters, plus one bias add per output.
    by_hand = 2 * 16 * 16 * 3 * 3 * 32 * 64 + 16 * 16 * 64
    assert bench.conv2d_flops(16, 16, 3, 3, 32, 64) == by_hand == 9_453_568
    assert bench.dense_flops(512, 10) == 2 * 512 * 10 + 10

    conv = keras.layers.Conv2D(64, 3, padding="same")
    dense = keras.layers.Dense(10)
    keras.Sequential([keras.Input((16, 16, 32)), conv])
    keras.Sequential([keras.Input((512,)), dense])
    assert bench.keras_layer_flops(conv) == by_hand
    assert bench.keras_layer_flops(dense) == 10_250


def test_minivggnet_flops_by_hand():
    conv = (bench.conv2d_flops(32, 32, 3, 3, 3, 32) + bench.conv2d_flops(32, 32, 3, 3, 32, 32)
            + bench.conv2d_flops(16, 16, 3, 3, 32, 64) + bench.conv2d_flops(16, 16, 3, 3, 64, 64))
    dense = bench.dense_flops(8 * 8 * 64, 512) + bench.dense_flops(512, 10)
    elements = 2 * 32 * 32 * 32 + 2 * 16 * 16 * 64 + 512  # after each hidden conv/dense
    small = (elements * (1 + 4)  # activation 1 + BatchNorm 4 per element
             + 3 * (16 * 16 * 32 + 8 * 8 * 64)  # 2x2 max pools: 3 comparisons per output
             + 3 * 10)  # softmax
    model = build_model("minivggnet", "keras", (32, 32, 3), 10, "relu")
    forward, uncounted = bench.keras_flops(model)
    assert forward == conv + dense + small == 53_789_736
    assert uncounted == []
    assert bench.TRAIN_FACTOR * forward / 1e9 == pytest.approx(0.161, abs=0.001)
    # CReLU (all hidden activations but the first conv's) doubles the channels that the
    # next conv, dense layer, BatchNorm and pool see; the tf.keras model counts the same.
    conv = (bench.conv2d_flops(32, 32, 3, 3, 3, 32) + bench.conv2d_flops(32, 32, 3, 3, 32, 32)
            + bench.conv2d_flops(16, 16, 3, 3, 64, 64)
            + bench.conv2d_flops(16, 16, 3, 3, 128, 64))
    dense = bench.dense_flops(8 * 8 * 128, 512) + bench.dense_flops(1024, 10)
    widths = [32 * 32 * 32, 32 * 32 * 64, 16 * 16 * 128, 16 * 16 * 128, 1024]  # act outputs
    small = (5 * sum(widths)  # activation 1 + BatchNorm 4 per element
             + 3 * (16 * 16 * 64 + 8 * 8 * 128) + 3 * 10)
    crelu = bench.keras_flops(build_model("minivggnet", "keras", (32, 32, 3), 10, "crelu"))
    assert crelu == (conv + dense + small, [])
    assert bench.keras_flops(build_model("minivggnet", "tf", (32, 32, 3), 10, "crelu")) == crelu


def test_torch_yardstick_is_the_same_network():
    torch = pytest.importorskip("torch")
    for activation in ("relu", "crelu"):
        model = bench.torch_minivggnet(activation)
        keras_model = build_model("minivggnet", "keras", (32, 32, 3), 10, activation)
        assert bench.torch_flops(model, torch.zeros(1, 3, 32, 32)) == bench.keras_flops(keras_model)
        trainable = sum(p.numel() for p in model.parameters())
        assert trainable == sum(int(np.prod(w.shape)) for w in keras_model.trainable_weights)


def test_rows_are_the_product_with_impossible_combinations_skipped():
    rows, notes = bench.plan(["tensorflow", "jax"], ["keras", "tf"], ["relu", "crelu"],
                             ["float32", "bf16"], [8, 32], [1], ["torch", "tf"],
                             installed=ALL, steps=2, warmup=1)
    kvt = [r for r in rows if r.kind == "kvt"]
    assert len(kvt) == 2 * 2 * 2 * 2 + 1 * 2 * 2 * 2  # --api tf only on tensorflow
    assert not any(r.api == "tf" and r.backend == "jax" for r in kvt)
    assert notes == ["skipped --api tf on jax: the tf.keras model calls TensorFlow ops, so "
                     "it needs --backend tensorflow"]
    yard = [(r.backend, r.api) for r in rows if r.kind == "yardstick"]
    assert yard == [("torch", "torch.nn")] * 8 + [("tensorflow", "tf.function")] * 8
    assert all(r.steps == 2 and r.warmup == 1 for r in rows)
    assert rows[0] == bench.RowSpec("kvt", "tensorflow", "keras", "relu", "float32", 8, 1, 2, 1)
    assert bench.RowSpec.from_json(rows[5].to_json()) == rows[5]

    rows, notes = bench.plan(["tensorflow"], ["keras"], ["relu", "mymod:act"], ["float32"],
                             [32], [1, 4], ["torch", "tf"], installed={**ALL, "torch": False})
    assert [(r.activation, r.steps_per_execution) for r in rows if r.kind == "kvt"] == [
        ("relu", 1), ("relu", 4), ("mymod:act", 1), ("mymod:act", 4)]
    assert [r.api for r in rows if r.kind == "yardstick"] == ["tf.function"] * 2
    assert notes == ["skipped the torch yardstick: torch is not installed"]
    _, notes = bench.plan(["tensorflow"], ["keras"], ["mymod:act"], ["float32"], [32], [1],
                          ["torch"], installed=ALL)
    assert notes == ["skipped the torch yardstick for --activation mymod:act: it has no "
                     "plain PyTorch twin"]


def test_models_multiply_the_kvt_rows_and_the_yardsticks_stay_minivggnet():
    rows, _ = bench.plan(["tensorflow"], ["keras"], ["relu"], ["float32"], [32], [1], ["tf"],
                         installed=ALL, models=["minivggnet", "quicknet"])
    assert [(r.kind, r.model) for r in rows] == [
        ("kvt", "minivggnet"), ("kvt", "quicknet"), ("yardstick", "minivggnet")]
    model = bench.build_keras_model(rows[1], (32, 32, 3), 10)
    assert model.name == "quicknet_keras"
    peak = {"peak_fp32_gflop_s": 100.0, "peak_fp32_source": "numpy", "peak_fp32_n": 2048}
    row = bench.finish(rows[1], {"train_img_s": 10.0, "gflops_per_img": 0.1}, peak)
    assert row["model"] == "quicknet" and row["pct_of_peak"] == pytest.approx(1.0)
    line = bench.table(peak, [row], []).splitlines()[2]
    assert line.split()[:2] == ["kvt", "quicknet"]


def test_bf16_builds_a_model_that_computes_in_bf16_with_float32_variables():
    spec = bench.RowSpec("kvt", precision="bf16", batch_size=4)
    model = bench.build_keras_model(spec, (32, 32, 3), 10)
    x = np.random.default_rng(0).random((4, 32, 32, 3), dtype=np.float32)
    assert bench.dtypes(model, x) == {"compute_dtype": "bfloat16",
                                      "variable_dtype": "float32", "output_dtype": "float32"}
    assert keras.mixed_precision.global_policy().name == "float32"  # restored
    before = [np.array(w) for w in model.trainable_weights]
    model.train_on_batch(x, keras.utils.to_categorical(np.arange(4), 10))
    assert all(w.dtype == "float32" for w in model.trainable_weights)
    assert any(not np.array_equal(b, np.array(w))
               for b, w in zip(before, model.trainable_weights))
    fp32 = bench.build_keras_model(bench.RowSpec("kvt"), (32, 32, 3), 10)
    assert bench.dtypes(fp32, x)["compute_dtype"] == "float32"


def test_percent_of_peak_and_the_table():
    peak = {"peak_fp32_gflop_s": 100.0, "peak_fp32_source": "numpy", "peak_fp32_n": 2048,
            "peak_bf16_gflop_s": None, "peak_bf16_source": None, "peak_bf16_n": None}
    measured = {"train_img_s": 500.0, "infer_img_s": 2000.0, "compile_s": 1.5,
                "peak_rss_mb": 900.0, "gflops_per_img": 0.16, "measured_steps": 20,
                "warmup_steps": 3, "data": "synthetic"}
    fp32 = bench.finish(bench.RowSpec("kvt", activation="mypkg.acts:swish2"), measured, peak)
    assert fp32["train_gflop_s"] == pytest.approx(80.0)
    assert fp32["pct_of_peak"] == pytest.approx(80.0)
    bf16 = bench.finish(bench.RowSpec("kvt", precision="bf16"), measured, peak)
    assert bf16["pct_of_peak"] is None  # no bf16 peak: no percentage
    gpu = bench.finish(bench.RowSpec("kvt"), {**measured, "device": "gpu"}, peak)
    assert gpu["pct_of_peak"] is None  # the peak is the CPU's
    failed = bench.finish(bench.RowSpec("yardstick", "torch", "torch.nn"),
                          {"error": "boom", "exit_code": 1}, peak)
    text = bench.table(peak, [fp32, bf16, failed], ["a note"])
    lines = text.splitlines()
    assert lines[0].split()[:4] == ["row", "model", "backend", "api"]
    assert len(lines[2]) == len(lines[0])  # fixed columns, a long name cut short
    assert "mypkg.act~" in lines[2] and fp32["activation"] == "mypkg.acts:swish2"
    assert lines[2].split()[-2:] == ["80.0", "80.0"] and lines[3].split()[-1] == "-"
    assert "failed: boom" in lines[4]
    assert "bf16 n/a" in text and "3 x forward" in text and "note: a note" in text


@pytest.mark.process
def test_a_tiny_real_run_writes_json_rows(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "kvt", "bench", "--backend", "tensorflow", "--precision",
         "bf16", "--batch-size", "8", "--steps", "2", "--warmup", "1",
         "--yardstick", "none", "--json", str(out)],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(out.read_text())
    # One row (each costs a process and TensorFlow's start-up); float32 rows compute in
    # float32: see the bf16 test above.
    assert [(r["kind"], r["precision"]) for r in rows] == [("kvt", "bf16")]
    types = {"model": str, "backend": str, "api": str, "activation": str, "precision": str,
             "batch_size": int, "train_img_s": float, "infer_img_s": float,
             "compile_s": float, "peak_rss_mb": float, "gflops_per_img": float,
             "pct_of_peak": float}
    for row in rows:
        for field, kind in types.items():
            assert isinstance(row[field], kind), (field, row[field])
        assert row["train_img_s"] > 0 and row["peak_rss_mb"] > 0
        assert row["gflops_per_img"] == pytest.approx(3 * 53_789_736 / 1e9)
        assert row["variable_dtype"] == "float32" and row["output_dtype"] == "float32"
        assert row["compute_dtype"] == "bfloat16"  # what the trained model computed in
        assert row["device"] == "cpu" and row["data"] == "synthetic"
    assert "3 x forward" in proc.stdout and "% peak" in proc.stdout
    assert len(proc.stdout.splitlines()[2].split()) == len(bench.COLUMNS)


@pytest.mark.parametrize("argv, code, message", [
    (["--batch-size", "0"], 2, "argument --batch-size: '0': each value must be a positive"),
    (["--batch-size", "8,x"], 2, "is not a comma list of integers"),
    (["--precision", "fp16"], 2, "argument --precision: fp16 not one of float32, bf16"),
    (["--model", "resnet"], 2, "argument --model: resnet not one of minivggnet, quicknet"),
    (["--steps", "0"], 2, "argument --steps: '0': must be a positive integer"),
    (["--backend", "tensorflow,mxnet"], 2, "mxnet not one of tensorflow, jax, torch"),
    (["--api", "tf", "--backend", "torch"], 2, "nothing to measure: skipped --api tf on torch"),
    (["--activation", "nope"], 4, "unknown activation 'nope'"),
    (["--json", "no/such/folder/b.json"], 6, "cannot write --json no/such/folder/b.json"),
    (["--dataset", "no/such/images"], 3, "unknown dataset 'no/such/images'"),
])
def test_bad_input_is_one_line_and_an_exit_code(capsys, argv, code, message):
    got, out, err = run_cli(capsys, "bench", *argv)
    assert got == code
    assert message in err and len(err.strip().splitlines()) == 1 and out == ""


def test_a_missing_backend_names_the_pip_command(capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "jax" else real(name, *a))
    code, out, err = run_cli(capsys, "bench", "--backend", "tensorflow,jax")
    assert code == 5
    assert err.strip() == ("kvt bench: error: the jax backend needs jax, which is not "
                           "installed: pip install 'kvt[jax]'")
