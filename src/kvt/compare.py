"""`kvt compare`: a grid of configurations times seeds, each an ordinary kvt run in its
own subprocess, then a statistical comparison against a baseline.

The sweep directory:

    sweep.json          the plan: base config, configurations (label, overrides), seeds,
                        runs at a time (-j)
    status.json         running | complete | interrupted (of the sweep as a whole)
    configs/<slug>.json each configuration's TrainConfig, as `kvt train --config` reads it
    runs/<slug>/seed-<n>/   one kvt run directory per (configuration, seed), plus train.log
    compare.md          the result table, in words and numbers
    compare.json        the same data: every run, every summary, every comparison
    compare.png         accuracy per configuration, every seed shown
    curves.png          mean learning curves with a ±1 std band per configuration

A sweep that stops (Ctrl-C, a crash, a reboot) resumes with `--resume`: finished runs
are kept, interrupted ones continue from their last finished epoch, failed ones start
over. One process at a time runs a sweep (it holds the sweep directory's lock, as each
child holds its run's). The sweep imports no framework itself; only its children do.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import typing
from pathlib import Path
from typing import Any, TextIO

from kvt import signals, stats
from kvt.config import MAX_SEED, TrainConfig
from kvt.errors import Cancelled, RunError, UsageError
from kvt.runs import RunDir, write_json, write_text

PRESETS: dict[str, dict[str, Any]] = {
    # The tutorial's two runs: Keras with ReLU (74.32%) against tf.keras with CReLU
    # (75.50%), both on TensorFlow.
    "tutorial": {
        "description": "the tutorial's Keras/ReLU against tf.keras/CReLU",
        "configs": [{"api": "keras", "activation": "relu"},
                    {"api": "tf", "activation": "crelu"}],
    },
}
PLAN_FORMAT = 1
RESULTS = ("compare.md", "compare.json", "compare.png", "curves.png")
# Fields a sweep may not vary: the seed is the replication axis, and the rest only
# say where things are.
NOT_VARIED = ("seed", "data_dir", "recipe")


@dataclasses.dataclass
class Variant:
    """One configuration of the grid: a label and the fields it sets on the base."""

    label: str
    overrides: dict[str, Any]

    @property
    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9_.=-]+", "-", self.label.replace("/", "_")).strip("-")


@dataclasses.dataclass
class Plan:
    base: TrainConfig
    variants: list[Variant]
    seeds: list[int]
    baseline: str
    preset: str | None = None
    command: list[str] = dataclasses.field(default_factory=list)
    jobs: int = 1  # runs at a time; --resume keeps it unless -j is given again

    def config(self, variant: Variant, seed: int | None = None) -> TrainConfig:
        """The variant's TrainConfig: the base with its overrides (and `seed`, if given)."""
        values = {**self.base.to_dict(), **variant.overrides}
        if seed is not None:
            values["seed"] = seed
        return TrainConfig.from_dict(values)

    def to_dict(self) -> dict[str, Any]:
        return {"format": PLAN_FORMAT, "base": self.base.to_dict(),
                "variants": [dataclasses.asdict(v) for v in self.variants],
                "seeds": self.seeds, "baseline": self.baseline, "preset": self.preset,
                "command": self.command, "jobs": self.jobs}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        if data.get("format") != PLAN_FORMAT:
            raise ValueError(f"unknown sweep format {data.get('format')!r}")
        return cls(TrainConfig.from_dict(data["base"]),
                   [Variant(v["label"], v["overrides"]) for v in data["variants"]],
                   [int(s) for s in data["seeds"]], data["baseline"], data.get("preset"),
                   data.get("command", []), int(data.get("jobs", 1)))


# --- the grid -----------------------------------------------------------------------

def parse_seeds(text: str) -> list[int]:
    """"5" means seeds 0..4; "1,7,9" means exactly those."""
    try:
        if "," in text:
            seeds = [int(s) for s in text.split(",") if s.strip()]
        else:
            seeds = list(range(int(text)))
    except ValueError:
        seeds = []
    if not seeds or any(not 0 <= s <= MAX_SEED for s in seeds) or len(set(seeds)) != len(seeds):
        raise UsageError(f"--seeds {text!r}: give a count (5 = seeds 0..4) or a list of "
                         f"distinct integers from 0 to {MAX_SEED} (1,7,9)")
    return seeds


