"""The run directory: every artifact of a training run, written atomically.

    config.json             resolved TrainConfig, dataset, versions and hardware
    status.json             running | complete | failed | interrupted, with a message
    history.csv             per-epoch loss, accuracy, val_loss, val_accuracy, seconds
    metrics.json            test accuracy and loss, per-class precision/recall/F1, timings
    report.txt              sklearn's classification report with class names
    plot.png                training and validation loss and accuracy per epoch
    confusion_matrix.png    test-set confusion matrix
    model.keras             the trained model; reloads with safe_mode=True (`kvt.saving`)
    checkpoint.npz          while training: the state after the last finished epoch
    logs/                   TensorBoard event files: train/ and validation/ scalars per epoch

Each file is written to a temporary name in the same folder and renamed into place, so
a reader sees the old file or the new one, never half of one. `status.json` says
"complete" only after everything else is in place. This module knows the folder and the
formats of its text files (`config_record`, history.csv, status.json); what goes into
model.keras is `kvt.saving`'s, the checkpoint `kvt.checkpoint`'s, the plots
`kvt.report`'s.

One process at a time writes a run directory: `RunDir.claim()` holds an OS file lock
(`flock`) on its `.kvt.lock` for as long as the process works on it; the kernel drops
the lock when the process ends, however it ends, so a crash never leaves it claimed.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from kvt import backends, signals
from kvt._version import __version__
from kvt.errors import DataError, RunError
from kvt.record_paths import (ELIDED, portable_argv, record_bases, recorded_data_dir,
                              recorded_source)

if TYPE_CHECKING:
    from kvt.config import TrainConfig
    from kvt.data import Dataset

CHECKPOINT = "checkpoint.npz"  # present while training; removed once the run is complete
LOGS = "logs"  # TensorBoard's event files, one per folder per start of the run
ARTIFACTS = ("config.json", "summary.txt", "status.json", "history.csv", "metrics.json",
             "report.txt",
             "plot.png", "confusion_matrix.png", "model.keras", CHECKPOINT, LOGS)
LOCK = ".kvt.lock"  # the claim of the process working on a run (or sweep) directory
# --- atomic writes ------------------------------------------------------------------

def write_atomic(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Calls `write(tmp)` for a temporary sibling of `path`, then renames it to `path`.

    `write` may make a file or a folder (an exported SavedModel). A folder replaces an
    existing one whole: the old one is renamed aside, then deleted. If `write` fails,
    whatever it left at `tmp` is removed and `path` stays as it was.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        write(tmp)
        if tmp.is_dir() and path.is_dir():
            old = path.with_name(f".{path.name}.{os.getpid()}.old")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    except BaseException:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise
    return path


def write_text(path: str | Path, text: str) -> Path:
    return write_atomic(path, lambda p: p.write_text(text))


def write_json(path: str | Path, data: Any) -> Path:
    return write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def check_writable_file(path: str | Path, flag: str) -> None:
    """Refuses an output file that could not be written, before any work is done.

    Files are written as a temporary sibling renamed into place, so what must exist and
    be writable is the folder; a probe file proves it where permission bits do not
    (read-only mounts, root).
    """
    path = Path(path)
    if path.is_dir():
        raise RunError(f"{flag} {path} is a folder: name a file in it, e.g. {path / 'plot.png'}")
    check_writable_folder(path.parent, f"{flag} {path}", "choose another path")


def check_writable_folder(folder: Path, what: str, fix: str) -> None:
    """Refuses to write `what` (as "--flag path") into `folder` unless the folder exists
    and a probe file can be written there; `fix` ends each message."""
    if not folder.is_dir():
        raise RunError(f"cannot write {what}: the folder {folder} does not exist; "
                       f"create it or {fix}")
    probe = folder / f".kvt-write-test-{os.getpid()}"
    try:
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise RunError(f"cannot write {what}: the folder {folder} is not writable "
                       f"({e.strerror or e}); {fix}") from None


# --- exclusive claims -----------------------------------------------------------------

class DirLock:
    """An exclusive, non-blocking `flock` on `folder/.kvt.lock`, which also names the
    holder's pid for whoever is refused."""

    def __init__(self, folder: Path):
        self.path = folder / LOCK
        self.fd: int | None = None

    def acquire(self) -> DirLock:
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as e:
                raise RunError(f"cannot write to {self.path.parent} ({e.strerror or e}): "
                               f"choose a writable directory") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _lock_holder(fd)
                os.close(fd)
                raise RunError(f"{self.path.parent} is in use by another kvt process"
                               f"{holder}: wait for it to finish or stop it, then try "
                               f"again") from None
            except BaseException:
                os.close(fd)
                raise
            # A holder that was leaving may have removed the file between our open and
            # our lock: then we hold a lock on a file nobody else can see. Start again.
            try:
                if os.path.samestat(os.fstat(fd), os.stat(self.path)):
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        self.fd = fd
        return self

    def release(self, remove: bool = False) -> None:
        if self.fd is None:
            return
        if remove:  # while still holding it, so that nobody locks a file being deleted
            self.path.unlink(missing_ok=True)
        os.close(self.fd)
        self.fd = None


