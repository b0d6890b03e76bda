"""Stream record -> entity event -> audit table. Idempotent: a redelivered record (Lambda retries a
stream batch from its first failure) maps to the same key and is not written again."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord

from billing_core.audit.model import EntityEvent, entity_event
from billing_core.errors import ValidationFailedError
from billing_core.observability import metrics


class AuditLog(Protocol):
    def append(self, event: EntityEvent) -> bool: ...


def table_name_of(stream_arn: str) -> str:
    # arn:aws:dynamodb:<region>:<account>:table/<name>/stream/<label>
    try:
        return stream_arn.split(":table/", 1)[1].split("/stream/", 1)[0]
    except IndexError:
        raise ValidationFailedError(f"not a DynamoDB stream ARN: {stream_arn}", code="malformed_record") from None


class AuditProjector:
    def __init__(self, log: AuditLog, table_kinds: Mapping[str, str]):
        """table_kinds: physical table name -> 'subscriptions' | 'invoices'."""
        self._log = log
        self._table_kinds = dict(table_kinds)

    def project(self, record: DynamoDBRecord) -> bool:
        stream = record.dynamodb
        if stream is None or record.event_source_arn is None or record.event_name is None:
            raise ValidationFailedError("stream record without its change", code="malformed_record")
        kind = self._table_kinds.get(table_name_of(record.event_source_arn))
        if kind is None:
            raise ValidationFailedError(
                f"stream of an unaudited table: {record.event_source_arn}", code="unknown_table"
            )
        occurred_at = _when(stream.approximate_creation_date_time)
        event = entity_event(
            table_kind=kind,
            event_name=record.event_name.name,
            keys=dict(stream.keys or {}),
            before=_image(stream.old_image),
            after=_image(stream.new_image),
            occurred_at=occurred_at,
            sequence=str(stream.sequence_number),
        )
        if event is None:
            return False
        written = self._log.append(event)
        metrics.add_metric(
            name="AuditEventRecorded" if written else "AuditEventDuplicate", unit=MetricUnit.Count, value=1
        )
        return written


def _image(image: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return dict(image) if image else None


def _when(value: Any) -> datetime:
    """The change's time as the stream states it (Powertools hands over the epoch number as sent)."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    raise ValidationFailedError("stream record without ApproximateCreationDateTime", code="malformed_record")
