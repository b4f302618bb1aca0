"""The tune directory (see `kvt.tune`) and its plan: what a search was asked to do."""

from __future__ import annotations

import dataclasses
import json
import secrets
import shutil
from pathlib import Path
from typing import Any

from kvt.config import TrainConfig
from kvt.errors import RunError
from kvt.runs import RunDir, write_json, write_text
from kvt.tune.space import Param, parse_space

PLAN = "tune-plan.json"
RESULTS = ("best.json", "tune.md", "tune.json", "history.png", "params.png",
           "importance.png")


@dataclasses.dataclass
class TunePlan:
    """A search: the config every trial starts from, the space, how many finished
    trials it wants, how they run, and where the study lives (its URL masked; None for
    the SQLite file in the tune directory)."""

    base: TrainConfig
    space: list[Param]
    trials: int
    jobs: int = 1
    executor: str = "local"
    ray: dict[str, Any] = dataclasses.field(default_factory=dict)
    storage: str | None = None
    study_name: str = "kvt-tune"
    command: list[str] | None = None  # the kvt tune command line, its password masked
    # Marks the study's trials that this directory runs (a shared study has others'):
    # a random token, so that the directory may move between starts of kvt tune.
    owner: str = dataclasses.field(default_factory=lambda: secrets.token_hex(8))

    def to_dict(self) -> dict[str, Any]:
        return {"base": self.base.to_dict(), "space": [p.text for p in self.space],
                "trials": self.trials, "jobs": self.jobs, "executor": self.executor,
                "ray": self.ray, "storage": self.storage, "study_name": self.study_name,
                "command": self.command, "owner": self.owner}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TunePlan:
        return cls(TrainConfig.from_dict(data["base"]), parse_space(data["space"]),
                   int(data["trials"]), int(data["jobs"]), data["executor"],
                   dict(data.get("ray") or {}), data.get("storage"), data["study_name"],
                   data.get("command"), data["owner"])

    def config(self, params: dict[str, Any]) -> TrainConfig:
        """The config of a trial with `params` (TrainConfig field -> value)."""
        return TrainConfig.from_dict({**self.base.to_dict(), **params})


class TuneDir:
    """A tune directory (see `kvt.tune`)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.status = RunDir(self.path)

    def run_dir(self, number: int) -> RunDir:
        return RunDir(self.path / "trials" / f"trial-{number:04d}")

    def config_path(self, number: int) -> Path:
        return self.path / "configs" / f"trial-{number:04d}.json"

    def claim(self, create: bool = True):
        """Holds the tune directory for this process (see `RunDir.claim`)."""
        return self.status.claim(create)

    def create(self, plan: TunePlan, force: bool) -> None:
        """Writes the plan; refuses an existing search unless `force`, which deletes it
        (its trials and its SQLite study too). Call it inside `claim()`."""
        if (self.path / PLAN).exists():
            if not force:
                raise RunError(f"{self.path} already holds a search: continue it with "
                               f"--resume {self.path}, add trials with --extend, choose "
                               f"another --out, or pass --force to start over")
            for name in ("trials", "configs"):
                shutil.rmtree(self.path / name, ignore_errors=True)
            for name in (*RESULTS, "status.json", "study.db", PLAN):
                (self.path / name).unlink(missing_ok=True)
        try:
            self.save(plan)
        except OSError as e:
            raise RunError(f"cannot write the tune directory {self.path} "
                           f"({e.strerror or e}): choose a writable --out") from None

    def remove_new(self) -> None:
        """Undoes `create` of a search that could not start (its study storage could
        not be opened): no tune directory is left looking like a search."""
        for name in (PLAN, "study.db", "status.json"):
            (self.path / name).unlink(missing_ok=True)

    def save(self, plan: TunePlan) -> None:
        write_json(self.path / PLAN, plan.to_dict())

    def load(self) -> TunePlan:
        try:
            return TunePlan.from_dict(json.loads((self.path / PLAN).read_text()))
        except FileNotFoundError:
            raise RunError(f"{self.path} is not a kvt tune directory (no {PLAN}): pass the "
                           f"--out of the search to continue") from None
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise RunError(f"cannot read {self.path / PLAN} ({e}): start the search again "
                           f"with --force") from None

    def write_trial_config(self, number: int, config: TrainConfig) -> Path:
        path = self.config_path(number)
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_text(path, config.to_json() + "\n")