def _lock_holder(fd: int) -> str:
    """" (pid N)" or " (pid N on HOST)" from a lock file's content; "" if unreadable."""
    try:
        pid, host = os.pread(fd, 256, 0).decode().split()
        int(pid)
    except (OSError, ValueError, UnicodeDecodeError):
        return ""  # the holder has not written it yet
    return f" (pid {pid})" if host == socket.gethostname() else f" (pid {pid} on {host})"


# --- the run directory ----------------------------------------------------------------

class RunDir:
    """A run directory; see the module docstring for what it holds."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    @contextlib.contextmanager
    def claim(self, create: bool = True) -> Iterator[RunDir]:
        """Holds this directory for this process (making it first, if `create`), or
        refuses with a RunError naming the process that holds it. A directory that the
        claim made and that holds nothing else at the end is removed again."""
        made, lock = False, DirLock(self.path)
        try:
            # A Ctrl-C while the directory and its lock file are made waits for the end
            # of this block and lands where the clean-up below runs (landing between the
            # lock file's creation and the clean-up would leave a run directory holding
            # nothing but the lock).
            with signals.blocked():
                if create and not self.path.is_dir():
                    try:
                        self.path.mkdir(parents=True)
                        made = True
                    except FileExistsError:
                        pass  # made by someone else meanwhile: the lock decides who goes on
                    except OSError as e:
                        raise RunError(f"cannot write the run directory {self.path} "
                                       f"({e.strerror or e}): choose a writable --out") from None
                lock.acquire()
            yield self
        finally:
            try:
                unused = made and [p.name for p in self.path.iterdir()] == [LOCK]
            except OSError:
                unused = False
            lock.release(remove=unused)
            if unused:
                with contextlib.suppress(OSError):
                    self.path.rmdir()

    def create(self, force: bool = False) -> RunDir:
        """Makes the folder; refuses one that already holds a run unless `force`.
        Call it inside `claim()`: `force` deletes the artifacts that are there."""
        existing = [n for n in ARTIFACTS if (self.path / n).exists()]
        if existing and not force:
            raise RunError(
                f"{self.path} already holds a run ({', '.join(existing)}): choose another "
                f"--out or pass --force to overwrite it"
            )
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            for name in existing:  # --force: no stale artifact may survive into the new run
                if (self.path / name).is_dir():
                    shutil.rmtree(self.path / name)  # logs/: no old run's curves in the new one
                else:
                    (self.path / name).unlink()
            probe = self.path / f".write-test-{os.getpid()}"
            probe.write_text("")
            probe.unlink()
        except OSError as e:
            raise RunError(
                f"cannot write the run directory {self.path} ({e.strerror or e}): choose a "
                f"writable --out"
            ) from None
        return self

    def mark(self, status: str, message: str = "") -> None:
        if self.path.is_absolute():  # "continue with kvt train --resume ." holds anywhere
            message = message.replace(str(self.path), ".")
        write_json(self / "status.json",
                   {"status": status, "message": message, "pid": os.getpid(),
                    "host": socket.gethostname(),
                    "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z")})

    def state(self) -> dict[str, Any]:
        """status.json's content; {"status": "unknown"} when it is missing or damaged."""
        try:
            data = json.loads((self / "status.json").read_text())
            if isinstance(data, dict) and isinstance(data.get("status"), str):
                return data
        except (OSError, ValueError):
            pass
        return {"status": "unknown"}

    def status(self) -> str:
        return self.state()["status"]

    def require_complete(self) -> None:
        if not self.path.is_dir():
            raise RunError(f"{self.path} is not a run directory or model file: check the path")
        status = self.status()
        if status != "complete" or not (self / "model.keras").is_file():
            raise RunError(
                f"{self.path} is not a complete run (status: {status}): train it to the end "
                f"first, or pass the path of a model.keras"
            )

    def read_json(self, name: str) -> dict[str, Any]:
        return json.loads((self / name).read_text())

    def write_history(self, history: dict[str, list[float]]) -> None:
        def write(p: Path) -> None:
            keys = list(history)
            with open(p, "w", newline="") as f:
                out = csv.writer(f)
                out.writerow(["epoch", *keys])
                for i, row in enumerate(zip(*(history[k] for k in keys)), start=1):
                    out.writerow([i, *(f"{v:.6g}" for v in row)])
        write_atomic(self / "history.csv", write)

    def read_history(self) -> dict[str, list[float]]:
        with open(self / "history.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        keys = [k for k in (rows[0] if rows else {}) if k != "epoch"]
        return {k: [float(r[k]) for r in rows] for k in keys}


# --- what config.json records ---------------------------------------------------------

def config_record(config: TrainConfig, dataset: Dataset,
                  run_dir: str | Path = ".") -> dict[str, Any]:
    """config.json's content: the resolved config, the dataset, the optimizer's resolved
    values, versions and hardware, and the command line, its paths as `portable_path`
    spells them for `run_dir`. Asks the framework for its versions and devices: call
    after the backend is selected."""
    bases = record_bases(run_dir)
    return {
        "config": {**config.to_dict(), "data_dir": recorded_data_dir(config.data_dir)},
        "dataset": {"name": dataset.name,
                    "source": recorded_source(config, dataset.source, *bases),
                    "eval_split": dataset.eval_split,
                    "train_images": len(dataset.y_train), "test_images": len(dataset.y_test),
                    "input_shape": list(dataset.input_shape),
                    "class_names": dataset.class_names,
                    # the content (kvt.data.fingerprint): resuming from another --data-dir
                    # is allowed only with the same one
                    "fingerprint": dataset.fingerprint},
        # What `decay: null` (the tutorial's lr / epochs) came to for this run.
        "optimizer": {"lr": config.lr, "decay": config.resolved_decay,
                      "decay_from": "lr / epochs" if config.decay is None else "--decay",
                      "momentum": config.momentum, "nesterov": config.nesterov,
                      "schedule": config.schedule, "weight_decay": config.weight_decay},
        # A user's --model module:function: its import path and source file's SHA-256.
        **model_source(config),
        "environment": backends.describe(),
        "kvt": __version__,
        "command": ["kvt", *portable_argv(sys.argv[1:], *bases)],
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def model_source(config: TrainConfig) -> dict[str, Any]:
    """{"model_source": import path, file, SHA-256} for a user's `--model module:function`
    (`kvt.models.user.describe`), recorded in config.json and model.keras; {} for kvt's
    own families."""
    from kvt.models.user import describe, is_user_model

    return {"model_source": describe(config.model)} if is_user_model(config.model) else {}


def relocate_data(run_dir: RunDir, config: TrainConfig, dataset: Dataset) -> None:
    """Records that a resumed run reads its data from `config.data_dir` from now on,
    after checking that `dataset` (loaded from there) is the data the run was trained on:
    the same fingerprint. Refuses (DataError) without changing anything otherwise."""
    path = run_dir / "config.json"
    record = json.loads(path.read_text())
    saved = record.get("dataset", {})
    where = record.get("config", {}).get("data_dir") or saved.get("source") or "?"
    if not saved.get("fingerprint"):
        raise DataError(
            f"{run_dir.path} was trained by a kvt that did not record its data's fingerprint, "
            f"so --data-dir {config.data_dir} cannot be checked to hold the same data: resume "
            f"it without --data-dir where its data is ({where}; a link from that path to "
            f"{config.data_dir} will do)")
    if saved["fingerprint"] != dataset.fingerprint:
        raise DataError(
            f"{dataset.source} holds other data than {run_dir.path} was trained on (content "
            f"{dataset.fingerprint[:12]}, the run's {saved['fingerprint'][:12]}; the same "
            f"images in another order differ too): point --data-dir at a copy of the data "
            f"in {where}")
    record["config"]["data_dir"] = recorded_data_dir(config.data_dir)
    record["dataset"]["source"] = recorded_source(config, dataset.source,
                                                  *record_bases(run_dir.path))
    write_json(path, record)


def unrecorded_data(run_dir: RunDir) -> str | None:
    """The data folder a run read CIFAR-10 from when its config.json keeps no path to
    it (it was given as an absolute path): its ELIDED name; None otherwise."""
    try:
        record = json.loads((run_dir / "config.json").read_text())
        source = record["dataset"]["source"]
        if record["config"]["dataset"] != "cifar10" or record["config"].get("data_dir"):
            return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return source if isinstance(source, str) and source.startswith(ELIDED) else None
