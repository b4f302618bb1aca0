"""Arms tuned separately: `kvt compare --arm NAME=FILE`.

NAME is a level of the grid as its configuration labels spell it (a value of a --vary
factor or of the preset's: `crelu`, `keras`, `lr=0.01`); the arm is every configuration
whose label has NAME as one of its parts (the label `keras/crelu` has the parts `keras`
and `crelu`). Each of them starts from FILE's config instead of --config/--recipe, with
its own overrides on top, then the config flags typed on the command line.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from kvt.compare.plan import Arm, Plan
from kvt.config import TrainConfig
from kvt.errors import RunError, UsageError
from kvt.record_paths import portable_path


def apply_arms(plan: Plan, specs: list[str], typed: dict[str, Any], *bases: str | Path) -> None:
    """Gives `plan` the arms of `specs` (each "NAME=FILE") and the `typed` config fields;
    refuses (one line each) a name that matches no configuration, a file that is not a
    kvt config (as `kvt train --config` does: exit 2 for a field, 6 for the file), a
    config with a holdout, and a configuration that two files would set. `bases`: what
    the recorded file paths are relative to (`portable_path`)."""
    levels = list(dict.fromkeys(p for v in plan.variants for p in v.label.split("/")))
    arms = [read_arm(*split_arm(spec, levels), bases) for spec in specs]
    for variant in plan.variants:
        matched = [a for a in arms if a.matches(variant)]
        if len(matched) > 1:
            raise UsageError(f"--arm: configuration {variant.label!r} would start from two "
                             f"files ({matched[0].name}={matched[0].file} and "
                             f"{matched[1].name}={matched[1].file}): give one per "
                             f"configuration")
    plan.arms, plan.typed = arms, dict(typed)
    for variant in plan.variants:  # the file's config with the overrides: still a config?
        arm = plan.arm(variant)
        try:
            plan.config(variant)
        except UsageError as e:
            where = f"--arm {arm.name}={arm.file}: " if arm else ""
            raise UsageError(f"{where}configuration {variant.label!r}: {e}") from None


def split_arm(spec: str, levels: list[str]) -> tuple[str, str]:
    """"crelu=best.json" -> ("crelu", "best.json"). A level may hold "=" itself
    (lr=0.01=best.json): the name is the first split whose left side is a level."""
    for i, char in enumerate(spec):
        if char == "=" and spec[:i] in levels and spec[i + 1:]:
            return spec[:i], spec[i + 1:]
    name, sep, path = spec.partition("=")
    if not sep or not name or not path:
        raise UsageError(f"--arm {spec!r}: write NAME=FILE, NAME a level of the grid (for "
                         f"example crelu=results/tune/crelu/best.json)")
    raise UsageError(f"--arm {spec!r}: {name!r} matches no configuration; the grid's levels "
                     f"are {', '.join(levels)}")


def read_arm(name: str, path: str, bases) -> Arm:
    """The arm of `path`: its config (with no holdout), recorded path and SHA-256."""
    spec = f"--arm {name}={path}"
    try:
        content = Path(path).read_bytes()
        config = TrainConfig.load(path)
    except UsageError as e:  # a field of the file: named by the check, the file named here
        raise UsageError(f"{spec}: {e}") from None
    except OSError as e:
        raise RunError(f"cannot read {spec} ({e.strerror or e}): check the path") from None
    except (ValueError, TypeError, AttributeError) as e:
        raise RunError(f"{spec} is not a kvt config ({e}): pass a run's config.json or kvt "
                       f"tune's best.json") from None
    if config.val_split:
        raise UsageError(f"{spec}: its val_split is {config.val_split:g}, but a comparison "
                         f"is judged once on the test split: set \"val_split\": null (as in "
                         f"kvt tune's best.json)")
    values = {**config.to_dict(), "data_dir": None}  # where the data lies: the sweep's
    return Arm(name, portable_path(path, *bases), hashlib.sha256(content).hexdigest(), values)


def arm_words(plan: Plan, digits: int | None = None) -> str | None:
    """The report's line on the arms, or None without any; `digits` shortens the hashes."""
    if not plan.arms:
        return None
    parts = [f"{a.name} from {a.file} (sha256 {a.sha256[:digits]})" for a in plan.arms]
    rest = [v.label for v in plan.variants if plan.arm(v) is None]
    tail = f"; {', '.join(rest)} from the command line's config" if rest else ""
    return (f"The arms were tuned separately: {', '.join(parts)}{tail}. Each configuration "
            f"starts from its arm's config, with its own level and the flags typed on top.")
