"""The search space of `kvt tune`: `--search FLAG=SPEC`, one flag of `kvt train` each.

    lr=log:0.01:1               a float, log-uniform between the bounds
    label-smoothing=0:0.2       a float, uniform between the bounds
    epochs=int:1:4              an integer, uniform between the bounds (both included)
    batch-size=log:32:512       an integer field with `log:`: integers, log-uniform
    activation=cat:relu,crelu   one of the listed values, in the flag's own type

`Param.text` spells a parameter back in this syntax, so `parse_search(p.text) == p`.
Nothing here imports Optuna: `Param.distribution()` does, when a study needs it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from kvt.config import TrainConfig
from kvt.errors import UsageError

KINDS = ("uniform", "log", "int", "cat")

# Flags that are not hyperparameters to choose: what they would select on is the holdout
# itself, the data, or luck. Each with the reason the refusal gives.
NOT_SEARCHABLE = {
    "val_split": "the holdout is what every trial is judged on: it must stay the same "
                 "for all of them (set it with --val-split)",
    "test_limit": "it limits the holdout that every trial is judged on: it must stay the "
                  "same for all of them",
    "dataset": "a search chooses hyperparameters for one dataset",
    "data_dir": "it says where the data lies, not how to train on it",
    "seed": "choosing a seed selects on luck, not on a better recipe (every trial trains "
            "with --seed)",
    "distribute": "it changes where a run computes, not what it learns",
    "devices": "it changes where a run computes, not what it learns",
}


def _field_types() -> dict[str, str]:
    """Each TrainConfig field's type ("int", "float", "bool", "str"), from its annotation,
    so that the space follows the config as fields are added."""
    found = {}
    for field in dataclasses.fields(TrainConfig):
        base = str(field.type).replace(" | None", "").strip()
        if base in ("int", "float", "bool", "str"):
            found[field.name] = base
    return found


FIELD_TYPES = _field_types()
SEARCHABLE = tuple(sorted(n for n in FIELD_TYPES if n not in NOT_SEARCHABLE and n != "recipe"))


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


@dataclasses.dataclass(frozen=True)
class Param:
    """One dimension of the space: a TrainConfig field and the values it may take."""

    name: str  # the TrainConfig field (lr, weight_decay, ...)
    kind: str  # one of KINDS
    low: float | int | None = None
    high: float | int | None = None
    choices: tuple[Any, ...] = ()

    @property
    def text(self) -> str:
        """The `--search` spelling of this parameter."""
        key = self.name.replace("_", "-")
        if self.kind == "cat":
            return f"{key}=cat:{','.join(_spell(c) for c in self.choices)}"
        prefix = "" if self.kind == "uniform" else f"{self.kind}:"
        return f"{key}={prefix}{_spell(self.low)}:{_spell(self.high)}"

    @property
    def integer(self) -> bool:
        return FIELD_TYPES[self.name] == "int"

    def distribution(self):
        """This parameter as an Optuna distribution."""
        from optuna.distributions import (CategoricalDistribution, FloatDistribution,
                                          IntDistribution)

        if self.kind == "cat":
            return CategoricalDistribution(list(self.choices))
        if self.integer:
            return IntDistribution(int(self.low), int(self.high), log=self.kind == "log")
        return FloatDistribution(float(self.low), float(self.high), log=self.kind == "log")


def _spell(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)  # the shortest text that reads back as the same float
    return str(value)


def parse_search(text: str) -> Param:
    """A `--search FLAG=SPEC` as a Param; a UsageError naming what is wrong otherwise."""
    where = f"--search {text}"
    key, sep, spec = text.partition("=")
    name = key.strip().lstrip("-").replace("-", "_")
    if not sep or not name or not spec:
        raise UsageError(f"{where}: write FLAG=SPEC, e.g. lr=log:0.01:1, epochs=int:1:4 or "
                         f"activation=cat:relu,crelu")
    if name in NOT_SEARCHABLE:
        raise UsageError(f"{where}: {flag(name)} cannot be searched: {NOT_SEARCHABLE[name]}")
    if name not in SEARCHABLE:
        raise UsageError(f"{where}: unknown flag {flag(name)}: searchable flags are "
                         f"{', '.join(n.replace('_', '-') for n in SEARCHABLE)}")
    kind, _, rest = spec.partition(":")
    if kind == "cat":
        return _categorical(where, name, rest)
    if kind not in ("log", "int"):
        kind, rest = "uniform", spec
    return _range(where, name, kind, rest)


def _categorical(where: str, name: str, rest: str) -> Param:
    words = rest.split(",")
    if not rest or any(not w.strip() for w in words):
        raise UsageError(f"{where}: cat: needs a comma-separated list of values, e.g. "
                         f"cat:relu,crelu")
    choices = tuple(_value(where, name, w.strip()) for w in words)
    if len(set(choices)) != len(choices):
        raise UsageError(f"{where}: a value is listed twice")
    return Param(name, "cat", choices=choices)


def _range(where: str, name: str, kind: str, rest: str) -> Param:
    typ = FIELD_TYPES[name]
    if typ in ("str", "bool"):
        raise UsageError(f"{where}: {flag(name)} takes names, not numbers: list them with "
                         f"cat:, e.g. {name.replace('_', '-')}=cat:A,B")
    bounds = rest.split(":")
    if len(bounds) != 2:
        raise UsageError(f"{where}: a range is LOW:HIGH (or log:LOW:HIGH, int:LOW:HIGH)")
    if typ == "int" and kind == "uniform":
        raise UsageError(f"{where}: {flag(name)} takes whole numbers: write "
                         f"{name.replace('_', '-')}=int:{rest} (or log:{rest})")
    if typ == "float" and kind == "int":
        raise UsageError(f"{where}: {flag(name)} takes any number, not only whole ones: "
                         f"write {name.replace('_', '-')}={rest} (or log:{rest})")
    low, high = (_value(where, name, b.strip()) for b in bounds)
    if low == high:
        raise UsageError(f"{where}: the range is empty ({_spell(low)} to {_spell(high)}): "
                         f"give a LOW below HIGH, or set the flag itself to fix the value")
    if low > high:
        raise UsageError(f"{where}: the range is inverted ({_spell(low)} > {_spell(high)}): "
                         f"give LOW:HIGH with LOW below HIGH")
    if kind == "log" and low <= 0:
        raise UsageError(f"{where}: a log range must be above 0 (its logarithm), got "
                         f"{_spell(low)}: give a positive LOW or a uniform range")
    return Param(name, kind, low, high)


def _value(where: str, name: str, word: str) -> Any:
    """`word` in the type of field `name`."""
    typ = FIELD_TYPES[name]
    try:
        if typ == "int":
            return int(word)
        if typ == "float":
            value = float(word)
            if not math.isfinite(value):
                raise ValueError(word)
            return value
    except ValueError:
        raise UsageError(f"{where}: {word!r} is not {'a whole' if typ == 'int' else 'a finite'}"
                         f" number") from None
    if typ == "bool":
        if word.lower() not in ("true", "false"):
            raise UsageError(f"{where}: {flag(name)} is true or false, got {word!r}")
        return word.lower() == "true"
    return word


def parse_space(texts: list[str]) -> list[Param]:
    """Every `--search`, each flag at most once; at least one."""
    if not texts:
        raise UsageError("kvt tune needs at least one --search FLAG=SPEC, e.g. --search "
                         "lr=log:0.01:1")
    params = [parse_search(t) for t in texts]
    names = [p.name for p in params]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise UsageError(f"--search {', '.join(flag(n) for n in twice)} is given twice: "
                         f"search each flag once")
    return params


def check_against(params: list[Param], base: TrainConfig) -> None:
    """Refuses a space with a value `kvt train` would refuse on top of `base` (its bounds
    and every choice are checked), naming the --search and the reason."""
    for p in params:
        values = p.choices if p.kind == "cat" else (p.low, p.high)
        for value in values:
            try:
                TrainConfig.from_dict({**base.to_dict(), p.name: value})
            except UsageError as e:
                raise UsageError(f"--search {p.text}: {_spell(value)} is not a valid "
                                 f"{flag(p.name)} here ({e})") from None
            except Exception as e:  # ModelError, BackendError: same one line, their code
                e.args = (f"--search {p.text}: {e}",)
                raise
