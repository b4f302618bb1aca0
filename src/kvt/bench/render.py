"""The bench as a fixed-column table, with a footer: the peak, the FLOP convention,
the data, the machine, the notes."""

from __future__ import annotations

import os
import platform
import time
from typing import Any

from kvt.bench.flops import TRAIN_FACTOR

COLUMNS = (  # header, width, JSON field, format
    ("row", 9, "kind", "{}"),
    ("model", 10, "model", "{}"),
    ("backend", 10, "backend", "{}"),
    ("api", 11, "api", "{}"),
    ("activation", 10, "activation", "{}"),
    ("prec", 7, "precision", "{}"),
    ("batch", 5, "batch_size", "{}"),
    ("spe", 3, "steps_per_execution", "{}"),
    ("train img/s", 11, "train_img_s", "{:.0f}"),
    ("infer img/s", 11, "infer_img_s", "{:.0f}"),
    ("compile s", 9, "compile_s", "{:.2f}"),
    ("peak MB", 7, "peak_rss_mb", "{:.0f}"),
    ("GFLOP/img", 9, "gflops_per_img", "{:.4f}"),
    ("GFLOP/s", 7, "train_gflop_s", "{:.1f}"),
    ("% peak", 6, "pct_of_peak", "{:.1f}"),
)
MODEL_WIDTH = 32  # the widest the model column grows for a user's builder
_TEXT = ("kind", "model", "backend", "api", "activation", "precision")


def table(peak: dict[str, Any], rows: list[dict[str, Any]], notes: list[str]) -> str:
    """The fixed-column table with its footer: peaks, FLOP convention, what ran."""
    # A user's builder (module:function) widens the model column, up to MODEL_WIDTH.
    longest = max((len(str(r.get("model", ""))) for r in rows), default=0)
    columns = [(h, min(max(w, longest), MODEL_WIDTH) if f == "model" else w, f, fmt)
               for h, w, f, fmt in COLUMNS]
    header = "  ".join(f"{h:<{w}}" if f in _TEXT else f"{h:>{w}}" for h, w, f, _ in columns)
    lines = [header, "-" * len(header)]
    for row in rows:
        cells = []
        for _, width, field, fmt in columns:
            value = row.get(field)
            text = "-" if value is None or (field == "steps_per_execution"
                                            and row["kind"] != "kvt") else fmt.format(value)
            if len(text) > width and field == "model":  # a builder: its function's end
                text = "~" + text[-(width - 1):]
            elif len(text) > width:  # a long function name: --json has it whole
                text = text[: width - 1] + "~"
            cells.append(f"{text:<{width}}" if field in _TEXT else f"{text:>{width}}")
        line = "  ".join(cells)
        if "error" in row:
            line = "  ".join(cells[:7]) + f"  failed: {row['error']}"
        lines.append(line.rstrip())
    lines.append("")
    lines.append(f"peak: {_peak_words(peak)}; % peak = train GFLOP/s / the matmul peak of "
                 f"the row's precision")
    gpu = [i for i, r in enumerate(rows, 1) if r.get("device", "cpu") != "cpu"]
    if gpu:
        lines.append(f"rows {', '.join(map(str, gpu))} ran on a GPU: no % of the peak, "
                     f"which is this CPU's")
    lines.append(f"GFLOP/img: training, counted from the model's layers = {TRAIN_FACTOR} x "
                 f"forward (conv/dense 2 per multiply-add + bias, BN 4, activations 1, "
                 f"max-pool k-1, softmax 3 per element)")
    uncounted = sorted({n for r in rows for n in r.get("uncounted_layers", [])})
    if uncounted:
        lines.append(f"not counted (layers with weights of unknown kind): {', '.join(uncounted)}")
    measured = [r for r in rows if "measured_steps" in r]
    if measured:
        data = measured[0].get("data", "synthetic")
        what = ("synthetic uint8 images 32x32x3, 10 classes" if data == "synthetic"
                else f"{data} through kvt's loader")
        counts = sorted({(r["warmup_steps"], r["measured_steps"]) for r in measured})
        steps = (f"{counts[0][0]} warm-up + {counts[0][1]} timed steps per row"
                 if len(counts) == 1 else "warm-up and timed steps per row in --json (rounded "
                                          "up to whole executions)")
        lines.append(f"data: {what}; {steps}; each row in its own process, one at a time")
    lines.append(f"machine: {_machine()}")
    lines.extend(f"note: {n}" for n in notes)
    return "\n".join(lines)


def _peak_words(peak: dict[str, Any]) -> str:
    if "error" in peak:
        return f"not measured ({peak['error']})"
    bf16 = peak.get("peak_bf16_gflop_s")
    return (f"matmul fp32 {peak['peak_fp32_gflop_s']:.1f} GFLOP/s ({peak['peak_fp32_source']}, "
            f"n={peak['peak_fp32_n']}), bf16 "
            + (f"{bf16:.1f} GFLOP/s ({peak['peak_bf16_source']}, n={peak['peak_bf16_n']})"
               if bf16 else "n/a (no row's framework does bf16)")
            + ", best of the installed frameworks")


def _machine() -> str:
    from kvt.backends import cpu_model, cpuinfo

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    # Whether bf16 can be fast here at all: without these, bf16 is emulated.
    bf16 = [f for f in (cpuinfo("flags") or "").split() if f in ("avx512_bf16", "amx_bf16")]
    return (f"{cpu_model()}, {cores} usable cores, bf16 instructions: "
            f"{' '.join(bf16) or 'none'}, Python {platform.python_version()}, "
            f"{time.strftime('%Y-%m-%d %H:%M')}")