def parse_vary(spec: str) -> tuple[str, list[Any]]:
    """"activation=relu,crelu" -> ("activation", ["relu", "crelu"]), typed by the field."""
    field, sep, values = spec.partition("=")
    field = field.strip().replace("-", "_")
    types = typing.get_type_hints(TrainConfig)
    if not sep or not values.strip():
        raise UsageError(f"--vary {spec!r}: write FIELD=VALUE1,VALUE2 (for example "
                         f"activation=relu,crelu)")
    if field not in types or field in NOT_VARIED:
        allowed = ", ".join(f for f in types if f not in NOT_VARIED)
        hint = " (seeds are set with --seeds)" if field == "seed" else ""
        raise UsageError(f"--vary {spec!r}: cannot vary {field!r}{hint}; choose one of "
                         f"{allowed}")
    parsed = [_coerce(field, types[field], v.strip(), spec) for v in values.split(",")]
    if len(set(map(repr, parsed))) != len(parsed):
        raise UsageError(f"--vary {spec!r} repeats a value")
    return field, parsed


def _coerce(field: str, kind: Any, text: str, spec: str) -> Any:
    args = typing.get_args(kind)
    optional = type(None) in args
    base = next((a for a in args if a is not type(None)), kind) if args else kind
    if optional and text.lower() in ("none", "null", ""):
        return None
    try:
        if base is bool:
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if base is int:
            return int(text)
        if base is float:
            return float(text)
    except ValueError:
        raise UsageError(f"--vary {spec!r}: {text!r} is not a valid {base.__name__} for "
                         f"{field}") from None
    return text


def build_plan(base: TrainConfig, preset: str | None, varies: list[str], seeds: list[int],
               baseline: str | None, command: list[str] | None = None, jobs: int = 1) -> Plan:
    """The grid: the preset's configurations (or one) times every --vary, validated."""
    if preset is not None and preset not in PRESETS:
        raise UsageError(f"unknown --preset {preset!r}: choose one of {', '.join(PRESETS)}")
    rows: list[dict[str, Any]] = list(PRESETS[preset]["configs"]) if preset else [{}]
    axes = [parse_vary(v) for v in varies]
    fields = [f for f, _ in axes]
    if len(set(fields)) != len(fields):
        raise UsageError("each field may be given to --vary once: list all its values there")
    clash = sorted(set(fields) & {k for row in rows for k in row})
    if clash:
        raise UsageError(f"--preset {preset} already sets {', '.join(clash)}: drop that --vary")
    variants = []
    for row in rows:
        for values in itertools.product(*(vals for _, vals in axes)):
            overrides = {**row, **dict(zip(fields, values))}
            label = "/".join(_show(k, v) for k, v in overrides.items()) or "base"
            variants.append(Variant(label, overrides))
    if len(variants) < 2:
        raise UsageError("a comparison needs at least two configurations: use --preset "
                         "tutorial or --vary FIELD=A,B")
    labels = [v.label for v in variants]
    if baseline is None:
        baseline = labels[0]
    elif baseline not in labels:
        raise UsageError(f"--baseline {baseline!r} is not one of the configurations: "
                         f"{', '.join(labels)}")
    plan = Plan(base, variants, seeds, baseline, preset, list(command or []), jobs)
    for variant in variants:  # refuse impossible combinations before anything runs
        plan.config(variant)
    return plan


