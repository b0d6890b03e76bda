"""Keep a benchmark's terminal readable: progress lines and the tables only.

Handlers measured in-process log and emit metrics as JSON lines on stdout (Powertools Logger and Metrics
write there, as Lambda expects); with hundreds of requests per section that buried the progress and the
results. `logs_to(path)` sends everything written to file descriptor 1 (Python prints, C-level writes and
child processes that inherit it) to a log file for the duration, and hands back a function that still
writes to the terminal."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def logs_to(path: Path) -> Iterator[Callable[[str], None]]:
    """Inside the block stdout goes to `path` (appended); the yielded `say(line)` writes to the real stdout."""
    sys.stdout.flush()
    terminal_fd = os.dup(1)
    with path.open("ab") as log:
        os.dup2(log.fileno(), 1)
    terminal = os.fdopen(terminal_fd, "w", buffering=1, encoding="utf-8")
    # sys.stdout too, in case it is not fd 1 (a test's capture); left open, as a logger made inside may hold it
    python_stdout, sys.stdout = sys.stdout, path.open("a", buffering=1, encoding="utf-8")

    def say(line: str) -> None:
        terminal.write(line + "\n")
        terminal.flush()

    try:
        yield say
    finally:
        sys.stdout.flush()
        sys.stdout = python_stdout
        os.dup2(terminal_fd, 1)
        terminal.close()
