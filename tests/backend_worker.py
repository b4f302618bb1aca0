"""Runs one backend's half of the parity tests in its own process (one process, one backend).

    python tests/backend_worker.py BACKEND DIR

First it computes (logits, one SGD step, CReLU parity) and saves a model, then prints
"computed" and waits: once every backend has saved its model, the test writes a line to
its stdin and it loads every backend's saved model. One process per backend does both.

DIR holds ref.npz (weights, inputs, labels) written by the test; results go to
DIR/<backend>-*.npz and DIR/<backend>.keras.
"""

import sys
from pathlib import Path

import numpy as np

from kvt import backends

backend, workdir = sys.argv[1], Path(sys.argv[2])
backends.select(backend)
keras = backends.import_keras()

from kvt.layers import CReLU  # noqa: E402
from kvt.models import build_model  # noqa: E402
from kvt.saving import load_model, save_model  # noqa: E402

ref = np.load(workdir / "ref.npz")
weights = {act: [ref[f"{act}_w{i}"] for i in range(int(ref[f"{act}_n"]))]
           for act in ("relu", "crelu")}
x, y = ref["x"], ref["y"]
VARIANTS = [("keras", "crelu", False), ("keras", "crelu", True), ("keras", "relu", False),
            ("keras", "relu", True), ("keras", "swish", False), ("keras", "swish", True)]
if backend == "tensorflow":
    VARIANTS.append(("tf", "crelu", False))


def build(api, activation, native):
    model = build_model("minivggnet", api, (32, 32, 3), 10, activation, native)
    model.set_weights(weights["crelu" if activation == "crelu" else "relu"])
    return model


def logits_of(model):
    # The Dense layer's output, before the softmax.
    head = keras.Model(model.inputs[0], model.layers[-2].output)
    return keras.ops.convert_to_numpy(head(x, training=False))


def one_sgd_step(model):
    for layer in model.layers:
        if isinstance(layer, keras.layers.Dropout):
            layer.rate = 0.0  # each engine draws its own dropout mask: compare without it
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.01),
                  loss="categorical_crossentropy")
    model.train_on_batch(x, keras.utils.to_categorical(y, 10))
    return model.get_weights()


def crelu_value_and_grad(native):
    layer = CReLU(native=native)
    probe = x[:2, :6, :6, :] - 0.5  # both signs, and exact zeros where relu's kink is
    probe[0, 0, 0] = 0.0
    scale = np.arange(2 * probe.shape[-1], dtype=np.float32)
    if backend == "tensorflow":
        import tensorflow as tf

        t = tf.constant(probe)
        with tf.GradientTape() as tape:
            tape.watch(t)
            out = layer(t)
            total = tf.reduce_sum(out * scale)
        return out.numpy(), tape.gradient(total, t).numpy()
    if backend == "jax":
        import jax

        out = layer(probe)
        grad = jax.grad(lambda v: (layer(v) * scale).sum())(probe)
        return np.asarray(out), np.asarray(grad)
    import torch

    t = torch.tensor(probe, requires_grad=True)
    out = layer(t)
    (out * torch.tensor(scale)).sum().backward()
    return out.detach().numpy(), t.grad.numpy()


def compute():
    results = {}
    for api, activation, native in VARIANTS:
        key = f"{api}-{activation}-{'native' if native else 'portable'}"
        model = build(api, activation, native)
        results[f"logits/{key}"] = logits_of(model)
        for i, w in enumerate(one_sgd_step(model)):
            results[f"step/{key}/{i}"] = w
    for native in (False, True):
        out, grad = crelu_value_and_grad(native)
        results[f"crelu/{native}/out"], results[f"crelu/{native}/grad"] = out, grad
    np.savez(workdir / f"{backend}-compute.npz", **results)
    model = build("keras", "crelu", True)
    save_model(model, workdir / f"{backend}.keras", {"class_names": [str(i) for i in range(10)]})
    np.save(workdir / f"{backend}-saved-probs.npy", model.predict(x, verbose=0))


def load():
    results = {}
    for saved in sorted(workdir.glob("*.keras")):
        model, meta = load_model(saved)
        assert meta["class_names"][3] == "3"
        results[saved.stem] = keras.ops.convert_to_numpy(model.predict(x, verbose=0))
    np.savez(workdir / f"{backend}-load.npz", **results)


compute()
print("computed", flush=True)
if sys.stdin.readline():  # the others have saved their models too
    load()
