"""The dead-letter archive's pure core (ADR 0029): an item merges later dead letters of its event (identity kept,
attempts only grow, one more cycle, back to `dead`), a redelivered arrival changes nothing, the four DLQ message
shapes are understood, and the replay service claims an item once (fakes for the store and the sender)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing_core.errors import ConflictError, RetryableError, ValidationFailedError
from billing_core.failures.arrivals import (
    NO_ENVELOPE_REASON,
    STREAM_BATCH_REASON,
    DeadLetterMessage,
    arrival_of,
    parse_sources,
)
from billing_core.failures.dead_letters import (
    DeadLetterArrival,
    DeadLetterFilter,
    DeadLetterItem,
    DeadLetterPage,
    DeadLetterStatus,
    EnvelopeOrigin,
    LambdaTarget,
    SqsTarget,
    archive,
)
from billing_core.failures.envelope import ENVELOPE_ATTRIBUTE, FailureEnvelope, prior_from_attribute, record_failure
from billing_core.failures.policies import policy_for
from billing_core.recovery.service import DeadLetters
from tests.support import load_event

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
SOURCES = parse_sources(
    json.dumps(
        {
            "billing-dev-CustomerNotificationsDeadLetterQueue": {
                "job_type": "notification_send",
                "source": "CustomerNotificationsQueue",
                "replay": {"kind": "sqs", "queue": "billing-dev-CustomerNotificationsQueue"},
            },
            "billing-dev-DunningDeadLetterQueue": {
                "job_type": "dunning_start",
                "source": "DunningQueue",
                "replay": {"kind": "sqs", "queue": "billing-dev-DunningQueue"},
            },
            "billing-dev-ScheduledInvocationFailuresQueue": {
                "job_type": "scheduled_invocation",
                "source": "ScheduledInvocationFailuresQueue",
                "replay": {"kind": "lambda", "functions": ["billing-dev-BillingRunFunction"]},
            },
            "billing-dev-AuditDeadLetterQueue": {"job_type": "audit_project", "source": "AuditedTableStreams"},
        }
    )
)


def failed(payload: str, *, prior: Any = None, at: datetime = NOW) -> FailureEnvelope:
    try:
        raise ValidationFailedError("notice names another customer", code="notice_customer_mismatch")
    except ValidationFailedError as exc:
        return record_failure(
            error=exc,
            payload=payload,
            job_type="notification_send",
            job_id=None,
            source="CustomerNotificationsQueue",
            policy=policy_for("notification_send"),
            attempt_in_cycle=1,
            failed_at=at,
            message_id="m-1",
            enqueued_at=NOW - timedelta(minutes=5),
            prior=prior,
        )


def message(
    body: str, queue: str = "billing-dev-CustomerNotificationsDeadLetterQueue", **fields: Any
) -> DeadLetterMessage:
    return DeadLetterMessage(
        message_id=fields.pop("message_id", "dlq-m-1"), body=body, dead_letter_queue=queue, sent_at=NOW, **fields
    )


def arrival(envelope: FailureEnvelope, message_id: str = "dlq-m-1") -> DeadLetterArrival:
    return arrival_of(message(envelope.model_dump_json(), message_id=message_id), SOURCES, now=NOW)


# --- merging ----------------------------------------------------------------------------------------------------


def test_a_redelivered_arrival_changes_nothing_and_a_next_cycle_extends_the_same_item() -> None:
    first = failed('{"notice_id": "n-1"}')
    item = archive(None, arrival(first), now=NOW, retention_days=90)
    assert item is not None and (item.id, item.cycles, item.status) == (first.event_id, 1, DeadLetterStatus.DEAD)
    assert item.expires_at == first.original_enqueued_at + timedelta(days=90)
    # Given the same DLQ message archived again (SQS redelivers), or with another message id (a duplicate send)
    assert archive(item, arrival(first), now=NOW, retention_days=90) is None
    assert archive(item, arrival(first, "dlq-m-2"), now=NOW, retention_days=90) is None
    # When the replayed message fails again: the consumer continues the envelope (ADR 0026)
    replayed = item.model_copy(update={"status": DeadLetterStatus.REPLAYED})
    prior = prior_from_attribute(first.replay_attributes()[ENVELOPE_ATTRIBUTE]["StringValue"])
    second = failed('{"notice_id": "n-1"}', prior=prior, at=NOW + timedelta(hours=1))
    merged = archive(replayed, arrival(second, "dlq-m-3"), now=NOW, retention_days=90)
    # Then the same item: identity unchanged, dead again, one more cycle, attempts extended
    assert merged is not None and merged.id == item.id and merged.status is DeadLetterStatus.DEAD
    assert merged.envelope.original_enqueued_at == first.original_enqueued_at
    assert (merged.cycles, [a.attempt for a in merged.envelope.attempts], merged.version) == (2, [1, 2], 2)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from(["fail", "redeliver", "bare"]), min_size=1, max_size=8))
def test_after_any_cycles_identity_is_kept_and_attempts_only_grow(steps: list[str]) -> None:
    envelope = failed('{"notice_id": "n-2"}')
    item = archive(None, arrival(envelope), now=NOW, retention_days=90)
    assert item is not None
    for number, step in enumerate(steps):
        before = [a.attempt for a in item.envelope.attempts]
        if step == "fail":
            prior = prior_from_attribute(item.envelope.replay_attributes()[ENVELOPE_ATTRIBUTE]["StringValue"])
            next_arrival = arrival(failed('{"notice_id": "n-2"}', prior=prior), f"m-{number}")
        elif step == "bare":  # a replay SQS redrove itself: the attribute rides along
            next_arrival = arrival_of(
                message(
                    '{"notice_id": "n-2"}',
                    message_id=f"b-{number}",
                    attributes=item.envelope.replay_attributes()
                    and {ENVELOPE_ATTRIBUTE: item.envelope.replay_attributes()[ENVELOPE_ATTRIBUTE]["StringValue"]},
                ),
                SOURCES,
                now=NOW,
            )
        else:
            next_arrival = arrival(item.envelope, "again")
        merged = archive(item, next_arrival, now=NOW, retention_days=90)
        item = merged or item
        after = [a.attempt for a in item.envelope.attempts]
        assert after[: len(before)] == before and len(after) >= len(before)
        assert (item.id, item.envelope.original_enqueued_at) == (envelope.event_id, envelope.original_enqueued_at)
        assert item.cycles == 1 + sum(1 for s in steps[: number + 1] if s != "redeliver")


# --- shapes -----------------------------------------------------------------------------------------------------


def test_each_sample_dead_letter_shape_is_understood() -> None:
    records = load_event("sqs/dead_letter_batch.json")["Records"]
    found = []
    for record in records:
        found.append(
            arrival_of(
                message(
                    record["body"],
                    queue=record["eventSourceARN"].rsplit(":", 1)[-1],
                    message_id=record["messageId"],
                    attributes={k: v["stringValue"] for k, v in record["messageAttributes"].items()},
                ),
                SOURCES,
                now=NOW,
            )
        )
    envelope, scheduled, stream, undelivered, bare = found
    # (a) our envelope: replayable to its queue
    assert envelope.origin is EnvelopeOrigin.ENVELOPE and envelope.envelope.job_type == "notification_send"
    assert envelope.replay == SqsTarget(queue="billing-dev-CustomerNotificationsQueue")
    # (b) an asynchronous invocation Lambda gave up on: its event replays to the function, named in the mapping
    assert scheduled.origin is EnvelopeOrigin.LAMBDA_ON_FAILURE and scheduled.envelope.error_type == "RetryableError"
    assert scheduled.replay == LambdaTarget(function="billing-dev-BillingRunFunction")
    assert json.loads(scheduled.envelope.payload)["detail-type"] == "Scheduled Event"
    # (b) a stream batch: not replayable by resend, and says so
    assert stream.replay is None and stream.not_replayable_reason == STREAM_BATCH_REASON
    assert stream.envelope.job_type == "audit_project"
    # (c) an EventBridge event: source from the event; its target is not in this DLQ's replay map
    assert undelivered.origin is EnvelopeOrigin.EVENTBRIDGE and undelivered.envelope.source == "aws.events"
    assert undelivered.envelope.error_type == "Throttling" and undelivered.replay is None
    assert "billing-dev-CanaryScheduleFunction" in str(undelivered.not_replayable_reason)
    # (d) a bare body: no envelope, moved by redrive; job type from the DLQ's mapping; a stable derived id
    assert bare.origin is EnvelopeOrigin.REDRIVE and bare.envelope.reason == NO_ENVELOPE_REASON
    assert (bare.envelope.job_type, bare.envelope.original_enqueued_at) == ("dunning_start", NOW)
    assert bare.replay == SqsTarget(queue="billing-dev-DunningQueue")
    again = arrival_of(
        message(bare.envelope.payload, queue="billing-dev-DunningDeadLetterQueue", message_id=records[4]["messageId"]),
        SOURCES,
        now=NOW + timedelta(hours=1),
    )
    assert again.envelope.event_id == bare.envelope.event_id


def test_a_queue_missing_from_the_mapping_is_archived_not_replayable() -> None:
    found = arrival_of(message("not json", queue="someone-elses-dlq"), SOURCES, now=NOW)
    assert (found.envelope.job_type, found.replay) == ("unknown", None) and found.not_replayable_reason


# --- replay service with fakes ----------------------------------------------------------------------------------


class Store:
    def __init__(self) -> None:
        self.items: dict[str, DeadLetterItem] = {}

    def get(self, dead_letter_id: str) -> DeadLetterItem | None:
        return self.items.get(dead_letter_id)

    def save(self, item: DeadLetterItem) -> bool:
        stored = self.items.get(item.id)
        if (stored.version if stored else 0) != item.version - 1:
            return False
        self.items[item.id] = item
        return True

    def page(self, query: DeadLetterFilter) -> DeadLetterPage:
        return DeadLetterPage(items=list(self.items.values()), next_cursor=None)


class Sender:
    def __init__(self, fail: bool = False) -> None:
        self.sent: list[tuple[Any, str, dict[str, Any], str]] = []
        self.fail = fail

    def send(self, target: Any, payload: str, attributes: dict[str, Any], *, replay_id: str) -> None:
        if self.fail:
            raise RetryableError("queue unreachable", code="aws_transient")
        self.sent.append((target, payload, attributes, replay_id))


class Audit:
    def __init__(self) -> None:
        self.events: list[Any] = []

    def append(self, event: Any) -> bool:
        self.events.append(event)
        return True


class Switches:
    def __init__(self, on: set[str] | None = None) -> None:
        self.on = on or set()

    def is_on(self, name: str, *, account_id: str | None = None) -> bool:
        return name in self.on


def archived(service: DeadLetters) -> DeadLetterItem:
    item = service.archive(arrival(failed('{"notice_id": "n-3"}')))
    assert item is not None
    return item


def test_replay_claims_once_sends_with_the_history_and_is_audited_with_the_operator() -> None:
    store, sender, audit = Store(), Sender(), Audit()
    service = DeadLetters(store, sender=sender, audit=audit, switches=Switches(), clock=lambda: NOW)
    item = archived(service)
    replayed = service.replay(item.id, actor="user:sam", correlation_id="req-1")
    assert replayed.status is DeadLetterStatus.REPLAYED and [r.result for r in replayed.replays] == ["sent"]
    [(target, payload, attributes, _)] = sender.sent
    assert target == item.replay and payload == item.envelope.payload and ENVELOPE_ATTRIBUTE in attributes
    assert [(e.event_type, e.actor) for e in audit.events] == [("dlq_item.replayed", "user:sam")]
    with pytest.raises(ConflictError) as refused:
        service.replay(item.id, actor="user:sam", correlation_id="req-2")
    assert refused.value.code == "conflict" and len(sender.sent) == 1


def test_a_failed_send_puts_the_item_back_to_dead_and_a_switch_refuses_the_replay() -> None:
    store, audit = Store(), Audit()
    service = DeadLetters(store, sender=Sender(fail=True), audit=audit, switches=Switches(), clock=lambda: NOW)
    item = archived(service)
    with pytest.raises(RetryableError):
        service.replay(item.id, actor="user:sam", correlation_id=None)
    after = store.items[item.id]
    assert after.status is DeadLetterStatus.DEAD and [r.result for r in after.replays] == ["send_failed"]
    switched = DeadLetters(store, sender=Sender(), switches=Switches({"dunning_notices_paused"}), clock=lambda: NOW)
    with pytest.raises(ConflictError) as refused:
        switched.replay(item.id, actor="user:sam", correlation_id=None)
    assert refused.value.code == "kill_switch_on" and refused.value.details["switches"] == ["dunning_notices_paused"]


class Dying(Sender):
    """A replayer killed after its claim: the send never returns (Lambda stopped it)."""

    def send(self, target: Any, payload: str, attributes: dict[str, Any], *, replay_id: str) -> None:
        raise SystemExit("killed")


def test_a_claim_whose_replayer_died_is_taken_over_once_older_than_any_replayer_runs() -> None:
    from billing_core.recovery.service import REPLAY_CLAIM_LEASE

    store, audit = Store(), Audit()
    # Given an item whose replayer died between its claim and its send: left `replaying`
    dying = DeadLetters(store, sender=Dying(), audit=audit, switches=Switches(), clock=lambda: NOW)
    item = archived(dying)
    with pytest.raises(SystemExit):
        dying.replay(item.id, actor="user:sam", correlation_id=None)
    assert store.items[item.id].status is DeadLetterStatus.REPLAYING
    # When someone replays it while the claim may still be live: refused, nothing sent
    sender = Sender()
    soon = DeadLetters(store, sender=sender, audit=audit, switches=Switches(), clock=lambda: NOW + REPLAY_CLAIM_LEASE)
    with pytest.raises(ConflictError) as refused:
        soon.replay(item.id, actor="user:ann", correlation_id=None)
    assert refused.value.code == "conflict" and sender.sent == []
    # Then once the claim is older than the lease: taken over, the dead claim marked abandoned, sent once
    later = NOW + REPLAY_CLAIM_LEASE + timedelta(seconds=1)
    late = DeadLetters(store, sender=sender, audit=audit, switches=Switches(), clock=lambda: later)
    replayed = late.replay(item.id, actor="user:ann", correlation_id=None)
    assert replayed.status is DeadLetterStatus.REPLAYED
    assert [(r.by, r.result) for r in replayed.replays] == [("user:sam", "abandoned"), ("user:ann", "sent")]
    assert len(sender.sent) == 1
    # and a replayed item is not taken over again
    with pytest.raises(ConflictError):
        late.replay(item.id, actor="user:ann", correlation_id=None)


def test_the_replay_switch_table_names_only_declared_switches() -> None:
    from billing_core.operations.switches import SWITCHES
    from billing_core.recovery.service import REPLAY_SWITCHES

    assert all(name in SWITCHES for names in REPLAY_SWITCHES.values() for name in names)


# --- cursors ----------------------------------------------------------------------------------------------------


def test_a_cursor_is_only_accepted_for_the_query_that_issued_it() -> None:
    from billing_core.adapters.dynamodb.table import decode_cursor, encode_cursor

    cursor = encode_cursor({"id": {"S": "fail_1"}, "status": {"S": "dead"}, "failed_at": {"S": "2026-12-07T09:00:00Z"}})
    keys = frozenset({"id", "status", "failed_at"})
    assert decode_cursor(cursor, {"status": "dead"}, keys=keys)["id"] == {"S": "fail_1"}
    for bad, expected in (
        (cursor, {"status": "replayed"}),
        ("%%%", {"status": "dead"}),
        (cursor + "x", {"status": "dead"}),
    ):
        with pytest.raises(ValidationFailedError) as refused:
            decode_cursor(bad, expected, keys=keys)
        assert refused.value.code == "invalid_cursor"


def test_a_reversed_failure_window_is_refused_before_any_query() -> None:
    # DynamoDB would refuse BETWEEN with reversed bounds with its own error (a 5xx to the caller)
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="failed_after is later than failed_before"):
        DeadLetterFilter(failed_after=NOW, failed_before=NOW - timedelta(seconds=1))
    assert DeadLetterFilter(failed_after=NOW, failed_before=NOW).failed_after == NOW
