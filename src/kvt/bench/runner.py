"""The bench: the peak, then every row, each in a fresh `kvt bench --row` process, one
at a time (`run_in_child`, the parent's side); `run_row`, what that process runs; and
`finish`, a measured row made a row of the table."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from kvt.bench.peak import measure_peak, peak_rss_mb
from kvt.bench.rows import kvt_row
from kvt.bench.spec import RowSpec
from kvt.bench.yardsticks import tf_loop_row, torch_row


def run_row(spec: RowSpec) -> dict[str, Any]:
    """Measures `spec` in this process (which must not have imported another backend)."""
    if spec.kind == "peak":  # `backend` holds the frameworks to try, comma separated
        return measure_peak(spec.backend.split(","))
    if spec.kind == "yardstick" and spec.backend == "torch":
        result = torch_row(spec)
    else:
        from kvt import backends

        backends.select(spec.backend)
        backends.import_keras()
        result = tf_loop_row(spec) if spec.kind == "yardstick" else kvt_row(spec)
        result["device"] = _device(spec.backend)
    result["peak_rss_mb"] = peak_rss_mb()
    return result


def _device(backend: str) -> str:
    """Where Keras on `backend` computes: "cpu" or "gpu"."""
    if backend == "tensorflow":
        import tensorflow as tf

        return "gpu" if tf.config.list_logical_devices("GPU") else "cpu"
    if backend == "jax":
        import jax

        return "cpu" if jax.devices()[0].platform == "cpu" else "gpu"
    import torch

    return "gpu" if torch.cuda.is_available() else "cpu"


def run_in_child(spec: RowSpec) -> dict[str, Any]:
    """Runs `spec` in a fresh `python -m kvt bench --row` process; a failure comes back as
    {"error": its last line}."""
    with tempfile.TemporaryDirectory(prefix="kvt-bench-") as tmp:
        out = Path(tmp) / "row.json"
        cmd = [sys.executable, "-m", "kvt", "bench", "--row", spec.to_json(),
               "--row-out", str(out)]
        proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True)
        if proc.returncode == 0 and out.is_file():
            return json.loads(out.read_text())
        # The row's process is a kvt command: its last line is kvt.cli.main's one-line
        # error ("kvt bench: error: ..."), or a traceback's last line.
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        error = lines[-1].removeprefix("kvt bench: error: ") if lines else ""
        return {"error": error or f"exit code {proc.returncode}",
                "exit_code": proc.returncode}


def finish(spec: RowSpec, measured: dict[str, Any], peak: dict[str, Any]) -> dict[str, Any]:
    """One row of the table and of --json: the spec, what was measured, % of peak."""
    row: dict[str, Any] = {k: v for k, v in dataclasses.asdict(spec).items()
                           if k not in ("seed", "data_dir")}
    row.update(measured)
    peak_gflop_s = peak.get("peak_bf16_gflop_s" if spec.precision == "bf16"
                            else "peak_fp32_gflop_s")
    row["peak_gflop_s"] = peak_gflop_s
    if "train_img_s" in row:
        row["train_gflop_s"] = row["train_img_s"] * row["gflops_per_img"]
        # The peak is this CPU's: a row that ran on a GPU gets no percentage of it.
        on_cpu = row.get("device", "cpu") == "cpu"
        row["pct_of_peak"] = (100 * row["train_gflop_s"] / peak_gflop_s
                              if peak_gflop_s and on_cpu else None)
    return row


def bench(rows: list[RowSpec], progress=None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Measures the peak, then every row, each in its own process, one at a time."""
    say = progress or (lambda message: None)
    say("measuring the matmul peak")
    frameworks = ["numpy", *(r.backend for r in rows)]
    peak = run_in_child(RowSpec("peak", backend=",".join(dict.fromkeys(frameworks))))
    results = []
    for i, spec in enumerate(rows, 1):
        say(f"row {i}/{len(rows)}: {label(spec)}")
        results.append(finish(spec, run_in_child(spec), peak))
    return peak, results


def label(spec: RowSpec) -> str:
    spe = f" spe {spec.steps_per_execution}" if spec.steps_per_execution > 1 else ""
    return (f"{spec.kind} {spec.model} {spec.backend}/{spec.api}/{spec.activation} "
            f"{spec.precision} batch {spec.batch_size}{spe}")
