"""Health: ask every backend the stack depends on, in parallel, each bounded by a timeout; answer from a
report a few seconds old rather than asking again.

GET /health needs no token, so without the cache every anonymous request would fan out into one AWS call per
table, queue and state machine (25 today): the cache bounds that to one round per execution environment per
`cache_seconds`, whatever the request rate."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from datetime import UTC, datetime

from billing_core.operations.model import BackendUnavailable, CheckResult, HealthReport
from billing_core.operations.ports import HealthCheck

MAX_PARALLEL_CHECKS = 8


class HealthMonitor:
    """The report, refreshed at most once per `cache_seconds` (0: every call asks)."""

    def __init__(
        self,
        checks: Sequence[HealthCheck],
        *,
        timeout_seconds: float,
        cache_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._checks = tuple(checks)
        self._timeout_seconds = timeout_seconds
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._last: tuple[float, HealthReport] | None = None

    def report(self) -> HealthReport:
        with self._lock:
            now = self._clock()
            if self._last is not None and now - self._last[0] < self._cache_seconds:
                return self._last[1]
            report = run_health_checks(self._checks, timeout_seconds=self._timeout_seconds)
            self._last = (now, report)
            return report


def run_health_checks(checks: Sequence[HealthCheck], *, timeout_seconds: float = 3.0) -> HealthReport:
    started = time.monotonic()
    results: list[CheckResult] = []
    if checks:
        pool = ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_CHECKS, len(checks)), thread_name_prefix="health")
        futures = {pool.submit(_timed, check): check for check in checks}
        done, _ = wait(futures, timeout=timeout_seconds)
        for future, check in futures.items():
            if future in done:
                results.append(future.result())
            else:
                elapsed_ms = int((time.monotonic() - started) * 1000)
                results.append(
                    CheckResult(
                        name=check.name, kind=check.kind, status="failing", latency_ms=elapsed_ms, error="Timeout"
                    )
                )
        # A hung backend must not hold the response: leave its thread behind.
        pool.shutdown(wait=False, cancel_futures=True)
    results.sort(key=lambda result: (result.kind, result.name))
    status = "ok" if all(result.status == "ok" for result in results) else "degraded"
    return HealthReport(status=status, checked_at=datetime.now(UTC), checks=results)


def _timed(check: HealthCheck) -> CheckResult:
    started = time.monotonic()
    try:
        check()
    except Exception as exc:  # noqa: BLE001 - a health check reports every failure, whatever its type
        # Only a code leaves the function: messages can carry ARNs or account ids.
        return CheckResult(
            name=check.name,
            kind=check.kind,
            status="failing",
            latency_ms=int((time.monotonic() - started) * 1000),
            error=exc.reason if isinstance(exc, BackendUnavailable) else type(exc).__name__,
        )
    return CheckResult(
        name=check.name, kind=check.kind, status="ok", latency_ms=int((time.monotonic() - started) * 1000)
    )
