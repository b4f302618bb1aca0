"""
Title: A small ResNet for kvt
Author: the kvt authors
Date created: 2026/12/07
Last modified: 2026/12/07
Description: A ResNet-style image classifier in portable Keras 3 that kvt trains,
compares, benchmarks and exports on TensorFlow, JAX and PyTorch alike.
Accelerator: None (CPU is enough for digits; a GPU for CIFAR)

## Introduction

kvt builds the model with `build(input_shape, classes, **options)` and compiles and
trains it with its recipe:

    kvt train --model examples.resnet_small:build --dataset digits --epochs 1
    kvt bench --model examples/resnet_small.py:build --backend tensorflow,jax,torch

(run from the folder that holds `examples/`). Nothing here is kvt's: only standard Keras
layers, so a trained model.keras loads anywhere without this file.
"""

import keras
from keras import layers


def residual_block(x, filters, stride=1, activation="relu"):
    """Two 3x3 convolutions and a shortcut; a 1x1 convolution matches the shapes when
    the block changes the width or the resolution."""
    shortcut = x
    x = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    x = layers.Activation(activation)(x)
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    if stride != 1 or shortcut.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=stride, use_bias=False)(shortcut)
        shortcut = layers.BatchNormalization()(shortcut)
    return layers.Activation(activation)(layers.Add()([x, shortcut]))


def build(input_shape, classes, activation="relu", width=16, blocks=(1, 1, 1)):
    """A ResNet of three stages (widths `width`, 2x, 4x; each after the first halves
    the image), global average pooling and a softmax over `classes`.

    Args:
        input_shape: (height, width, channels) of the images.
        classes: the number of classes.
        activation: a Keras activation name ("relu", "gelu", "swish", ...); kvt passes
            its `--activation` here. Defaults to `"relu"`.
        width: filters of the first stage. Defaults to `16`.
        blocks: residual blocks per stage. Defaults to `(1, 1, 1)`.
    """
    inputs = keras.Input(input_shape)
    x = layers.Conv2D(width, 3, padding="same", use_bias=False)(inputs)
    x = layers.BatchNormalization()(x)
    x = layers.Activation(activation)(x)
    for stage, count in enumerate(blocks):
        for i in range(count):
            stride = 2 if stage > 0 and i == 0 else 1
            x = residual_block(x, width * 2**stage, stride, activation)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="resnet_small")


def build_wide(input_shape, classes, activation="relu"):
    """The same network twice as wide: the variant a comparison sets against `build`."""
    return build(input_shape, classes, activation=activation, width=32)


if __name__ == "__main__":
    model = build((32, 32, 3), 10)
    model.summary()
