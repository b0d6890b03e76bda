"""What a dead-letter queue's message is (ADR 0029), read into a failure envelope the archive can store.

Four shapes reach our DLQs:
(a) our FailureEnvelope JSON, dead-lettered by a consumer (ADR 0026);
(b) Lambda's on-failure destination record (`requestContext` + `responseContext`): an asynchronous invocation's
    (a schedule's target) carries the event as `requestPayload` and can be replayed by invoking the function again;
    a stream batch's (`DDBStreamBatchInfo`) names a shard and a sequence range, not the records: not replayable by
    resend (the runbook says what to do);
(c) an event EventBridge could not deliver (a schedule's target failure, a Step Functions status change), with
    EventBridge's RULE_ARN / TARGET_ARN / ERROR_CODE message attributes;
(d) anything else: a body SQS's own redrive moved after maxReceiveCount ("no envelope - moved by redrive").

Which job a DLQ holds and where its items replay comes from one mapping, `DEAD_LETTER_SOURCES` (built by the
template): DLQ queue name -> job type, source (the queue's logical id) and replay target."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from billing_core.errors import ConfigurationError
from billing_core.failures.classify import FailureClass, normalise, scrub
from billing_core.failures.dead_letters import (
    DeadLetterArrival,
    EnvelopeOrigin,
    LambdaTarget,
    ReplayTarget,
    SqsTarget,
)
from billing_core.failures.envelope import (
    ENVELOPE_ATTRIBUTE,
    AttemptRecord,
    FailureEnvelope,
    derived_event_id,
    envelope_of_dead_letter,
    prior_from_attribute,
)

NO_ENVELOPE_REASON = "no envelope (moved by SQS redrive)"
STREAM_BATCH_REASON = (
    "a stream batch's failure record names its shard and sequence range, not its records: replay: see runbook "
    "(docs/runbooks/dlq-replay.md, stream consumers)"
)
UNMAPPED_REASON = "this dead-letter queue is not in DEAD_LETTER_SOURCES: nothing says where to replay it"
NOT_REPLAYED_BACKOFF = "none (dead-lettered by AWS)"


class SqsReplay(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["sqs"]
    queue: str = Field(min_length=1)


class LambdaReplay(BaseModel):
    """Asynchronous invocations dead-lettered here may be replayed to these functions (by name) and no others."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["lambda"]
    functions: list[str] = Field(min_length=1)


