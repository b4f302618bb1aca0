"""The node's side of the Ray executor: one Ray task trains one run with `kvt train`
in a subprocess, in the sweep directory where its node sees it, else in a temporary copy
(see `ray_executor`); and the files that travel between the driver and a node. A worker
that runs a task imports this module, so kvt must be installed on every node.
"""

from __future__ import annotations

import io
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from kvt import signals
from kvt.backends import thread_env
from kvt.errors import EXIT_CANCELLED, RunError
from kvt.executors.job import next_action
from kvt.record_paths import PORTABLE_PATHS, portable_argv, portable_path, record_bases
from kvt.runs import LOCK, RunDir

RETRIES = 3  # retries of a run whose Ray worker died or whose kvt train was killed
MARKER = ".kvt-ray-marker"  # in the sweep directory while a Ray sweep runs: its token
LOCK_WAIT = 120  # s a retry waits for a killed attempt's kvt train to let go of the run
STOP_WAIT = 90  # s a stopping sweep waits for its runs to checkpoint before killing them


class NotShared(RuntimeError):
    """--ray-storage shared, on a node that does not see the sweep directory."""


def note(run_dir: RunDir, text: str) -> None:
    """Says in the run's train.log why the executor could not train it (read back by
    `failure_message`)."""
    run_dir.path.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "train.log", "a") as log:
        log.write(f"kvt compare: {text}\n")


# --- files between the driver and a node ---------------------------------------------

def pack(base: Path, names: list[Path]) -> bytes:
    """A tar archive of `names` (files or folders, relative to `base`; missing ones
    skipped), without run-directory locks or half-written temporary files."""
    def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        name = Path(info.name).name
        return None if name == LOCK or (name.startswith(".") and ".tmp" in name) else info

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name in names:
            if (base / name).exists():
                tar.add(base / name, arcname=str(name), filter=keep)
    return buffer.getvalue()


def unpack(data: bytes, dest: Path) -> None:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(dest, filter="data")  # nothing outside dest, no devices or links out


def swap_in(run_dir: RunDir, data: bytes) -> None:
    """Puts a run directory that a node returned (a tar of its files) in place of
    `run_dir`: unpacked beside it first, then renamed into its place, so that the run's
    path holds the old directory or the new one, never part of one."""
    path = run_dir.path
    path.parent.mkdir(parents=True, exist_ok=True)
    incoming = path.with_name(f".{path.name}.incoming-{os.getpid()}")
    old = path.with_name(f".{path.name}.old-{os.getpid()}")
    shutil.rmtree(incoming, ignore_errors=True)
    try:
        incoming.mkdir()
        unpack(data, incoming)
        with signals.deferred():  # both renames, or neither
            if path.exists():
                os.rename(path, old)
            os.rename(incoming, path)
    except OSError as e:
        shutil.rmtree(incoming, ignore_errors=True)
        raise RunError(f"cannot write the run directory {path} ({e.strerror or e}): "
                       f"free space or fix permissions, then continue the sweep with "
                       f"--resume") from None
    shutil.rmtree(old, ignore_errors=True)


# --- the node's side: one Ray task -------------------------------------------------------

def run_task(spec: dict[str, Any]) -> dict[str, Any]:
    """One run on a Ray worker: trains it (or what is left of it) with `kvt train` in a
    subprocess, in the sweep directory if this node sees it, else in a temporary copy.
    Returns {"code": exit code, "files": the run directory as a tar, or None when it
    was trained in place}."""
    import ray

    # Ray's cancel raises KeyboardInterrupt in the task through Python's SIGINT handler
    # (`_thread.interrupt_main`), which does nothing in a worker that inherited SIGINT
    # ignored (a node started from a background shell or a service manager): so the
    # task has Python's own handler while it runs.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return _run_task(spec, ray.get_runtime_context())
    finally:
        signal.signal(signal.SIGINT, previous)


