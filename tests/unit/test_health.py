from __future__ import annotations

import threading
from dataclasses import dataclass, field

from billing_core.operations.health import run_health_checks


@dataclass
class Check:
    name: str
    error: Exception | None = None
    block: threading.Event | None = None
    calls: list[int] = field(default_factory=list)

    def __call__(self) -> None:
        self.calls.append(1)
        if self.block is not None:
            self.block.wait(5)
        if self.error is not None:
            raise self.error


def test_all_backends_answer() -> None:
    report = run_health_checks([Check("b"), Check("a")])
    assert report.status == "ok"
    assert [c.name for c in report.checks] == ["a", "b"]


def test_a_failing_backend_degrades_and_reports_only_the_error_class() -> None:
    # Given a backend that raises with an account id in its message
    report = run_health_checks([Check("ok"), Check("bad", error=PermissionError("arn:aws:iam::123456789012:role/x"))])
    # Then the report is degraded and leaks nothing but the class name
    assert report.status == "degraded"
    bad = next(c for c in report.checks if c.name == "bad")
    assert bad.status == "failing" and bad.error == "PermissionError"
    assert "123456789012" not in report.model_dump_json()


def test_a_hung_backend_is_reported_as_timeout_instead_of_holding_the_response() -> None:
    release = threading.Event()
    try:
        report = run_health_checks([Check("hung", block=release), Check("ok")], timeout_seconds=0.2)
    finally:
        release.set()
    hung = next(c for c in report.checks if c.name == "hung")
    assert (report.status, hung.status, hung.error) == ("degraded", "failing", "Timeout")


def test_no_checks_is_healthy() -> None:
    assert run_health_checks([]).status == "ok"
