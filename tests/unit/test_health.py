from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Literal

import boto3
import pytest
from botocore.stub import Stubber

from billing_core.adapters.health_checks import DynamoDBTableCheck, SqsQueueCheck, StateMachineCheck
from billing_core.config import split_named
from billing_core.errors import ConfigurationError
from billing_core.operations.health import HealthMonitor, run_health_checks


@dataclass
class Check:
    name: str
    error: Exception | None = None
    kind: Literal["table", "queue", "state_machine"] = "table"
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


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_report_is_reused_for_cache_seconds_then_asked_again() -> None:
    # Given a monitor with a 10 s cache
    check, clock = Check("LedgerTable"), Clock()
    monitor = HealthMonitor([check], timeout_seconds=1, cache_seconds=10, clock=clock)
    # When it is asked three times within 10 s
    first = monitor.report()
    clock.now += 9.9
    assert monitor.report() is first
    # Then the backend was asked once; after 10 s it is asked again
    assert len(check.calls) == 1
    clock.now += 0.1
    assert monitor.report() is not first and len(check.calls) == 2


def test_a_cache_of_zero_asks_every_time() -> None:
    check = Check("LedgerTable")
    monitor = HealthMonitor([check], timeout_seconds=1, cache_seconds=0, clock=Clock())
    monitor.report()
    monitor.report()
    assert len(check.calls) == 2


def stubbed(service: str) -> tuple[object, Stubber]:
    client = boto3.client(service, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    return client, Stubber(client)


@pytest.mark.parametrize(
    ("make_check", "service", "operation", "code"),
    [
        (
            lambda c: DynamoDBTableCheck("LedgerTable", "prod-LedgerTable-1A2B3C", c),
            "dynamodb",
            "describe_table",
            "ResourceNotFoundException",
        ),
        (
            lambda c: SqsQueueCheck("DunningQueue", "https://sqs.us-east-1.amazonaws.com/123456789012/prod-Dunning", c),
            "sqs",
            "get_queue_attributes",
            "AWS.SimpleQueueService.NonExistentQueue",
        ),
        (
            lambda c: StateMachineCheck(
                "CanaryStateMachine", "arn:aws:states:us-east-1:123456789012:stateMachine:prod-canary", c
            ),
            "stepfunctions",
            "describe_state_machine",
            "AccessDeniedException",
        ),
    ],
)
def test_a_refusing_backend_is_reported_by_logical_id_and_aws_error_code_only(
    make_check: object, service: str, operation: str, code: str
) -> None:
    # Given a backend that refuses with a message naming the account and the physical resource
    client, stubber = stubbed(service)
    stubber.add_client_error(operation, service_error_code=code, service_message="arn:aws:x:123456789012:prod-thing")
    check = make_check(client)  # type: ignore[operator]
    # When the health report is made
    with stubber:
        report = run_health_checks([check])
    # Then it names the logical id, the kind and the AWS error code, and nothing physical
    [result] = report.checks
    assert (result.name, result.status, result.error) == (check.name, "failing", code)
    assert "123456789012" not in report.model_dump_json() and "prod-" not in report.model_dump_json()


def test_named_resources_are_parsed_and_bad_pairs_refused() -> None:
    assert split_named("A=a, B = https://q/b ,") == {"A": "a", "B": "https://q/b"}
    for bad in ("A", "=a", "A=", "A=a,A=b"):
        with pytest.raises(ConfigurationError):
            split_named(bad)
