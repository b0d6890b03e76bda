"""Step Functions by execution name: WorkflowStarter (executions started under deterministic names, so a
redelivered trigger finds its execution instead of starting a second one), WorkflowReader and WorkflowStopper."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from billing_core.adapters.aws import client, error_code, translate
from billing_core.dunning.queries import ExecutionView
from billing_core.observability import CORRELATION_ATTRIBUTE, correlation_id, logger
from billing_core.operations.model import StartedExecution, StoppedExecution

# StopExecution's limits on what it records.
STOP_ERROR_MAX_CHARS = 256
STOP_CAUSE_MAX_CHARS = 32_768


def execution_arn(state_machine_arn: str, execution_name: str) -> str:
    """An execution's ARN is its state machine's, with `execution:` and the execution's name."""
    return state_machine_arn.replace(":stateMachine:", ":execution:", 1) + f":{execution_name}"


class StepFunctionsStarter:
    """Starts executions under deterministic names, so a redelivered trigger never starts twice."""

    def __init__(self, state_machine_arn: str, stepfunctions: Any | None = None):
        self._state_machine_arn = state_machine_arn
        self._stepfunctions = stepfunctions or client("stepfunctions")

    def start(self, execution_name: str, payload: Mapping[str, Any]) -> StartedExecution:
        """The execution's input is `payload` with the current correlation id (ADR 0031; the execution's own name
        when nothing is being correlated): the ASL hands it to every task, so their log lines carry it."""
        payload = {CORRELATION_ATTRIBUTE: correlation_id() or execution_name, **payload}
        try:
            response = self._stepfunctions.start_execution(
                stateMachineArn=self._state_machine_arn,
                name=execution_name,
                input=json.dumps(payload, sort_keys=True),
            )
        except ClientError as exc:
            if error_code(exc) == "ExecutionAlreadyExists":
                return StartedExecution(execution_name=execution_name, execution_arn=None, already_started=True)
            raise translate(exc, operation="states.StartExecution") from exc
        except BotoCoreError as exc:
            raise translate(exc, operation="states.StartExecution") from exc
        return StartedExecution(
            execution_name=execution_name, execution_arn=response["executionArn"], already_started=False
        )


class StepFunctionsReader:
    """Describes executions of one state machine by name (their ARN is the machine's with `execution:`)."""

    def __init__(self, state_machine_arn: str, stepfunctions: Any | None = None):
        self._state_machine_arn = state_machine_arn
        self._stepfunctions = stepfunctions or client("stepfunctions")

    def describe(self, execution_name: str) -> ExecutionView:
        arn = execution_arn(self._state_machine_arn, execution_name)
        try:
            found = self._stepfunctions.describe_execution(executionArn=arn)
        except ClientError as exc:
            if error_code(exc) == "ExecutionDoesNotExist":
                return ExecutionView(name=execution_name, status="not_found")
            logger.warning("execution not readable", extra={"error": error_code(exc)})
            return ExecutionView(name=execution_name, status="unknown")
        except BotoCoreError:
            logger.warning("execution not readable", extra={"error": "transport"})
            return ExecutionView(name=execution_name, status="unknown")
        return ExecutionView(
            name=execution_name,
            status=found["status"],
            started_at=found.get("startDate"),
            stopped_at=found.get("stopDate"),
        )


class StepFunctionsStopper:
    """Stops executions of one state machine by name, with the error and cause Step Functions records on the
    abort. It looks first and stops only a RUNNING execution, so `stopped_at` is set exactly when this call
    aborted one; an execution that has ended, or never existed, is left as it is (a repeated stop is no error)."""

    def __init__(self, state_machine_arn: str, stepfunctions: Any | None = None):
        self._state_machine_arn = state_machine_arn
        self._stepfunctions = stepfunctions or client("stepfunctions")

    def stop(self, execution_name: str, *, error: str, cause: str) -> StoppedExecution:
        arn = execution_arn(self._state_machine_arn, execution_name)
        nothing = StoppedExecution(execution_name=execution_name)
        if self._status(arn) != "RUNNING":
            return nothing
        try:
            response = self._stepfunctions.stop_execution(
                executionArn=arn, error=error[:STOP_ERROR_MAX_CHARS], cause=cause[:STOP_CAUSE_MAX_CHARS]
            )
        except ClientError as exc:
            # It may have ended between the look and the stop; whatever AWS answers then, it is not running.
            if error_code(exc) == "ExecutionDoesNotExist" or self._status(arn) != "RUNNING":
                return nothing
            raise translate(exc, operation="states.StopExecution") from exc
        except BotoCoreError as exc:
            raise translate(exc, operation="states.StopExecution") from exc
        # StopExecution always answers stopDate in AWS; moto's executing backend (the local runtime's) answers
        # without it while the abort is still being applied, so the stop is then dated from the look after it.
        stopped_at = response.get("stopDate") or self._stop_date(arn)
        return StoppedExecution(execution_name=execution_name, stopped_at=stopped_at)

    def _stop_date(self, arn: str) -> datetime:
        try:
            found = self._stepfunctions.describe_execution(executionArn=arn)
        except (ClientError, BotoCoreError):
            found = {}
        stop_date = found.get("stopDate")
        return stop_date if isinstance(stop_date, datetime) else datetime.now(UTC)

    def _status(self, arn: str) -> str | None:
        try:
            return str(self._stepfunctions.describe_execution(executionArn=arn)["status"])
        except ClientError as exc:
            if error_code(exc) == "ExecutionDoesNotExist":
                return None
            raise translate(exc, operation="states.DescribeExecution") from exc
        except BotoCoreError as exc:
            raise translate(exc, operation="states.DescribeExecution") from exc
