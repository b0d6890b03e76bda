"""An in-memory BreakerStore with the DynamoDB store's version condition, counting its reads and writes, that can
be made unreachable; and a dependency double whose answers a test scripts (it counts the calls that reached it)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from billing_core.errors import RetryableError
from billing_core.operations.breakers import BreakerState


class InMemoryBreakerStore:
    def __init__(self) -> None:
        self.states: dict[str, BreakerState] = {}
        self.reads = 0
        self.writes = 0
        self.refused_writes = 0
        self.reachable = True
        self._lock = threading.Lock()

    def _check(self) -> None:
        if not self.reachable:
            raise RetryableError("dynamodb.GetItem could not reach AWS", code="aws_unreachable")

    def read(self, dependency: str) -> BreakerState:
        self._check()
        with self._lock:
            self.reads += 1
            return self.states.get(dependency) or BreakerState(dependency=dependency)

    def read_all(self) -> list[BreakerState]:
        self._check()
        with self._lock:
            self.reads += 1
            return sorted(self.states.values(), key=lambda state: state.dependency)

    def write(self, state: BreakerState, *, correlation_id: str | None = None) -> bool:
        self._check()
        with self._lock:
            stored = self.states.get(state.dependency)
            if (stored.version if stored is not None else 0) != state.version - 1:
                self.refused_writes += 1
                return False
            self.states[state.dependency] = state
            self.writes += 1
            return True

    def requests(self) -> int:
        return self.reads + self.writes + self.refused_writes


class Dependency:
    """A provider adapter's double: `answer` is called on each call that reaches it (raise to fail)."""

    provider = "double"

    def __init__(self, answer: Callable[[], str] | None = None):
        self.answer = answer or (lambda: "ok")
        self.calls = 0
        self._lock = threading.Lock()

    def charge(self, amount_minor: int) -> str:
        with self._lock:
            self.calls += 1
        return self.answer()

    def pages(self, count: int) -> object:
        with self._lock:
            self.calls += 1
        for page in range(count):
            yield self.answer() + str(page)


class CountingGateway:
    """A provider adapter with a count of the calls that reach it (what a breaker or a switch sits in front of)."""

    def __init__(self, gateway: Any):
        self._gateway = gateway
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._gateway, name)
        if name.startswith("_") or not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return attribute(*args, **kwargs)

        return call
