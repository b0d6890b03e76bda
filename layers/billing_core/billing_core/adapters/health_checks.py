"""HealthCheck adapters: a DynamoDB table answers DescribeTable, an SQS queue GetQueueAttributes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from billing_core.adapters.aws import client


@dataclass(frozen=True)
class DynamoDBTableCheck:
    table_name: str
    dynamodb: Any = None

    @property
    def name(self) -> str:
        return f"dynamodb:{self.table_name}"

    def __call__(self) -> None:
        (self.dynamodb or client("dynamodb")).describe_table(TableName=self.table_name)


@dataclass(frozen=True)
class SqsQueueCheck:
    queue_url: str
    sqs: Any = None

    @property
    def name(self) -> str:
        return f"sqs:{self.queue_url.rstrip('/').rsplit('/', 1)[-1]}"

    def __call__(self) -> None:
        (self.sqs or client("sqs")).get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])
