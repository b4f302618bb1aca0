"""Runs the tests with measured margins (pytest markers `learning`: accuracies that show
training learns; `margins`: numerical tolerances between engines, devices and processes,
and what quantization may lose) under many seeds and thread counts, and prints each
measure's spread against its bound.

    python tests/stress.py                    # learning: seeds 0..9; margins: seed 0; threads 1, 2
    python tests/stress.py --seeds 3 --threads 2 --marker learning
    python tests/stress.py --first-seed 10 --seeds 5 --log margins.jsonl   # grows a record
    python tests/stress.py --marker margins --margin-seeds 5 -k distribute  # one file's

With `--log FILE` the measures are appended to FILE (JSON lines) and the table covers
everything FILE holds, so that runs made apart (other seeds, other machines) add up.

A bound is safe when it sits well outside everything measured. The table flags as TIGHT
an accuracy threshold less than 3 standard deviations (and 0.05) below the lowest value
measured, and a tolerance less than 3 standard deviations above, and 1.5 times, the
largest value measured; a difference that must stay apart (a setting that matters) is
flagged when its smallest value is less than 10 times its floor (such differences spread
over orders of magnitude, so the test is a ratio, not standard deviations). The script
exits 1 if a test failed or a margin is tight.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def run_once(seed: int, threads: int, marker: str, log: Path,
             select: str | None = None) -> tuple[int, float]:
    env = dict(os.environ, KVT_TEST_SEED=str(seed), KVT_STRESS_LOG=str(log),
               KVT_STRESS_THREADS=str(threads))
    for var in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        env[var] = str(threads)
    start = time.perf_counter()
    chosen = ["-k", select] if select else []
    proc = subprocess.run([sys.executable, "-m", "pytest", "-m", marker, *chosen, "-q",
                           "-p", "no:cacheprovider", str(TESTS)], env=env, cwd=TESTS.parent,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        print(proc.stdout[-4000:] + proc.stderr[-2000:], file=sys.stderr)
    return proc.returncode, time.perf_counter() - start


def verdict(kind: str, values: list[float], bound: float) -> tuple[float, float, bool]:
    """(margin, margin in standard deviations, wide enough) of one measure."""
    std = statistics.pstdev(values)
    if kind == "above":
        margin = min(values) - bound
        wide = margin >= max(3 * std, 0.05)
    elif kind == "apart":
        margin = min(values) - bound
        wide = min(values) >= 10 * bound
    else:
        margin = bound - max(values)
        wide = margin >= 3 * std and bound >= 1.5 * max(values)
    return margin, margin / std if std else float("inf"), wide


def table(records: list[dict]) -> tuple[str, bool]:
    """The fixed-column table of every measure, and whether every margin is wide."""
    by_measure: dict[str, list[dict]] = {}
    for r in records:
        by_measure.setdefault(r["measure"], []).append(r)
    width = max([46, *(len(m) for m in by_measure)])
    header = (f"{'measure':<{width}} {'bound':>10} {'n':>3} {'min':>10} {'mean':>10} {'max':>10} "
              f"{'std':>9} {'margin':>10} {'in std':>7}  verdict")
    lines, ok = [header, "-" * len(header)], True
    for measure, rows in sorted(by_measure.items()):
        values, kind, bound = [r["value"] for r in rows], rows[0]["kind"], rows[0]["bound"]
        margin, in_std, wide = verdict(kind, values, bound)
        ok &= wide
        sign = "<=" if kind == "below" else ">"
        lines.append(f"{measure:<{width}} {sign:>2}{bound:>8.3g} {len(values):>3} "
                     f"{min(values):>10.3g} "
                     f"{statistics.fmean(values):>10.3g} {max(values):>10.3g} "
                     f"{statistics.pstdev(values):>9.2g} {margin:>10.3g} {in_std:>7.1f}  "
                     f"{'ok' if wide else 'TIGHT'}")
    return "\n".join(lines), ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10,
                        help="how many seeds for the learning tests (default: 10)")
    parser.add_argument("--first-seed", type=int, default=0,
                        help="the first seed of both (default: 0)")
    parser.add_argument("--margin-seeds", type=int, default=1,
                        help="how many seeds, from --first-seed, for the tolerance tests: "
                             "those on a fixed reference batch change only with threads, those "
                             "on trained runs (export, distribution) with the seed too "
                             "(default: 1)")
    parser.add_argument("--threads", default="1,2", help="thread counts (default: 1,2)")
    parser.add_argument("--marker", choices=("learning", "margins", "both"), default="both")
    parser.add_argument("-k", "--select", default=None, metavar="EXPR",
                        help="only the tests pytest -k EXPR selects (e.g. the one whose "
                             "threshold you changed)")
    parser.add_argument("--log", type=Path, default=None,
                        help="append the measures to this JSON-lines file and tabulate all "
                             "it holds (default: a temporary file)")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    failures, runs = 0, 0
    with tempfile.TemporaryDirectory() as tmp:
        log = args.log or Path(tmp) / "stress.jsonl"
        for t in (int(t) for t in args.threads.split(",")):
            plan = [(m, seed) for m, seeds in
                    (("learning", range(args.first_seed, args.first_seed + args.seeds)),
                     ("margins", range(args.first_seed, args.first_seed + args.margin_seeds)))
                    if args.marker in (m, "both") for seed in seeds]
            # As many pytest runs at once as the cores hold at t threads each.
            with ThreadPoolExecutor(max(1, cores // t)) as pool:
                futures = [(m, seed, pool.submit(run_once, seed, t, m, log, args.select))
                           for m, seed in plan]
                for m, seed, future in futures:
                    code, seconds = future.result()
                    failures, runs = failures + (code != 0), runs + 1
                    print(f"{m} tests, seed {seed}, {t} thread(s): "
                          f"{'passed' if code == 0 else 'FAILED'} in {seconds:.0f} s", flush=True)
        lines = log.read_text().splitlines() if log.exists() else []
        records = [json.loads(line) for line in lines]
    text, wide = table(records)
    print()
    print(text)
    spread = ("every bound sits well outside the measured spread" if wide
              else "some margins are tight")
    print(f"\n{runs} pytest runs, {failures} failed; {spread}")
    return 0 if failures == 0 and wide and records else 1


if __name__ == "__main__":
    sys.exit(main())
