"""The grid of `kvt compare`: configurations (a preset's, times every --vary) and seeds.

A `Plan` is what sweep.json holds; each `Variant` is one configuration, a label and the
fields it sets on the base config.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
import typing
from typing import Any

from kvt.config import MAX_SEED, TrainConfig, json_kind, check_seed
from kvt.errors import UsageError
from kvt.record_paths import portable_path, recorded_data_dir

# The tutorial's two single runs (seed recipe, 30 epochs, test split, TensorFlow 1.x).
TUTORIAL_RESULTS = {"keras/relu": 0.7432, "tf/crelu": 0.7550}
PRESETS: dict[str, dict[str, Any]] = {
    # The tutorial's two runs: Keras with ReLU (74.32%) against tf.keras with CReLU
    # (75.50%), both on TensorFlow.
    "tutorial": {
        "description": "the tutorial's Keras/ReLU against tf.keras/CReLU",
        "configs": [{"api": "keras", "activation": "relu"},
                    {"api": "tf", "activation": "crelu"}],
    },
    # The tutorial changed two things at once; the 2x2 grid separates them: the API's
    # effect, the activation's, and whether one changes the other (the interaction).
    # The two ReLU runs of a seed come first, then the two CReLU ones (about 1.7x longer):
    # with -j 2, runs of the same length run side by side and a seed's four runs end
    # together, so no core idles beside a lone CReLU run at the end of the sweep (or of
    # a seed, where a long sweep is stopped to be resumed).
    "tutorial-2x2": {
        "description": "{keras, tf} x {relu, crelu}: the API and the activation apart",
        "configs": [{"api": "keras", "activation": "relu"},
                    {"api": "tf", "activation": "relu"},
                    {"api": "keras", "activation": "crelu"},
                    {"api": "tf", "activation": "crelu"}],
    },
}
PLAN_FORMAT = 1
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
class Arm:
    """A config file that some configurations start from (`kvt compare --arm NAME=FILE`,
    `kvt.compare.arms`): each configuration with NAME among the parts of its label."""

    name: str
    file: str  # as records keep paths (`kvt.record_paths.portable_path`)
    sha256: str  # of the file's bytes: which version of a tuned recipe the sweep used
    # The file's config, kept here so that --resume/--extend train what the sweep began
    # with even if the file changed or is gone; data_dir none (the sweep says where).
    config: dict[str, Any]

    def matches(self, variant: Variant) -> bool:
        return self.name in variant.label.split("/")


@dataclasses.dataclass
class Plan:
    base: TrainConfig
    variants: list[Variant]
    seeds: list[int]
    baseline: str
    preset: str | None = None
    command: list[str] = dataclasses.field(default_factory=list)
    jobs: int = 1  # runs at a time; --resume keeps it unless -j is given again
    # Where the runs train: "local" (child processes of kvt compare) or "ray" (Ray tasks,
    # `ray` holding --ray-address, --cpus-per-run, --ray-storage); with "ray", jobs 0 is
    # as many at a time as the cluster has room for. --resume keeps them unless given.
    executor: str = "local"
    ray: dict[str, Any] = dataclasses.field(default_factory=dict)
    # sweep.json keeps no absolute data directory (`kvt.record_paths.recorded_data_dir`), only its
    # name (`kvt.record_paths.portable_path`): where the sweep's data was, for the message that
    # asks --resume/--extend for --data-dir. In memory, base.data_dir is the real one.
    data_source: str | None = None
    # With --arm: the arms, and the config fields typed on the command line, which go on
    # top of an arm's config and the configuration's overrides (the base holds them too).
    arms: list[Arm] = dataclasses.field(default_factory=list)
    typed: dict[str, Any] = dataclasses.field(default_factory=dict)

    def arm(self, variant: Variant) -> Arm | None:
        """The arm whose config `variant` starts from (at most one: `kvt.compare.arms`)."""
        return next((a for a in self.arms if a.matches(variant)), None)

    def config(self, variant: Variant, seed: int | None = None) -> TrainConfig:
        """The variant's TrainConfig: the base with its overrides (and `seed`, if given);
        for a variant of an arm, the arm's config, its overrides, then the typed flags."""
        arm = self.arm(variant)
        if arm is None:
            values = {**self.base.to_dict(), **variant.overrides}
        else:  # where the data lies is the sweep's (--data-dir, moved by --resume)
            values = {**arm.config, **variant.overrides, **self.typed,
                      "data_dir": self.base.data_dir}
        if seed is not None:
            values["seed"] = seed
        return TrainConfig.from_dict(values)

    def to_dict(self) -> dict[str, Any]:
        data_dir = self.base.data_dir
        kept = recorded_data_dir(data_dir)
        source = portable_path(data_dir) if data_dir and kept is None else self.data_source
        return {"format": PLAN_FORMAT, "base": {**self.base.to_dict(), "data_dir": kept},
                "data_source": source if kept is None else None,
                "variants": [dataclasses.asdict(v) for v in self.variants],
                "seeds": self.seeds, "baseline": self.baseline, "preset": self.preset,
                "command": self.command, "jobs": self.jobs, "executor": self.executor,
                "ray": self.ray,
                # only with --arm: a plain sweep.json stays as it was
                **({"arms": [dataclasses.asdict(a) for a in self.arms], "typed": self.typed}
                   if self.arms else {})}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        """The plan of a sweep.json, every field checked (`UsageError` naming the first
        that is not what kvt wrote), before any run is started from it."""
        if not isinstance(data, dict):
            raise UsageError(f"a sweep plan must be a JSON object, got {json_kind(data)}")
        if data.get("format") != PLAN_FORMAT:
            raise ValueError(f"unknown sweep format {data.get('format')!r}")
        for key in ("base", "variants", "seeds", "baseline"):
            if key not in data:
                raise UsageError(f"sweep field {key!r} is missing")
        base = TrainConfig.from_dict(data["base"])
        variants = _expect(data, "variants", list, "a list of configurations")
        if not variants:
            raise UsageError("sweep field 'variants' must list at least one configuration")
        parsed = []
        for i, v in enumerate(variants):
            if not (isinstance(v, dict) and isinstance(v.get("label"), str)
                    and isinstance(v.get("overrides"), dict)):
                raise UsageError(f"sweep field 'variants'[{i}] must be an object with a string "
                                 f"\"label\" and an object \"overrides\", got "
                                 f"{json_kind(v)}")
            parsed.append(Variant(v["label"], v["overrides"]))
        seeds = _expect(data, "seeds", list, "a list of seeds")
        for s in seeds:
            check_seed(s, "sweep field 'seeds': each seed")
        baseline = _expect(data, "baseline", str, "a configuration's label")
        preset = data.get("preset")
        if preset is not None and not isinstance(preset, str):
            raise UsageError(f"sweep field 'preset' must be a string or null, got "
                             f"{json_kind(preset)}")
        command = _expect(data, "command", list, "a list of strings", [])
        jobs = _expect(data, "jobs", int, "a whole number >= 0", 1)
        if isinstance(jobs, bool) or jobs < 0:
            raise UsageError(f"sweep field 'jobs' must be a whole number >= 0, got {jobs!r}")
        executor = _expect(data, "executor", str, "\"local\" or \"ray\"", "local")
        if executor not in ("local", "ray"):
            raise UsageError(f"sweep field 'executor' must be \"local\" or \"ray\", got "
                             f"{executor!r}")
        ray = _expect(data, "ray", dict, "an object", {}) or {}
        data_source = data.get("data_source")
        if data_source is not None and not isinstance(data_source, str):
            raise UsageError(f"sweep field 'data_source' must be a string or null, got "
                             f"{json_kind(data_source)}")
        typed = dict(_expect(data, "typed", dict, "an object", {}))
        plan = cls(base, parsed, seeds, baseline, preset, command, jobs, executor, dict(ray),
                   data_source, _arms(data), typed)
        for variant in plan.variants:  # each configuration as its runs will train it
            try:
                plan.config(variant)
            except UsageError as e:
                raise UsageError(f"configuration {variant.label!r}: {e}") from None
        return plan


