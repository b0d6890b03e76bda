"""Dead letters archived to a queryable store (ADR 0029): the item a DLQ message becomes, how a later dead letter
of the same event merges into it, and what can be replayed where.

SQS cannot be browsed or filtered, so every dead-letter queue is drained into DeadLettersTable by the archiver;
the console lists, shows, replays and discards those items. One item per failure envelope `event_id` (stable
across DLQ -> replay -> DLQ cycles): a later dead letter of the same event updates the same item - status back to
`dead`, `attempts` extended (never shortened), one more cycle - and a redelivered archive message (the same
arrival) changes nothing. Pure: no AWS."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from billing_core.failures.envelope import AttemptRecord, FailureEnvelope

DEFAULT_RETENTION_DAYS = 90
LIST_LIMIT_MAX = 100


class DeadLetterStatus(StrEnum):
    DEAD = "dead"  # waiting for a person
    REPLAYING = "replaying"  # a replay claimed it and is sending it (a conditional record, before the send)
    REPLAYED = "replayed"  # re-sent to its consumer; if it fails again it comes back as dead
    DISCARDED = "discarded"  # a person decided it needs nothing more (with a reason)


class EnvelopeOrigin(StrEnum):
    """What the DLQ message was: it decides how much of the envelope is ours and how it can be replayed."""

    ENVELOPE = "envelope"  # our FailureEnvelope, dead-lettered by the consumer (ADR 0026)
    LAMBDA_ON_FAILURE = "lambda_on_failure"  # Lambda's on-failure destination record (async invoke, stream batch)
    EVENTBRIDGE = "eventbridge"  # an event EventBridge (a schedule) could not deliver
    REDRIVE = "redrive"  # a bare body SQS moved after maxReceiveCount: no envelope


class SqsTarget(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["sqs"] = "sqs"
    queue: str  # the queue's name (its URL is looked up by name: the name is what the template can pass compactly)
    message_group_id: str | None = None  # FIFO: the group the message was in


class LambdaTarget(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["lambda"] = "lambda"
    function: str  # the function's name: invoked asynchronously with the payload as its event


ReplayTarget = SqsTarget | LambdaTarget


class ReplayResult(StrEnum):
    SENT = "sent"
    SEND_FAILED = "send_failed"
    # The replayer stopped between its claim and its outcome (killed, timed out): whether it sent is unknown. A
    # later replay takes the item over once the claim is older than any replayer can run (REPLAY_CLAIM_LEASE).
    ABANDONED = "abandoned"


class ReplayRecord(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    replay_id: str
    by: str  # the operator's actor (user:<name>), or a bulk worker's
    at: AwareDatetime
    cycle: int = Field(ge=1)  # the cycle this replay was of
    result: ReplayResult | None = None  # None while the send is in flight (status replaying)


class DeadLetterArrival(BaseModel):
    """One DLQ message, understood: what the archiver stores (a new item, or a merge into the event's item)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    envelope: FailureEnvelope
    origin: EnvelopeOrigin
    dead_letter_queue: str  # the DLQ's name
    message_id: str  # the DLQ message's id: with the attempt, the arrival's identity
    replay: ReplayTarget | None
    not_replayable_reason: str | None = None

    @property
    def arrival_key(self) -> str:
        """A redelivered archive message has the same key and changes nothing. An envelope's last attempt number
        names its cycle (attempts only grow); a bare message has one attempt, its DLQ message id names it."""
        if self.origin is EnvelopeOrigin.ENVELOPE:
            return f"attempt:{self.envelope.attempt}"
        return f"message:{self.message_id}"


class DeadLetterItem(BaseModel):
    """The archived item. `id` is the envelope's event_id; `version` guards every write (read, decide, write)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    status: DeadLetterStatus
    envelope: FailureEnvelope
    origin: EnvelopeOrigin
    dead_letter_queue: str
    replay: ReplayTarget | None
    not_replayable_reason: str | None = None
    cycles: int = Field(ge=1)  # how many times the event reached a DLQ
    arrival_keys: tuple[str, ...] = ()  # the arrivals merged (bounded by cycles)
    replays: tuple[ReplayRecord, ...] = ()
    discarded_by: str | None = None
    discarded_at: AwareDatetime | None = None
    discard_reason: str | None = None
    archived_at: AwareDatetime
    expires_at: AwareDatetime
    version: int = Field(ge=1)

    @property
    def replayable(self) -> bool:
        return self.replay is not None

    @property
    def current_replay(self) -> ReplayRecord | None:
        return self.replays[-1] if self.replays and self.replays[-1].result is None else None


def expires_at_for(envelope: FailureEnvelope, retention_days: int) -> datetime:
    """Retention counts from the original enqueue, as SQS's does on a standard queue, across every cycle."""
    return envelope.original_enqueued_at + timedelta(days=retention_days)


def merged_attempts(
    old: tuple[AttemptRecord, ...] | list[AttemptRecord], new: list[AttemptRecord]
) -> list[AttemptRecord]:
    """Every attempt either side knows, by attempt number, in order: the history never shortens, even when an
    arrival carries less of it than the item (an envelope rebuilt without the attribute, a bare redrive)."""
    by_number = {record.attempt: record for record in old}
    for record in new:
        by_number.setdefault(record.attempt, record)
    return [by_number[number] for number in sorted(by_number)]


def archive(
    stored: DeadLetterItem | None, arrival: DeadLetterArrival, *, now: datetime, retention_days: int
) -> DeadLetterItem | None:
    """The item after this arrival, or None when it changes nothing (an arrival already merged).

    Identity (`id`, `original_enqueued_at`) is the first arrival's; a later one brings the latest failure (reason,
    fingerprint, payload as re-sent), extends `attempts`, counts a cycle, and puts the item back to `dead` - also
    from `replaying` (the replayed message failed before the replay was recorded as sent) and `replayed`."""
    if stored is None:
        return DeadLetterItem(
            id=arrival.envelope.event_id,
            status=DeadLetterStatus.DEAD,
            envelope=arrival.envelope,
            origin=arrival.origin,
            dead_letter_queue=arrival.dead_letter_queue,
            replay=arrival.replay,
            not_replayable_reason=arrival.not_replayable_reason,
            cycles=1,
            arrival_keys=(arrival.arrival_key,),
            archived_at=now,
            expires_at=expires_at_for(arrival.envelope, retention_days),
            version=1,
        )
    if arrival.arrival_key in stored.arrival_keys:
        return None
    if arrival.origin is EnvelopeOrigin.ENVELOPE and stored.envelope.attempt >= arrival.envelope.attempt:
        return None  # an older envelope arriving late (a redelivery after a newer cycle): nothing new
    attempts = merged_attempts(stored.envelope.attempts, list(arrival.envelope.attempts))
    envelope = arrival.envelope.model_copy(
        update={
            "event_id": stored.envelope.event_id,
            "original_enqueued_at": stored.envelope.original_enqueued_at,
            "correlation_id": arrival.envelope.correlation_id or stored.envelope.correlation_id,
            "attempt": max(arrival.envelope.attempt, stored.envelope.attempt + 1, attempts[-1].attempt),
            "attempts": attempts,
        }
    )
    return stored.model_copy(
        update={
            "status": DeadLetterStatus.DEAD,
            "envelope": envelope,
            "origin": arrival.origin,
            "dead_letter_queue": arrival.dead_letter_queue,
            # a replayed item came back through the same consumer: keep where it replays unless this arrival knows
            "replay": arrival.replay or stored.replay,
            "not_replayable_reason": None if (arrival.replay or stored.replay) else arrival.not_replayable_reason,
            "cycles": stored.cycles + 1,
            "arrival_keys": (*stored.arrival_keys, arrival.arrival_key)[-50:],
            "replays": tuple(
                r if r.result is not None else r.model_copy(update={"result": ReplayResult.SENT})
                for r in stored.replays
            ),
            "version": stored.version + 1,
        }
    )


class DeadLetterFilter(BaseModel):
    """GET /ops/dlq's query. Without `correlation_id` or `job_type` the listing is by status (default `dead`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    status: DeadLetterStatus | None = None
    job_type: str | None = Field(default=None, min_length=1, max_length=100)
    source: str | None = Field(default=None, min_length=1, max_length=200)
    fingerprint: str | None = Field(default=None, min_length=1, max_length=64)
    correlation_id: str | None = Field(default=None, min_length=1, max_length=200)
    failed_after: AwareDatetime | None = None
    failed_before: AwareDatetime | None = None
    limit: int = Field(default=50, ge=1, le=LIST_LIMIT_MAX)
    cursor: str | None = Field(default=None, min_length=1, max_length=4096)

    @model_validator(mode="after")
    def _window_is_ordered(self) -> DeadLetterFilter:
        # DynamoDB refuses a BETWEEN whose bounds are reversed with its own error: say it in our words (400)
        if self.failed_after and self.failed_before and self.failed_after > self.failed_before:
            raise ValueError("failed_after is later than failed_before")
        return self


class DeadLetterPage(BaseModel):
    model_config = ConfigDict(frozen=True)

    items: list[DeadLetterItem]
    next_cursor: str | None


def summary(item: DeadLetterItem) -> dict[str, object]:
    """The list view of an item (no payload, no stack)."""
    envelope = item.envelope
    return {
        "id": item.id,
        "job_type": envelope.job_type,
        "source": envelope.source,
        "status": item.status.value,
        "reason": envelope.reason,
        "error_type": envelope.error_type,
        "fingerprint": envelope.fingerprint,
        "failed_at": envelope.failed_at.isoformat(),
        "attempt": envelope.attempt,
        "cycles": item.cycles,
        "correlation_id": envelope.correlation_id,
        "expires_at": item.expires_at.isoformat(),
        "replayable": item.replayable,
    }


def detail(item: DeadLetterItem) -> dict[str, object]:
    """The full item: the envelope (payload, attempts, stack), its status, replays and why it cannot be replayed."""
    return {
        **summary(item),
        "origin": item.origin.value,
        "dead_letter_queue": item.dead_letter_queue,
        "envelope": item.envelope.model_dump(mode="json"),
        "replay_target": item.replay.model_dump(mode="json") if item.replay else None,
        "not_replayable_reason": None if item.replayable else item.not_replayable_reason,
        "replays": [record.model_dump(mode="json") for record in item.replays],
        "discarded_by": item.discarded_by,
        "discarded_at": item.discarded_at.isoformat() if item.discarded_at else None,
        "discard_reason": item.discard_reason,
        "archived_at": item.archived_at.isoformat(),
    }
