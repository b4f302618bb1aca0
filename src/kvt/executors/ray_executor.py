"""The Ray executor of `kvt compare --executor ray`: each job a Ray task that trains on
whichever node of a Ray cluster has room (the task itself is `ray_task.run_task`).

A task asks Ray for `cpus_per_run` CPUs, which are its run's threads, and no GPU. Where
a run's files are written (`storage`): "shared", in the sweep directory that every node
mounts at the same path (a node proves it sees it by reading the MARKER this kvt compare wrote);
"copy", in a node's temporary copy that the task returns as a tar archive, which the
driver swaps in whole; "auto" (the default), the sweep directory where a node sees it,
else a copy. Ray retries a task whose worker died; a task continues a run whose `kvt
train` was killed; either way each run is trained to its end once and counted once.
`import ray` happens only when a sweep uses this executor (`import_ray`).
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any, Callable, TextIO

from kvt import signals
from kvt.errors import BackendError, RunError, first_line
from kvt.executors.job import Job
from kvt.executors.ray_task import MARKER, RETRIES, STOP_WAIT, note, pack, run_task, swap_in

INSTALL = "pip install 'kvt[ray]'"
STORAGE = ("auto", "shared", "copy")
CONNECT_WAIT = 10  # s to reach a cluster's head before calling it absent


def import_ray():
    """The ray module, or the one-line error that says how to install it."""
    try:
        import ray
    except ImportError:
        raise BackendError(f"--executor ray needs Ray, which is not installed: "
                           f"{INSTALL}") from None
    return ray


class RayExecutor:
    """An `Executor` (see `kvt.executors`) that trains each job as a Ray task, from its
    `Job.remote`; a context manager, connected to the cluster inside its `with` block:

        with RayExecutor(sweep.path) as executor:
            execute(sweep, plan, plan.jobs, sys.stdout, command, train_argv, executor)

    Args:
        root: the folder that the jobs' `remote` paths are relative to (the sweep
            directory).
        address: a running cluster to join ("auto", or HOST:PORT of its head); None
            starts a local Ray instance for this sweep and stops it at the end.
        cpus_per_run: the CPUs Ray reserves for each run, which are its threads.
        storage: "auto", "shared" or "copy" (see the module docstring).
        stream: where the executor says which cluster it uses.
    """

    def __init__(self, root: str | Path, address: str | None = None,
                 cpus_per_run: int = 1, storage: str = "auto", stream: TextIO = sys.stdout):
        if storage not in STORAGE:
            raise ValueError(f"storage must be one of {STORAGE}. Received: storage={storage}")
        # Absolute as the user spells it (not resolved through links): the path that a
        # node of a shared filesystem mounts the sweep directory at.
        self.root = Path(root).absolute()
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
                # "local": a new instance even where another one runs on the local machine
                ray.init(address="local", include_dashboard=False, **quiet)
            else:
                self._probe(ray)
                ray.init(address=self.address, **quiet)
        except SystemExit:  # Ray's SIGTERM handler, in place while ray.init runs
            raise KeyboardInterrupt from None
        except ConnectionError as e:
            raise BackendError(f"cannot join the Ray cluster at --ray-address "
                               f"{self.address} ({first_line(e)}): start it with `ray "
                               f"start --head`, or check the address") from None
        finally:
            for sig, handler in saved.items():
                signal.signal(sig, handler)

    def _probe(self, ray) -> None:
        """Refuses an address that nothing answers at: ray.init would wait for it
        forever. Probes the address as Ray will dial it (Ray turns 127.0.0.1 into this
        machine's address, and "auto" into RAY_ADDRESS or the cluster `ray start` left
        on the local machine)."""
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
                    name = f"kvt train {job.name}"
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
        """What a task needs: its command lines relative to the root folder, how to
        tell whether its node sees that folder, and (unless it is shared) the files of
        the run."""
        remote = job.remote
        if remote is None:
            raise ValueError(f"job {job.name} has no `remote`: a Ray task needs one")
        files = None
        if self.storage != "shared":
            files = pack(self.root, [*remote.inputs, remote.run])
        return {"root": str(self.root), "token": self.token, "storage": self.storage,
                "run": str(remote.run), "cpus": self.cpus, "files": files,
                "start": remote.start, "resume": remote.resume}

    def _result(self, ray, job: Job, ref) -> int:
        """The exit code of a finished task, its run directory in place."""
        try:
            result = ray.get(ref)
        except ray.exceptions.RayTaskError as e:  # the task raised (NotShared, a bug)
            note(job.run_dir, f"the Ray task failed: {first_line(getattr(e, 'cause', e))}")
            return 1
        except ray.exceptions.RayError as e:  # its worker or node died RETRIES + 1 times
            note(job.run_dir, f"Ray could not run it ({first_line(e)}; retried "
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
