"""Time to accuracy: a fixed-column table of finished kvt runs, grouped by configuration.

    python benchmarks/time_to_accuracy.py RUN_OR_SWEEP... [--target 74] [--json FILE]

Reads each run directory's config.json, metrics.json and history.csv (a sweep is read
as all its runs) and groups the runs by every config field except the seed. Per group:
how many runs, the accuracy of the split they were judged on (mean, std, min, max), how
many reached --target, and the time: the training wall time as kvt measured it (every
epoch's fit with its validation pass, compilation included, data loading and process
start excluded), the first epoch (where tracing and compilation happen) and the later
epochs' mean. A run judged with test-time augmentation (`--tta flip`) also shows the
network's single-pass accuracy ("1-pass %"). A run whose directory also holds `wall_s`
(written by benchmarks/gpu.sh and fast_cpu.sh) shows the whole process's wall time too,
mean and max. The machine and versions come from the runs' config.json. Imports no
framework.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from pathlib import Path

IGNORED = ("seed", "data_dir", "config")


def find_runs(paths: list[str]) -> list[Path]:
    runs = []
    for p in map(Path, paths):
        if (p / "metrics.json").is_file():
            runs.append(p)
        elif p.is_dir():
            runs.extend(sorted(m.parent for m in p.rglob("metrics.json")))
        else:
            sys.exit(f"time_to_accuracy: {p} is neither a finished run nor a folder of runs")
    if not runs:
        sys.exit(f"time_to_accuracy: no finished runs (metrics.json) under {', '.join(paths)}")
    return runs


def read_run(path: Path) -> dict:
    record = json.loads((path / "config.json").read_text())
    metrics = json.loads((path / "metrics.json").read_text())
    with open(path / "history.csv", newline="") as f:
        epoch_s = [float(row["epoch_seconds"]) for row in csv.DictReader(f)]
    wall = path / "wall_s"
    return {"config": record["config"], "environment": record.get("environment", {}),
            "accuracy": 100 * metrics["accuracy"], "split": metrics["eval_split"],
            "single": 100 * metrics.get("single_pass_accuracy", metrics["accuracy"]),
            "train_s": sum(epoch_s), "first_s": epoch_s[0],
            "later_s": statistics.mean(epoch_s[1:]) if len(epoch_s) > 1 else float("nan"),
            "wall_s": float(wall.read_text()) if wall.is_file() else float("nan")}


def group_label(config: dict, varying: list[str]) -> str:
    return " ".join(f"{k}={config[k]}" for k in varying) or "all"


def summarize(runs: list[dict], target: float) -> list[dict]:
    fields = [k for k in runs[0]["config"] if k not in IGNORED]
    varying = [k for k in fields if len({json.dumps(r["config"][k]) for r in runs}) > 1]
    groups: dict[str, list[dict]] = {}
    for r in runs:
        groups.setdefault(group_label(r["config"], varying), []).append(r)
    rows = []
    for label, members in groups.items():
        acc = [m["accuracy"] for m in members]
        mean = lambda key: statistics.mean(m[key] for m in members)  # noqa: E731
        rows.append({"group": label, "n": len(members), "split": members[0]["split"],
                     "acc_mean": statistics.mean(acc),
                     "acc_std": statistics.stdev(acc) if len(acc) > 1 else float("nan"),
                     "acc_min": min(acc), "acc_max": max(acc), "single_mean": mean("single"),
                     "reached": sum(a >= target for a in acc), "train_s": mean("train_s"),
                     "train_s_max": max(m["train_s"] for m in members),
                     "first_s": mean("first_s"), "later_s": mean("later_s"),
                     "wall_s": mean("wall_s"), "wall_s_max": max(m["wall_s"] for m in members),
                     # as if the first epoch cost what a later one does: comparable
                     # between runs that compiled and runs that found the cache warm
                     "steady_s": mean("train_s") - mean("first_s") + mean("later_s"),
                     "seeds": sorted(m["config"]["seed"] for m in members)})
    return rows


def pick(rows: list[dict], runs: list[dict], target: float) -> str:
    """The flags (--field value) that set the chosen group's varying fields: of the
    groups whose mean reaches `target`, the one with the least steady-state time (the
    first epoch's compilation left out: in a sweep, which runs compile is chance)."""
    reached = [r for r in rows if r["acc_mean"] >= target]
    best = (min(reached, key=lambda r: r["steady_s"]) if reached
            else max(rows, key=lambda r: r["acc_mean"]))
    if best["group"] == "all":
        return ""
    pairs = (item.split("=", 1) for item in best["group"].split(" "))
    return " ".join(f"--{k.replace('_', '-')} {v}" for k, v in pairs)


def render(rows: list[dict], target: float) -> str:
    width = max(len("configuration"), *(len(r["group"]) for r in rows))
    head = (f"{'configuration':<{width}}  {'n':>3}  {'acc %':>6}  {'std':>5}  {'min':>6}  "
            f"{'max':>6}  {f'>={target:g}%':>7}  {'1-pass %':>8}  {'train s':>8}  {'max s':>7}  "
            f"{'epoch 1 s':>9}  {'later s/ep':>10}  {'wall s':>7}  {'max wall':>8}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['group']:<{width}}  {r['n']:>3}  {r['acc_mean']:>6.2f}  "
                     f"{r['acc_std']:>5.2f}  {r['acc_min']:>6.2f}  {r['acc_max']:>6.2f}  "
                     f"{r['reached']:>3}/{r['n']:<3}  {r['single_mean']:>8.2f}  "
                     f"{r['train_s']:>8.1f}  {r['train_s_max']:>7.1f}  {r['first_s']:>9.1f}  "
                     f"{r['later_s']:>10.2f}  {r['wall_s']:>7.1f}  {r['wall_s_max']:>8.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", help="run directories or folders holding runs")
    parser.add_argument("--target", type=float, default=74.0,
                        help="the accuracy to count runs against, in %% (default: 74)")
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    parser.add_argument("--pick", action="store_true",
                        help="print only the kvt train flags of the configuration whose mean "
                             "reaches --target in the least steady-state time (compilation "
                             "left out; the most accurate if none reaches it)")
    args = parser.parse_args(argv)
    runs = [read_run(p) for p in find_runs(args.paths)]
    rows = summarize(runs, args.target)
    if args.pick:
        print(pick(rows, runs, args.target))
        return 0
    print(render(rows, args.target))
    env = runs[0]["environment"]
    print(f"\naccuracy on the {rows[0]['split']} split; train s = the sum of kvt's epoch "
          f"times (fit + validation, compilation included); 1-pass % = without test-time "
          f"augmentation; wall s = the whole process")
    if env:
        print("machine: " + ", ".join(f"{k} {' '.join(map(str, v)) if isinstance(v, list) else v}"
                                     for k, v in env.items() if isinstance(v, (str, list))))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