def _show(field: str, value: Any) -> str:
    """A value as a label part: names stand alone (relu), numbers and switches say
    which field they set (lr=0.01, native_ops=on)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return f"{field}={'on' if value else 'off'}"
    return f"{field}={'none' if value is None else value:g}" if isinstance(value, float) \
        else f"{field}={value}"


# --- running ------------------------------------------------------------------------

@dataclasses.dataclass
class Job:
    variant: Variant
    seed: int
    run_dir: RunDir
    argv: list[str] = dataclasses.field(default_factory=list)
    action: str = "start"  # start | resume | done


class Sweep:
    """A sweep directory (see the module docstring)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.status = RunDir(self.path)

    def run_dir(self, variant: Variant, seed: int) -> RunDir:
        return RunDir(self.path / "runs" / variant.slug / f"seed-{seed}")

    def config_path(self, variant: Variant) -> Path:
        return self.path / "configs" / f"{variant.slug}.json"

    def claim(self, create: bool = True):
        """Holds the sweep directory for this process (see `RunDir.claim`)."""
        return self.status.claim(create)

    def create(self, plan: Plan, force: bool) -> None:
        """Writes the plan; refuses an existing sweep unless `force`, which deletes it.
        Call it inside `claim()`."""
        if (self.path / "sweep.json").exists():
            if not force:
                raise RunError(f"{self.path} already holds a sweep: continue it with --resume "
                               f"{self.path}, choose another --out, or pass --force to start "
                               f"over")
            for name in ("runs", "configs"):
                shutil.rmtree(self.path / name, ignore_errors=True)
            for name in (*RESULTS, "status.json"):
                (self.path / name).unlink(missing_ok=True)
        try:
            (self.path / "configs").mkdir(parents=True, exist_ok=True)
            for variant in plan.variants:
                write_text(self.config_path(variant), plan.config(variant).to_json() + "\n")
            self.save(plan)
        except OSError as e:
            raise RunError(f"cannot write the sweep directory {self.path} ({e.strerror or e}): "
                           f"choose a writable --out") from None

    def save(self, plan: Plan) -> None:
        write_json(self.path / "sweep.json", plan.to_dict())

    def load(self) -> Plan:
        try:
            return Plan.from_dict(json.loads((self.path / "sweep.json").read_text()))
        except FileNotFoundError:
            raise RunError(f"{self.path} is not a kvt compare directory (no sweep.json): pass "
                           f"the --out of the sweep to continue") from None
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise RunError(f"cannot read {self.path / 'sweep.json'} ({e}): start the sweep "
                           f"again with --force") from None

    def jobs(self, plan: Plan) -> list[Job]:
        """What each (configuration, seed) still needs, seeds first so that an early
        stop leaves every configuration with some runs."""
        jobs = []
        for seed in plan.seeds:
            for variant in plan.variants:
                rd = self.run_dir(variant, seed)
                job = Job(variant, seed, rd)
                status = rd.status()
                if rd.path.is_dir():
                    with rd.claim(create=False):  # refuses a run another process is training
                        pass
                if status == "complete":
                    job.action = "done"
                elif status in ("interrupted", "running") and (rd / "config.json").is_file():
                    job.action = "resume"
                    job.argv = ["train", "--resume", str(rd.path)]
                else:  # never started, or failed: from the beginning
                    job.argv = ["train", "--config", str(self.config_path(variant)),
                                "--seed", str(seed), "--out", str(rd.path), "--force"]
                jobs.append(job)
        return jobs