class DeadLetterSource(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    job_type: str = Field(min_length=1)
    source: str = Field(min_length=1)
    replay: SqsReplay | LambdaReplay | None = None
    why_not: str | None = None  # why its items cannot be replayed by resend (replay absent)


def parse_sources(text: str | None) -> dict[str, DeadLetterSource]:
    """`DEAD_LETTER_SOURCES`: a JSON object, DLQ queue name -> DeadLetterSource."""
    if not text:
        raise ConfigurationError("DEAD_LETTER_SOURCES is not set")
    try:
        raw = json.loads(text)
        if not isinstance(raw, dict):
            raise ValueError("DEAD_LETTER_SOURCES must be a JSON object")
        return {name: DeadLetterSource.model_validate(entry) for name, entry in raw.items()}
    except (ValueError, ValidationError) as exc:
        raise ConfigurationError(f"DEAD_LETTER_SOURCES is not valid: {exc}") from exc


def queue_name_of(arn: str) -> str:
    return arn.rsplit(":", 1)[-1]


def function_name_of(arn: str | None) -> str | None:
    """arn:aws:lambda:<region>:<account>:function:<name>[:<qualifier>] -> name."""
    if not arn:
        return None
    parts = arn.split(":")
    if len(parts) >= 7 and parts[5] == "function":
        return parts[6]
    return None


class DeadLetterMessage(BaseModel):
    """The parts of an SQS record the archiver reads (no SQS system attribute is an identity, ADR 0026)."""

    model_config = ConfigDict(frozen=True)

    message_id: str
    body: str
    dead_letter_queue: str
    sent_at: datetime  # SentTimestamp: in this DLQ (a redrive keeps the source's on standard queues)
    message_group_id: str | None = None
    attributes: dict[str, str] = Field(default_factory=dict)  # message attributes with a string value


def _fingerprint(*parts: str) -> str:
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def _parse_time(value: Any, default: datetime) -> datetime:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return default
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return default


def arrival_of(message: DeadLetterMessage, sources: dict[str, DeadLetterSource], *, now: datetime) -> DeadLetterArrival:
    """The arrival a DLQ message is: never raises for its body (anything unknown is shape (d))."""
    source = sources.get(message.dead_letter_queue)
    job_type = source.job_type if source else "unknown"
    source_name = source.source if source else message.dead_letter_queue
    envelope = envelope_of_dead_letter(message.body)
    if envelope is not None:
        replay, why_not = _sqs_replay(source, message)
        return DeadLetterArrival(
            envelope=envelope,
            origin=EnvelopeOrigin.ENVELOPE,
            dead_letter_queue=message.dead_letter_queue,
            message_id=message.message_id,
            replay=replay,
            not_replayable_reason=why_not,
        )
    document = _json_object(message.body)
    if (
        document is not None
        and isinstance(document.get("requestContext"), dict)
        and ("responseContext" in document or "DDBStreamBatchInfo" in document)
    ):
        return _lambda_on_failure(message, document, source, job_type, source_name, now)
    if document is not None and {"detail-type", "source", "detail"} <= set(document):
        return _eventbridge(message, document, source, job_type, now)
    return _redriven(message, source, job_type, source_name, now)


def _json_object(body: str) -> dict[str, Any] | None:
    try:
        document = json.loads(body)
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


def _sqs_replay(source: DeadLetterSource | None, message: DeadLetterMessage) -> tuple[ReplayTarget | None, str | None]:
    if source is None:
        return None, UNMAPPED_REASON
    if isinstance(source.replay, SqsReplay):
        return SqsTarget(queue=source.replay.queue, message_group_id=message.message_group_id), None
    return None, source.why_not or "its consumer cannot be sent this message again (no replay target)"


def _lambda_replay(source: DeadLetterSource | None, function_arn: str | None) -> tuple[ReplayTarget | None, str | None]:
    name = function_name_of(function_arn)
    if source is None:
        return None, UNMAPPED_REASON
    if isinstance(source.replay, LambdaReplay) and name is not None:
        # Only a function the template lists for this DLQ (its role may invoke those and no others).
        for allowed in source.replay.functions:
            if name == allowed or name == function_name_of(allowed):
                return LambdaTarget(function=name), None
        return None, f"function {name} is not a replay target of this dead-letter queue"
    return None, source.why_not or "no function to invoke again is known for this item"


def _synthesised(
    *,
    event_id: str,
    job_type: str,
    source: str,
    enqueued_at: datetime,
    now: datetime,
    attempt: int,
    error_type: str,
    reason: str,
    location: str,
    payload: str,
    correlation_id: str | None,
    failure_class: FailureClass = FailureClass.RETRYABLE,
    prior_attempts: list[AttemptRecord] | None = None,
) -> FailureEnvelope:
    """An envelope for a dead letter AWS wrote: our identity derived from it, the reason as AWS gave it."""
    reason = scrub(reason, payload)
    fingerprint = _fingerprint(error_type, normalise(reason), location)
    record = AttemptRecord(
        attempt=attempt,
        at=now,
        error_type=error_type,
        failure_class=failure_class,
        fingerprint=fingerprint,
        reason=reason,
    )
    attempts = [*(prior_attempts or []), record]
    return FailureEnvelope(
        event_id=event_id,
        original_enqueued_at=enqueued_at,
        job_id=event_id,
        job_type=job_type,
        source=source,
        correlation_id=correlation_id,
        failed_at=now,
        attempt=attempt,
        max_attempts=max(attempt, 1),
        failure_class=failure_class,
        reason=reason,
        error_type=error_type,
        fingerprint=fingerprint,
        payload=payload,
        backoff_strategy=NOT_REPLAYED_BACKOFF,
        attempts=attempts,
    )


def _lambda_on_failure(
    message: DeadLetterMessage,
    document: dict[str, Any],
    source: DeadLetterSource | None,
    job_type: str,
    source_name: str,
    now: datetime,
) -> DeadLetterArrival:
    request = document["requestContext"]
    response = document.get("responseContext") or {}
    response_payload = document.get("responsePayload")
    function_arn = request.get("functionArn") if isinstance(request.get("functionArn"), str) else None
    batch = document.get("DDBStreamBatchInfo") or document.get("KinesisBatchInfo")
    condition = str(request.get("condition") or "Unknown")
    if isinstance(response_payload, dict) and response_payload.get("errorType"):
        error_type = str(response_payload["errorType"])
        reason = str(response_payload.get("errorMessage") or condition)
    else:
        error_type = str(response.get("functionError") or condition)
        reason = f"Lambda gave up: {condition}"
    has_request = "requestPayload" in document and batch is None
    payload = json.dumps(document["requestPayload"], separators=(",", ":")) if has_request else message.body
    replay: ReplayTarget | None
    why_not: str | None
    if isinstance(batch, dict):
        enqueued_at = _parse_time(batch.get("approximateArrivalOfFirstRecord"), message.sent_at)
        replay, why_not = None, STREAM_BATCH_REASON
    else:
        enqueued_at = _parse_time(document.get("timestamp"), message.sent_at)
        replay, why_not = _lambda_replay(source, function_arn) if has_request else (None, "no event in the record")
    attempt = (
        int(request.get("approximateInvokeCount") or 1)
        if str(request.get("approximateInvokeCount") or "1").isdigit()
        else 1
    )
    envelope = _synthesised(
        event_id=derived_event_id(job_type, message.message_id),
        job_type=job_type,
        source=source_name,
        enqueued_at=enqueued_at,
        now=now,
        attempt=max(attempt, 1),
        error_type=error_type,
        reason=reason,
        location=function_name_of(function_arn) or "lambda",
        payload=payload,
        correlation_id=str(request["requestId"]) if request.get("requestId") else None,
    )
    return DeadLetterArrival(
        envelope=envelope,
        origin=EnvelopeOrigin.LAMBDA_ON_FAILURE,
        dead_letter_queue=message.dead_letter_queue,
        message_id=message.message_id,
        replay=replay,
        not_replayable_reason=why_not,
    )


def _eventbridge(
    message: DeadLetterMessage, document: dict[str, Any], source: DeadLetterSource | None, job_type: str, now: datetime
) -> DeadLetterArrival:
    attributes = message.attributes
    found = document.get("detail")
    detail: dict[str, Any] = found if isinstance(found, dict) else {}
    event_source, detail_type = str(document["source"]), str(document["detail-type"])
    if attributes.get("ERROR_CODE"):
        error_type = attributes["ERROR_CODE"]
        reason = attributes.get("ERROR_MESSAGE") or f"EventBridge could not deliver {detail_type}"
    elif detail.get("status"):  # e.g. Step Functions "Execution Status Change": FAILED, TIMED_OUT, ABORTED
        error_type = str(detail.get("error") or detail["status"])
        reason = f"{detail_type}: {detail['status']}" + (f": {detail['cause']}" if detail.get("cause") else "")
    else:
        error_type, reason = "Undelivered", f"EventBridge could not deliver {detail_type}"
    replay, why_not = _lambda_replay(source, attributes.get("TARGET_ARN"))
    if replay is None and not attributes.get("TARGET_ARN"):
        why_not = "the event names no target to deliver it to again"
    stable = str(document.get("id") or message.message_id)
    envelope = _synthesised(
        event_id=derived_event_id(job_type, stable),
        job_type=job_type,
        source=event_source,
        enqueued_at=_parse_time(document.get("time"), message.sent_at),
        now=now,
        attempt=int(attributes["RETRY_ATTEMPTS"]) + 1 if attributes.get("RETRY_ATTEMPTS", "").isdigit() else 1,
        error_type=error_type,
        reason=reason,
        location=f"{event_source}:{detail_type}",
        payload=message.body,
        correlation_id=str(document["id"]) if document.get("id") else None,
    )
    return DeadLetterArrival(
        envelope=envelope,
        origin=EnvelopeOrigin.EVENTBRIDGE,
        dead_letter_queue=message.dead_letter_queue,
        message_id=message.message_id,
        replay=replay,
        not_replayable_reason=why_not,
    )


def _redriven(
    message: DeadLetterMessage, source: DeadLetterSource | None, job_type: str, source_name: str, now: datetime
) -> DeadLetterArrival:
    # A replayed message that SQS redrove again keeps its message attributes: its history continues.
    prior = prior_from_attribute(message.attributes.get(ENVELOPE_ATTRIBUTE))
    replay, why_not = _sqs_replay(source, message)
    envelope = _synthesised(
        event_id=prior.event_id if prior else derived_event_id(job_type, message.message_id),
        job_type=job_type,
        source=source_name,
        enqueued_at=prior.original_enqueued_at if prior else message.sent_at,
        now=now,
        attempt=prior.attempt + 1 if prior else 1,
        error_type="NoEnvelope",
        reason=NO_ENVELOPE_REASON,
        location=source_name,
        payload=message.body,
        correlation_id=(prior.correlation_id if prior else None) or message.attributes.get("correlation_id"),
        prior_attempts=list(prior.attempts) if prior else None,
    )
    return DeadLetterArrival(
        envelope=envelope,
        origin=EnvelopeOrigin.REDRIVE,
        dead_letter_queue=message.dead_letter_queue,
        message_id=message.message_id,
        replay=replay,
        not_replayable_reason=why_not,
    )
