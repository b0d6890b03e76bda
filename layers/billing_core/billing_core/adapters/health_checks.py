"""HealthCheck adapters: a DynamoDB table answers DescribeTable, an SQS queue GetQueueAttributes, a state
machine DescribeStateMachine. Each is named by its logical id; the physical name stays inside the adapter, and
an AWS refusal leaves it only as its error code."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError

from billing_core.adapters.aws import client, error_code
from billing_core.operations.model import BackendUnavailable


def _asking(call: Any) -> None:
    try:
        call()
    except ClientError as exc:
        raise BackendUnavailable(error_code(exc) or "ClientError") from exc
    except BotoCoreError as exc:  # no answer at all: connection, timeout, endpoint
        raise BackendUnavailable(type(exc).__name__) from exc


@dataclass(frozen=True)
class DynamoDBTableCheck:
    name: str
    table_name: str
    dynamodb: Any = None
    kind: Literal["table"] = "table"

    def __call__(self) -> None:
        dynamodb = self.dynamodb or client("dynamodb")
        _asking(lambda: dynamodb.describe_table(TableName=self.table_name))


@dataclass(frozen=True)
class SqsQueueCheck:
    name: str
    queue_url: str
    sqs: Any = None
    kind: Literal["queue"] = "queue"

    def __call__(self) -> None:
        sqs = self.sqs or client("sqs")
        _asking(lambda: sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"]))


@dataclass(frozen=True)
class StateMachineCheck:
    name: str
    state_machine_arn: str
    stepfunctions: Any = None
    kind: Literal["state_machine"] = "state_machine"

    def __call__(self) -> None:
        stepfunctions = self.stepfunctions or client("stepfunctions")
        _asking(lambda: stepfunctions.describe_state_machine(stateMachineArn=self.state_machine_arn))
