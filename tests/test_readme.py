"""The claims of the README and the docs about using kvt from Python, executed as written:
loading a model file in your own code, running an exported artifact without kvt, and the
tutorial's driver scripts under Keras 3 changed only as the migration note says. The
snippets are picked out of every page by what they contain, so they may move between
pages."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from processes import HANG

ROOT = Path(__file__).resolve().parents[1]
# The README, then the site's pages in their file order.
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TEXT = "\n".join(page.read_text() for page in PAGES)
TUTORIAL = (ROOT / "docs" / "tutorial.md").read_text()


def python_blocks(containing: str) -> list[str]:
    return [b for b in re.findall(r"```python\n(.*?)```", TEXT, re.S) if containing in b]


@pytest.mark.process
def test_import_kvt_imports_no_framework():
    code = ("import sys, kvt\n"
            "print([m for m in ('keras', 'tensorflow', 'jax', 'torch') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=HANG)
    assert out.stdout.strip() == "[]", out.stderr


LOADING = python_blocks("load_model(")


def test_docs_show_both_ways_to_load_a_model():
    assert [("kvt.load_model" in b, "keras.saving.load_model" in b) for b in LOADING] == \
        [(True, False), (False, True)]


@pytest.mark.process
@pytest.mark.parametrize("snippet", LOADING, ids=["kvt.load_model", "keras.saving.load_model"])
def test_docs_snippet_loads_a_tf_api_model_as_written(tmp_path, digits_runs, snippet):
    """A `--api tf` model holds TFCReLU, which `import kvt.layers` registers on TensorFlow."""
    model_file = tmp_path / "runs" / "demo" / "model.keras"
    model_file.parent.mkdir(parents=True)
    shutil.copy(digits_runs["tf"] / "model.keras", model_file)
    check = ("\nprint('LAYERS', sorted({type(l).__name__ for l in model.layers}))\n"
             "print('OUT', tuple(model.output_shape))\n")
    out = subprocess.run([sys.executable, "-c", snippet + check], cwd=tmp_path,
                         capture_output=True, text=True, timeout=HANG)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "'TFCReLU'" in out.stdout and "OUT (None, 10)" in out.stdout, out.stdout


DEPLOY = python_blocks('"runs/demo/config.json"')
DEPLOY_FORMATS = ["saved_model", "onnx", "litert"]


def test_docs_have_one_deploy_snippet_per_format():
    assert [b.splitlines()[0].split(":")[0] for b in DEPLOY] == ["# SavedModel", "# ONNX",
                                                                 "# LiteRT"]


@pytest.mark.process
@pytest.mark.parametrize("snippet, fmt", list(zip(DEPLOY, DEPLOY_FORMATS)), ids=DEPLOY_FORMATS)
def test_docs_deploy_snippet_classifies_an_image_as_kvt_predict_does(
        tmp_path, capsys, digits_runs, snippet, fmt):
    """Each snippet, as written, in a process of its own beside runs/demo and digit.png."""
    from PIL import Image

    from conftest import run_cli
    from kvt.data import load_dataset

    run = tmp_path / "runs" / "demo"
    shutil.copytree(digits_runs["keras"], run)
    code, out, err = run_cli(capsys, "export", str(run), "--format", fmt, "--check-images", "20")
    assert code == 0, err
    Image.fromarray(load_dataset("digits").x_test[7][..., 0]).save(tmp_path / "digit.png")
    code, out, err = run_cli(capsys, "predict", str(run), str(tmp_path / "digit.png"),
                             "--top", "1")
    assert code == 0, err
    expected = out.strip().split(": ")[1]  # "<class> <probability>"
    done = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, capture_output=True,
                          text=True, timeout=HANG)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == expected, done.stdout


# The tutorial's train_network_keras.py / train_network_tf.py (PyImageSearch, 2018), with
# only the migration note's changes (marked "changed:") and CIFAR-10 swapped for a slice
# of digits so that it runs in seconds (marked "test:").
DRIVER = '''
import matplotlib
matplotlib.use("Agg")

from kvt.models import {model_class}  # changed: was from pyimagesearch.{module} import ...
import kvt  # changed: for kvt.keras2_decay
from sklearn.preprocessing import LabelBinarizer
from sklearn.metrics import classification_report
from {optimizers} import SGD
import matplotlib.pyplot as plt
import numpy as np

# test: digits instead of cifar10.load_data(), 8x8x1 instead of 32x32x3
((trainX, trainY), (testX, testY)) = load_slice()

INIT_LR = 0.01
EPOCHS = 3  # test: the tutorial trains 30

print("[INFO] loading data...")
trainX = trainX.astype("float") / 255.0
testX = testX.astype("float") / 255.0

lb = LabelBinarizer()
trainY = lb.fit_transform(trainY)
testY = lb.transform(testY)

labelNames = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
              "nine"]  # test: the digits' class names

print("[INFO] compiling model...")
opt = SGD(learning_rate=kvt.keras2_decay(INIT_LR, INIT_LR / EPOCHS))  # changed: lr=, decay=
model = {model_class}.build(width=8, height=8, depth=1, classes=10)
model.compile(loss="categorical_crossentropy", optimizer=opt,
              metrics=["accuracy"])

print("[INFO] training network for {{}} epochs...".format(EPOCHS))
H = model.fit(trainX, trainY, validation_data=(testX, testY),
              batch_size=32, epochs=EPOCHS, verbose=0)

print("[INFO] evaluating network...")
predictions = model.predict(testX, batch_size=32)
print(classification_report(testY.argmax(axis=1),
                            predictions.argmax(axis=1), target_names=labelNames))

plt.style.use("ggplot")
plt.figure()
plt.plot(np.arange(0, EPOCHS), H.history["loss"], label="train_loss")
plt.plot(np.arange(0, EPOCHS), H.history["val_loss"], label="val_loss")
plt.plot(np.arange(0, EPOCHS), H.history["accuracy"], label="train_acc")  # changed: "acc"
plt.plot(np.arange(0, EPOCHS), H.history["val_accuracy"], label="val_acc")  # changed
plt.title("Training Loss and Accuracy on Dataset")
plt.xlabel("Epoch #")
plt.ylabel("Loss/Accuracy")
plt.legend(loc="lower left")
plt.savefig(args["plot"])
'''


def load_slice():
    """Digits as 0..255 images with a channel axis, 600 to train on, 200 to test."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images * (255.0 / 16.0)).astype("uint8")[..., None]
    y = digits.target
    return (x[:600], y[:600]), (x[-200:], y[-200:])


