"""Helpers shared by the test tiers."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"
T = TypeVar("T")


def load_event(relative: str) -> dict[str, Any]:
    """Sample events are contracts: the same files feed `sam local invoke -e` and the tests."""
    loaded: dict[str, Any] = json.loads((EVENTS / relative).read_text())
    return loaded


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_for[T](check: Callable[[], T], *, timeout_seconds: float, interval_seconds: float = 0.1) -> T:
    """Poll until check() is truthy; return its last value (falsy on timeout). Never a timing assertion:
    the timeout only bounds how long a broken system makes the test wait."""
    deadline = time.monotonic() + timeout_seconds
    value = check()
    while not value and time.monotonic() < deadline:
        time.sleep(interval_seconds)
        value = check()
    return value
