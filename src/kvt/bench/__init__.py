"""Throughput, % of peak and a yardstick loop: what `kvt bench` measures.

A bench is a list of rows, each measured in its own process (one process, one
backend), one at a time:

- a **kvt row** trains and runs inference with the model `kvt train` builds and the
  optimiser it compiles (`kvt.train.build_and_compile`), through `model.fit` and
  `model.predict`, on synthetic images of CIFAR-10's shape (or a real dataset);
- a **yardstick row** trains the same network without Keras' training loop: a plain
  PyTorch loop (`torch.nn.Sequential`, SGD, bf16 autocast for `bf16`) or a plain
  `tf.function` step with `tf.GradientTape` over the Keras model;
- a **peak row**, run first: the machine's fp32 and bf16 matmul peak, the best GFLOP/s of
  square matmuls (up to 2048^3) in NumPy and in the framework of every row (yardsticks
  included): bf16 is "n/a" when no row uses a framework other than NumPy.

FLOP convention (forward pass, per image, counted from the built model's layers):

- Conv2D: 2·H_out·W_out·k_h·k_w·(C_in/groups)·C_out, plus H_out·W_out·C_out for the bias;
- Dense: 2·in·out, plus out for the bias;
- BatchNormalization: 4 per element (subtract, multiply, scale, shift);
- max pooling: k_h·k_w − 1 comparisons per output element (average: k_h·k_w);
- softmax: 3 per element; every other activation (CReLU included, your own functions
  too): 1 per output element; Add and friends: 1 per output element;
- Dropout, Flatten, Reshape, Concatenate, the input: 0.

Training counts 3× the forward pass (forward, gradient with respect to the inputs,
gradient with respect to the weights): MiniVGGNet with ReLU costs about 53.6 MFLOP
forward and 161 MFLOP per training image. `pct_of_peak` is the row's training GFLOP/s
(train images/s × training FLOPs per image) divided by the matmul peak of its precision.

The peak is measured on the CPU: a row whose framework computes on a GPU (`device`
"gpu") gets no `pct_of_peak`.

Precision `bf16`: the row builds its model as `kvt train --precision bf16` does
(`kvt.models.build_model`: Keras' `mixed_bfloat16`, bf16 compute, float32 variables,
the last layer, the softmax, in float32); the PyTorch
yardstick runs under `torch.autocast(bfloat16)`. Each row reads `compute_dtype` (the
first layer's output), `variable_dtype` and `output_dtype` from real tensors after
training. `steps_per_execution` is Keras' compile option, for kvt rows only.

Timing: `warmup` steps run first (the first call traces/compiles); `compile_s` is that
call's wall time less `warmup` steady steps. Then `steps` steps are timed: for kvt rows
from `on_train_begin` to `on_train_end` of one `fit` call (Keras' input pipeline from
in-memory arrays included, the per-call set-up not), for yardstick rows around the loop.
Inference is timed the same way with `predict` (or the plain forward pass).
`peak_rss_mb` is the row process's resident-set high-water mark (`ru_maxrss`), the
framework's own start-up included.

The package imports no framework at import time (`kvt bench --help` relies on it); a
row imports its own. Its modules, each importing only those before it: `spec` (RowSpec,
the plan of rows), `flops` (counting: Keras layers through `kvt.models.flops`, torch
modules with hooks), `peak` (the matmul peak), `rows` (a kvt row, what a model computes
in), `yardsticks` (the plain PyTorch and tf.function loops), `runner`
(each row in its own process, one at a time), `render` (the table).
"""

from kvt.bench.flops import (TRAIN_FACTOR, conv2d_flops, dense_flops, keras_flops,
                             keras_layer_flops, torch_flops)
from kvt.bench.render import COLUMNS, table
from kvt.bench.rows import build_keras_model, dtypes
from kvt.bench.runner import bench, finish, run_row
from kvt.bench.spec import PRECISIONS, YARDSTICKS, RowSpec, check_installed, plan
from kvt.bench.yardsticks import torch_minivggnet

__all__ = ["COLUMNS", "PRECISIONS", "TRAIN_FACTOR", "YARDSTICKS", "RowSpec", "bench",
           "build_keras_model", "check_installed", "conv2d_flops", "dense_flops", "dtypes",
           "finish", "keras_flops", "keras_layer_flops", "plan", "run_row", "table",
           "torch_flops", "torch_minivggnet"]
