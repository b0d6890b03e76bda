"""Ctrl-C without a traceback from every process.

A terminal sends Ctrl-C's SIGINT to its whole foreground process group: the runtime and every child it
started (function workers, a peer's server). The runtime handles it and stops its children in order; a child
that also got it would die on its own and print a `KeyboardInterrupt` traceback first. So children are started
with SIGINT blocked, which they inherit through fork and exec: no SIGINT reaches them, not even while their
interpreter starts (multiprocessing's resource tracker is started the same way). The parent stops them."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator


@contextlib.contextmanager
def sigint_blocked() -> Iterator[None]:
    """Block SIGINT in the calling thread while children are started inside. Any thread may call it: a
    SIGINT meanwhile is delivered to another thread of the process, and the main thread's handler runs."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def ignore_sigint() -> None:
    """In a child started under sigint_blocked(): ignore SIGINT from now on (which also discards one that
    is pending), and unblock it so that the child's signal mask is ordinary again."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
