"""Waiting on the file-system event itself, not on a sleep loop: a test that needs "until
this file exists" or "until this log says so" blocks on Linux inotify (through ctypes)
and re-checks its condition after each batch of events, with a generous bound.

kvt writes its JSON files atomically (a temporary file renamed into place) and appends to
its logs, so the watched directories report IN_MOVED_TO, IN_CREATE, IN_CLOSE_WRITE and
IN_MODIFY. A directory that does not exist yet is watched through its nearest existing
parent until it appears. The child process is watched too (a pidfd), so that a process
that dies before the event fails the wait at once, not at the bound.
"""

import ctypes
import ctypes.util
import errno
import os
import select
import sys
import time
from pathlib import Path

import pytest

from processes import HANG

IN_MODIFY, IN_CLOSE_WRITE, IN_MOVED_TO, IN_CREATE = 0x2, 0x8, 0x80, 0x100
EVENTS = IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE
BOUND = float(HANG)  # only catches a hang

_libc = None


def _inotify():
    global _libc
    if not sys.platform.startswith("linux"):
        pytest.skip("waiting on file events uses Linux inotify")
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        _libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    fd = _libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "inotify_init1 failed")
    return fd


def _watch(fd, folder: Path) -> None:
    """Watches `folder`, or while it does not exist its nearest existing parent (whose
    IN_CREATE wakes the waiter, which then watches one level deeper). Adding a watch that
    exists already is a no-op, so this is called after every batch of events."""
    folder = Path(folder).absolute()
    while not folder.is_dir() and folder != folder.parent:
        folder = folder.parent
    if _libc.inotify_add_watch(fd, os.fsencode(folder), EVENTS) < 0:
        code = ctypes.get_errno()
        if code != errno.ENOENT:  # removed meanwhile: the next round watches its parent
            raise OSError(code, f"inotify_add_watch {folder}")


def wait_until(condition, folders, what: str, proc=None, seconds: float = BOUND):
    """Returns `condition()`'s first true value, re-checked after each file event in
    `folders` (directories; missing ones are watched through their parents). Fails naming
    `what` once `seconds` pass, or at once if `proc` (a Popen) exits first."""
    fd = _inotify()
    pidfd = os.pidfd_open(proc.pid) if proc is not None and hasattr(os, "pidfd_open") else None
    deadline = time.monotonic() + seconds
    try:
        while True:
            for folder in folders:  # watch first, then check: no event is lost in between
                _watch(fd, folder)
            value = condition()
            if value:
                return value
            if proc is not None and proc.poll() is not None:
                pytest.fail(f"the process exited ({proc.returncode}) before {what}")
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"waited {seconds:.0f} s for {what}; it never happened")
            ready, _, _ = select.select([fd] + ([pidfd] if pidfd is not None else []), [], [],
                                        left if pidfd is not None or proc is None
                                        else min(left, 1.0))  # no pidfd: notice an exit
            if fd in ready:
                try:
                    while os.read(fd, 65536):  # drain; the condition says what changed
                        pass
                except BlockingIOError:
                    pass
    finally:
        os.close(fd)
        if pidfd is not None:
            os.close(pidfd)


def wait_for_file(path: Path, proc=None, seconds: float = BOUND) -> None:
    """Until `path` exists."""
    path = Path(path)
    wait_until(path.exists, [path.parent], f"{path} to exist", proc, seconds)


def wait_for_text(path: Path, words: str, proc=None, seconds: float = BOUND) -> None:
    """Until the file at `path` (a log, appended to) contains `words`."""
    path = Path(path)

    def found():
        try:
            return words in path.read_text(errors="replace")
        except FileNotFoundError:
            return False

    wait_until(found, [path.parent], f"{words!r} in {path}", proc, seconds)
