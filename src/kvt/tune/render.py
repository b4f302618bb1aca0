"""What a search came to: best.json, tune.json, tune.md and the plots, from the study."""

from __future__ import annotations

import math
import shlex
import warnings
from pathlib import Path
from typing import Any

from kvt.runs import write_atomic, write_json, write_text
from kvt.tune.plan import TunePlan, TuneDir
from kvt.tune.space import flag


def rows(study, tune_dir: TuneDir) -> list[dict[str, Any]]:
    """One row per trial of the study: parameters, holdout accuracy, state, seconds, and
    the run directory where it is this directory's."""
    out = []
    for t in study.get_trials(deepcopy=False):
        run = t.user_attrs.get("run")
        out.append({
            "number": t.number, "state": t.state.name, "params": dict(t.params),
            "holdout_accuracy": t.value if t.state.name == "COMPLETE" else None,
            "seconds": t.user_attrs.get("seconds"),
            "epochs_reported": len(t.intermediate_values),
            "last_holdout_accuracy": (t.intermediate_values[max(t.intermediate_values)]
                                      if t.intermediate_values else None),
            "pruned_at": t.user_attrs.get("pruned_at"), "error": t.user_attrs.get("error"),
            "run": run if run and (tune_dir.path / run).is_dir() else None,
        })
    return out


def best_config(plan: TunePlan, params: dict[str, Any]) -> dict[str, Any]:
    """best.json: the best trial's config for `kvt train --config`, without the holdout:
    the recipe the search chose, trained on the whole training split and judged once on
    the test split (add --val-split to repeat the trial itself)."""
    return {**plan.config(params).to_dict(), "val_split": None}


def write_results(study, tune_dir: TuneDir, plan: TunePlan, command: str,
                  interim: bool = False) -> dict[str, Any]:
    """Writes tune.json, tune.md, the plots and (with a complete trial) best.json;
    returns tune.json's content."""
    table = rows(study, tune_dir)
    complete = [r for r in table if r["state"] == "COMPLETE"]
    best = max(complete, key=lambda r: (r["holdout_accuracy"], -r["number"]), default=None)
    counts = {s: sum(r["state"] == s for r in table)
              for s in ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")}
    data = {
        "objective": f"accuracy on the --val-split {plan.base.val_split:g} holdout of the "
                     f"training images (never the test split), maximised",
        "study": {"name": plan.study_name, "storage": plan.storage or "study.db (SQLite, "
                                                                    "in this directory)"},
        "command": command, "interim": interim, "trials_wanted": plan.trials,
        "space": [p.text for p in plan.space], "base": plan.base.to_dict(), "counts": counts,
        "best": None, "importance": importance(study), "trials": table,
    }
    if best is not None:
        data["best"] = {"number": best["number"], "holdout_accuracy": best["holdout_accuracy"],
                        "params": best["params"], "config": "best.json"}
        write_json(tune_dir.path / "best.json", best_config(plan, best["params"]))
    write_json(tune_dir.path / "tune.json", data)
    write_text(tune_dir.path / "tune.md", markdown(data, plan))
    plot_history(table, tune_dir.path / "history.png")
    plot_params(table, plan, tune_dir.path / "params.png")
    plot_importance(data["importance"], len(complete), tune_dir.path / "importance.png")
    return data


def importance(study) -> dict[str, float] | None:
    """fANOVA importance of each parameter for the holdout accuracy; None where it
    cannot be estimated (fewer than 2 complete trials, or all of them score the same:
    Optuna's evaluator then raises)."""
    import optuna

    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) < 2:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found = optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
    except (RuntimeError, ValueError, ZeroDivisionError):
        return None
    clean = {k: float(v) for k, v in found.items() if math.isfinite(v)}
    return clean or None


def _percent(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.2f}%"


