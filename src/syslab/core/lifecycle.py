"""Clean shutdown: nothing we start outlives us.

Two halves:

- **In the main process**, ``terminable()`` turns SIGTERM and SIGINT into a ``Terminated`` exception raised in
  the main thread. It unwinds like any exception, so every ``with`` block and ``finally`` on the way stops its
  children, servers and pools and removes its /dev/shm entries and temporary directories (Python's default
  SIGTERM action kills the process at once and runs none of them). The CLI then exits 143 (SIGTERM) or 130
  (SIGINT) without a traceback. ``Terminated`` derives from ``BaseException`` so ``except Exception`` blocks
  that record a crashed reproduction do not swallow it.
- **In every child**, ``die_with_parent`` asks the kernel to send it SIGTERM when its parent dies (Linux
  ``prctl(PR_SET_PDEATHSIG)``), so even a parent killed with SIGKILL leaves no orphan waiting forever on a pipe.
  Use it as ``preexec_fn=child_of_me()`` for ``subprocess.Popen`` (it survives ``exec``), or call it first
  thing in a forked child. The kernel ties the signal to the *thread* that forked the child: start children
  from the main thread or from a thread that outlives them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator

PR_SET_PDEATHSIG = 1  # linux/prctl.h


class Terminated(BaseException):
    """SIGTERM or SIGINT arrived; raised in the main thread so cleanup code runs."""

    def __init__(self, signum: int):
        super().__init__(f"terminated by {signal.Signals(signum).name}")
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def _raise_terminated(signum: int, frame: object) -> None:
    # Ignore repeats while we unwind: a second Ctrl-C must not interrupt the cleanup of the first.
    signal.signal(signum, signal.SIG_IGN)
    raise Terminated(signum)


@contextlib.contextmanager
def terminable() -> Iterator[None]:
    """Within the block, SIGTERM/SIGINT raise ``Terminated`` in the main thread (no-op off the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    for s in previous:
        signal.signal(s, _raise_terminated)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def die_with_parent(parent_pid: int | None = None) -> None:
    """In a child process: get SIGTERM when the parent dies; exit at once if ``parent_pid`` is already gone."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if parent_pid is not None and os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(143)


def child_of_me() -> Callable[[], None]:
    """A ``preexec_fn`` for ``subprocess.Popen``: the child dies with this process."""
    me = os.getpid()
    return lambda: die_with_parent(me)


def reset_signals_in_child() -> None:
    """In a forked Python child: default SIGTERM (die) and ignore SIGINT, the parent's Ctrl-C is the parent's to
    handle; a forked child must not raise ``Terminated`` into code that was never meant to run there."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def pool_worker_init(parent_pid: int) -> None:
    """Initializer of a process-pool worker: die with the parent; SIGTERM unwinds (so the work in hand cleans
    up after itself); Ctrl-C is the parent's to handle (it reaches the whole process group)."""
    die_with_parent(parent_pid)
    signal.signal(signal.SIGTERM, _raise_terminated)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
