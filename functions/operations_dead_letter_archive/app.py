"""Every dead-letter queue's consumer (ADR 0029): each DLQ message becomes an item of DeadLettersTable - a new
one, or merged into its event's item (attempts extended, one more cycle, status back to `dead`) - so the console
can list, filter and replay what SQS cannot browse. A redelivered message changes nothing. Metric
`DeadLetterArchived` (dimension job_type) is the final-failure signal; a log line carries event_id, fingerprint and
correlation_id. A message that cannot be stored comes back (partial batch failure) and stays in its DLQ."""

from __future__ import annotations

from datetime import UTC, datetime

from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from billing_core.config import BundleSettings
from billing_core.failures.arrivals import DeadLetterMessage, queue_name_of
from billing_core.observability import count, count_by, logger
from billing_core.triggers.sqs import sqs_handler
from billing_core.wiring import Wiring


class Settings(BundleSettings):
    dead_letters_table_name: str
    dead_letter_sources: str
    dead_letter_retention_days: int


wiring = Wiring(Settings)


def message_of(record: SQSRecord) -> DeadLetterMessage:
    attributes = record.raw_event.get("attributes") or {}
    sent = str(attributes.get("SentTimestamp") or "")
    values = {
        name: value.get("stringValue")
        for name, value in (record.raw_event.get("messageAttributes") or {}).items()
        if isinstance(value, dict) and isinstance(value.get("stringValue"), str)
    }
    return DeadLetterMessage(
        message_id=record.message_id,
        body=record.body or "",
        dead_letter_queue=queue_name_of(record.event_source_arn or ""),
        sent_at=datetime.fromtimestamp(int(sent) / 1000, UTC) if sent.isdigit() else datetime.now(UTC),
        message_group_id=attributes.get("MessageGroupId"),
        attributes=values,
    )


def record_handler(record: SQSRecord) -> None:
    arrival, item = wiring.dead_letter_archive().archive_message(message_of(record))
    envelope = arrival.envelope
    fields = {
        "event_id": envelope.event_id,
        "fingerprint": envelope.fingerprint,
        "correlation_id": envelope.correlation_id,
        "job_type": envelope.job_type,
        "origin": arrival.origin.value,
        "dead_letter_queue": arrival.dead_letter_queue,
    }
    if item is None:
        logger.info("dead letter already archived", extra=fields)
        return
    count_by("DeadLetterArchived", "job_type", envelope.job_type)
    count("JobDeadLettered")  # every job type in one series: JobDeadLetteredAlarm pages on the final failure
    logger.warning("dead letter archived", extra={**fields, "status": item.status.value, "cycles": item.cycles})


lambda_handler = sqs_handler(record_handler)
