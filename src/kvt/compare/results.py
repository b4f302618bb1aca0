"""What the runs of a sweep came to: one result per (configuration, seed), and the
analysis (summaries, comparisons with the baseline) as plain data."""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path
from typing import Any, Callable

from kvt.compare import design, stats
from kvt.compare.factorial import factorial as factorial_effects
from kvt.compare.plan import TUTORIAL_RESULTS, Plan, Variant
from kvt.runs import RunDir


REASON_PREFIXES = ("kvt train: ", "kvt compare: ")  # the lines that say why a run ended


def failure_message(run_dir: RunDir) -> str:
    """Why a run did not finish: kvt's one-line error from its log, else its status; of a
    run still training (an interim report's), how far it has come."""
    state = run_dir.state()
    try:
        lines = [ln.strip() for ln in (run_dir / "train.log").read_text(errors="replace")
                 .splitlines() if ln.strip()]
    except OSError:
        lines = []
    if (state["status"] == "running" and state.get("message")
            and not (lines and lines[-1].startswith(REASON_PREFIXES))):
        # Still training (or killed in the middle): how far it came, "12/30 epochs
        # finished". Its log may hold the stop of an earlier start further up.
        return str(state["message"])
    # The child's status.json does not carry every failure: a child refused before it
    # claims its run (a bad config, a directory in use) leaves none (or the last
    # start's), and a stopped run's says how to continue, not that it was cancelled.
    # So this reads back the one line kvt.cli.main prints ("kvt train: error: ..." or
    # "kvt train: cancelled: ..."): the one place that parses that prefix. An executor
    # that could not run `kvt train` at all (a Ray task that failed) says why in a line
    # of its own, "kvt compare: ...": the later of the two is the reason.
    for line in reversed(lines):
        if line.startswith("kvt train: "):
            return line.removeprefix("kvt train: ").removeprefix("error: ")
        if line.startswith("kvt compare: "):
            return line.removeprefix("kvt compare: ")
    message = state.get("message")
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
    machine: str | None = None
    loss: float | None = None  # test (or validation) loss: twins have the same


def machine_words(env: dict[str, Any]) -> str:
    """Where a run ran, in one line, from its config.json's "environment": the processor,
    accelerators if any, and the versions that decide its numbers."""
    backend = str(env.get("backend", "unknown backend"))
    where = f"{env.get('processor') or 'unknown processor'} ({env.get('cpu_count', '?')} CPUs)"
    accelerators = [str(d) for d in env.get("devices") or [] if "cpu" not in str(d).lower()]
    if accelerators:
        where += ", " + ", ".join(accelerators)
    versions = [f"{backend} {env.get(backend, '?')}", f"Keras {env.get('keras', '?')}",
                f"Python {env.get('python', '?')}"]
    return f"{where}; {', '.join(versions)}"


def collect(folder: Path, run_dir: Callable[[Variant, int], RunDir],
            plan: Plan) -> list[SeedResult]:
    """What each run of `plan` came to; `run_dir(variant, seed)` is where it is
    (`Sweep.run_dir`), inside `folder` (the sweep directory)."""
    results = []
    for variant in plan.variants:
        for seed in plan.seeds:
            rd = run_dir(variant, seed)
            # relative to the sweep: compare.json may be read on another machine
            r = SeedResult(variant.label, seed, rd.path.relative_to(folder).as_posix(),
                           rd.status())
            if r.status == "complete":
                try:
                    m = rd.read_json("metrics.json")
                    r.accuracy = float(m["accuracy"])
                    r.seconds = float(m["train_seconds"])
                    r.eval_split = m["eval_split"]
                    r.eval_images = int(m["eval_images"])
                    r.loss = float(m["loss"]) if m.get("loss") is not None else None
                    r.history = rd.read_history()
                except (OSError, ValueError, KeyError, TypeError) as e:
                    r.status, r.message = "failed", f"unreadable results ({e})"
                try:  # where it ran; a record without it still has a valid accuracy
                    r.machine = machine_words(rd.read_json("config.json")["environment"])
                except (OSError, ValueError, KeyError, TypeError, AttributeError):
                    pass
            elif r.status == "unknown" and not rd.path.exists():
                r.status, r.message = "not run", "not started"
            else:
                r.message = failure_message(rd)
            results.append(r)
    return results


def analyse(plan: Plan, results: list[SeedResult]) -> dict[str, Any]:
    """Per-configuration summaries, configurations with identical runs, comparisons with
    the baseline and the 2x2 effects, as plain data."""
    by_label = {v.label: [r for r in results if r.label == v.label] for v in plan.variants}
    accs = {label: [r.accuracy for r in rs if r.status == "complete"]
            for label, rs in by_label.items()}
    finished = {label: {r.seed: r for r in rs if r.status == "complete"}
                for label, rs in by_label.items()}
    twins = design.twins(finished)
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
    comparisons = [dataclasses.asdict(compare_pair(plan.baseline, v.label, finished, twins))
                   for v in plan.variants if v.label != plan.baseline]
    complete = [r for r in results if r.status == "complete"]
    splits = sorted({(r.eval_split, r.eval_images) for r in complete})
    return {"configurations": configurations,
            "identical": [dataclasses.asdict(t) for t in twins],
            "comparisons": comparisons,
            "factorial": factorial(plan, finished, twins),
            "tutorial": tutorial_positions(plan, accs, splits),
            "eval_split": splits[0][0] if len(splits) == 1 else None,
            "eval_images": splits[0][1] if len(splits) == 1 else None,
            "splits": [list(s) for s in splits],
            "machines": [{"machine": m, "runs": n} for m, n in
                         Counter(r.machine for r in complete if r.machine).most_common()],
            "runs": [{k: v for k, v in dataclasses.asdict(r).items() if k != "history"}
                     for r in results]}


