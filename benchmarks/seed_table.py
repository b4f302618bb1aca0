"""The tutorial's table, measured here: its configurations on CIFAR-10, on every engine.

    python benchmarks/seed_table.py --data-dir ../shared/data/cifar10-png --epochs 1

Trains MiniVGGNet with the tutorial's recipe ("seed") as Keras + ReLU on each backend
and as tf.keras + TensorFlow's CReLU, one run after another, each in its own process
(one process, one backend), and prints test accuracy, seconds per epoch (training +
validation pass, as Keras reported it to the tutorial's author) and training images per
second. Runs go one at a time so that they do not compete for the cores. The first
epoch includes each engine's tracing/compilation; with --epochs >= 2 the images/s
column is the fastest epoch's. The tutorial's own row is printed for reference:
30 epochs, 324-337 s (Keras) and 364-457 s (tf.keras) per epoch on the author's CPU.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CONFIGS = {
    "keras-relu": ["--api", "keras", "--activation", "relu"],
    "keras-crelu": ["--api", "keras", "--activation", "crelu"],
    "tf-crelu": ["--api", "tf", "--activation", "crelu"],
}
TUTORIAL = {"keras-relu": (74.32, "324-337"), "tf-crelu": (75.50, "364-457")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("KVT_DATA_DIR"),
                        help="CIFAR-10 location (default: $KVT_DATA_DIR, Keras cache, download)")
    parser.add_argument("--epochs", type=int, default=30, help="epochs per run (default: 30)")
    parser.add_argument("--train-limit", type=int, default=None, help="train images (default: all)")
    parser.add_argument("--test-limit", type=int, default=None, help="test images (default: all)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--configs", default="keras-relu,tf-crelu",
                        help=f"comma-separated, from {', '.join(CONFIGS)} (default: keras-relu,tf-crelu)")
    parser.add_argument("--backends", default="tensorflow,jax,torch",
                        help="backends for the --api keras configs (default: all three)")
    args = parser.parse_args(argv)
    names = args.configs.split(",")
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        parser.error(f"unknown config {unknown}: choose from {', '.join(CONFIGS)}")

    runs = [(name, backend) for name in names
            for backend in (["tensorflow"] if name.startswith("tf-") else args.backends.split(","))]
    rows = []
    with tempfile.TemporaryDirectory(prefix="kvt-seed-table-") as tmp:
        for name, backend in runs:
            out = Path(tmp) / f"{name}-{backend}"
            cmd = [sys.executable, "-m", "kvt", "train", "--dataset", "cifar10",
                   "--epochs", str(args.epochs), "--seed", str(args.seed), "--backend", backend,
                   "--out", str(out), *CONFIGS[name]]
            for flag, value in (("--data-dir", args.data_dir), ("--train-limit", args.train_limit),
                                ("--test-limit", args.test_limit)):
                if value is not None:
                    cmd += [flag, str(value)]
            print(f"# {name} on {backend}: {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
            proc = subprocess.run(cmd, stdout=sys.stderr, stderr=subprocess.PIPE, text=True)
            if proc.returncode != 0:
                rows.append((name, backend, None, proc.stderr.strip().splitlines()[-1:]))
                continue
            metrics = json.loads((out / "metrics.json").read_text())
            config = json.loads((out / "config.json").read_text())
            with open(out / "history.csv", newline="") as f:
                fastest = min(float(r["train_seconds"]) for r in csv.DictReader(f))
            metrics["fastest_images_per_second"] = metrics["train_images"] / fastest
            rows.append((name, backend, (metrics, config), None))
    print_table(rows, args.epochs)
    return 0 if all(r[2] is not None for r in rows) else 1


def print_table(rows, epochs: int) -> None:
    done = [r[2] for r in rows if r[2] is not None]
    if done:
        metrics, config = done[0]
        env, data = config["environment"], config["dataset"]
        print(f"\nkvt seed table: MiniVGGNet, recipe 'seed', CIFAR-10 ({data['train_images']} "
              f"train / {data['test_images']} test images), {epochs} epoch(s) per run")
        print(f"machine: {env['processor']}, {env['cpu_count']} cores; keras {env['keras']}\n")
    header = (f"{'config':<12} {'backend':<11} {'version':<8} {'test acc %':>10} "
              f"{'s/epoch':>8} {'img/s':>7}")
    print(header)
    print("-" * len(header))
    for name, backend, result, error in rows:
        if result is None:
            print(f"{name:<12} {backend:<11} failed: {' '.join(error)}")
            continue
        metrics, config = result
        version = config["environment"].get(backend, "?").split("+")[0]
        print(f"{name:<12} {backend:<11} {version:<8} {100 * metrics['test_accuracy']:>10.2f} "
              f"{metrics['seconds_per_epoch']:>8.1f} {metrics['fastest_images_per_second']:>7.0f}")
    print("\ntutorial (author's CPU, 30 epochs):")
    for name, (acc, spe) in TUTORIAL.items():
        print(f"{name:<12} {'tensorflow':<11} {'1.x':<8} {acc:>10.2f} {spe:>8} {'':>7}")


if __name__ == "__main__":
    raise SystemExit(main())
