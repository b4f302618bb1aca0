"""The machine's matmul peak in fp32 and bf16 (the denominator of % of peak), and a
process's peak memory."""

from __future__ import annotations

import importlib.util
import resource
import sys
import time
from typing import Any, Iterable

PEAK_N = 2048  # largest side of the square matmuls that measure the peak
PEAK_SECONDS = 0.3  # time spent per framework and dtype measuring it


def _best_seconds(fn, seconds: float = PEAK_SECONDS, at_least: int = 3) -> float:
    fn()  # warm-up: allocation, kernel choice
    best, spent, n = float("inf"), 0.0, 0
    while n < at_least or spent < seconds:
        t = time.perf_counter()
        fn()
        dt = time.perf_counter() - t
        best, spent, n = min(best, dt), spent + dt, n + 1
    return best


def matmul_gflop_s(make, largest: int = PEAK_N) -> tuple[float, int]:
    """(best GFLOP/s, n) of `make(n)()`, an n×n×n matmul. n doubles from 256 until one
    call takes 50 ms or n reaches `largest`, so that a slow path (bf16 emulated on a
    CPU without bf16 instructions) costs well under a second, not minutes."""
    n = 256
    while True:
        fn = make(n)
        fn()  # the first call of a size sets up kernels
        t = time.perf_counter()
        fn()
        if time.perf_counter() - t >= 0.05 or 2 * n > largest:
            break
        n *= 2
    return 2 * n ** 3 / _best_seconds(fn) / 1e9, n


def _numpy_matmuls():
    import numpy as np

    def make(n):
        a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
        return lambda: a @ a
    return f"numpy {np.__version__}", {"fp32": make}


def _torch_matmuls():
    import torch

    def maker(dtype):
        def make(n):
            a = torch.randn(n, n).to(dtype)
            return lambda: torch.mm(a, a)
        return make
    return (f"torch {torch.__version__.split('+')[0]}",
            {"fp32": maker(torch.float32), "bf16": maker(torch.bfloat16)})


def _jax_matmuls():
    import jax
    import jax.numpy as jnp

    mm = jax.jit(lambda a: a @ a)

    def maker(dtype):
        def make(n):
            a = jnp.ones((n, n), dtype=dtype)
            return lambda: mm(a).block_until_ready()
        return make
    return f"jax {jax.__version__}", {"fp32": maker(jnp.float32), "bf16": maker(jnp.bfloat16)}


def _tensorflow_matmuls():
    from kvt.backends import filtered_stderr

    with filtered_stderr():
        import tensorflow as tf

    def maker(dtype):
        def make(n):
            a = tf.cast(tf.random.normal((n, n)), dtype)
            return lambda: tf.linalg.matmul(a, a).numpy()
        return make
    return f"tensorflow {tf.__version__}", {"fp32": maker(tf.float32), "bf16": maker(tf.bfloat16)}


MATMULS = {"numpy": _numpy_matmuls, "torch": _torch_matmuls, "jax": _jax_matmuls,
           "tensorflow": _tensorflow_matmuls}


def measure_peak(frameworks: Iterable[str] = ("numpy", "torch", "jax", "tensorflow")
                 ) -> dict[str, Any]:
    """This CPU's matmul peak in fp32 and bf16: the best GFLOP/s of square matmuls in
    each of `frameworks` that is installed (a bench passes numpy and its rows'
    frameworks). bf16 is None when none of them can do it."""
    best: dict[str, tuple[float, str, int]] = {}
    for name in dict.fromkeys(frameworks):
        if importlib.util.find_spec(name) is None:
            continue
        source, makers = MATMULS[name]()
        for dtype, make in makers.items():
            gflop_s, n = matmul_gflop_s(make)
            if gflop_s > best.get(dtype, (0.0,))[0]:
                best[dtype] = (gflop_s, source, n)
    result: dict[str, Any] = {}
    for dtype in ("fp32", "bf16"):
        gflop_s, source, n = best.get(dtype, (None, None, None))
        result.update({f"peak_{dtype}_gflop_s": gflop_s, f"peak_{dtype}_source": source,
                       f"peak_{dtype}_n": n})
    result["peak_rss_mb"] = peak_rss_mb()
    return result


def peak_rss_mb() -> float:
    """This process's resident-set high-water mark in MiB (Linux reports KiB)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024
