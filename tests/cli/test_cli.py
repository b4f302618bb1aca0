import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import FAST_DIGITS, run_cli
from kvt.cli import main
from kvt.errors import UsageError
from processes import HANG


@pytest.mark.process
def test_help_and_argument_errors_import_no_framework():
    code = (
        "import sys\n"
        "from kvt.cli import main\n"
        "codes = []\n"
        "for argv in (['--help'], ['train', '--help'], ['train', '--epochs', '0'],\n"
        "             ['predict', '--help'], ['compare', '--help'], ['evaluate', '--help'],\n"
        "             ['train', '--epochs', 'x'], ['predict', 'm.keras', 'a.png', '--top', '0'],\n"
        "             ['bench', '--help'], ['bench', '--precision', 'x'],\n"
        "             ['export', '--help'], ['export', 'm.keras', '--format', 'x'],\n"
        "             ['compare', '--executor', 'ray', '--cpus-per-run', '0']):\n"
        "    try:\n"
        "        codes.append(main(argv))\n"
        "    except SystemExit as e:\n"
        "        codes.append(e.code)\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'jax', 'torch', 'ray') if m in sys.modules]\n"
        "print('CODES', codes, 'HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=HANG)
    assert "CODES [0, 0, 2, 0, 0, 0, 2, 2, 0, 2, 0, 2, 2] HEAVY []" in out.stdout, out.stdout + out.stderr


@pytest.mark.process
def test_console_script_runs_with_exit_codes():
    kvt = Path(sys.executable).with_name("kvt")
    ok = subprocess.run([str(kvt), "--version"], capture_output=True, text=True, timeout=HANG)
    assert ok.returncode == 0 and ok.stdout.startswith("kvt ")
    bad = subprocess.run([str(kvt), "train", "--dataset", "digits", "--lr", "-1"],
                         capture_output=True, text=True, timeout=HANG)
    assert bad.returncode == 2
    assert bad.stderr.strip() == "kvt train: error: --lr must be a finite number > 0.0, got -1.0"


def _bad_inputs(tmp_path: Path, digits_runs):
    run = str(digits_runs["keras"])
    incomplete = tmp_path / "incomplete"
    incomplete.mkdir()
    (incomplete / "status.json").write_text('{"status": "running"}')
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    not_model = tmp_path / "model.h5"
    not_model.write_bytes(b"x")
    broken_model = tmp_path / "broken.keras"
    broken_model.write_bytes(b"not a zip")
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "metrics.json").write_text("{}")
    return [
        (["train", "--epochs", "0"], 2, "--epochs must be a positive integer, got 0"),
        (["train", "--lr", "nan"], 2, "--lr must be a finite number > 0.0, got nan"),
        (["train", "--momentum", "1.5"], 2, "--momentum must be a finite number"),
        (["train", "--batch-size", "-4"], 2, "--batch-size must be a positive integer"),
        (["train", "--image-size", "3"], 2, "--image-size must be at least 4"),
        (["train", "--model", "quicknet", "--image-size", "4"], 2,
         "--image-size must be at least 8 for quicknet (quicknet halves the image three "
         "times"),
        (["train", "--label-smoothing", "1"], 2, "--label-smoothing must be a finite number"),
        (["train", "--warmup-epochs", "1"], 2,
         "--warmup-epochs applies to --schedule warmup-cosine, not keras2"),
        (["train", "--seed", "4294967296"], 2, "--seed must be an integer from 0 to 4294967295"),
        (["train", "--epochs", "three"], 2, "invalid int value: 'three'"),
        (["train", "--api", "tf", "--backend", "jax"], 2, "needs --backend tensorflow"),
        (["train", "--recipe", "turbo"], 2, "invalid choice: 'turbo'"),
        (["train", "--activation", "sigmoidal"], 4, "unknown activation 'sigmoidal'"),
        (["train", "--model", "resnet50"], 4, "unknown model 'resnet50' for --api keras: known"),
        (["train", "--dataset", "digits", "--activation", "nosuchmodule_xyz:f"], 4,
         "cannot import module 'nosuchmodule_xyz'"),
        (["train", "--dataset", str(tmp_path / "nope")], 3, "unknown dataset"),
        (["train", "--data-dir", str(tmp_path / "nope")], 3, "does not exist: point --data-dir"),
        (["train", "--data-dir", str(tmp_path)], 3, "holds no CIFAR-10 data"),
        (["train", "--dataset", "digits", "--batch-size", "5000"], 2,
         "--batch-size 5000 is larger than the 1347 training images"),
        (["train", "--dataset", "digits", "--out", str(existing)], 6,
         "already holds a run (metrics.json): choose another --out or pass --force"),
        (["train", "--dataset", "digits", "--out", "/proc/kvt-run"], 6,
         "cannot write the run directory /proc/kvt-run"),
        (["train", "--dataset", "digits", "--plot", str(tmp_path / "nope" / "p.png")], 6,
         f"cannot write --plot {tmp_path / 'nope' / 'p.png'}: the folder {tmp_path / 'nope'} "
         f"does not exist"),
        (["train", "--dataset", "digits", "--plot", "/proc/p.png"], 6,
         "cannot write --plot /proc/p.png: the folder /proc is not writable"),
        (["train", "--dataset", "digits", "--plot", str(tmp_path)], 6,
         f"--plot {tmp_path} is a folder: name a file in it"),
        (["evaluate", str(tmp_path / "nope")], 6, "does not exist: pass a run directory"),
        (["evaluate", str(incomplete)], 6, "is not a complete run (status: running)"),
        (["evaluate", str(broken_model)], 4, "is not a readable .keras model file"),
        (["evaluate", run, "--dataset", "cifar10", "--data-dir", str(tmp_path / "nope")], 3,
         "does not exist"),
        (["predict", str(not_model), "a.png"], 4, "is not a .keras model file"),
        (["predict", run, str(corrupt)], 3, "cannot decode image"),
        (["predict", run, str(tmp_path / "missing.png")], 3, "missing.png does not exist"),
        (["predict", run, str(corrupt), "--top", "0"], 2, "--top must be a positive integer"),
        (["info", str(tmp_path)], 6, "is not a kvt run directory (it has no config.json)"),
        (["info", str(incomplete_config(tmp_path))], 6, "has no summary.txt"),
        (["train", "--precision", "fp16"], 2, "invalid choice: 'fp16'"),
    ]


