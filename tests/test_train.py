import csv

import keras
import numpy as np
import pytest
from PIL import Image

from conftest import learned
from kvt.config import TrainConfig
from kvt.recipes import from_recipe
from kvt.data import load_dataset
from kvt.errors import TrainingError
from kvt.runs import RunDir
from kvt.saving import load_model, read_model_meta, to_inputs
from kvt.train import fit

ARTIFACTS = ["config.json", "summary.txt", "status.json", "history.csv", "metrics.json",
             "report.txt", "plot.png", "confusion_matrix.png", "model.keras"]


@pytest.mark.learning
@pytest.mark.parametrize("api", ["keras", "tf"])
def test_training_on_digits_writes_a_complete_readable_run(digits_runs, api):
    run = RunDir(digits_runs[api])
    for name in ARTIFACTS:
        assert (run / name).is_file(), name
    assert run.status() == "complete"
    assert not list(run.path.glob(".*tmp*"))
    for folder in ("train", "validation"):  # TensorBoard's (tests/test_resume.py reads them)
        assert len(list((run / "logs" / folder).glob("events.out.tfevents.*"))) == 1

    saved = run.read_json("config.json")
    config = TrainConfig.from_dict(saved["config"])
    assert (config.api, config.activation, config.epochs, config.batch_size) == (api, "crelu", 3, 8)
    assert saved["environment"]["backend"] == "tensorflow" and saved["environment"]["tensorflow"]
    assert saved["dataset"]["class_names"] == [str(d) for d in range(10)]

    with open(run / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "epoch_seconds"} <= set(rows[0])

    metrics = run.read_json("metrics.json")
    # Chance is 0.1. Measured by make test-stress (2-core AMD EPYC, 2026-11-27; seeds
    # 0-9 at 1 thread, seeds 0-4 at 2 threads, n = 15):
    # 0.858-0.969 (mean 0.922, sd 0.030), the same for both APIs (identical runs).
    learned(f"digits {api}/crelu test accuracy", metrics["test_accuracy"], 0.6)
    assert metrics["test_accuracy"] == pytest.approx(float(rows[-1]["val_accuracy"]), abs=1e-4)
    assert set(metrics["per_class"]) == {str(d) for d in range(10)}
    assert metrics["images_per_second"] > 0 and metrics["train_seconds"] > 0

    report = (run / "report.txt").read_text()
    assert "precision" in report and "weighted avg" in report
    for name in ("plot.png", "confusion_matrix.png"):
        with Image.open(run / name) as img:
            assert img.format == "PNG" and img.width > 300
    plot_copy = run.path.parent / f"plot_{api}.png"
    assert plot_copy.read_bytes() == (run / "plot.png").read_bytes()

    meta = read_model_meta(run / "model.keras")
    assert meta["class_names"] == [str(d) for d in range(10)] and meta["api"] == api


@pytest.mark.parametrize("api", ["keras", "tf"])
def test_save_reload_in_safe_mode_predicts_identically(tmp_path, api):
    dataset = load_dataset("digits").limit(200, 60, seed=0)
    config = TrainConfig(api=api, activation="crelu", dataset="digits", epochs=1, batch_size=16)
    run = fit(config, dataset, RunDir(tmp_path / "run").create())
    again, meta = load_model(tmp_path / "run" / "model.keras")
    x = to_inputs(dataset.x_test)
    np.testing.assert_array_equal(again.predict(x, verbose=0), run.model.predict(x, verbose=0))
    assert meta["class_names"] == dataset.class_names
    # Plain Keras reads the file too (kvt's extra archive entry does not disturb it).
    plain = keras.saving.load_model(tmp_path / "run" / "model.keras", safe_mode=True)
    np.testing.assert_array_equal(plain.predict(x, verbose=0), run.model.predict(x, verbose=0))


