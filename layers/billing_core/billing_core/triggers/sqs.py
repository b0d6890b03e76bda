"""SQS consumers: partial batch responses, records parsed into models.

A failed record goes back to the queue alone; after the queue's maxReceiveCount it moves to the DLQ
with its body intact, and the failure reason is logged with the message id.

A consumer given `failures` (ADR 0026) decides itself instead: a retryable failure before the policy's last
attempt changes the message's visibility to the backoff delay and comes back; a permanent one, or the last
attempt, sends a failure envelope to the DLQ and is acknowledged. maxReceiveCount then stays as a safety net.

On a FIFO queue (ADR 0030) a retry holds its message group: the failed record is hidden for its backoff delay, and
the records of its group after it in the batch are reported too and released at once (visibility 0) - SQS hands
out none of a group while one of its messages is in flight, so they come back after the failed one, in order;
other groups go on. A dead-lettered record goes to the FIFO DLQ under its own group id and is acknowledged, so its
group goes on."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
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
from billing_core.failures.classify import FailureClass, classify, fingerprint
from billing_core.failures.envelope import (
    ENVELOPE_ATTRIBUTE,
    as_log_fields,
    derived_event_id,
    prior_from_attribute,
    record_failure,
)
from billing_core.failures.policies import RetryPolicy
from billing_core.failures.ports import FailureChannel
from billing_core.observability import count, logger, metrics, traced
from billing_core.triggers.correlation import correlated_records, end_of_batch

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


@dataclass(frozen=True)
class FailureHandling:
    """How one consumer retries and dead-letters (ADR 0026). `source` is the queue's logical id; `job_id_field`
    names the payload field that says what the job was about (e.g. notice_id)."""

    job_type: str
    source: str
    policy: RetryPolicy
    channel: FailureChannel
    job_id_field: str | None = None
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    rng: random.Random = field(default_factory=random.Random)


def _attribute(record: SQSRecord, name: str) -> str | None:
    value = (record.raw_event.get("messageAttributes") or {}).get(name) or {}
    text = value.get("stringValue")
    return text if isinstance(text, str) else None


def _system_attribute(record: SQSRecord, name: str) -> str | None:
    value = (record.raw_event.get("attributes") or {}).get(name)
    return value if isinstance(value, str) and value else None


def _job_id(body: str, name: str | None) -> str | None:
    if name is None:
        return None
    try:
        document = json.loads(body)
    except ValueError:
        return None
    value = document.get(name) if isinstance(document, dict) else None
    return value if isinstance(value, str) and value else None


def handle_failure(record: SQSRecord, error: Exception, failures: FailureHandling) -> bool:
    """Delay a retry (True: the record is reported failed and comes back) or dead-letter it with its envelope
    (False: acknowledged). If the DLQ send itself fails, the record is reported failed: never lost."""
    return decide_failure(record, error, failures) is not None


def decide_failure(
    record: SQSRecord, error: Exception, failures: FailureHandling, *, message_group_id: str | None = None
) -> int | None:
    """None: dead-lettered with its envelope and acknowledged. Otherwise the record comes back: after the returned
    delay in seconds, or 0 when no delay could be set (after the queue's own visibility timeout)."""
    attempt_in_cycle = max(1, int(_system_attribute(record, "ApproximateReceiveCount") or "1"))
    prior = prior_from_attribute(_attribute(record, ENVELOPE_ATTRIBUTE))
    failure_class = classify(error)
    policy = failures.policy
    event_id = prior.event_id if prior else derived_event_id(failures.job_type, record.message_id)
    if failure_class is not FailureClass.PERMANENT and attempt_in_cycle < policy.max_attempts:
        delay_seconds = policy.delay_seconds(attempt_in_cycle, failures.rng)
        log = {
            "event_id": event_id,
            "job_type": failures.job_type,
            "attempt": attempt_in_cycle,
            "max_attempts": policy.max_attempts,
            "failure_class": failure_class.value,
            "fingerprint": fingerprint(error),
            "delay_seconds": delay_seconds,
        }
        try:
            failures.channel.delay(record.receipt_handle, delay_seconds)
        except BillingError as channel_error:  # adapters translate every provider error into one
            # It comes back after the queue's own visibility timeout instead. (No traceback: it chains the
            # record's own error, whose message may quote the payload.)
            logger.error("retry delay not set", extra={**log, "channel_error_code": channel_error.code})
            return 0
        logger.info("record will retry", extra=log)
        return delay_seconds
    sent_millis = _system_attribute(record, "SentTimestamp")
    now = failures.clock()
    envelope = record_failure(
        error=error,
        payload=record.body,
        job_type=failures.job_type,
        job_id=_job_id(record.body, failures.job_id_field),
        source=failures.source,
        policy=policy,
        attempt_in_cycle=attempt_in_cycle,
        failed_at=now,
        message_id=record.message_id,
        enqueued_at=datetime.fromtimestamp(int(sent_millis) / 1000, UTC) if sent_millis else now,
        prior=prior,
        correlation_id=_attribute(record, "correlation_id"),
    )
    try:
        failures.channel.dead_letter(envelope, message_group_id=message_group_id)
    except BillingError as channel_error:
        logger.error(
            "dead letter not sent: the record comes back",
            extra={**as_log_fields(envelope), "channel_error_code": channel_error.code},
        )
        return 0
    logger.warning("record dead-lettered", extra=as_log_fields(envelope))
    count("RecordDeadLettered")
    return None


def process_fifo_batch(
    event: dict[str, Any], handle: Callable[[SQSRecord], Any], failures: FailureHandling
) -> dict[str, Any]:
    """A FIFO batch with failure handling (ADR 0030). Records are handled in order; a record that will retry holds
    its group: every later record of its group in the batch is reported unhandled and released at once, and comes
    back after the failed one (which holds the group while it is in flight). Other groups are handled as usual."""
    held: set[str] = set()  # groups whose failed record will come back
    failed: list[str] = []
    for raw in event.get("Records") or []:
        record = SQSRecord(raw)
        group = _system_attribute(record, "MessageGroupId") or ""
        if group in held:
            failed.append(record.message_id)
            _release(record, failures)
            continue
        try:
            handle(record)
        except Exception as exc:  # noqa: BLE001 - every failure is decided by its class (ADR 0026)
            if decide_failure(record, exc, failures, message_group_id=group) is not None:
                held.add(group)
                failed.append(record.message_id)
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in failed]}


