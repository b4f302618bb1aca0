"""The results of a sweep in words and pictures: the text table `kvt compare` prints,
compare.md, compare.json, compare.png and curves.png."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kvt.compare import stats
from kvt.compare.arms import arm_words
from kvt.compare.plan import Plan
from kvt.compare.results import SeedResult, analyse, unfinished
from kvt.runs import write_json, write_text


def split_words(analysis: dict[str, Any], plan: Plan) -> str:
    split, images = analysis["eval_split"], analysis["eval_images"]
    if split == "validation":
        return (f"validation split ({images} images held out of the training set, "
                f"--val-split {plan.base.val_split:g}; the test set was not used)")
    if split == "test":
        return f"test split ({images} images)"
    if analysis["splits"]:
        return "mixed splits: " + ", ".join(f"{s} ({n} images)" for s, n in analysis["splits"])
    return "no finished runs"


def _pct(x: float | None, sign: bool = False) -> str:
    if x is None or x != x:
        return "n/a"
    return f"{100 * x:+.2f}" if sign else f"{100 * x:.2f}"


def _p(p: float | None) -> str:
    return "n/a" if p is None or p != p else f"{p:.3g}"


def tables(plan: Plan, analysis: dict[str, Any]) -> tuple[list[list[str]], list[list[str]]]:
    """(configuration rows, comparison rows), header first, as strings."""
    conf = [["configuration", "n", "unfinished" if analysis.get("interim") else "failed",
             "mean acc %", "std", "95% CI of mean", "train s/run"]]
    for c in analysis["configurations"]:
        secs = c["mean_train_seconds"]
        conf.append([c["label"] + (" (baseline)" if c["baseline"] else ""), str(c["n"]),
                     str(c["failed"]), _pct(c["mean"]), _pct(c["std"]),
                     _interval(c["ci_low"], c["ci_high"], c["ci_clipped"]) if c["n"] > 1
                     else "n/a",
                     f"{secs:.0f}" if secs is not None else "n/a"])
    paired = any(d.get("paired") for d in analysis["comparisons"])
    comp = [["vs " + plan.baseline, "diff (points)", "95% CI (Welch)", "95% CI (bootstrap)",
             "p", *(["95% CI (paired by seed)", "p (paired)"] if paired else []), "verdict"]]
    for d in analysis["comparisons"]:
        if d.get("identical_seeds"):
            same = f"identical at every seed ({d['identical_seeds']} seeds)"
            comp.append([d["other"], _pct(d["diff"], sign=True), same, "identical", "n/a",
                         *(["identical", "n/a"] if paired else []), d["verdict"]])
            continue
        pd = d.get("paired")
        comp.append([d["other"], _pct(d["diff"], sign=True),
                     _interval(d["ci_low"], d["ci_high"], d["clipped"], sign=True),
                     f"{_pct(d['boot_low'], True)} to {_pct(d['boot_high'], True)}",
                     _p(d["p_value"]),
                     *([_interval(pd["ci_low"], pd["ci_high"], False, sign=True) if pd
                        else "n/a", _p(pd["p_value"]) if pd else "n/a"] if paired else []),
                     d["verdict"]])
    return conf, comp


def identical_lines(analysis: dict[str, Any]) -> list[str]:
    """The configurations whose runs were identical at every seed, one line per group."""
    return [f"{', '.join(t['labels'][:-1])} and {t['labels'][-1]} gave identical runs at "
            f"every seed ({t['seeds']} seeds: {t['evidence']}): one result, counted once"
            for t in analysis.get("identical") or []]


PAIRING = ("The verdicts follow Welch, chosen before any data: it holds whether or not a "
           "seed ties two configurations' results, and nothing guarantees that it does "
           "(configurations that build different models draw different initial weights "
           "from one seed).")


def pairing_words(analysis: dict[str, Any]) -> str:
    """Which analysis the verdicts follow, and whether the paired one applies."""
    reasons = list(dict.fromkeys(d["pairing"] for d in analysis["comparisons"]
                                 if not d.get("identical_seeds") and d.get("pairing")))
    if any(d.get("paired") for d in analysis["comparisons"]):
        return (PAIRING + " The paired interval, from the per-seed differences, is given "
                "beside it where " + "; ".join(reasons) + ". Where it is much narrower than "
                "Welch's, the seed does tie the runs; where it is not, pairing only costs "
                "degrees of freedom.")
    if reasons:
        return PAIRING + " No paired analysis: " + "; ".join(reasons) + "."
    return PAIRING


def factorial_rows(analysis: dict[str, Any]) -> list[list[str]] | None:
    f = analysis.get("factorial")
    if not f:
        return None
    conf = f"{100 * f['confidence']:.1f}% CI"
    blocked = any(e.get("block") for e in f["effects"])
    rows = [["effect", "meaning", "estimate (points)", conf, "p", "p (Holm)",
             *([f"{conf} (seed as block)", "p (block, Holm)"] if blocked else [])]]
    for e in f["effects"]:
        b = e.get("block")
        if e.get("identical_seeds"):
            same = f"identical at every seed ({e['identical_seeds']} seeds)"
            rows.append([e["name"], e["meaning"], _pct(e["estimate"], sign=True), same,
                         "n/a", "n/a", *(["identical", "n/a"] if blocked else [])])
            continue
        rows.append([e["name"], e["meaning"], _pct(e["estimate"], sign=True),
                     _interval(e["ci_low"], e["ci_high"], False, sign=True),
                     _p(e["p_value"]), _p(e["p_holm"]),
                     *([_interval(b["ci_low"], b["ci_high"], False, sign=True) if b
                        else "n/a", _p(b["p_holm"]) if b else "n/a"] if blocked else [])])
    return rows


def factorial_words(analysis: dict[str, Any]) -> list[str]:
    f = analysis.get("factorial")
    if not f:
        return []
    (fa, fb), ((a0, a1), (b0, b1)) = f["factors"], f["levels"]
    lines = [f"2x2 grid: {fa} ({a0} -> {a1}) x {fb} ({b0} -> {b1}); {f['method']}."]
    sizes = sorted({" against ".join(map(str, e["n"])) for e in f["effects"] if e["n"]})
    if f.get("distinct") and len(f["distinct"]) < 4:
        lines.append(f"Distinct results: {', '.join(f['distinct'])} (the others repeat "
                     f"them); the effects are estimated from {' or '.join(sizes)} runs.")
    how = ("The verdicts follow Welch (see above why); seed as a block is shown beside it: "
           if f.get("blocked") else "The verdicts follow Welch; no seed-as-block analysis: ")
    lines.append(how + f["pairing"] + ".")
    return lines + [f"{e['name']}: {e['verdict']}" for e in f["effects"]]


def tutorial_words(analysis: dict[str, Any]) -> list[str]:
    rows = analysis.get("tutorial")
    if not rows:
        return []
    lines = ["The tutorial's single runs against this sweep's seeds:"]
    for t in rows:
        z = "" if t["z"] != t["z"] else f", {t['z']:+.1f} standard deviations from the mean"
        lines.append(f"  {t['label']}: the tutorial's {100 * t['tutorial']:.2f}% is at or above "
                     f"{t['percentile']:.0f}% of its {t['n']} runs here{z}")
    if not rows[0]["comparable"]:
        lines.append("  (the tutorial trained the seed recipe for 30 epochs on all of CIFAR-10 "
                     "and reported test accuracy; this sweep differs, so this is only "
                     "indicative)")
    return lines


def _interval(low: float | None, high: float | None, clipped: bool, sign: bool = False) -> str:
    return f"{_pct(low, sign)} to {_pct(high, sign)}" + (" *" if clipped else "")


def clipping_note(analysis: dict[str, Any]) -> str | None:
    """Why an interval marked * is cut at the end of the scale, or None if none is."""
    ns = sorted({c["n"] for c in analysis["configurations"] if c.get("ci_clipped")} |
                {n for d in analysis["comparisons"] if d.get("clipped")
                 for n in (d["n_other"], d["n_baseline"])})
    if not ns:
        return None
    return (f"Intervals marked * are cut to the possible range (0 to 100%, or -100 to +100 "
            f"points): with {' or '.join(map(str, ns))} runs the 95% interval is wider than "
            f"the scale and says nothing about where the mean lies; run more seeds for an "
            f"informative one.")


TEXT_COLUMNS = ("configuration", "verdict", "meaning")


def _left(header: list[str], i: int) -> bool:
    return i == 0 or header[i] in TEXT_COLUMNS


def fixed_columns(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if _left(rows[0], i) else c.rjust(w)
                       for i, (c, w) in enumerate(zip(r, widths))).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown(rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(rows[0]) + " |",
           "|" + "|".join("---" if _left(rows[0], i) else "---:"
                          for i in range(len(rows[0]))) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(out)


MIXED_MACHINES = ("The runs ran on more than one kind of machine: their train times compare "
                  "only within one (compare.json says which run ran where).")


def machine_lines(analysis: dict[str, Any]) -> list[str]:
    """Where the finished runs ran (processor, versions), one line per kind of machine."""
    return [f"{m['runs']} runs: {m['machine']}" for m in analysis.get("machines") or []]


def headline(plan: Plan, analysis: dict[str, Any]) -> str:
    b = plan.base
    varied = {k for v in plan.variants for k in v.overrides}
    if plan.arms:  # the arms' own configs: what differs between configurations is varied
        configs = [plan.config(v).to_dict() for v in plan.variants]
        b = plan.config(plan.variants[0])
        varied |= {k for k in configs[0] if len({repr(c[k]) for c in configs}) > 1}
    shared = [text for field, text in (
        ("model", b.model), ("dataset", f"on {b.dataset}"), ("backend", f"({b.backend})"),
        ("epochs", f"{b.epochs} epochs"), ("batch_size", f"batch {b.batch_size}"),
        ("lr", f"lr {b.lr:g}")) if field not in varied]
    return (f"{len(plan.variants)} configurations x {len(plan.seeds)} seeds "
            f"({', '.join(map(str, plan.seeds))}), {' '.join(shared[:3])}, "
            f"{', '.join(shared[3:])}; accuracy on the {split_words(analysis, plan)}")


def interim_words(analysis: dict[str, Any]) -> str | None:
    """What an interim report (`kvt compare --report` of an unfinished sweep) is, or None."""
    i = analysis.get("interim")
    if not i:
        return None
    return (f"Interim report: {i['finished']} of {i['runs']} runs finished; the sweep has not "
            f"(its other runs are training, or wait for kvt compare --resume), and every "
            f"number here will change when they finish.")


def unfinished_heading(analysis: dict[str, Any], count: int) -> str:
    return (f"{count} runs not finished yet" if analysis.get("interim")
            else f"{count} runs did not finish")


def render_text(plan: Plan, analysis: dict[str, Any]) -> str:
    conf, comp = tables(plan, analysis)
    interim = interim_words(analysis)
    parts = [interim, ""] if interim else []
    parts += [headline(plan, analysis), ""]
    arms = arm_words(plan, 12)
    parts += [arms, ""] if arms else []
    parts += [fixed_columns(conf), ""]
    same = identical_lines(analysis)
    parts += [*same, ""] if same else []
    parts += [fixed_columns([r[:-1] for r in comp]), ""]
    note = clipping_note(analysis)
    parts += [note, ""] if note else []
    parts += [f"{d['other']}: {d['verdict']}" for d in analysis["comparisons"]]
    parts += ["", pairing_words(analysis)] if analysis["comparisons"] else []
    effects = factorial_rows(analysis)
    if effects:
        parts += ["", fixed_columns([r[:1] + r[2:] for r in effects]), "",
                  *factorial_words(analysis)]
    tutorial = tutorial_words(analysis)
    parts += ["", *tutorial] if tutorial else []
    machines = machine_lines(analysis)
    parts += ["", MIXED_MACHINES, *[f"  {m}" for m in machines]] if len(machines) > 1 else []
    failed = unfinished(analysis)
    if failed:
        parts += ["", f"{unfinished_heading(analysis, len(failed))}:"]
        parts += [f"  {r['label']} seed {r['seed']} ({r['status']}): {r['message']}"
                  for r in failed]
    return "\n".join(parts) + "\n"


def render_markdown(plan: Plan, analysis: dict[str, Any], command: str) -> str:
    conf, comp = tables(plan, analysis)
    interim = interim_words(analysis)
    parts = ["# kvt compare" + (" (interim)" if interim else ""), ""]
    parts += [f"**{interim}**", ""] if interim else []
    parts += [headline(plan, analysis) + ".", "",
             *([arm_words(plan), ""] if plan.arms else []),
             f"Command: `{command}`", "", "## Accuracy per configuration", "",
             markdown(conf), ""]
    same = identical_lines(analysis)
    if same:
        parts += [*[f"- {line}" for line in same], "",
                  "Identical runs are one result, not independent samples: each distinct "
                  "result is counted once in the statistics below.", ""]
    parts += [f"## Against the baseline ({plan.baseline})", "",
             markdown(comp), "",
             "Differences are in percentage points (other minus baseline). The Welch "
             "interval and p-value come from Welch's t-test (no equal-variance "
             "assumption); the bootstrap interval resamples each configuration's runs "
             f"{stats.BOOTSTRAP_RESAMPLES} times as a check that does not assume "
             "normality; with few runs per configuration (under about 10) it is too narrow, "
             "so the verdict follows Welch. A difference is called only when p < 0.05.",
             "", pairing_words(analysis)]
    note = clipping_note(analysis)
    if note:
        parts += ["", note]
    if len(analysis["comparisons"]) > 1:
        parts.append("With several comparisons, p-values are not corrected for multiple "
                     "testing: expect about one false call in twenty at p < 0.05.")
    effects = factorial_rows(analysis)
    if effects:
        parts += ["", "## Two effects and their interaction (2x2)", "", markdown(effects), "",
                  *factorial_words(analysis)]
    tutorial = tutorial_words(analysis)
    if tutorial:
        parts += ["", "## The tutorial's runs", "", tutorial[0], "",
                  *[f"- {line.strip()}" for line in tutorial[1:]]]
    machines = machine_lines(analysis)
    if machines:
        parts += ["", "## Where the runs ran", "", *[f"- {line}" for line in machines]]
        parts += ["", MIXED_MACHINES] if len(machines) > 1 else []
    failed = unfinished(analysis)
    if failed:
        parts += ["", ("## Runs not finished yet" if interim else "## Runs that did not finish"),
                  ""]
        parts += [f"- {r['label']} seed {r['seed']} ({r['status']}, `{r['path']}`): "
                  f"{r['message']}" for r in failed]
    return "\n".join(parts) + "\n"


def write_results(folder: Path, plan: Plan, results: list[SeedResult], command: str,
                  interim: bool = False, curves: bool = True) -> dict[str, Any]:
    """Writes compare.md, compare.json and the plots into `folder` (the sweep directory);
    `interim` marks them as a look at a sweep that has not finished (`kvt compare
    --report`); without `curves`, curves.png is left as it is (results read back from
    compare.json hold no learning curves)."""
    from kvt.report import plot_compare, plot_curves

    analysis = analyse(plan, results)
    analysis["interim"] = ({"finished": sum(r.status == "complete" for r in results),
                            "runs": len(results)} if interim else None)
    write_text(folder / "compare.md", render_markdown(plan, analysis, command))
    arms = arm_words(plan)
    write_json(folder / "compare.json", {"plan": plan.to_dict(),
                                         **({"tuned_separately": arms} if arms else {}),
                                         **analysis})
    ref = plan.config(plan.variants[0]) if plan.arms else plan.base  # arms: their own
    title = f"{ref.dataset}, {ref.epochs} epochs, {len(plan.seeds)} seeds"
    if interim:
        title += f", interim: {analysis['interim']['finished']} of {len(results)} runs"
    groups = {c["label"]: list(c["accuracies"].values()) for c in analysis["configurations"]}
    plot_compare(groups, folder / "compare.png",
                 f"Accuracy per configuration ({title})",
                 f"{analysis['eval_split'] or 'evaluation'} accuracy (%)")
    if curves:
        histories = {v.label: [r.history for r in results if r.label == v.label and r.history]
                     for v in plan.variants}
        plot_curves(histories, folder / "curves.png", f"Mean learning curves ({title})",
                    analysis["eval_split"] or "evaluation")
    return analysis
