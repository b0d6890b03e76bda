"""DynamoDB stream consumers: records turned into ItemChange, partial batch responses.

A record that fails is reported alone; Lambda retries the batch from the first reported failure, bisects
it, and after MaximumRetryAttempts sends the batch's metadata to the mapping's on-failure destination
(template.yaml). A record without what a change needs is a PermanentError (`malformed_record`).

A consumer given `failures` (ADR 0030) dead-letters a record that fails **permanently** itself, in our failure
envelope (payload: the stream record's JSON; source: the function's logical id), and acknowledges it, so a poison
record does not hold its shard for MaximumRetryAttempts; a retryable failure is reported as before and Lambda's
retries, bisection and on-failure destination stay the safety net. A consumer whose guarantee forbids skipping a
record (the audit projector, the ledger guard) is not given `failures`.

A consumer given `replay_failures` also takes SQS messages from its replay queue (ADR 0029): a dead-lettered record
replayed from the archive is its stream record's JSON, handled exactly as the stream would have delivered it, with
an SQS consumer's retries and envelope (ADR 0026) - a replay that fails again returns to the DLQ with its history
continued. The stream's own records keep the stream path above."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord, DynamoDBStreamEvent
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from billing_core.changes import ChangeKind, ItemChange
from billing_core.errors import BillingError, ValidationFailedError
from billing_core.failures.classify import FailureClass, classify
from billing_core.failures.envelope import as_log_fields, record_failure
from billing_core.failures.policies import STREAM_BACKOFF_STRATEGY
from billing_core.observability import count, logger, metrics, traced
from billing_core.triggers.correlation import correlated_changes, end_of_batch
from billing_core.triggers.sqs import FailureHandling, process_sqs_batch


def table_name_of(stream_arn: str) -> str:
    # arn:aws:dynamodb:<region>:<account>:table/<name>/stream/<label>
    try:
        return stream_arn.split(":table/", 1)[1].split("/stream/", 1)[0]
    except IndexError:
        raise ValidationFailedError(f"not a DynamoDB stream ARN: {stream_arn}", code="malformed_record") from None


def change_of(record: DynamoDBRecord) -> ItemChange:
    stream = record.dynamodb
    if stream is None or record.event_source_arn is None or record.event_name is None:
        raise ValidationFailedError("stream record without its change", code="malformed_record")
    return ItemChange(
        table_name=table_name_of(record.event_source_arn),
        kind=ChangeKind(record.event_name.name),
        keys=dict(stream.keys or {}),
        before=_image(stream.old_image),
        after=_image(stream.new_image),
        occurred_at=_when(stream.approximate_creation_date_time),
        sequence=str(stream.sequence_number),
    )


def _image(image: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return dict(image) if image else None


def _when(value: Any) -> datetime:
    """The change's time as the stream states it (Powertools hands over the epoch number as sent)."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    raise ValidationFailedError("stream record without ApproximateCreationDateTime", code="malformed_record")


def dead_letter_record(raw: Mapping[str, Any], error: BaseException, failures: FailureHandling) -> bool:
    """True: a permanent failure, now in the DLQ in its envelope (the record is acknowledged). False: the record is
    to be reported failed (retryable, or the envelope could not be sent): Lambda retries it."""
    if classify(error) is not FailureClass.PERMANENT:
        return False
    stream = raw.get("dynamodb") or {}
    created = stream.get("ApproximateCreationDateTime")
    now = failures.clock()
    envelope = record_failure(
        error=error,
        payload=json.dumps(raw, sort_keys=True, default=str),
        job_type=failures.job_type,
        job_id=None,
        source=failures.source,
        policy=failures.policy,
        attempt_in_cycle=1,  # a permanent failure is dead-lettered the first time it is seen
        failed_at=now,
        # The stream's own id of the change: the same on every delivery of the record, so a record dead-lettered
        # twice (Lambda redelivers records after a reported one) is one event_id.
        message_id=str(raw.get("eventID") or stream.get("SequenceNumber") or ""),
        enqueued_at=datetime.fromtimestamp(created, UTC) if isinstance(created, int | float) else now,
    ).model_copy(update={"backoff_strategy": STREAM_BACKOFF_STRATEGY})
    try:
        failures.channel.dead_letter(envelope)
    except BillingError as channel_error:
        logger.error(
            "dead letter not sent: the record is reported",
            extra={**as_log_fields(envelope), "channel_error_code": channel_error.code},
        )
        return False
    logger.warning("stream record dead-lettered", extra=as_log_fields(envelope))
    count("RecordDeadLettered")
    return True