def test_one_line_per_epoch_when_not_a_terminal(tmp_path, capsys):
    import io

    dataset = load_dataset("digits").limit(100, 30, seed=0)
    stream = io.StringIO()
    fit(TrainConfig(dataset="digits", epochs=2, batch_size=10), dataset, stream=stream)
    lines = stream.getvalue().splitlines()
    assert [ln.split(" - ")[0] for ln in lines] == ["epoch 1/2", "epoch 2/2"]
    assert all("val_accuracy" in ln and ln.endswith("img/s") for ln in lines)


def test_learning_rate_decay_is_per_step_inverse_time():
    from kvt.train import build_and_compile

    model = build_and_compile(TrainConfig(), (8, 8, 1), 10)
    schedule = keras.optimizers.schedules.deserialize(
        model.optimizer.get_config()["learning_rate"])
    assert isinstance(schedule, keras.optimizers.schedules.InverseTimeDecay)
    for step in (0, 1, 1563, 46890):
        expected = 0.01 / (1 + (0.01 / 30) * step)
        assert float(schedule(step)) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("epochs", [3, 30])
def test_recipe_decay_is_the_tutorials_lr_over_epochs(epochs):
    from kvt.train import build_and_compile

    model = build_and_compile(TrainConfig(epochs=epochs), (8, 8, 1), 10)
    schedule = model.optimizer.get_config()["learning_rate"]
    assert schedule["config"]["decay_rate"] == pytest.approx(0.01 / epochs)


def test_diverging_loss_stops_and_marks_the_run_failed(tmp_path):
    dataset = load_dataset("digits").limit(200, 50, seed=0)
    config = TrainConfig(dataset="digits", epochs=3, batch_size=10, lr=1e12, decay=0.0)
    run_dir = RunDir(tmp_path / "nan").create()
    with pytest.raises(TrainingError, match=r"loss became (nan|inf) at epoch 1, step \d+: .*"
                                            r"smaller --lr"):
        fit(config, dataset, run_dir)
    assert run_dir.status() == "failed"
    assert not (run_dir / "metrics.json").exists() and not (run_dir / "model.keras").exists()


def test_same_seed_same_initial_model():
    from kvt.train import build_and_compile

    weights = []
    for _ in range(2):
        keras.utils.set_random_seed(7)
        weights.append(build_and_compile(TrainConfig(), (8, 8, 1), 10).get_weights())
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)


def test_config_backend_must_match_the_running_backend():
    from kvt.errors import BackendError

    dataset = load_dataset("digits").limit(100, 30, seed=0)
    with pytest.raises(BackendError, match="asks for backend jax but Keras runs on tensorflow"):
        fit(TrainConfig(dataset="digits", backend="jax", epochs=1), dataset)


def test_bf16_trains_in_bfloat16_with_float32_weights_and_softmax(tmp_path, capsys):
    """--precision bf16: every layer but the output computes in bfloat16 (Keras'
    mixed_bfloat16), the weights stay float32, the softmax and its probabilities are
    float32; the run records it, and the saved model reloads and evaluates as such."""
    import json

    from conftest import run_cli

    out = tmp_path / "bf16"
    code, _, err = run_cli(capsys, "train", "--dataset", "digits", "--train-limit", "40",
                           "--test-limit", "20", "--epochs", "1", "--batch-size", "8",
                           "--precision", "bf16", "--out", str(out))
    assert code == 0, err
    assert json.loads((out / "config.json").read_text())["config"]["precision"] == "bf16"
    model, _ = load_model(out / "model.keras")
    conv = next(layer for layer in model.layers if layer.weights)
    assert (conv.compute_dtype, conv.variable_dtype) == ("bfloat16", "float32")
    assert all(w.dtype == "float32" for w in model.weights)
    assert model.layers[-1].compute_dtype == "float32"
    x = to_inputs(load_dataset("digits").x_test[:4])
    assert keras.backend.standardize_dtype(model(x).dtype) == "float32"
    assert keras.backend.standardize_dtype(conv(x).dtype) == "bfloat16"
    code, _, err = run_cli(capsys, "evaluate", str(out))
    assert code == 0, err
    assert keras.mixed_precision.global_policy().name == "float32"  # restored after the build
    code, _, err = run_cli(capsys, "train", "--dataset", "digits", "--precision", "fp16")
    assert code == 2 and "--precision: invalid choice: 'fp16'" in err
    with pytest.raises(Exception, match="^unknown precision 'fp16'"):  # the field's name
        TrainConfig(precision="fp16")


