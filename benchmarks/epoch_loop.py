"""What resumable training costs: one `model.fit` for all epochs (Keras shuffles)
against kvt's loop of one `model.fit` per epoch over a (seed, epoch) permutation.

    python benchmarks/epoch_loop.py --data-dir ../shared/data/cifar10-png --epochs 3

kvt trains one epoch per `fit()` call so that the data order, and with it the whole
run, can be reproduced after a resume. This measures the price: both variants train the
same model (MiniVGGNet, tutorial recipe) from the same seed on the same data, in this
one process, alternating A, B, A, B so that drift in the machine's speed hits both.
Prints seconds per epoch and training images per second, epoch 1 (with tracing) apart.
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("KVT_DATA_DIR"))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2, help="A/B pairs (default: 2)")
    parser.add_argument("--train-limit", type=int, default=None)
    parser.add_argument("--api", default="keras", choices=("keras", "tf"))
    parser.add_argument("--activation", default="relu")
    parser.add_argument("--backend", default="tensorflow")
    args = parser.parse_args(argv)

    from kvt import backends

    backends.select(args.backend)
    backends.import_keras()
    import keras
    import numpy as np

    from kvt.recipes import from_recipe
    from kvt.train import build_and_compile, epoch_order, load_data, to_inputs

    config = from_recipe(api=args.api, activation=args.activation,
                         backend=args.backend, data_dir=args.data_dir,
                         train_limit=args.train_limit, test_limit=2000, epochs=args.epochs)
    ds = load_data(config)
    x, xv = to_inputs(ds.x_train), to_inputs(ds.x_test)
    y = keras.utils.to_categorical(ds.y_train, ds.num_classes)
    yv = keras.utils.to_categorical(ds.y_test, ds.num_classes)

    def one_fit():
        keras.utils.set_random_seed(config.seed)
        model = build_and_compile(config, ds.input_shape, ds.num_classes)
        times = []

        class Timer(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.t = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                times.append(time.perf_counter() - self.t)
        model.fit(x, y, validation_data=(xv, yv), batch_size=config.batch_size,
                  epochs=config.epochs, verbose=0, callbacks=[Timer()])
        return times

    def per_epoch():
        keras.utils.set_random_seed(config.seed)
        model = build_and_compile(config, ds.input_shape, ds.num_classes)
        times = []
        for epoch in range(config.epochs):
            t = time.perf_counter()
            order = epoch_order(config.seed, epoch, len(y))
            model.fit(x[order], y[order], validation_data=(xv, yv),
                      batch_size=config.batch_size, initial_epoch=epoch, epochs=epoch + 1,
                      shuffle=False, verbose=0)
            times.append(time.perf_counter() - t)
        return times

    results: dict[str, list[list[float]]] = {"one fit, Keras shuffle": [],
                                             "fit per epoch (kvt)": []}
    for _ in range(args.repeats):
        results["one fit, Keras shuffle"].append(one_fit())
        results["fit per epoch (kvt)"].append(per_epoch())

    n = len(y)
    print(f"{args.api}/{args.activation} on {args.backend}, {n} train images, "
          f"{config.epochs} epochs x {args.repeats} repeats (alternating)")
    print(f"{'variant':<24} {'epoch 1 s':>10} {'later s/epoch':>14} {'img/s later':>12}")
    print("-" * 63)
    for name, runs in results.items():
        first = np.mean([r[0] for r in runs])
        later = [t for r in runs for t in r[1:]]
        mean_later = float(np.mean(later)) if later else float("nan")
        print(f"{name:<24} {first:>10.1f} {mean_later:>14.1f} {n / mean_later:>12.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
