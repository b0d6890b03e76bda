"""One correlation id through every hop (ADR 0031): what each kind of trigger takes it from.

- API: API Gateway's request id (`http_handler`), answered as `X-Correlation-Id`; a verified provider event then
  takes the provider's event id (the webhook receiver), so the event's id is what follows it.
- SQS: the `correlation_id` message attribute every enqueue of ours sets (adapters/sqs.py).
- DynamoDB streams: the changed item's `last_correlation_id` (what the write that changed it recorded), else none.
- State machine tasks: the `correlation_id` field of the task's input (the starter puts it into the execution's
  input and the ASL hands it to every task).
- Schedules: the EventBridge event's id (one per scheduled run), or an invocation's own `correlation_id`.

Each sets the logger's correlation id, so every line logged while the message is handled carries it, and every
message sent meanwhile carries it on. Per record of a batch: a record without one clears the previous record's."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from billing_core.changes import ItemChange
from billing_core.observability import CORRELATION_ATTRIBUTE, CORRELATION_ID, logger

STORED_CORRELATION_FIELD = "last_correlation_id"


def _use(value: Any) -> None:
    """The correlation id of the lines that follow: `value` if it is one, else none (never the previous record's)."""
    logger.set_correlation_id(value if isinstance(value, str) and CORRELATION_ID.fullmatch(value) else None)


def of_sqs_record(record: SQSRecord) -> str | None:
    attribute = (record.raw_event.get("messageAttributes") or {}).get(CORRELATION_ATTRIBUTE) or {}
    value = attribute.get("stringValue")
    return value if isinstance(value, str) else None


def of_item_change(change: ItemChange) -> str | None:
    image = change.after if change.after is not None else change.before
    value = (image or {}).get(STORED_CORRELATION_FIELD)
    return value if isinstance(value, str) else None


def of_invocation(event: Any) -> str | None:
    if not isinstance(event, Mapping):
        return None
    value = event.get(CORRELATION_ATTRIBUTE) or event.get("id")
    return value if isinstance(value, str) else None


def correlated_records(handle: Callable[[SQSRecord], Any]) -> Callable[[SQSRecord], Any]:
    """An SQS record handler that first takes the record's correlation id. It is left set after the record, so the
    batch's failure handling of this record (logged after the handler raised) still carries it; the next record
    sets its own, and `end_of_batch()` clears it."""

    def handler(record: SQSRecord) -> Any:
        _use(of_sqs_record(record))
        return handle(record)

    return handler


def correlated_changes[ResultT](handle: Callable[[ItemChange], ResultT]) -> Callable[[ItemChange], ResultT]:
    """A stream change handler that first takes the changed item's stored correlation id."""

    def handler(change: ItemChange) -> ResultT:
        _use(of_item_change(change))
        return handle(change)

    return handler


def correlate_invocation(event: Any) -> None:
    """A schedule's or a state machine task's invocation: its correlation id for the whole invocation."""
    _use(of_invocation(event))


def end_of_batch() -> None:
    logger.set_correlation_id(None)
