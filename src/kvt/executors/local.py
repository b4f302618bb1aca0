"""The local executor: each job a `python -m kvt` child process."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from typing import Any, Callable

from kvt import signals
from kvt.backends import thread_env
from kvt.executors.job import Job
from kvt.record_paths import PORTABLE_PATHS, portable_argv, record_bases

STOP_WAIT = 60  # s the children have to checkpoint after SIGTERM before they are killed


def child_env(jobs: int) -> dict[str, str]:
    """The children's environment: with several at once, each gets its share of cores
    (TensorFlow and PyTorch threads) unless the user has set the counts."""
    env = dict(os.environ)
    if jobs > 1:
        for name, value in thread_env(max(1, (os.cpu_count() or 1) // jobs)).items():
            env.setdefault(name, value)
        # Several children on one GPU: JAX would take 75% of its memory each, TensorFlow
        # all of it, at start-up; PyTorch allocates as it goes. (Ignored on a CPU.)
        env.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", f"{0.9 / jobs:.2f}")
        env.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
    env.setdefault("PYTHONUNBUFFERED", "1")
    env[PORTABLE_PATHS] = "1"  # their output is the run's train.log
    return env


def local_pool(todo: list[Job], jobs: int, started: Callable[[Job], None],
               finished: Callable[[Job, int, float], None],
               tick: Callable[[], None], python: str = sys.executable) -> None:
    """The local executor: each job a `python -m kvt` child process, its
    output in the run's train.log, `jobs` at a time, each with its share of the cores
    (`child_env`)."""
    env = child_env(jobs)
    running: dict[subprocess.Popen, tuple[Job, Any, float]] = {}
    try:
        while todo or running:
            while todo and len(running) < jobs:
                job = todo.pop(0)
                # A child that was started is always known, so that a stop reaches it.
                with signals.deferred():
                    job.run_dir.path.mkdir(parents=True, exist_ok=True)
                    log = open(job.run_dir / "train.log", "a")
                    argv = portable_argv(job.argv, *record_bases(job.run_dir.path))
                    log.write(f"$ kvt {shlex.join(argv)}\n")
                    log.flush()
                    with signals.children_held():
                        proc = subprocess.Popen([python, "-m", "kvt", *job.argv], stdout=log,
                                                stderr=subprocess.STDOUT, env=env,
                                                stdin=subprocess.DEVNULL)
                    running[proc] = (job, log, time.perf_counter())
                started(job)
            time.sleep(0.2)
            tick()
            for proc in [p for p in running if p.poll() is not None]:
                job, log, start = running.pop(proc)
                log.close()
                finished(job, proc.returncode, time.perf_counter() - start)
    except KeyboardInterrupt:
        _stop(running)
        raise


def _stop(running: dict[subprocess.Popen, tuple[Job, Any, float]]) -> None:
    """Asks every child to stop (they checkpoint and mark themselves interrupted)."""
    for proc in running:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_WAIT
    for proc, (_, log, _) in running.items():
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
