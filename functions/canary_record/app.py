"""SQS consumer: records each canary probe once in DynamoDB; reports partial batch failures."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from billing_core.adapters.dynamodb.canary_store import DynamoDBProbeStore
from billing_core.config import FunctionSettings
from billing_core.observability import logger, metrics, tracer
from billing_core.operations.canary import CanaryService
from billing_core.operations.models import Probe
from billing_core.triggers.sqs import parse_record, process_sqs_batch


class Settings(FunctionSettings):
    canary_table_name: str


@lru_cache(maxsize=1)
def service() -> CanaryService:
    return CanaryService(store=DynamoDBProbeStore(Settings.from_environment().canary_table_name))


def record_handler(record: SQSRecord) -> None:
    outcome = service().record(parse_record(record, Probe))
    metrics.add_metric(
        name="CanaryProbeRecorded" if outcome.newly_recorded else "CanaryProbeDuplicate",
        unit=MetricUnit.Count,
        value=1,
    )


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return process_sqs_batch(event, context, record_handler)