def compare_pair(baseline: str, other: str, finished: dict[str, dict[int, SeedResult]],
                 twins: list[design.Twins]) -> stats.Difference:
    """`other` against `baseline`: exactly 0 if they are twins; else Welch (the verdict),
    with the paired-by-seed analysis beside it where their runs pair up."""
    for t in twins:
        if baseline in t.labels and other in t.labels:
            return stats.identical(baseline, other, t.seeds, len(finished[baseline]),
                                   len(finished[other]), t.evidence)
    a, b = finished[baseline], finished[other]
    d = stats.compare(baseline, [r.accuracy for r in a.values()], other,
                      [r.accuracy for r in b.values()])
    paired, d.pairing = design.pairing({baseline: a, other: b})
    if paired and len(a) >= 2:
        d.paired = dataclasses.asdict(stats.paired({s: r.accuracy for s, r in a.items()},
                                                   {s: r.accuracy for s, r in b.items()}))
    return d


def factorial_axes(plan: Plan) -> tuple[tuple[str, str], tuple[tuple[str, str], ...]] | None:
    """The two fields and their levels (reference first) if the configurations form a 2x2
    grid (every one sets the same two fields, each to one of two values, and every
    combination is there), else None."""
    keys = {tuple(sorted(v.overrides)) for v in plan.variants}
    if len(plan.variants) != 4 or len(keys) != 1 or len(next(iter(keys))) != 2:
        return None
    fields = tuple(plan.variants[0].overrides)  # in the order the grid gives them
    levels = []
    for f in fields:
        values = list(dict.fromkeys(v.overrides[f] for v in plan.variants))
        if len(values) != 2:
            return None
        levels.append(tuple(values))
    combos = {tuple(v.overrides[f] for f in fields) for v in plan.variants}
    if len(combos) != 4:
        return None
    return fields, tuple(levels)


def factorial(plan: Plan, finished: dict[str, dict[int, SeedResult]],
              twins: list[design.Twins]) -> dict[str, Any] | None:
    """The 2x2 analysis (`kvt.compare.factorial`) as plain data, each distinct result
    counted once, or None if the grid is not 2x2 or a distinct sample has fewer than 2
    finished runs."""
    axes = factorial_axes(plan)
    if axes is None:
        return None
    fields, levels = axes
    cell_of = {v.label: tuple(str(v.overrides[f]) for f in fields) for v in plan.variants}
    cells = {cell_of[label]: {s: r.accuracy for s, r in runs.items()}
             for label, runs in finished.items()}
    for t in twins:  # each group's runs, once: the seeds any of them finished
        cells[cell_of[t.labels[0]]] = design.merged(finished, t.labels)
    distinct = [label for label in finished
                if not any(label in t.labels[1:] for t in twins)]
    blocked, pairing = design.pairing({label: finished[label] for label in distinct})
    str_levels = tuple(tuple(str(x) for x in lv) for lv in levels)
    effects = factorial_effects(cells, fields, str_levels,
                                [([cell_of[m] for m in t.labels], t.seeds) for t in twins],
                                blocked)
    if effects is None:
        return None
    return {"factors": list(fields), "levels": [list(lv) for lv in str_levels],
            "confidence": 1 - stats.ALPHA / len(effects),
            "distinct": distinct, "pairing": pairing, "verdict_follows": "welch",
            "method": "Welch-Satterthwaite contrasts of the configuration means (no "
                      "equal-variance assumption)"
                      + (", configurations with identical runs counted once" if twins
                         else "")
                      + "; intervals Bonferroni-adjusted and p-values Holm-adjusted over "
                        "the three effects",
            "blocked": blocked,
            "effects": [dataclasses.asdict(e) for e in effects]}


def tutorial_positions(plan: Plan, accs: dict[str, list[float]],
                       splits: list[tuple[Any, Any]]) -> list[dict[str, Any]] | None:
    """For a tutorial preset: where the tutorial's single result for each of its two
    configurations sits in this sweep's seed-to-seed spread of that configuration."""
    if plan.preset not in ("tutorial", "tutorial-2x2"):
        return None
    b = plan.base
    # arms tuned separately train their own recipes, not the tutorial's
    comparable = (not plan.arms and b.recipe == "seed" and b.epochs == 30 and b.train_limit is None
                  and b.test_limit is None and [s[0] for s in splits] == ["test"])
    out = []
    for label, value in TUTORIAL_RESULTS.items():
        sample = accs.get(label, [])
        if not sample:
            continue
        pct, z = stats.position(value, sample)
        out.append({"label": label, "tutorial": value, "n": len(sample),
                    "percentile": pct, "z": z, "comparable": comparable})
    return out


def from_record(data: dict[str, Any]) -> tuple[Plan, list[SeedResult]]:
    """The plan and the run results a compare.json holds: enough to analyse and report a
    published sweep whose run directories were not kept (without learning curves)."""
    plan = Plan.from_dict(data["plan"])
    fields = {f.name for f in dataclasses.fields(SeedResult)} - {"history"}
    return plan, [SeedResult(**{k: v for k, v in r.items() if k in fields})
                  for r in data["runs"]]


def unfinished(analysis: dict[str, Any]) -> list[dict[str, Any]]:
    """The runs of `analysis` that did not finish (failed, interrupted, never run)."""
    return [r for r in analysis["runs"] if r["status"] != "complete"]
