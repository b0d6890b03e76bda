"""WorkflowStarter on Step Functions: executions started under deterministic names, so a redelivered
trigger finds its execution instead of starting a second one."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from billing_core.adapters.aws import client, error_code, translate
from billing_core.dunning.queries import ExecutionView
from billing_core.observability import logger
from billing_core.operations.model import StartedExecution


class StepFunctionsStarter:
    """Starts executions under deterministic names, so a redelivered trigger never starts twice."""

    def __init__(self, state_machine_arn: str, stepfunctions: Any | None = None):
        self._state_machine_arn = state_machine_arn
        self._stepfunctions = stepfunctions or client("stepfunctions")

    def start(self, execution_name: str, payload: Mapping[str, Any]) -> StartedExecution:
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
        arn = self._state_machine_arn.replace(":stateMachine:", ":execution:", 1) + f":{execution_name}"
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
