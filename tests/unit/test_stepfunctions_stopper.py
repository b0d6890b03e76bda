"""StepFunctionsStopper (adapters/stepfunctions.py) against a stubbed Step Functions client: it looks before it
stops, sends the error and cause the execution's history will show (moto ignores them, so they are checked
here), answers "nothing stopped" for an execution that has ended or does not exist - also when it ends between
the look and the stop - and raises the error vocabulary for anything else."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from billing_core.adapters.stepfunctions import StepFunctionsStopper
from billing_core.errors import PermanentError, RetryableError

MACHINE = "arn:aws:states:us-east-1:123456789012:stateMachine:billing-prod-DunningStateMachine"
NAME = "dunning-binv_0123456789abcdef01234567-1"
EXECUTION = "arn:aws:states:us-east-1:123456789012:execution:billing-prod-DunningStateMachine:" + NAME
STOPPED_AT = datetime(2026, 12, 7, 10, 0, 1, tzinfo=UTC)


def described(status: str) -> dict[str, Any]:
    return {
        "executionArn": EXECUTION,
        "stateMachineArn": MACHINE,
        "status": status,
        "startDate": datetime(2026, 12, 1, tzinfo=UTC),
    }


@pytest.fixture
def stubbed() -> tuple[StepFunctionsStopper, Stubber]:
    client = boto3.client("stepfunctions", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    stubber = Stubber(client)
    stubber.activate()
    return StepFunctionsStopper(MACHINE, client), stubber


def test_a_running_execution_is_stopped_with_the_error_and_cause(stubbed: tuple[StepFunctionsStopper, Stubber]) -> None:
    stopper, stubber = stubbed
    stubber.add_response("describe_execution", described("RUNNING"), {"executionArn": EXECUTION})
    stubber.add_response(
        "stop_execution",
        {"stopDate": STOPPED_AT},
        {"executionArn": EXECUTION, "error": "InvoiceSettled", "cause": "invoice_paid"},
    )
    stopped = stopper.stop(NAME, error="InvoiceSettled", cause="invoice_paid")
    assert (stopped.execution_name, stopped.stopped_at, stopped.stopped) == (NAME, STOPPED_AT, True)
    stubber.assert_no_pending_responses()


class UndatedStops:
    """moto's executing backend (the local runtime's): StopExecution answers {} while the abort is being applied
    (botocore's Stubber refuses such an answer, it breaks the API's shape: hence a hand-made client)."""

    def __init__(self) -> None:
        self.status = "RUNNING"

    def describe_execution(self, executionArn: str) -> dict[str, Any]:  # boto3's keyword names
        found = described(self.status)
        return {**found, "stopDate": STOPPED_AT} if self.status == "ABORTED" else found

    def stop_execution(self, executionArn: str, error: str, cause: str) -> dict[str, Any]:
        self.status = "ABORTED"
        return {}


def test_a_stop_answered_without_its_date_is_dated_from_the_execution() -> None:
    stopper = StepFunctionsStopper(MACHINE, UndatedStops())
    assert stopper.stop(NAME, error="InvoiceSettled", cause="x").stopped_at == STOPPED_AT


@pytest.mark.parametrize("status", ["SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"])
def test_an_execution_that_has_ended_is_left_as_it_is(
    stubbed: tuple[StepFunctionsStopper, Stubber], status: str
) -> None:
    stopper, stubber = stubbed
    stubber.add_response("describe_execution", described(status), {"executionArn": EXECUTION})
    assert not stopper.stop(NAME, error="InvoiceSettled", cause="invoice_paid").stopped
    stubber.assert_no_pending_responses()  # no StopExecution was sent


def test_an_execution_that_does_not_exist_is_no_error(stubbed: tuple[StepFunctionsStopper, Stubber]) -> None:
    stopper, stubber = stubbed
    stubber.add_client_error("describe_execution", "ExecutionDoesNotExist", http_status_code=400)
    assert not stopper.stop(NAME, error="InvoiceSettled", cause="invoice_paid").stopped


def test_an_execution_that_ends_between_the_look_and_the_stop_is_no_error(
    stubbed: tuple[StepFunctionsStopper, Stubber],
) -> None:
    stopper, stubber = stubbed
    stubber.add_response("describe_execution", described("RUNNING"), {"executionArn": EXECUTION})
    stubber.add_client_error("stop_execution", "ValidationException", http_status_code=400)
    stubber.add_response("describe_execution", described("SUCCEEDED"), {"executionArn": EXECUTION})
    assert not stopper.stop(NAME, error="InvoiceSettled", cause="invoice_paid").stopped


def test_a_stop_refused_while_it_still_runs_is_an_error(stubbed: tuple[StepFunctionsStopper, Stubber]) -> None:
    stopper, stubber = stubbed
    stubber.add_response("describe_execution", described("RUNNING"), {"executionArn": EXECUTION})
    stubber.add_client_error("stop_execution", "AccessDeniedException", http_status_code=400)
    stubber.add_response("describe_execution", described("RUNNING"), {"executionArn": EXECUTION})
    with pytest.raises(PermanentError):
        stopper.stop(NAME, error="InvoiceSettled", cause="invoice_paid")


def test_throttling_is_retryable(stubbed: tuple[StepFunctionsStopper, Stubber]) -> None:
    stopper, stubber = stubbed
    stubber.add_client_error("describe_execution", "ThrottlingException", http_status_code=400)
    with pytest.raises(RetryableError):
        stopper.stop(NAME, error="InvoiceSettled", cause="invoice_paid")
