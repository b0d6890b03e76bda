"""Health: ask every backend the function depends on, in parallel, each bounded by a timeout."""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from datetime import UTC, datetime

from billing_core.operations.model import CheckResult, HealthReport
from billing_core.operations.ports import HealthCheck


def run_health_checks(checks: Sequence[HealthCheck], *, timeout_seconds: float = 3.0) -> HealthReport:
    started = time.monotonic()
    results: list[CheckResult] = []
    if checks:
        pool = ThreadPoolExecutor(max_workers=min(8, len(checks)), thread_name_prefix="health")
        futures = {pool.submit(_timed, check): check for check in checks}
        done, _ = wait(futures, timeout=timeout_seconds)
        for future, check in futures.items():
            if future in done:
                results.append(future.result())
            else:
                elapsed_ms = int((time.monotonic() - started) * 1000)
                results.append(CheckResult(name=check.name, status="failing", latency_ms=elapsed_ms, error="Timeout"))
        # A hung backend must not hold the response: leave its thread behind.
        pool.shutdown(wait=False, cancel_futures=True)
    results.sort(key=lambda result: result.name)
    status = "ok" if all(result.status == "ok" for result in results) else "degraded"
    return HealthReport(status=status, checked_at=datetime.now(UTC), checks=results)


def _timed(check: HealthCheck) -> CheckResult:
    started = time.monotonic()
    try:
        check()
    except Exception as exc:  # noqa: BLE001 - a health check reports every failure, whatever its type
        # Only the class name leaves the function: messages can carry ARNs or account ids.
        return CheckResult(
            name=check.name,
            status="failing",
            latency_ms=int((time.monotonic() - started) * 1000),
            error=type(exc).__name__,
        )
    return CheckResult(name=check.name, status="ok", latency_ms=int((time.monotonic() - started) * 1000))
