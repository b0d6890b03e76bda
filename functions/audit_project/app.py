"""DynamoDB streams of the audited tables -> the append-only audit table (one entity event per change).
Partial batch failures are reported; a batch that keeps failing ends in AuditDeadLetterQueue."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from billing_core.adapters.dynamodb.audit_store import DynamoDBAuditStore
from billing_core.audit.project import AuditProjector
from billing_core.config import FunctionSettings
from billing_core.observability import logger, metrics, tracer


class Settings(FunctionSettings):
    audit_table_name: str
    subscriptions_table_name: str
    invoices_table_name: str
    orders_table_name: str
    price_book_table_name: str


@lru_cache(maxsize=1)
def projector() -> AuditProjector:
    settings = Settings.from_environment()
    return AuditProjector(
        DynamoDBAuditStore(settings.audit_table_name),
        {
            settings.subscriptions_table_name: "subscriptions",
            settings.invoices_table_name: "invoices",
            settings.orders_table_name: "orders",
            settings.price_book_table_name: "price_books",
        },
    )


def record_handler(record: DynamoDBRecord) -> None:
    projector().project(record)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    processor = BatchProcessor(event_type=EventType.DynamoDBStreams)
    response = process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
    return dict(response)