def _release(record: SQSRecord, failures: FailureHandling) -> None:
    """Visible again at once, but not handed out before the group's failed message: a FIFO group's messages are
    held back while one of them is in flight. (Hiding them for the failed one's delay instead would let them come
    back together with it, and an emulator that hands out a group's messages by visibility order breaks order.)"""
    try:
        failures.channel.delay(record.receipt_handle, 0)
    except BillingError as channel_error:
        # It comes back after the queue's own visibility timeout: later than the group's retry, never out of order
        # (the group stays locked while any of its messages is in flight).
        logger.error(
            "held record not released",
            extra={"message_id": record.message_id, "channel_error_code": channel_error.code},
        )


def process_sqs_batch(
    event: dict[str, Any],
    context: LambdaContext,
    record_handler: Callable[[SQSRecord], Any],
    *,
    fifo: bool = False,
    failures: FailureHandling | None = None,
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
            if failures is not None and not fifo and not handle_failure(record, exc, failures):
                return None
            raise

    if failures is not None and fifo:
        return process_fifo_batch(event, handle, failures)

    processor: BatchProcessor | SqsFifoPartialProcessor = (
        SqsFifoPartialProcessor()
        if fifo
        # With failure handling a batch whose every record failed is an ordinary answer (each was delayed or
        # dead-lettered on purpose), not a function error: the Errors alarm stays for real crashes.
        else BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=failures is None)
    )
    response = process_partial_response(event=event, record_handler=handle, processor=processor, context=context)
    return dict(response)


def sqs_handler(
    record_handler: Callable[[SQSRecord], Any],
    *,
    fifo: bool = False,
    before_batch: Callable[[LambdaContext], None] | None = None,
    failures: Callable[[], FailureHandling] | None = None,
) -> Callable[[dict[str, Any], LambdaContext], dict[str, Any]]:
    """The Lambda entry point of an SQS consumer. before_batch runs once per invocation (e.g. to register
    the Lambda context with the idempotency layer); failures is asked once per invocation for the consumer's
    failure handling (the composition root builds it once per cold start)."""

    @logger.inject_lambda_context
    @traced
    @metrics.log_metrics
    def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        if before_batch is not None:
            before_batch(context)
        try:
            return process_sqs_batch(
                event,
                context,
                correlated_records(record_handler),  # each record's correlation id (ADR 0031)
                fifo=fifo,
                failures=failures() if failures is not None else None,
            )
        finally:
            end_of_batch()

    return lambda_handler