def incomplete_config(tmp_path: Path) -> Path:
    """A run directory from before kvt wrote summary.txt."""
    old = tmp_path / "old-run"
    old.mkdir()
    (old / "config.json").write_text("{}")
    return old


def test_every_bad_input_gets_one_line_and_its_exit_code(tmp_path, capsys, digits_runs,
                                                         monkeypatch):
    monkeypatch.chdir(tmp_path)  # where the default runs/<name> would go
    for argv, code, words in _bad_inputs(tmp_path, digits_runs):
        got, out, err = run_cli(capsys, *argv)
        lines = err.strip().splitlines()
        assert got == code, (argv, got, err)
        assert len(lines) == 1 and words in lines[0], (argv, err)
        assert "Traceback" not in err + out
    assert not (tmp_path / "nope").exists()
    assert not list((tmp_path / "runs").glob("*"))  # no run directory left behind
    assert json.loads((tmp_path / "existing" / "metrics.json").read_text()) == {}


def test_failed_data_load_leaves_no_empty_run_directory(tmp_path, capsys):
    out = tmp_path / "runs" / "r"
    code, _, _ = run_cli(capsys, "train", "--data-dir", str(tmp_path / "nope"), "--out", str(out))
    assert code == 3 and not out.exists()


def test_debug_shows_the_traceback():
    with pytest.raises(UsageError):
        main(["--debug", "train", "--epochs", "0"])


def test_evaluate_run_dir_and_model_file(capsys, digits_runs):
    run = digits_runs["tf"]
    expected = json.loads((run / "metrics.json").read_text())["test_accuracy"]
    for target in (run, run / "model.keras"):
        code, out, err = run_cli(capsys, "evaluate", str(target))
        assert code == 0, err
        assert f"test accuracy {100 * expected:.2f}%" in out
        assert "weighted avg" in out


def test_predict_any_size_image_prints_top_k(tmp_path, capsys, digits_runs):
    from kvt.data import load_dataset

    ds = load_dataset("digits")
    small = tmp_path / "three.png"
    Image.fromarray(ds.x_test[ds.y_test == 3][0][..., 0]).save(small)
    big = tmp_path / "seven.jpg"
    Image.fromarray(ds.x_test[ds.y_test == 7][0][..., 0]).resize((64, 64)).convert("RGB").save(big)
    model_file = digits_runs["keras"] / "model.keras"
    code, out, err = run_cli(capsys, "predict", str(model_file), str(small), str(big),
                             "--top", "3")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 2
    first = lines[0].split(": ", 1)[1].split(", ")
    probs = [float(p.split()[1]) for p in first]
    assert len(first) == 3 and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0001
    # The PNG of a test image is classified as the model classifies that image in the
    # dataset: the same decoding and scaling, whatever the model learned from its seed.
    from kvt.saving import load_model, to_inputs

    model, _ = load_model(model_file)
    expected = model.predict(to_inputs(ds.x_test[ds.y_test == 3][:1]), verbose=0)[0]
    best = int(np.argmax(expected))
    assert first[0] == f"{best} {expected[best]:.3f}"


