"""The tutorial's table, measured here: both tutorial configurations on CIFAR-10.

    python benchmarks/seed_table.py --data-dir ../shared/data/cifar10-png --epochs 1

Trains MiniVGGNet with the tutorial's recipe ("seed") as (a) Keras + ReLU and (b)
tf.keras + TensorFlow's CReLU, one after the other in this process, and prints test
accuracy, seconds per epoch (training + validation pass, as Keras reported it to the
tutorial's author) and training images per second. The tutorial's own row is printed
for reference: 30 epochs, 324-337 s (Keras) and 364-457 s (tf.keras) per epoch on the
author's CPU.
"""

from __future__ import annotations

import argparse
import io
import os
import sys

CONFIGS = {
    "keras-relu": dict(api="keras", activation="relu"),
    "tf-crelu": dict(api="tf", activation="crelu"),
}
TUTORIAL = {"keras-relu": (74.32, "324-337"), "tf-crelu": (75.50, "364-457")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("KVT_DATA_DIR"),
                        help="CIFAR-10 location (default: $KVT_DATA_DIR, Keras cache, download)")
    parser.add_argument("--epochs", type=int, default=30, help="epochs per config (default: 30)")
    parser.add_argument("--train-limit", type=int, default=None, help="train images (default: all)")
    parser.add_argument("--test-limit", type=int, default=None, help="test images (default: all)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--configs", default=",".join(CONFIGS),
                        help=f"comma-separated subset of {', '.join(CONFIGS)}")
    args = parser.parse_args(argv)

    from kvt import backends

    backends.select("tensorflow")
    keras = backends.import_keras()
    from kvt.config import TrainConfig
    from kvt.train import fit, load_data

    names = args.configs.split(",")
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        parser.error(f"unknown config {unknown}: choose from {', '.join(CONFIGS)}")
    rows = []
    dataset = None
    for name in names:
        config = TrainConfig.from_recipe(
            "seed", dataset="cifar10", data_dir=args.data_dir, epochs=args.epochs,
            train_limit=args.train_limit, test_limit=args.test_limit, seed=args.seed,
            **CONFIGS[name])
        dataset = dataset or load_data(config)
        print(f"# {name}: {config.epochs} epochs on {len(dataset.y_train)} train images",
              file=sys.stderr, flush=True)
        run = fit(config, dataset, stream=sys.stderr if not sys.stderr.isatty() else io.StringIO())
        m = run.metrics
        rows.append((name, config.epochs, 100 * m["test_accuracy"], m["seconds_per_epoch"],
                     m["images_per_second"]))
        keras.backend.clear_session()

    info = backends.describe()
    print(f"\nkvt seed table: MiniVGGNet, recipe 'seed', CIFAR-10 "
          f"({len(dataset.y_train)} train / {len(dataset.y_test)} test images)")
    print(f"machine: {info['processor']}, {info['cpu_count']} cores; keras {info['keras']}, "
          f"tensorflow {info.get('tensorflow')}\n")
    header = f"{'config':<12} {'epochs':>6} {'test acc %':>10} {'s/epoch':>9} {'img/s':>8}"
    print(header)
    print("-" * len(header))
    for name, epochs, acc, spe, ips in rows:
        print(f"{name:<12} {epochs:>6d} {acc:>10.2f} {spe:>9.1f} {ips:>8.0f}")
    print("\ntutorial (author's CPU, 30 epochs):")
    for name, (acc, spe) in TUTORIAL.items():
        print(f"{name:<12} {30:>6d} {acc:>10.2f} {spe:>9} {'':>8}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