def markdown(data: dict[str, Any], plan: TunePlan) -> str:
    """tune.md: the best trial, then every trial, in words and a table."""
    names = [p.name for p in plan.space]
    counts = ", ".join(f"{n} {s.lower()}" for s, n in data["counts"].items() if n)
    lines = [f"# kvt tune{' (interim)' if data['interim'] else ''}", "",
             f"`{data['command']}`", "",
             f"Objective: {data['objective']}. Study `{data['study']['name']}` in "
             f"{data['study']['storage']}. Space: "
             f"{', '.join(f'`{t}`' for t in data['space'])}. Trials: {counts or 'none'} "
             f"(of {data['trials_wanted']} wanted).", ""]
    best = data["best"]
    if best:
        params = ", ".join(f"{flag(k)} {_spell(v)}" for k, v in best["params"].items())
        lines += [f"**Best: trial {best['number']}, holdout accuracy "
                  f"{_percent(best['holdout_accuracy'])}** with {params}.", "",
                  "`kvt train --config best.json` trains this recipe on the whole training "
                  "split and judges it on the test split: the one look at the test set. "
                  f"Add `--val-split {plan.base.val_split:g}` to repeat the trial on the "
                  "holdout instead.", ""]
    else:
        lines += ["No trial is complete yet: no best.json.", ""]
    if data["importance"]:
        lines += ["Parameter importance (fANOVA): " + ", ".join(
            f"{flag(k)} {v:.2f}" for k, v in data["importance"].items()) + ".", ""]
    head = ["trial", *[flag(n) for n in names], "holdout accuracy", "state", "seconds", "note"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in data["trials"]:
        note = (f"pruned after epoch {r['pruned_at']}" if r["pruned_at"] else
                (r["error"] or "")).replace("|", "/")
        cells = [str(r["number"]), *[_spell(r["params"].get(n, "")) for n in names],
                 _percent(r["holdout_accuracy"]), r["state"],
                 "" if r["seconds"] is None else f"{r['seconds']:.0f}", note]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Plots: history.png (holdout accuracy per trial, best so far), params.png "
                  "(each parameter against it), importance.png."]
    return "\n".join(lines) + "\n"


def _spell(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed, none opened
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    plt = _pyplot()
    try:
        write_atomic(path, lambda p: fig.savefig(p, dpi=100, bbox_inches="tight",
                                                 format="png"))
    finally:
        plt.close(fig)


def plot_history(table: list[dict[str, Any]], path: Path) -> None:
    """Optimization history: each complete trial's holdout accuracy, the best so far, and
    pruned trials at their last reported epoch."""
    plt = _pyplot()
    with plt.style.context("ggplot"):
        fig, ax = plt.subplots(figsize=(7, 4))
        done = [r for r in table if r["state"] == "COMPLETE"]
        ax.plot([r["number"] for r in done], [100 * r["holdout_accuracy"] for r in done],
                "o", label="complete trial")
        pruned = [r for r in table if r["state"] == "PRUNED" and r["last_holdout_accuracy"]]
        if pruned:
            ax.plot([r["number"] for r in pruned],
                    [100 * r["last_holdout_accuracy"] for r in pruned], "x", color="grey",
                    label="pruned (last epoch)")
        best, steps = -math.inf, []
        for r in done:
            best = max(best, r["holdout_accuracy"])
            steps.append((r["number"], 100 * best))
        if steps:
            ax.step(*zip(*steps), where="post", label="best so far")
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # trials are numbered
        ax.set(xlabel="trial", ylabel="holdout accuracy (%)", title="Optimization history")
        ax.legend(loc="lower right")
        _save(fig, path)


def plot_params(table: list[dict[str, Any]], plan: TunePlan, path: Path) -> None:
    """Each parameter against the holdout accuracy of the complete trials."""
    plt = _pyplot()
    done = [r for r in table if r["state"] == "COMPLETE"]
    with plt.style.context("ggplot"):
        n = len(plan.space)
        fig, axes = plt.subplots(1, n, figsize=(4 * n, 3.6), squeeze=False)
        for ax, p in zip(axes[0], plan.space):
            pairs = [(r["params"][p.name], 100 * r["holdout_accuracy"]) for r in done
                     if p.name in r["params"]]
            if p.kind == "cat":
                index = {c: i for i, c in enumerate(p.choices)}
                ax.set_xticks(range(len(p.choices)), [str(c) for c in p.choices])
                pairs = [(index.get(x, -1), y) for x, y in pairs]
            elif p.kind == "log":
                from matplotlib.ticker import NullFormatter

                ax.set_xscale("log")
                ax.xaxis.set_minor_formatter(NullFormatter())  # they overlap on short ranges
            if pairs:
                ax.plot(*zip(*pairs), "o")
            ax.set(xlabel=flag(p.name), ylabel="holdout accuracy (%)")
        fig.suptitle("Each parameter against the objective")
        _save(fig, path)


def plot_importance(found: dict[str, float] | None, complete: int, path: Path) -> None:
    """Parameter importance as bars; a note in its place where it cannot be estimated."""
    plt = _pyplot()
    with plt.style.context("ggplot"):
        fig, ax = plt.subplots(figsize=(6, 1.2 + 0.5 * max(1, len(found or {}))))
        if found:
            names = list(found)[::-1]
            ax.barh([flag(n) for n in names], [found[n] for n in names])
            ax.set(xlabel="importance (fANOVA, sums to 1)")
        else:
            ax.axis("off")
            why = (f"needs at least 2 complete trials ({complete} so far)" if complete < 2
                   else "the complete trials' holdout accuracies do not differ")
            ax.text(0.5, 0.5, f"no importance: {why}", ha="center", va="center")
        ax.set_title("Parameter importance")
        _save(fig, path)


def command_line(argv: list[str] | None) -> str:
    return "kvt " + shlex.join(argv or ["tune"])
