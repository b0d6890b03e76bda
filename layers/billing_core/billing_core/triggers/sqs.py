"""SQS consumers: partial batch responses, records parsed into models.

A failed record goes back to the queue alone; after the queue's maxReceiveCount it moves to the DLQ
with its body intact. The failure reason is logged with the message id (the Operability issue adds a
failure envelope)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    SqsFifoPartialProcessor,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ValidationError

from billing_core.errors import BillingError, PermanentError
from billing_core.observability import logger, metrics, traced

ModelT = TypeVar("ModelT", bound=BaseModel)


class MalformedMessageError(PermanentError):
    code = "malformed_message"


def parse_record[ModelT: BaseModel](record: SQSRecord, model: type[ModelT]) -> ModelT:
    try:
        return model.model_validate_json(record.body)
    except ValidationError as exc:
        raise MalformedMessageError(
            f"message {record.message_id} does not match {model.__name__}",
            details={"problems": [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]},
        ) from exc


def process_sqs_batch(
    event: dict[str, Any],
    context: LambdaContext,
    record_handler: Callable[[SQSRecord], Any],
    *,
    fifo: bool = False,
) -> dict[str, Any]:
    def handle(record: SQSRecord) -> Any:
        try:
            return record_handler(record)
        except Exception as exc:
            # Every failure is logged with its message id, whatever raised it (ours, Powertools', boto's), and a
            # refused document with its problems (field paths and rules, never the values): the reason a message
            # that reaches the DLQ was refused.
            problems = exc.details.get("problems") if isinstance(exc, BillingError) else None
            logger.warning(
                "record failed",
                extra={
                    "message_id": record.message_id,
                    "error_class": type(exc).__name__,
                    "error_code": exc.code if isinstance(exc, BillingError) else None,
                    **({"problems": problems} if problems else {}),
                },
            )
            raise

    processor: BatchProcessor | SqsFifoPartialProcessor = (
        SqsFifoPartialProcessor() if fifo else BatchProcessor(event_type=EventType.SQS)
    )
    response = process_partial_response(event=event, record_handler=handle, processor=processor, context=context)
    return dict(response)


def sqs_handler(
    record_handler: Callable[[SQSRecord], Any],
    *,
    fifo: bool = False,
    before_batch: Callable[[LambdaContext], None] | None = None,
) -> Callable[[dict[str, Any], LambdaContext], dict[str, Any]]:
    """The Lambda entry point of an SQS consumer. before_batch runs once per invocation (e.g. to register
    the Lambda context with the idempotency layer)."""

    @logger.inject_lambda_context
    @traced
    @metrics.log_metrics
    def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        if before_batch is not None:
            before_batch(context)
        return process_sqs_batch(event, context, record_handler, fifo=fifo)

    return lambda_handler
