"""The yardsticks: the same network trained without Keras' fit loop, as a plain
`tf.function` step over the Keras model or as a plain PyTorch loop."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from kvt.bench.flops import keras_flops, torch_flops
from kvt.bench.rows import (NUM_CLASSES, build_keras_model, dtypes, load_images, row_result,
                            step_counts)
from kvt.bench.spec import RowSpec

LR = 0.01  # the seed recipe's, for the yardsticks


def tf_loop_row(spec: RowSpec) -> dict[str, Any]:
    """The yardstick without Keras' fit: a `tf.function` step, `tf.GradientTape` over
    the same Keras model, plain SGD updates."""
    import keras
    import tensorflow as tf

    from kvt.train import to_inputs

    warmup, steps = step_counts(spec)
    b = spec.batch_size
    images, labels, classes, data, load_s = load_images(spec, b * max(warmup, steps))
    keras.utils.set_random_seed(spec.seed)
    x = tf.constant(to_inputs(images))
    y = tf.one_hot(tf.constant(labels), classes)
    steps = min(steps, int(x.shape[0]) // b)
    warmup = min(warmup, int(x.shape[0]) // b)
    keras_spec = dataclasses.replace(spec, api="keras")
    model = build_keras_model(keras_spec, tuple(x.shape[1:]), classes, compiled=False)
    forward, uncounted = keras_flops(model)
    variables = model.trainable_variables

    @tf.function
    def train_step(xb, yb):
        with tf.GradientTape() as tape:
            probs = tf.cast(model(xb, training=True), tf.float32)
            loss = tf.reduce_mean(keras.losses.categorical_crossentropy(yb, probs))
        for v, g in zip(variables, tape.gradient(loss, variables)):
            v.assign_sub(LR * g)
        return loss

    @tf.function
    def infer_step(xb):
        return model(xb, training=False)

    batches = [(x[i * b:(i + 1) * b], y[i * b:(i + 1) * b]) for i in range(len(x) // b)]

    def loop(step, n_steps: int, with_labels: bool) -> float:
        t = time.perf_counter()
        out = None
        for xb, yb in batches[:n_steps]:
            out = step(xb, yb) if with_labels else step(xb)
        _ = out.numpy()  # wait for the last step
        return time.perf_counter() - t

    warmup_s = loop(train_step, warmup, True)
    train_step_s = loop(train_step, steps, True) / steps
    infer_warmup_s = loop(infer_step, warmup, False)
    infer_step_s = loop(infer_step, steps, False) / steps
    result = row_result(spec, forward, uncounted, train_step_s, infer_step_s, warmup, steps,
                        warmup_s, infer_warmup_s)
    result.update(dtypes(model, x[:2]), data=data, load_s=load_s,
                  framework_version=tf.__version__)
    return result


def torch_minivggnet(activation: str, in_channels: int = 3, side: int = 32,
                     classes: int = NUM_CLASSES):
    """MiniVGGNet as a plain `torch.nn.Sequential` (NCHW), layer for layer as
    `kvt.models.minivggnet` builds it: CReLU after every hidden conv but the first."""
    import torch
    from torch import nn

    class CReLU(nn.Module):
        def forward(self, x):
            return torch.cat([torch.relu(x), torch.relu(-x)], dim=1)

    acts = {"relu": nn.ReLU, "elu": nn.ELU, "gelu": nn.GELU, "swish": nn.SiLU}
    layers: list[nn.Module] = []
    c = in_channels

    def act(width: int, first: bool = False) -> int:
        if activation == "crelu" and not first:
            layers.append(CReLU())
            return 2 * width
        layers.append(acts["relu" if activation == "crelu" else activation]())
        return width

    def conv_block(c_in: int, filters: int, first: bool = False) -> int:
        layers.append(nn.Conv2d(c_in, filters, 3, padding=1))
        c_out = act(filters, first)
        layers.append(nn.BatchNorm2d(c_out, eps=1e-3, momentum=0.01))  # Keras' defaults
        return c_out

    c = conv_block(c, 32, first=True)
    c = conv_block(c, 32)
    layers += [nn.MaxPool2d(2), nn.Dropout(0.25)]
    c = conv_block(c, 64)
    c = conv_block(c, 64)
    layers += [nn.MaxPool2d(2), nn.Dropout(0.25), nn.Flatten(),
               nn.Linear(c * (side // 4) ** 2, 512)]
    c = act(512)
    layers += [nn.BatchNorm1d(c, eps=1e-3, momentum=0.01), nn.Dropout(0.5),
               nn.Linear(c, classes), nn.Softmax(dim=1)]
    return nn.Sequential(*layers)


def torch_row(spec: RowSpec) -> dict[str, Any]:
    """The plain PyTorch yardstick: the same network, SGD, bf16 autocast for bf16. The
    softmax is counted in the FLOPs but trained through `cross_entropy` on the logits."""
    import torch
    import torch.nn.functional as F

    from kvt.train import to_inputs

    warmup, steps = step_counts(spec)
    b = spec.batch_size
    images, labels, classes, data, load_s = load_images(spec, b * max(warmup, steps))
    torch.manual_seed(spec.seed)
    x = torch.from_numpy(to_inputs(images)).permute(0, 3, 1, 2).contiguous()
    y = torch.from_numpy(labels.astype("int64"))
    steps = min(steps, len(x) // b)
    warmup = min(warmup, len(x) // b)
    model = torch_minivggnet(spec.activation, x.shape[1], x.shape[2], classes)
    forward, uncounted = torch_flops(model, x[:1])
    net = model[:-1]  # logits; cross_entropy applies the softmax
    optimizer = torch.optim.SGD(net.parameters(), lr=LR)
    bf16 = spec.precision == "bf16"

    def autocast():
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)

    def train(n_steps: int) -> float:
        net.train()
        t = time.perf_counter()
        for i in range(n_steps):
            xb, yb = x[i * b:(i + 1) * b], y[i * b:(i + 1) * b]
            with autocast():
                loss = F.cross_entropy(net(xb), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return time.perf_counter() - t

    def infer(n_steps: int) -> float:
        model.eval()
        t = time.perf_counter()
        with torch.inference_mode(), autocast():
            for i in range(n_steps):
                model(x[i * b:(i + 1) * b])
        return time.perf_counter() - t

    warmup_s = train(warmup)
    train_step_s = train(steps) / steps
    infer_warmup_s = infer(warmup)
    infer_step_s = infer(steps) / steps
    model.eval()
    with torch.inference_mode(), autocast():
        kinds = {"compute_dtype": str(model[0](x[:2]).dtype).replace("torch.", ""),
                 "variable_dtype": str(model[0].weight.dtype).replace("torch.", ""),
                 "output_dtype": str(model(x[:2]).dtype).replace("torch.", "")}
    result = row_result(spec, forward, uncounted, train_step_s, infer_step_s, warmup, steps,
                        warmup_s, infer_warmup_s)
    result.update(kinds, data=data, load_s=load_s, device="cpu",
                  framework_version=torch.__version__.split("+")[0])
    return result