def process_stream_batch(
    event: dict[str, Any],
    context: LambdaContext,
    handle: Callable[[ItemChange], Any],
    failures: FailureHandling | None = None,
) -> dict[str, Any]:
    def record_handler(record: DynamoDBRecord) -> Any:
        try:
            return handle(change_of(record))
        except Exception as exc:
            logger.warning(
                "stream record failed",
                extra={
                    "sequence_number": record.dynamodb.sequence_number if record.dynamodb else None,
                    "error_class": type(exc).__name__,
                    "error_code": exc.code if isinstance(exc, BillingError) else None,
                },
            )
            if failures is not None and dead_letter_record(record.raw_event, exc, failures):
                return None
            raise

    processor = BatchProcessor(event_type=EventType.DynamoDBStreams)
    return dict(
        process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
    )


def is_sqs_event(event: Mapping[str, Any]) -> bool:
    """True for SQS messages (a replay queue's), False for the stream's records."""
    records = event.get("Records")
    return (
        isinstance(records, list)
        and bool(records)
        and isinstance(records[0], dict)
        and (records[0].get("eventSource") == "aws:sqs")
    )


def stream_record_of(message: SQSRecord) -> DynamoDBRecord:
    """A replayed dead letter: the body is the stream record the consumer dead-lettered, as Lambda delivered it.
    Anything else did not come from our replay and is refused for good (it goes to the DLQ with its reason)."""
    try:
        raw = json.loads(message.body)
    except ValueError:
        raw = None
    if not (isinstance(raw, dict) and isinstance(raw.get("dynamodb"), dict) and raw.get("eventSourceARN")):
        raise ValidationFailedError("a replayed message must be a DynamoDB stream record", code="malformed_record")
    return DynamoDBRecord(raw)


def process_replayed_records(
    event: dict[str, Any],
    context: LambdaContext,
    handle_record: Callable[[DynamoDBRecord], Any],
    failures: FailureHandling | None,
) -> dict[str, Any]:
    """The replay queue's messages, each one stream record, with an SQS consumer's retries and dead letters."""
    return process_sqs_batch(
        event, context, lambda message: handle_record(stream_record_of(message)), failures=failures
    )


def stream_handler(
    handle: Callable[[ItemChange], Any],
    *,
    failures: Callable[[], FailureHandling] | None = None,
    replay_failures: Callable[[], FailureHandling] | None = None,
) -> Callable[[dict[str, Any], LambdaContext], dict[str, Any]]:
    """The Lambda entry point of a DynamoDB stream consumer; `failures` as in `sqs_handler` (ADR 0030);
    `replay_failures`: the retries and dead letters of its replay queue's messages (ADR 0029)."""

    @logger.inject_lambda_context
    @traced
    @metrics.log_metrics
    def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        try:
            if is_sqs_event(event):
                replayed = correlated_changes(handle)
                return process_replayed_records(
                    event,
                    context,
                    lambda record: replayed(change_of(record)),
                    replay_failures() if replay_failures is not None else None,
                )
            return process_stream_batch(
                event, context, correlated_changes(handle), failures() if failures is not None else None
            )
        finally:
            end_of_batch()

    return lambda_handler