def test_tutorial_style_commands(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    small = [*FAST_DIGITS, "--train-limit", "160", "--test-limit", "64"]  # plumbing only
    code, out, err = run_cli(capsys, "train", *small, "--api", "tf", "--activation",
                             "crelu", "--plot", "plot_tf.png")
    assert code == 0, err
    assert (tmp_path / "plot_tf.png").is_file()
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1 and runs[0].name.endswith("-digits-tf-tensorflow-crelu")
    assert "run saved to runs/" in out and "test accuracy" in out
    # --force replaces a run, and leaves no artifact of the old one behind
    code, _, err = run_cli(capsys, "train", *small, "--epochs", "1", "--out", str(runs[0]),
                           "--force")
    assert code == 0, err
    assert len((runs[0] / "history.csv").read_text().splitlines()) == 2


def test_lambda_layer_model_is_refused_unless_unsafe(tmp_path, capsys):
    import keras

    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Lambda(lambda t: t * 2.0),
                              keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")])
    path = tmp_path / "lambda.keras"
    model.save(path)
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(image)
    code, out, err = run_cli(capsys, "predict", str(path), str(image))
    assert code == 4 and "safe mode refuses" in err and "--unsafe" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    code, out, err = run_cli(capsys, "predict", str(path), str(image), "--unsafe")
    assert code == 0, err
    assert out.startswith(f"{image}: ") and len(out.split(", ")) == 3  # classes 0, 1, 2


def test_closed_stdout_is_not_a_traceback(monkeypatch):
    import io

    from kvt.cli import info

    class Closed(io.TextIOBase):  # what `kvt info | head -1` leaves once head has exited
        def write(self, s):
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(info, "PROBES", {name: lambda: {"version": "0", "gpu": False,
                                                         "threads": 1, "devices": ["cpu"]}
                                         for name in info.PROBES})
    monkeypatch.setattr(sys, "stdout", Closed())
    assert main(["info"]) == 141


def test_config_json_records_the_resolved_decay(digits_runs):
    saved = json.loads((digits_runs["keras"] / "config.json").read_text())
    epochs = saved["config"]["epochs"]
    assert saved["config"]["decay"] is None  # follows lr / epochs if reused with other epochs
    assert saved["optimizer"]["decay"] == pytest.approx(0.01 / epochs)
    assert saved["optimizer"]["decay_from"] == "lr / epochs"


@pytest.mark.parametrize("argv", [[], ["train"], ["evaluate"], ["predict"], ["compare"],
                                  ["info"]])
def test_every_help_lists_the_exit_codes(capsys, argv):
    from kvt.errors import EXIT_MEANINGS

    code, out, _ = run_cli(capsys, *argv, "--help")
    assert code == 0
    table = out.split("exit codes:\n", 1)[1].splitlines()
    assert [int(row.split()[0]) for row in table[:len(EXIT_MEANINGS)]] == list(EXIT_MEANINGS)


def test_train_help_documents_every_flag_and_the_recipe_defaults(capsys):
    from kvt.recipes import RECIPES

    code, out, _ = run_cli(capsys, "train", "--help")
    # argparse may wrap a line after the hyphen of "fast-cpu" or "flip-translate"
    flat = re.sub(r"\b(fast|flip)- (cpu|translate)\b", r"\1-\2", " ".join(out.split()))
    seed, fast, cpu = RECIPES["seed"], RECIPES["fast"], RECIPES["fast-cpu"]
    for flag, words in [("--epochs N", f"(seed recipe: {seed['epochs']}; fast: {fast['epochs']}; "
                                       f"fast-cpu: {cpu['epochs']})"),
                        ("--batch-size N", f"(seed recipe: {seed['batch_size']}; fast: "
                                           f"{fast['batch_size']}; fast-cpu: {cpu['batch_size']})"),
                        ("--lr LR", f"(seed recipe: 0.01; fast: {fast['lr']:g}; fast-cpu: "
                                    f"{cpu['lr']:g})"),
                        ("--momentum MOMENTUM", "(seed recipe: 0, plain SGD; fast, fast-cpu: 0.9)"),
                        ("--schedule {keras2,warmup-cosine}", "(seed recipe: keras2; fast, "
                                                              "fast-cpu: warmup-cosine)"),
                        ("--augment {none,flip,flip-translate}", "(seed recipe: none; fast, "
                                                                 "fast-cpu: flip-translate)"),
                        ("--warmup-epochs E", f"(fast: {fast['warmup_epochs']:g}; fast-cpu: "
                                              f"{cpu['warmup_epochs']:g})"),
                        ("--decay DECAY", "seed recipe: lr / epochs"),
                        ("--model MODEL", "model family: minivggnet, quicknet (default: "
                                          "minivggnet; fast-cpu recipe: quicknet)"),
                        ("--threads N", "use at most N CPU threads"),
                        ("--quiet", "print only the final result line")]:
        assert f"{flag} " in flat and words in flat.split(f"{flag} ", 1)[1][:200], flag



def test_every_option_of_every_command_has_help():
    import argparse

    from kvt.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, parser in sub.choices.items():
        missing = [a.option_strings or a.dest for a in parser._actions if not a.help]
        assert not missing, (name, missing)


def test_quiet_train_prints_one_line_and_threads_are_set(tmp_path, capsys, monkeypatch):
    from kvt.backends import THREAD_VARIABLES

    for name in THREAD_VARIABLES:  # restored after the test, whatever --threads sets
        monkeypatch.delenv(name, raising=False)
    out_dir = tmp_path / "q"
    code, out, err = run_cli(capsys, "train", "--dataset", "digits", "--train-limit", "40",
                             "--test-limit", "20", "--epochs", "1", "--batch-size", "8",
                             "--quiet", "--threads", "1", "--out", str(out_dir))
    assert code == 0, err
    assert out.count("\n") == 1 and out.startswith("test accuracy ")
    assert out.rstrip().endswith(f"run saved to {out_dir}")
    env = json.loads((out_dir / "config.json").read_text())["environment"]
    assert env["thread_settings"] == {"OMP_NUM_THREADS": "1", "TF_NUM_INTRAOP_THREADS": "1",
                                      "TF_NUM_INTEROP_THREADS": "1"}
    code, _, err = run_cli(capsys, "train", "--dataset", "digits", "--threads", "0")
    assert code == 2 and "--threads must be a positive integer, got 0" in err


@pytest.mark.process
def test_info_run_prints_the_models_summary_without_a_framework(digits_runs):
    """summary.txt (written as training starts) and `kvt info RUN`, which prints it
    without importing a framework: the model, its parameters, its FLOPs per image."""
    summary = (digits_runs["keras"] / "summary.txt").read_text()
    head = summary.splitlines()
    assert head[0] == "model: minivggnet, --api keras, activation crelu, precision float32"
    assert head[1] == "input: 8x8x1, 10 classes"
    from kvt.models.flops import keras_flops
    from kvt.saving import load_model

    model, _ = load_model(digits_runs["keras"] / "model.keras")
    total = sum(int(np.prod(w.shape)) for w in model.weights)
    assert head[2].startswith(f"parameters: {total:,} (")
    assert head[3].startswith(f"FLOPs per image: {keras_flops(model)[0] / 1e6:.1f} M forward")
    assert "Total params" in summary and "conv2d" in summary
    code = ("import sys; from kvt.cli import main; code = main(['info', sys.argv[1]]); "
            "assert not {'tensorflow', 'jax', 'torch', 'keras'} & set(sys.modules); "
            "sys.exit(code)")
    out = subprocess.run([sys.executable, "-c", code, str(digits_runs["keras"])],
                         capture_output=True, text=True, timeout=HANG)
    assert out.returncode == 0 and out.stdout == summary, out.stderr


def test_evaluate_test_limit_takes_a_stratified_sample(capsys, digits_runs):
    code, out, err = run_cli(capsys, "evaluate", str(digits_runs["keras"]), "--test-limit", "50")
    assert code == 0, err
    assert "test split (50 images)" in out
    assert out.split("weighted avg")[1].split()[3] == "50"  # support column
    code, _, err = run_cli(capsys, "evaluate", str(digits_runs["keras"]), "--test-limit", "0")
    assert code == 2 and "--test-limit must be a positive integer, got 0" in err