def test_steps_per_execution_is_recorded_and_refused_on_torch(tmp_path, capsys):
    """--steps-per-execution N goes to Keras' compile (N steps per call into the compiled
    step): the run records it and trains every image; PyTorch's trainer cannot, so it is
    refused with the reason."""
    import json

    from conftest import run_cli

    out = tmp_path / "spe"
    code, _, err = run_cli(capsys, "train", "--dataset", "digits", "--train-limit", "64",
                           "--test-limit", "20", "--epochs", "1", "--batch-size", "8",
                           "--steps-per-execution", "4", "--out", str(out))
    assert code == 0, err
    assert json.loads((out / "config.json").read_text())["config"]["steps_per_execution"] == 4
    model, _ = load_model(out / "model.keras")
    assert int(model.optimizer.iterations) == 8  # 64 images at batch 8, in 2 calls of 4
    code, _, err = run_cli(capsys, "train", "--dataset", "digits", "--backend", "torch",
                           "--steps-per-execution", "2")
    assert code == 2 and "--steps-per-execution 2 needs --backend tensorflow or jax" in err
    code, _, err = run_cli(capsys, "train", "--dataset", "digits", "--steps-per-execution", "0")
    assert code == 2 and "--steps-per-execution must be a positive integer, got 0" in err


def test_warmup_cosine_rises_to_lr_then_falls_to_zero_at_the_last_step():
    from kvt.train import build_and_compile

    config = from_recipe("fast", epochs=4, warmup_epochs=1.0, lr=0.1)
    model = build_and_compile(config, (8, 8, 1), 10, train_images=1000)
    optimizer = model.optimizer
    assert optimizer.nesterov and optimizer.momentum == 0.9
    assert optimizer.weight_decay == pytest.approx(config.weight_decay)
    schedule = keras.optimizers.schedules.deserialize(optimizer.get_config()["learning_rate"])
    steps = -(-1000 // config.batch_size)  # 2 steps per epoch at batch 512
    lr = [float(schedule(s)) for s in range(4 * steps + 1)]
    assert lr[0] == pytest.approx(0.0, abs=1e-9)
    assert lr[steps] == pytest.approx(0.1)  # the peak at the end of the warm-up
    assert lr[4 * steps] == pytest.approx(0.0, abs=1e-9)  # zero at the last step
    assert all(a <= b for a, b in zip(lr[:steps], lr[1:steps + 1]))
    assert all(a >= b for a, b in zip(lr[steps:], lr[steps + 1:]))
    loss = model.loss
    assert isinstance(loss, keras.losses.CategoricalCrossentropy)
    assert loss.get_config()["label_smoothing"] == pytest.approx(config.label_smoothing)


def test_fast_recipe_trains_and_records_every_recipe_field(tmp_path, capsys):
    """`--recipe fast` with a flag overridden: config.json holds the recipe's fields, the
    run takes every step of the schedule, which ends at 0."""
    import json

    from conftest import run_cli

    out = tmp_path / "fast"
    code, stdout, err = run_cli(capsys, "train", "--recipe", "fast", "--dataset", "digits",
                                "--train-limit", "128", "--test-limit", "40", "--epochs", "2",
                                "--batch-size", "32", "--no-nesterov", "--out", str(out))
    assert code == 0, err
    assert "lr 0 to 0.1 over 1 epochs, cosine to 0 (--recipe fast)" in stdout
    config = json.loads((out / "config.json").read_text())["config"]
    assert {k: config[k] for k in ("recipe", "schedule", "augment", "nesterov", "epochs")} == \
        {"recipe": "fast", "schedule": "warmup-cosine", "augment": "flip-translate",
         "nesterov": False, "epochs": 2}
    model, _ = load_model(out / "model.keras")
    assert int(model.optimizer.iterations) == 8  # 128 images at batch 32, 2 epochs
    assert float(model.optimizer.learning_rate) == pytest.approx(0.0, abs=1e-9)


def test_fast_cpu_recipe_trains_quicknet_with_its_fields(tmp_path, capsys):
    """`--recipe fast-cpu` picks QuickNet (the recipe names its model) and its schedule;
    a typed flag still wins."""
    import json

    from conftest import run_cli
    from kvt.recipes import RECIPES

    out = tmp_path / "fast-cpu"
    code, stdout, err = run_cli(capsys, "train", "--recipe", "fast-cpu", "--dataset", "digits",
                                "--train-limit", "128", "--test-limit", "40",
                                "--batch-size", "32", "--out", str(out))
    assert code == 0, err
    assert "training quicknet (--api keras, relu)" in stdout and "(--recipe fast-cpu)" in stdout
    config = json.loads((out / "config.json").read_text())["config"]
    recipe = RECIPES["fast-cpu"]
    assert config["model"] == "quicknet" and config["recipe"] == "fast-cpu"
    assert {k: config[k] for k in recipe if k != "batch_size"} == \
        {k: v for k, v in recipe.items() if k != "batch_size"}
    assert config["batch_size"] == 32
    model, _ = load_model(out / "model.keras")
    assert model.name == "quicknet_keras"
    assert int(model.optimizer.iterations) == 4 * recipe["epochs"]  # 128 images at batch 32


def test_tta_flip_judges_each_image_and_its_mirror_in_train_evaluate_and_predict(
        tmp_path, capsys):
    """A run trained with --tta flip: its accuracy is that of the averaged probabilities
    (the single pass recorded beside it), and the saved model's `kvt evaluate` and `kvt
    predict` average the same way unless told --tta none."""
    import json

    from conftest import run_cli

    out = tmp_path / "tta"
    code, stdout, err = run_cli(capsys, "train", "--dataset", "digits", "--epochs", "1",
                                "--batch-size", "16", "--tta", "flip", "--out", str(out))
    assert code == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["tta"] == "flip"
    model, meta = load_model(out / "model.keras")
    assert meta["tta"] == "flip"
    ds = load_dataset("digits")
    x = to_inputs(ds.x_test, meta)
    single = model.predict(x, batch_size=256, verbose=0)
    averaged = (single + model.predict(x[:, :, ::-1], batch_size=256, verbose=0)) / 2
    accuracy = {"flip": np.mean(averaged.argmax(1) == ds.y_test),
                "none": np.mean(single.argmax(1) == ds.y_test)}
    one_image = 1 / len(ds.y_test)  # a near-tie may fall the other way in another batching
    assert metrics["accuracy"] == pytest.approx(accuracy["flip"], abs=one_image)
    assert metrics["single_pass_accuracy"] == pytest.approx(accuracy["none"], abs=one_image)
    assert f"with --tta flip (one pass {100 * metrics['single_pass_accuracy']:.2f}%" in stdout

    for flags, tta in (([], "flip"), (["--tta", "none"], "none")):
        code, stdout, err = run_cli(capsys, "evaluate", str(out), *flags)
        assert code == 0, err
        assert ("(--tta flip)" in stdout) == (tta == "flip")
        shown = float(stdout.split("test accuracy ")[1].split("%")[0])
        assert shown == pytest.approx(100 * accuracy[tta], abs=100 * one_image + 0.005)

    image = tmp_path / "digit.png"
    Image.fromarray(ds.x_test[0][..., 0]).save(image)
    for flags, probs in (([], averaged[0]), (["--tta", "none"], single[0])):
        code, stdout, err = run_cli(capsys, "predict", str(out), str(image), "--top", "10",
                                    "--format", "json", *flags)
        assert code == 0, err
        got = {row["class"]: row["probability"] for row in json.loads(stdout)[0]["top"]}
        np.testing.assert_allclose([got[str(c)] for c in range(10)], probs, atol=1e-5)
    assert np.abs(averaged[0] - single[0]).max() > 1e-3  # the mirror image changed them
