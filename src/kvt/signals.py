"""The one interrupt policy of kvt: how Ctrl-C (SIGINT) and SIGTERM stop a command.

Python raises KeyboardInterrupt wherever the main thread happens to be when a signal
lands, and some of those places lose it: a garbage-collector callback or `__del__`
(Python prints "Exception ignored" and carries on), a bare `except:` (Keras converts
each batch's logs inside one), or framework code that, unwound half-way, fails with an
error of its own (TensorFlow's "Nesting violated for default stack of FuncGraph"). So
while `policy()` is active:

- the handler notes every signal, and raises KeyboardInterrupt for the first one
  (stopping at once where that is safe to do);
- `check()`, called at safe points (batch and epoch ends, between phases), raises
  again if a signal was noted, so an interrupt that was swallowed still stops the work;
- `deferred()` holds signals while a block that must finish whole (a checkpoint, a
  status write) runs, and raises at its end;
- `received()` says whether a signal came, so that any error after it counts as the
  interrupt that caused it, not as a failure;
- `children_held()` starts child processes with the signals blocked until their own
  policy is in place;
- `blocked()` holds them (blocked, without the policy) through a few system calls that
  must not be cut, such as claiming a run directory;
- `settled()` ends the policy's interest: the work is saved, and a late signal may no
  longer turn a finished run into an interrupted one.

Signals can only be handled in the main thread; elsewhere every function here is a
no-op (and `received()` is False).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from typing import Any, Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _State:
    def __init__(self) -> None:
        self.active = 0  # depth of nested policy() blocks
        self.received: list[int] = []
        self.armed = True  # the handler may still raise: no interrupt has been raised yet
        self.deferred = 0  # depth of deferred() blocks
        self.settled = False


_state = _State()


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _handler(signum: int, frame: Any) -> None:
    _state.received.append(signum)
    if _state.armed and not _state.deferred and not _state.settled:
        # Once: a second signal landing while the first unwinds (Ctrl-C to a process
        # group, then kvt compare's SIGTERM) must not cut the interrupt's own clean-up.
        _state.armed = False
        raise KeyboardInterrupt


def _unraisable(previous):
    def hook(unraisable) -> None:
        # The handler's KeyboardInterrupt, raised inside a gc callback or __del__, was
        # dropped by Python; the next check() raises it where it counts.
        if isinstance(unraisable.exc_value, KeyboardInterrupt) and _state.received:
            return
        previous(unraisable)
    return hook


@contextlib.contextmanager
def policy(final: bool = False) -> Iterator[None]:
    """Handles SIGINT and SIGTERM as described in the module docstring; re-entrant
    (an inner block shares the outer one's state). With `final`, the process's work ends
    with the block: the signals are ignored from then on instead of handled as before."""
    if not _main_thread():
        yield
        return
    if _state.active:
        _state.active += 1
        try:
            yield
        finally:
            _state.active -= 1
        return
    _state.__init__()
    _state.active = 1
    # An ignored signal stays ignored (`nohup`, a shell's background job): whoever
    # started us chose that.
    previous = {sig: signal.signal(sig, _handler) for sig in SIGNALS
                if signal.getsignal(sig) is not signal.SIG_IGN}
    previous_hook = sys.unraisablehook
    sys.unraisablehook = _unraisable(previous_hook)
    # A process started by `children_held()` begins with the signals blocked; one that
    # came while its interpreter started is delivered now, noted, and raised by the
    # command's first check().
    _state.deferred += 1
    try:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)  # runs the handlers at once
    finally:
        _state.deferred -= 1
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_IGN if final else handler)
        sys.unraisablehook = previous_hook
        _state.active = 0


def received() -> bool:
    """Whether SIGINT or SIGTERM came since the policy began."""
    return bool(_state.received)


def check() -> None:
    """Raises KeyboardInterrupt if a signal came (again, if its first one was lost)."""
    if _state.received and not _state.settled:
        _state.armed = False
        raise KeyboardInterrupt


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Holds SIGINT and SIGTERM until the block is done, then raises KeyboardInterrupt
    for one that came during it (unless an interrupt is already being handled)."""
    if not _main_thread():
        yield
        return
    with policy():
        before = len(_state.received)
        _state.deferred += 1
        try:
            yield
        finally:
            _state.deferred -= 1
        if len(_state.received) > before and _state.armed and not _state.settled:
            _state.armed = False
            raise KeyboardInterrupt


@contextlib.contextmanager
def blocked() -> Iterator[None]:
    """SIGINT and SIGTERM blocked for a short block that no handler may cut, with or
    without the policy; one that came meanwhile is delivered at the block's end, to the
    handler in place then. Processes started inside begin with them blocked."""
    held = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


def children_held() -> contextlib.AbstractContextManager[None]:
    """Processes started in this block begin with SIGINT and SIGTERM blocked, so that a
    signal sent to a process group while a `kvt` child is still starting its interpreter
    waits for that child's policy() (which unblocks them) instead of ending it with a
    KeyboardInterrupt traceback. This process's own signals wait until the block ends."""
    return blocked()


def settled() -> None:
    """The work is saved and reported: from here a signal is noted but stops nothing,
    so a run that is complete on disk also ends with success."""
    _state.settled = True
