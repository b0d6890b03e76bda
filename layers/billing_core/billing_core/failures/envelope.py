"""The failure envelope: what every dead-lettered item carries, so a person can see why it failed and replay it.

Our identity, never SQS's (redrive and replay give a message a new MessageId and enqueue time): `event_id` and
`original_enqueued_at` are fixed on the first failure and carried unchanged through any number of
DLQ -> replay -> DLQ cycles; `attempts` only grows. A replay sends `payload` as the message body with
`replay_attributes()`, and the consumer's next failure continues this envelope (`record_failure(prior=...)`)."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from billing_core.failures.classify import (
    FailureClass,
    classify,
    error_code_of,
    fingerprint,
    reason_of,
    trimmed_stack,
)
from billing_core.failures.policies import RetryPolicy

# The message attribute a replayed message carries its history in (the envelope without payload and stack).
ENVELOPE_ATTRIBUTE = "failure_envelope"
ENVELOPE_VERSION = 1


class AttemptRecord(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    attempt: int = Field(ge=1)
    at: AwareDatetime
    error_type: str
    error_code: str | None = None
    failure_class: FailureClass
    fingerprint: str
    reason: str


class FailureEnvelope(BaseModel):
    """One dead-lettered item. Field names are an API: the DLQ console, its CLI and the runbooks read them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    envelope_version: int = ENVELOPE_VERSION
    event_id: str
    original_enqueued_at: AwareDatetime
    job_id: str  # what the job was about, when the payload says (notice_id, event id); else the event id
    job_type: str
    source: str  # the queue's (stream's, schedule's) logical id in template.yaml
    correlation_id: str | None = None
    failed_at: AwareDatetime
    attempt: int = Field(ge=1)  # over every cycle
    max_attempts: int = Field(ge=1)  # per cycle: a replay gets the whole schedule again
    failure_class: FailureClass
    reason: str
    error_type: str
    error_code: str | None = None
    fingerprint: str
    stack: list[str] = Field(default_factory=list)
    payload: str  # the original message body, unchanged
    next_retry_at: AwareDatetime | None = None  # a dead letter is never retried by itself: null
    backoff_strategy: str
    attempts: list[AttemptRecord] = Field(default_factory=list)

    @property
    def cycles(self) -> int:
        """How many times this item reached a DLQ."""
        return len(self.attempts)

    def replay_attributes(self) -> dict[str, dict[str, str]]:
        """SQS message attributes for a replay of `payload`: the history without the payload and the stack."""
        history = self.model_dump_json(exclude={"payload", "stack"})
        return {ENVELOPE_ATTRIBUTE: {"DataType": "String", "StringValue": history}}

    def dead_letter_attributes(self) -> dict[str, dict[str, str]]:
        """SQS message attributes on the DLQ item: filterable without reading the body."""
        return {
            "job_type": {"DataType": "String", "StringValue": self.job_type},
            "fingerprint": {"DataType": "String", "StringValue": self.fingerprint},
            "event_id": {"DataType": "String", "StringValue": self.event_id},
        }


class PriorFailures(BaseModel):
    """What a replayed message carries from its last envelope (`replay_attributes`)."""

    model_config = ConfigDict(extra="ignore")

    event_id: str
    original_enqueued_at: AwareDatetime
    attempt: int = Field(ge=1)
    correlation_id: str | None = None
    attempts: list[AttemptRecord] = Field(default_factory=list)


def derived_event_id(job_type: str, message_id: str) -> str:
    """An event id for a message seen failing for the first time: stable across its receives (SQS keeps a
    message's id while it is only redelivered), so log lines of its retries and its envelope agree."""
    return "fail_" + hashlib.sha256(f"{job_type}:{message_id}".encode()).hexdigest()[:24]


def record_failure(
    *,
    error: BaseException,
    payload: str,
    job_type: str,
    job_id: str | None,
    source: str,
    policy: RetryPolicy,
    attempt_in_cycle: int,
    failed_at: datetime,
    message_id: str,
    enqueued_at: datetime,
    prior: PriorFailures | None = None,
    correlation_id: str | None = None,
) -> FailureEnvelope:
    """The envelope of a failure that dead-letters now: the prior history (if replayed) continued."""
    attempt = (prior.attempt if prior else 0) + max(attempt_in_cycle, 1)
    event_id = prior.event_id if prior else derived_event_id(job_type, message_id)
    failure_class = classify(error)
    record = AttemptRecord(
        attempt=attempt,
        at=failed_at,
        error_type=type(error).__name__,
        error_code=error_code_of(error),
        failure_class=failure_class,
        fingerprint=fingerprint(error),
        reason=reason_of(error, payload),
    )
    return FailureEnvelope(
        event_id=event_id,
        original_enqueued_at=prior.original_enqueued_at if prior else enqueued_at,
        job_id=job_id or event_id,
        job_type=job_type,
        source=source,
        correlation_id=correlation_id or (prior.correlation_id if prior else None),
        failed_at=failed_at,
        attempt=attempt,
        max_attempts=policy.max_attempts,
        failure_class=failure_class,
        reason=record.reason,
        error_type=record.error_type,
        error_code=record.error_code,
        fingerprint=record.fingerprint,
        stack=trimmed_stack(error),
        payload=payload,
        next_retry_at=None,
        backoff_strategy=policy.backoff_strategy,
        attempts=[*(prior.attempts if prior else []), record],
    )


def prior_from_attribute(value: str | None) -> PriorFailures | None:
    """The history a replayed message carries, or None (a first delivery, or an attribute we cannot read: the
    failure then starts a new history rather than failing the record a second time)."""
    if not value:
        return None
    try:
        return PriorFailures.model_validate_json(value)
    except ValueError:
        return None


def envelope_of_dead_letter(body: str) -> FailureEnvelope | None:
    """The envelope a DLQ item carries, or None for an item SQS's own redrive moved there (a bare message body:
    the safety net of ADR 0026) - which a console shows as "no envelope", with the body as its payload."""
    try:
        return FailureEnvelope.model_validate_json(body)
    except ValueError:
        return None


def as_log_fields(envelope: FailureEnvelope) -> dict[str, Any]:
    return envelope.model_dump(mode="json", exclude={"payload", "stack", "attempts"})
