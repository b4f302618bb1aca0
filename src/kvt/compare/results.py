"""What the runs of a sweep came to: one result per (configuration, seed), and the
analysis (summaries, comparisons with the baseline) as plain data."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from kvt.compare import stats
from kvt.compare.plan import Plan
from kvt.runs import RunDir

if TYPE_CHECKING:
    from kvt.compare.sweep import Sweep


def failure_message(run_dir: RunDir) -> str:
    """Why a run did not finish: kvt's one-line error from its log, else its status."""
    try:
        lines = [ln.strip() for ln in (run_dir / "train.log").read_text(errors="replace")
                 .splitlines() if ln.strip()]
    except OSError:
        lines = []
    # The child's status.json does not carry every failure: a child refused before it
    # claims its run (a bad config, a directory in use) leaves none (or the last
    # session's), and a stopped run's says how to continue, not that it was cancelled.
    # So this reads back the one line kvt.cli.main prints ("kvt train: error: ..." or
    # "kvt train: cancelled: ..."): the one place that parses that prefix.
    for line in reversed(lines):
        if line.startswith("kvt train: "):
            return line.removeprefix("kvt train: ").removeprefix("error: ")
    message = run_dir.state().get("message")
    if message:
        return str(message)
    return lines[-1] if lines else "no output (see train.log)"


@dataclasses.dataclass
class SeedResult:
    """What one run of a sweep (a configuration and a seed) came to."""

    label: str
    seed: int
    path: str
    status: str
    accuracy: float | None = None
    seconds: float | None = None
    eval_split: str | None = None
    eval_images: int | None = None
    history: dict[str, list[float]] | None = None
    message: str = ""


def collect(sweep: Sweep, plan: Plan) -> list[SeedResult]:
    results = []
    for variant in plan.variants:
        for seed in plan.seeds:
            rd = sweep.run_dir(variant, seed)
            r = SeedResult(variant.label, seed, str(rd.path), rd.status())
            if r.status == "complete":
                try:
                    m = rd.read_json("metrics.json")
                    r.accuracy = float(m["accuracy"])
                    r.seconds = float(m["train_seconds"])
                    r.eval_split = m["eval_split"]
                    r.eval_images = int(m["eval_images"])
                    r.history = rd.read_history()
                except (OSError, ValueError, KeyError, TypeError) as e:
                    r.status, r.message = "failed", f"unreadable results ({e})"
            elif r.status == "unknown" and not rd.path.exists():
                r.status, r.message = "not run", "never started"
            else:
                r.message = failure_message(rd)
            results.append(r)
    return results


def analyse(plan: Plan, results: list[SeedResult]) -> dict[str, Any]:
    """Per-configuration summaries and comparisons with the baseline, as plain data."""
    by_label = {v.label: [r for r in results if r.label == v.label] for v in plan.variants}
    accs = {label: [r.accuracy for r in rs if r.status == "complete"]
            for label, rs in by_label.items()}
    configurations = []
    for variant in plan.variants:
        rs = by_label[variant.label]
        s = stats.summarize(accs[variant.label])
        secs = [r.seconds for r in rs if r.status == "complete"]
        configurations.append({
            "label": variant.label, "overrides": variant.overrides,
            "baseline": variant.label == plan.baseline,
            "n": s.n, "failed": sum(r.status != "complete" for r in rs),
            "accuracies": {str(r.seed): r.accuracy for r in rs if r.status == "complete"},
            "mean": s.mean, "std": s.std, "ci_low": s.ci_low, "ci_high": s.ci_high,
            "ci_clipped": s.clipped,
            "mean_train_seconds": sum(secs) / len(secs) if secs else None,
        })
    comparisons = [dataclasses.asdict(stats.compare(plan.baseline, accs[plan.baseline],
                                                    v.label, accs[v.label]))
                   for v in plan.variants if v.label != plan.baseline]
    complete = [r for r in results if r.status == "complete"]
    splits = sorted({(r.eval_split, r.eval_images) for r in complete})
    return {"configurations": configurations, "comparisons": comparisons,
            "eval_split": splits[0][0] if len(splits) == 1 else None,
            "eval_images": splits[0][1] if len(splits) == 1 else None,
            "splits": [list(s) for s in splits],
            "runs": [{k: v for k, v in dataclasses.asdict(r).items() if k != "history"}
                     for r in results]}


def unfinished(analysis: dict[str, Any]) -> list[dict[str, Any]]:
    """The runs of `analysis` that did not finish (failed, interrupted, never run)."""
    return [r for r in analysis["runs"] if r["status"] != "complete"]