@pytest.mark.parametrize("model_class, module, optimizers", [
    ("MiniVGGNetKeras", "minivggnetkeras", "keras.optimizers"),
    ("MiniVGGNetTF", "minivggnettf", "tensorflow.keras.optimizers"),
])
def test_tutorial_driver_runs_with_the_migration_notes_changes(tmp_path, capsys, model_class,
                                                               module, optimizers):
    for change in ("SGD(learning_rate=kvt.keras2_decay(INIT_LR, INIT_LR / EPOCHS))",
                   'H.history["accuracy"]', 'H.history["val_accuracy"]',
                   "from kvt.models import MiniVGGNetKeras"):
        assert change in TUTORIAL  # the note says exactly what this driver changes
    plot = tmp_path / "plot.png"
    code = DRIVER.format(model_class=model_class, module=module, optimizers=optimizers)
    exec(compile(code, f"train_network_{module}.py", "exec"),
         {"__name__": "__main__", "load_slice": load_slice, "args": {"plot": str(plot)}})
    out = capsys.readouterr().out
    assert "[INFO] evaluating network..." in out and "weighted avg" in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_keras2_decay_is_keras_2s_per_step_decay():
    import kvt

    schedule = kvt.keras2_decay(0.01, 0.01 / 30)
    for step in (0, 1, 100, 10_000):
        assert float(schedule(step)) == pytest.approx(0.01 / (1 + 0.01 / 30 * step), rel=1e-6)
    assert np.isclose(float(schedule(0)), 0.01)
