"""The Ray executor of `kvt compare --executor ray`: each run of a sweep is a Ray task
that trains on whichever node of a Ray cluster has room.

A task asks Ray for `cpus_per_run` CPUs and runs the same `kvt train` command line as
the local pool (`Sweep.train_argv`, its paths relative to the sweep directory) in a
subprocess on its node, its output appended to the run's train.log, its threads
(OMP_NUM_THREADS, TF_NUM_INTRAOP_THREADS; TF_NUM_INTEROP_THREADS 1) set to the CPUs Ray
granted it. Runs train on CPUs only: Ray reserves no GPU for them, so they see none.

Where the run directory is written (`storage`):

- shared: every node sees the sweep directory at the same path (one machine, or a
  filesystem every node mounts there: NFS, a cluster filesystem). The task trains in the
  sweep directory itself, as the local pool does. A node knows that it sees the sweep
  directory when it reads the marker file (MARKER) this kvt compare wrote there, with
  its random token in it; one that does not fails the run and says so.
- copy: the driver ships the configuration file and what the run directory holds (a
  checkpoint to continue from, its train.log) with the task; the node trains in a
  temporary directory of its own and returns the run directory as a tar archive, which
  the driver unpacks beside the run and renames into its place whole (so that nothing
  half-copied ever sits at the run's path).
- auto (the default): the files travel with every task, and a node uses the sweep
  directory where it sees it, its own copy where it does not.

A task whose worker process dies (killed, out of memory, its node lost) is retried by
Ray, up to RETRIES times; a run whose `kvt train` is killed by a signal that its task did
not send (the OOM killer) is continued by the task itself, up to RETRIES times. Each
attempt looks afresh at what the run needs (`next_action`, as `Sweep.jobs` does): a run
in the sweep directory, or in its node's copy within one task, continues from its last
finished epoch; a copied run whose worker died starts again from the state the driver
holds. Either way each run is trained to its end once and counted once. Ctrl-C or
SIGTERM to `kvt compare` cancels the tasks: each sends SIGTERM to its `kvt train`, which
checkpoints and marks itself interrupted, as under the local pool (a copied run's
progress comes back where Ray still returns the cancelled task's result).

`import ray` happens only when a sweep uses this executor (`import_ray`); a worker that
runs a task imports this module, so kvt must be installed on every node.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import secrets
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
from typing import Any, Callable, TextIO

from kvt import signals
from kvt.backends import thread_env
from kvt.compare.sweep import Job, Sweep, TrainArgv, next_action
from kvt.errors import EXIT_CANCELLED, BackendError, RunError
from kvt.runs import LOCK, PORTABLE_PATHS, RunDir, portable_argv, portable_path, record_bases

INSTALL = "pip install 'kvt[ray]'"
STORAGE = ("auto", "shared", "copy")
RETRIES = 3  # retries of a run whose Ray worker died or whose kvt train was killed
MARKER = ".kvt-ray-marker"  # in the sweep directory while a Ray sweep runs: its token
LOCK_WAIT = 120  # s a retry waits for a killed attempt's kvt train to let go of the run
STOP_WAIT = 90  # s a stopping sweep waits for its runs to checkpoint before killing them
CONNECT_WAIT = 10  # s to reach a cluster's head before calling it absent


def import_ray():
    """The ray module, or the one-line error that says how to install it."""
    try:
        import ray
    except ImportError:
        raise BackendError(f"--executor ray needs Ray, which is not installed: "
                           f"{INSTALL}") from None
    return ray


class NotShared(RuntimeError):
    """--ray-storage shared, on a node that does not see the sweep directory."""


# --- the driver's side: kvt compare ----------------------------------------------------

class RayExecutor:
    """An `Executor` (see `kvt.compare.sweep`) that trains each job as a Ray task; a
    context manager, connected to the cluster inside its `with` block:

        with RayExecutor(sweep.path, train_argv) as executor:
            execute(sweep, plan, plan.jobs, sys.stdout, command, train_argv, executor)

    Args:
        root: the sweep directory.
        train_argv: the builder of `kvt train` command lines (`kvt.cli.common`).
        address: a running cluster to join ("auto", or HOST:PORT of its head); None
            starts a local Ray instance for this sweep and stops it at the end.
        cpus_per_run: the CPUs Ray reserves for each run, which are its threads.
        storage: "auto", "shared" or "copy" (see the module docstring).
        stream: where the executor says which cluster it uses.
    """

    def __init__(self, root: str | Path, train_argv: TrainArgv, address: str | None = None,
                 cpus_per_run: int = 1, storage: str = "auto", stream: TextIO = sys.stdout):
        if storage not in STORAGE:
            raise ValueError(f"storage must be one of {STORAGE}. Received: storage={storage}")
        # Absolute as the user spells it (not resolved through links): the path that a
        # node of a shared filesystem mounts the sweep directory at.
        self.root = Path(root).absolute()
        self.train_argv = train_argv
        self.address = address
        self.cpus = cpus_per_run
        self.storage = storage
        self.stream = stream
        self.ray: Any = None
        self.token = ""
        self.nodes, self.total_cpus, self.room = 0, 0.0, 0

    def __enter__(self) -> RayExecutor:
        """Joins the cluster (or starts the local instance) and checks that a run fits
        on some node: before the sweep writes anything, so that a wrong address or
        --cpus-per-run leaves no sweep behind."""
        ray = import_ray()
        try:
            self._connect(ray)
            self.ray = ray
            self._measure()
        except BaseException:
            ray.shutdown()
            raise
        return self

    def __exit__(self, *exc) -> None:
        with signals.deferred():
            if self.token:
                (self.root / MARKER).unlink(missing_ok=True)
            self.ray.shutdown()  # a local instance stops with it; a cluster stays up

    def __call__(self, todo: list[Job], jobs: int, started: Callable[[Job], None],
                 finished: Callable[[Job, int, float], None],
                 tick: Callable[[], None]) -> None:
        if self.ray is None:
            raise RuntimeError("a RayExecutor trains inside its `with` block")
        limit = jobs or self.room
        where = ("a local Ray instance" if self.address is None
                 else f"the Ray cluster at {self.address}")
        files = {"auto": "the sweep directory where a node sees it, else a copy",
                 "shared": "the sweep directory (shared)", "copy": "copies"}[self.storage]
        print(f"kvt compare: {where}: {self.nodes} node{'s' * (self.nodes != 1)}, "
              f"{self.total_cpus:g} CPUs; {self.cpus} CPU{'s' * (self.cpus != 1)} per run, "
              f"{limit} at a time; runs write to {files}", file=self.stream, flush=True)
        if self.storage != "copy" and not self.token:
            self.token = secrets.token_hex(16)
            (self.root / MARKER).write_text(self.token)
        self._train(self.ray, todo, limit, started, finished, tick)

    def _connect(self, ray) -> None:
        """Joins the cluster (or starts the local instance), keeping kvt's own handlers
        of SIGINT and SIGTERM: ray.init installs its own SIGTERM handler, which would
        end kvt compare without stopping its runs."""
        saved = {sig: signal.getsignal(sig) for sig in signals.SIGNALS}
        quiet: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False}
        try:
            if self.address is None:
                # "local": a new instance even where another one runs on this machine
                ray.init(address="local", include_dashboard=False, **quiet)
            else:
                self._probe(ray)
                ray.init(address=self.address, **quiet)
        except SystemExit:  # Ray's SIGTERM handler, in place while ray.init runs
            raise KeyboardInterrupt from None
        except ConnectionError as e:
            raise BackendError(f"cannot join the Ray cluster at --ray-address "
                               f"{self.address} ({_first_line(e)}): start it with `ray "
                               f"start --head`, or check the address") from None
        finally:
            for sig, handler in saved.items():
                signal.signal(sig, handler)

    def _probe(self, ray) -> None:
        """Refuses an address that nothing answers at: ray.init would wait for it
        forever. Probes the address as Ray will dial it (Ray turns 127.0.0.1 into this
        machine's address, and "auto" into RAY_ADDRESS or the cluster `ray start` left
        on this machine)."""
        try:
            from ray._private.services import canonicalize_bootstrap_address
            target = canonicalize_bootstrap_address(self.address)
        except (ImportError, AttributeError):  # Ray moved it: let ray.init decide
            return
        except ValueError as e:
            raise BackendError(f"--ray-address {self.address}: {e}; give auto or "
                               f"HOST:PORT of the cluster's head") from None
        if target is None:  # "auto" with no cluster known: ray.init says so at once
            return
        host, _, port = target.rpartition(":")
        try:
            socket.create_connection((host.strip("[]"), int(port)), CONNECT_WAIT).close()
        except (OSError, ValueError) as e:
            raise BackendError(f"no Ray cluster answers at {target} (--ray-address "
                               f"{self.address}: {e.strerror or e}): start one with `ray "
                               f"start --head`, or check the address") from None

    def _measure(self) -> None:
        """The cluster's nodes and CPUs, and how many runs fit at once. Refuses
        --cpus-per-run beyond every node (Ray would wait for such a node forever)."""
        nodes = [n for n in self.ray.nodes() if n.get("Alive")]
        cpus = [float(n.get("Resources", {}).get("CPU", 0)) for n in nodes]
        largest = max(cpus, default=0.0)
        if largest < 1:
            raise BackendError("the Ray cluster has no CPUs to run on: add a node with CPUs")
        if largest < self.cpus:
            raise BackendError(f"--cpus-per-run {self.cpus}: no node of the Ray cluster has "
                               f"{self.cpus} CPUs (the largest has {largest:g}): ask for "
                               f"at most {int(largest)}")
        self.nodes, self.total_cpus = len(nodes), sum(cpus)
        self.room = sum(int(c // self.cpus) for c in cpus)

    def _train(self, ray, todo: list[Job], limit: int, started: Callable[[Job], None],
               finished: Callable[[Job, int, float], None], tick: Callable[[], None]) -> None:
        task = ray.remote(run_task)
        options = {"num_cpus": self.cpus, "max_retries": RETRIES}
        running: dict[Any, tuple[Job, float]] = {}
        try:
            while todo or running:
                while todo and len(running) < limit:
                    job = todo.pop(0)
                    name = f"kvt train {job.variant.label} seed {job.seed}"
                    ref = task.options(name=name, **options).remote(self._spec(job))
                    running[ref] = (job, time.perf_counter())
                    started(job)
                ready, _ = ray.wait(list(running), num_returns=1, timeout=0.5)
                signals.check()  # ray.wait may swallow the KeyboardInterrupt of a signal
                tick()
                for ref in ready:
                    job, start = running.pop(ref)
                    code = self._result(ray, job, ref)
                    finished(job, code, time.perf_counter() - start)
        except KeyboardInterrupt:
            self._stop(ray, running)
            raise

    def _spec(self, job: Job) -> dict[str, Any]:
        """What a task needs: its command lines relative to the sweep directory, how
        to tell whether its node sees that directory, and (unless it is shared) the
        files of the run."""
        rel = Sweep(".")
        run = rel.run_dir(job.variant, job.seed).path
        files = None
        if self.storage != "shared":
            files = pack(self.root, [rel.config_path(job.variant), run])
        return {"root": str(self.root), "token": self.token, "storage": self.storage,
                "run": str(run), "cpus": self.cpus, "files": files,
                "start": rel.train_argv(job.variant, job.seed, "start", self.train_argv,
                                        job.data_dir),
                "resume": rel.train_argv(job.variant, job.seed, "resume", self.train_argv,
                                         job.data_dir)}

    def _result(self, ray, job: Job, ref) -> int:
        """The exit code of a finished task, its run directory in place."""
        try:
            result = ray.get(ref)
        except ray.exceptions.RayTaskError as e:  # the task raised (NotShared, a bug)
            note(job.run_dir, f"the Ray task failed: {_first_line(getattr(e, 'cause', e))}")
            return 1
        except ray.exceptions.RayError as e:  # its worker or node died RETRIES + 1 times
            note(job.run_dir, f"Ray could not run it ({_first_line(e)}; retried "
                              f"{RETRIES} times)")
            return 1
        if result["files"] is not None:
            swap_in(job.run_dir, result["files"])
        return result["code"]

    def _stop(self, ray, running: dict[Any, tuple[Job, float]]) -> None:
        """Cancels every task: a running one stops its kvt train, which checkpoints and
        marks itself interrupted; a copied run's progress is kept where Ray returns it."""
        for ref in running:
            ray.cancel(ref, force=False)
        pending, deadline = list(running), time.monotonic() + STOP_WAIT
        while pending and time.monotonic() < deadline:
            ready, pending = ray.wait(pending, num_returns=len(pending), timeout=1)
            for ref in ready:
                try:
                    result = ray.get(ref, timeout=0)
                except Exception:  # cancelled before it ran, or its result is gone
                    continue
                if result.get("files") is not None:
                    with contextlib.suppress(RunError):  # then it goes on from before
                        swap_in(running[ref][0].run_dir, result["files"])
        for ref in pending:
            ray.cancel(ref, force=True)


def note(run_dir: RunDir, text: str) -> None:
    """Says in the run's train.log why the executor could not train it (read back by
    `failure_message`)."""
    run_dir.path.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "train.log", "a") as log:
        log.write(f"kvt compare: {text}\n")


def _first_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[0] if lines else type(e).__name__


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