def process_stream_group[ItemT](
    event: dict[str, Any],
    parse: Callable[[ItemChange], ItemT],
    handle: Callable[[list[ItemT]], Any],
    failures: FailureHandling | None = None,
) -> dict[str, Any]:
    """A consumer whose work is cheaper per group than per record (the usage aggregator: one transaction counts
    up to 10 documents). Each record is parsed alone: one that cannot be is reported alone. The records parsed
    are then handled in **one** call, which must be safe to repeat for any of them (it is all or nothing per
    group, and a record already handled is recognised); if it raises, every parsed record is reported. Lambda
    retries from the lowest reported sequence number, so records after a failed one come again and must be
    recognised as handled - which is why the group is handled even when a record before it failed.

    With `failures` (ADR 0030) a record refused permanently is dead-lettered instead of reported; a group that fails
    permanently is handled again record by record (safe: see above), so the one record at fault is dead-lettered
    and the others counted, instead of the whole group holding the shard."""
    failed: list[str] = []
    parsed: list[tuple[str, ItemT, Mapping[str, Any]]] = []
    for record in DynamoDBStreamEvent(event).records:
        sequence = record.dynamodb.sequence_number if record.dynamodb else None
        try:
            item = parse(change_of(record))
        except Exception as exc:
            _log_failure("stream record refused", sequence, exc)
            if failures is not None and dead_letter_record(record.raw_event, exc, failures):
                continue
            if sequence is None:
                raise  # nothing to report it by: the whole batch fails
            failed.append(sequence)
            continue
        if sequence is None:
            raise ValidationFailedError("stream record without a sequence number", code="malformed_record")
        parsed.append((sequence, item, record.raw_event))
    if parsed:
        try:
            handle([item for _, item, _ in parsed])
        except Exception as exc:  # noqa: BLE001 - whatever failed, the answer is the same: these records again
            _log_failure("stream group failed", parsed[0][0], exc)
            if failures is not None and classify(exc) is FailureClass.PERMANENT:
                failed += _one_by_one(parsed, handle, failures)
            else:
                failed += [sequence for sequence, _, _ in parsed]
    return {"batchItemFailures": [{"itemIdentifier": sequence} for sequence in failed]}


def _one_by_one[ItemT](
    parsed: list[tuple[str, ItemT, Mapping[str, Any]]],
    handle: Callable[[list[ItemT]], Any],
    failures: FailureHandling,
) -> list[str]:
    """The sequence numbers still to report after handling each record of a permanently failed group alone."""
    failed: list[str] = []
    for sequence, item, raw in parsed:
        try:
            handle([item])
        except Exception as exc:  # noqa: BLE001 - decided by its class, as every failure
            _log_failure("stream record failed alone", sequence, exc)
            if not dead_letter_record(raw, exc, failures):
                failed.append(sequence)
    return failed


def _log_failure(message: str, sequence: str | None, exc: Exception) -> None:
    logger.warning(
        message,
        extra={
            "sequence_number": sequence,
            "error_class": type(exc).__name__,
            "error_code": exc.code if isinstance(exc, BillingError) else None,
            "error_message": exc.message if isinstance(exc, BillingError) else None,
        },
    )


def group_stream_handler[ItemT](
    parse: Callable[[ItemChange], ItemT],
    handle: Callable[[list[ItemT]], Any],
    *,
    failures: Callable[[], FailureHandling] | None = None,
    replay_failures: Callable[[], FailureHandling] | None = None,
) -> Callable[[dict[str, Any], LambdaContext], dict[str, Any]]:
    """The Lambda entry point of a DynamoDB stream consumer that handles its records as one group
    (`process_stream_group`); the event source mapping reports batch item failures. A replayed record
    (`replay_failures`, ADR 0029) is a group of one."""

    @logger.inject_lambda_context
    @traced
    @metrics.log_metrics
    def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        # One call handles the whole group: each record's parse runs under its own item's correlation id.
        try:
            if is_sqs_event(event):
                parse_one = correlated_changes(parse)
                return process_replayed_records(
                    event,
                    context,
                    lambda record: handle([parse_one(change_of(record))]),
                    replay_failures() if replay_failures is not None else None,
                )
            return process_stream_group(
                event, correlated_changes(parse), handle, failures() if failures is not None else None
            )
        finally:
            end_of_batch()

    return lambda_handler