def _run_task(spec: dict[str, Any], context) -> dict[str, Any]:
    threads = max(1, int(context.get_assigned_resources().get("CPU", spec["cpus"])))
    root = Path(spec["root"])
    shared = spec["storage"] != "copy" and _sees(root, spec["token"])
    where = (f"node {context.get_node_id()[:8]} ({socket.gethostname()}), worker pid "
             f"{os.getpid()}, {threads} CPU{'s' * (threads != 1)}")
    if shared:
        return {"code": _train(root, spec, threads, f"{where}, in the sweep directory"),
                "files": None}
    if spec["storage"] == "shared":
        raise NotShared(f"node {socket.gethostname()} does not see the sweep directory "
                        f"{root} (--ray-storage shared): mount it there on every node, or "
                        f"use --ray-storage auto")
    with tempfile.TemporaryDirectory(prefix="kvt-ray-") as tmp:
        unpack(spec["files"], Path(tmp))
        code = _train(Path(tmp), spec, threads,  # its name: train.log is a record
                      f"{where}, in a copy at {portable_path(tmp)}")
        run = Path(tmp) / spec["run"]
        return {"code": code,
                "files": pack(run, [Path(p.name) for p in run.iterdir()])
                if run.is_dir() else None}


def _sees(root: Path, token: str) -> bool:
    """Whether this node sees the driver's sweep directory: it reads the marker file
    that the driver wrote there for this kvt compare."""
    try:
        return bool(token) and (root / MARKER).read_text() == token
    except OSError:
        return False


def _train(root: Path, spec: dict[str, Any], threads: int, where: str) -> int:
    """Trains the run of `spec` in `root` (the sweep directory or its copy) until it
    ends, continuing it up to RETRIES times where its kvt train was killed by a signal
    that this task did not send (the OOM killer, a user). Returns the exit code."""
    rd = RunDir(root / spec["run"])
    try:
        code = _train_once(root, spec, threads, where)
        for retry in range(1, RETRIES + 1):
            if code >= 0:
                break
            note(rd, f"kvt train was killed by {signal.Signals(-code).name}: continuing "
                     f"it (retry {retry} of {RETRIES})")
            code = _train_once(root, spec, threads, where)
    except KeyboardInterrupt:  # Ray's cancel: the run is stopped, not tried again
        return EXIT_CANCELLED
    if code < 0:
        note(rd, f"kvt train was killed by {signal.Signals(-code).name} {RETRIES + 1} times")
    return code


def _train_once(root: Path, spec: dict[str, Any], threads: int, where: str) -> int:
    """One `kvt train` of what the run still needs (`next_action`: an attempt of this
    task or of an earlier one may have trained part of it); on Ray's cancel (a
    KeyboardInterrupt here) stops it as the local pool does. Returns its exit code."""
    rd = RunDir(root / spec["run"])
    _wait_unclaimed(rd)
    action = next_action(rd)
    if action == "done":
        return 0
    argv = spec["resume"] if action == "resume" else spec["start"]
    rd.path.mkdir(parents=True, exist_ok=True)
    with open(rd / "train.log", "a") as log:
        shown = portable_argv(argv, *record_bases(rd.path))  # train.log is a record
        log.write(f"$ kvt {shlex.join(shown)}\n# ray: {where}\n")
        log.flush()
        proc = None
        try:
            with signals.children_held():
                proc = subprocess.Popen([sys.executable, "-m", "kvt", *argv], cwd=root,
                                        stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, env=_child_env(threads))
            while proc.poll() is None:  # polled: Ray's cancel interrupts between calls
                time.sleep(0.2)
        except KeyboardInterrupt:  # ray.cancel: the run checkpoints and says interrupted
            if proc is not None:
                _stop_child(proc)
            raise
    return proc.returncode


def _wait_unclaimed(rd: RunDir) -> None:
    """Waits until no process holds the run (a retry may start while the killed
    attempt's kvt train is still being ended); after LOCK_WAIT, kvt train refuses it
    with its own message."""
    deadline = time.monotonic() + LOCK_WAIT
    while rd.path.is_dir() and time.monotonic() < deadline:
        try:
            with rd.claim(create=False):
                return
        except RunError:
            time.sleep(0.5)


def _child_env(threads: int) -> dict[str, str]:
    """The environment of a run's kvt train: as many threads as Ray granted CPUs, and
    no GPU. Ray reserves none for a run, and leaves the node's GPUs visible to a task
    that asked for none: several runs would each take a whole GPU's memory."""
    env = {**os.environ, **thread_env(threads)}
    env["CUDA_VISIBLE_DEVICES"] = ""
    env["PYTHONUNBUFFERED"] = "1"
    env[PORTABLE_PATHS] = "1"  # its output is the run's train.log
    return env


def _stop_child(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(STOP_WAIT - 10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