def child_env(jobs: int) -> dict[str, str]:
    """The children's environment: with several at once, each gets its share of cores
    (TensorFlow and PyTorch threads) unless the user has set the counts."""
    env = dict(os.environ)
    if jobs > 1:
        share = str(max(1, (os.cpu_count() or 1) // jobs))
        for name in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS"):
            env.setdefault(name, share)
        env.setdefault("TF_NUM_INTEROP_THREADS", "1")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def execute(sweep: Sweep, plan: Plan, jobs: int, stream: TextIO,
            python: str = sys.executable) -> None:
    """Runs every job that is not done, `jobs` at a time; a failed run is recorded
    by its own status.json and does not stop the others."""
    todo = [j for j in sweep.jobs(plan) if j.action != "done"]
    total, finished = len(todo), 0
    done_before = len(plan.variants) * len(plan.seeds) - total
    if done_before:
        print(f"kvt compare: {done_before} runs already finished, {total} to go", file=stream,
              flush=True)
    env = child_env(jobs)
    running: dict[subprocess.Popen, tuple[Job, Any, float]] = {}
    sweep.status.mark("running", f"{done_before} of {done_before + total} runs finished")
    try:
        while todo or running:
            while todo and len(running) < jobs:
                job = todo.pop(0)
                # A child that was started is always known, so that a stop reaches it.
                with signals.deferred():
                    job.run_dir.path.mkdir(parents=True, exist_ok=True)
                    log = open(job.run_dir / "train.log", "a")
                    log.write(f"$ kvt {shlex.join(job.argv)}\n")
                    log.flush()
                    proc = subprocess.Popen([python, "-m", "kvt", *job.argv], stdout=log,
                                            stderr=subprocess.STDOUT, env=env,
                                            stdin=subprocess.DEVNULL)
                    running[proc] = (job, log, time.perf_counter())
                verb = "continuing" if job.action == "resume" else "starting"
                print(f"kvt compare: {verb} {job.variant.label} seed {job.seed}", file=stream,
                      flush=True)
            time.sleep(0.2)
            for proc in [p for p in running if p.poll() is not None]:
                job, log, started = running.pop(proc)
                log.close()
                finished += 1
                print(f"kvt compare: [{finished}/{total}] {job.variant.label} seed {job.seed}: "
                      f"{_outcome(job, proc.returncode, time.perf_counter() - started)}",
                      file=stream, flush=True)
                sweep.status.mark("running", f"{done_before + finished} of "
                                             f"{done_before + total} runs finished")
    except KeyboardInterrupt:
        _stop(running)
        raise _cancelled(sweep, "stopped; finished runs are kept, unfinished ones continue "
                                "from their last finished epoch with") from None


def _cancelled(sweep: Sweep, words: str) -> Cancelled:
    """Marks the sweep interrupted; the error that says how to continue it."""
    hint = f"kvt compare --resume {shlex.quote(str(sweep.path))}"
    with signals.deferred():
        sweep.status.mark("interrupted", f"continue with {hint}")
    return Cancelled(f"{words}: {hint}")


def _stop(running: dict[subprocess.Popen, tuple[Job, Any, float]]) -> None:
    """Asks every child to stop (they checkpoint and mark themselves interrupted)."""
    for proc in running:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 60
    for proc, (_, log, _) in running.items():
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _outcome(job: Job, returncode: int, seconds: float) -> str:
    if returncode == 0 and job.run_dir.status() == "complete":
        metrics = job.run_dir.read_json("metrics.json")
        return f"{100 * metrics['accuracy']:.2f}% in {seconds:.0f} s"
    return f"FAILED (exit {returncode}): {failure_message(job.run_dir)}"


def failure_message(run_dir: RunDir) -> str:
    """Why a run did not finish: kvt's one-line error from its log, else its status."""
    try:
        lines = [ln.strip() for ln in (run_dir / "train.log").read_text(errors="replace")
                 .splitlines() if ln.strip()]
    except OSError:
        lines = []
    for line in reversed(lines):
        if line.startswith("kvt train: "):
            return line.removeprefix("kvt train: ").removeprefix("error: ")
    message = run_dir.state().get("message")
    if message:
        return str(message)
    return lines[-1] if lines else "no output (see train.log)"


# --- results ------------------------------------------------------------------------

@dataclasses.dataclass
class RunResult:
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


def collect(sweep: Sweep, plan: Plan) -> list[RunResult]:
    results = []
    for variant in plan.variants:
        for seed in plan.seeds:
            rd = sweep.run_dir(variant, seed)
            r = RunResult(variant.label, seed, str(rd.path), rd.status())
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


def analyse(plan: Plan, results: list[RunResult]) -> dict[str, Any]:
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


def tables(plan: Plan, analysis: dict[str, Any]) -> tuple[list[list[str]], list[list[str]]]:
    """(configuration rows, comparison rows), header first, as strings."""
    conf = [["configuration", "n", "failed", "mean acc %", "std", "95% CI of mean",
             "train s/run"]]
    for c in analysis["configurations"]:
        secs = c["mean_train_seconds"]
        conf.append([c["label"] + (" (baseline)" if c["baseline"] else ""), str(c["n"]),
                     str(c["failed"]), _pct(c["mean"]), _pct(c["std"]),
                     _interval(c["ci_low"], c["ci_high"], c["ci_clipped"]) if c["n"] > 1
                     else "n/a",
                     f"{secs:.0f}" if secs is not None else "n/a"])
    comp = [["vs " + plan.baseline, "diff (points)", "95% CI (Welch)", "95% CI (bootstrap)",
             "p", "verdict"]]
    for d in analysis["comparisons"]:
        comp.append([d["other"], _pct(d["diff"], sign=True),
                     _interval(d["ci_low"], d["ci_high"], d["clipped"], sign=True),
                     f"{_pct(d['boot_low'], True)} to {_pct(d['boot_high'], True)}",
                     "n/a" if d["p_value"] != d["p_value"] else f"{d['p_value']:.3g}",
                     d["verdict"]])
    return conf, comp


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


TEXT_COLUMNS = ("configuration", "verdict")


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


def headline(plan: Plan, analysis: dict[str, Any]) -> str:
    b = plan.base
    varied = {k for v in plan.variants for k in v.overrides}
    shared = [text for field, text in (
        ("model", b.model), ("dataset", f"on {b.dataset}"), ("backend", f"({b.backend})"),
        ("epochs", f"{b.epochs} epochs"), ("batch_size", f"batch {b.batch_size}"),
        ("lr", f"lr {b.lr:g}")) if field not in varied]
    return (f"{len(plan.variants)} configurations x {len(plan.seeds)} seeds "
            f"({', '.join(map(str, plan.seeds))}), {' '.join(shared[:3])}, "
            f"{', '.join(shared[3:])}; accuracy on the {split_words(analysis, plan)}")


def render_text(plan: Plan, analysis: dict[str, Any]) -> str:
    conf, comp = tables(plan, analysis)
    parts = [headline(plan, analysis), "", fixed_columns(conf), "",
             fixed_columns([r[:-1] for r in comp]), ""]
    note = clipping_note(analysis)
    parts += [note, ""] if note else []
    parts += [f"{d['other']}: {d['verdict']}" for d in analysis["comparisons"]]
    failed = unfinished(analysis)
    if failed:
        parts += ["", f"{len(failed)} runs did not finish:"]
        parts += [f"  {r['label']} seed {r['seed']} ({r['status']}): {r['message']}"
                  for r in failed]
    return "\n".join(parts) + "\n"


def render_markdown(plan: Plan, analysis: dict[str, Any], command: str) -> str:
    conf, comp = tables(plan, analysis)
    parts = ["# kvt compare", "", headline(plan, analysis) + ".", "",
             f"Command: `{command}`", "", "## Accuracy per configuration", "",
             markdown(conf), "", f"## Against the baseline ({plan.baseline})", "",
             markdown(comp), "",
             "Differences are in percentage points (other minus baseline). The Welch "
             "interval and p-value come from Welch's t-test (no equal-variance "
             "assumption); the bootstrap interval resamples each configuration's runs "
             f"{stats.BOOTSTRAP_RESAMPLES} times as a check that does not assume "
             "normality; with few runs per configuration (under about 10) it is too narrow, "
             "so the verdict follows Welch. A difference is called only when p < 0.05."]
    note = clipping_note(analysis)
    if note:
        parts += ["", note]
    if len(analysis["comparisons"]) > 1:
        parts.append("With several comparisons, p-values are not corrected for multiple "
                     "testing: expect about one false call in twenty at p < 0.05.")
    failed = unfinished(analysis)
    if failed:
        parts += ["", "## Runs that did not finish", ""]
        parts += [f"- {r['label']} seed {r['seed']} ({r['status']}, `{r['path']}`): "
                  f"{r['message']}" for r in failed]
    return "\n".join(parts) + "\n"


def write_results(sweep: Sweep, plan: Plan, results: list[RunResult],
                  command: str) -> dict[str, Any]:
    from kvt.report import plot_compare, plot_curves

    analysis = analyse(plan, results)
    write_text(sweep.path / "compare.md", render_markdown(plan, analysis, command))
    write_json(sweep.path / "compare.json", {"plan": plan.to_dict(), **analysis})
    title = f"{plan.base.dataset}, {plan.base.epochs} epochs, {len(plan.seeds)} seeds"
    groups = {c["label"]: list(c["accuracies"].values()) for c in analysis["configurations"]}
    plot_compare(groups, sweep.path / "compare.png",
                 f"Accuracy per configuration ({title})",
                 f"{analysis['eval_split'] or 'evaluation'} accuracy (%)")
    curves = {v.label: [r.history for r in results if r.label == v.label and r.history]
              for v in plan.variants}
    plot_curves(curves, sweep.path / "curves.png", f"Mean learning curves ({title})",
                analysis["eval_split"] or "evaluation")
    return analysis


def run_sweep(sweep: Sweep, plan: Plan, jobs: int, stream: TextIO,
              command: str, python: str = sys.executable) -> tuple[dict[str, Any], str]:
    """Executes what is left of the sweep, then writes the results. Returns the
    analysis and its text table."""
    execute(sweep, plan, jobs, stream, python)
    try:
        results = collect(sweep, plan)
        analysis = write_results(sweep, plan, results, command)
        finished = len(results) - len(unfinished(analysis))
        with signals.deferred():
            signals.check()
            sweep.status.mark("complete", f"{finished} of {len(results)} runs finished")
            signals.settled()  # the results are whole: a late signal changes nothing
    except KeyboardInterrupt:
        raise _cancelled(sweep, "stopped while writing the results; every run is kept: "
                                "write them with") from None
    return analysis, render_text(plan, analysis)