def _arms(data: dict[str, Any]) -> list[Arm]:
    """The arms of a sweep.json (none before --arm existed), each checked."""
    arms = []
    for i, a in enumerate(_expect(data, "arms", list, "a list of arms", [])):
        if not (isinstance(a, dict) and set(a) == {"name", "file", "sha256", "config"}
                and all(isinstance(a[k], str) for k in ("name", "file", "sha256"))):
            raise UsageError(f"sweep field 'arms'[{i}] must be an object with strings "
                             f"\"name\", \"file\", \"sha256\" and a config, got "
                             f"{json_kind(a)}")
        try:
            TrainConfig.from_dict(a["config"])
        except UsageError as e:
            raise UsageError(f"sweep field 'arms'[{i}] config: {e}") from None
        arms.append(Arm(**a))
    return arms


def _expect(data: dict[str, Any], key: str, kind: type, allowed: str, default: Any = None):
    """`data[key]` if it has JSON type `kind` (`default` when absent); else `UsageError`."""
    if key not in data:
        return default
    value = data[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise UsageError(f"sweep field {key!r} must be {allowed}, got {json_kind(value)}"
                         + (f" {json.dumps(value)}" if isinstance(value, (str, int, float))
                            else ""))
    return value


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
               baseline: str | None, command: list[str] | None = None, jobs: int = 1,
               executor: str = "local", ray: dict[str, Any] | None = None) -> Plan:
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
    plan = Plan(base, variants, seeds, baseline, preset, list(command or []), jobs, executor,
                dict(ray or {}))
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
