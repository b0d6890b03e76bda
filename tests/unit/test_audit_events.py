"""Entity events from stream records: one per change, noise left out of the diff, who and why taken
from the item itself; records of tables that are not audited are refused, not guessed."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBStreamEvent

from billing_core.audit.model import ChangeSource, EntityEvent, EntityType, diff, entity_event
from billing_core.audit.project import AuditProjector
from billing_core.errors import ValidationFailedError
from billing_core.triggers.streams import change_of
from tests.dynamodb_stream_events import stream_event, stream_record
from tests.support import load_event

SUBSCRIPTIONS = "billing-dev-SubscriptionsTable-1ABCDEF"


class Log:
    def __init__(self) -> None:
        self.events: dict[tuple[str, str], EntityEvent] = {}

    def append(self, event: EntityEvent) -> bool:
        key = (f"{event.entity_type}#{event.entity_id}", event.sequence)
        if key in self.events:
            return False
        self.events[key] = event
        return True


def test_the_sample_status_change_becomes_one_event_and_a_redelivery_none() -> None:
    log = Log()
    projector = AuditProjector(log, {SUBSCRIPTIONS: "subscriptions"})
    [record] = DynamoDBStreamEvent(load_event("dynamodb/subscription_status_changed.json")).records
    assert projector.project(change_of(record)) is True
    assert projector.project(change_of(record)) is False
    [event] = log.events.values()
    assert (event.entity_type, event.event_type, event.actor, event.source) == (
        EntityType.SUBSCRIPTION,
        "subscription.status_changed",
        "provider:stripe",
        ChangeSource.STRIPE,
    )
    assert event.changes == {"position": [1732276800, 1732280400], "status": ["trialing", "active"]}
    assert event.correlation_id == "evt_1QUpdated00000001"
    assert event.occurred_at == datetime.fromtimestamp(1795438800, UTC)


def test_records_of_an_unaudited_table_are_refused() -> None:
    projector = AuditProjector(Log(), {SUBSCRIPTIONS: "subscriptions"})
    record = stream_event(
        stream_record(
            "INSERT", {"pk": "x"}, new_image={"pk": "x"}, stream_arn="arn:aws:dynamodb:us-east-1:1:table/Other/stream/x"
        )
    )
    [parsed] = DynamoDBStreamEvent(record).records
    with pytest.raises(ValidationFailedError, match="unaudited"):
        projector.project(change_of(parsed))


@pytest.mark.parametrize(
    ("keys", "event_name", "before", "after", "expected"),
    [
        ({"invoice_id": "binv_1", "sk": "INVOICE"}, "INSERT", None, {"status": "open"}, "invoice.created"),
        (
            {"invoice_id": "binv_1", "sk": "ATTEMPT#001"},
            "MODIFY",
            {"status": "PENDING"},
            {"status": "UNKNOWN"},
            "charge_attempt.status_changed",
        ),
        ({"invoice_id": "binv_1", "sk": "INVOICE"}, "MODIFY", {"pending_work": "charge"}, {}, "invoice.updated"),
        ({"invoice_id": "binv_1", "sk": "INVOICE"}, "REMOVE", {"status": "void"}, None, "invoice.removed"),
    ],
)
def test_invoice_table_changes_are_named_by_what_changed(
    keys: dict[str, Any], event_name: str, before: Any, after: Any, expected: str
) -> None:
    event = entity_event(
        table_kind="invoices",
        event_name=event_name,
        keys=keys,
        before=before,
        after=after,
        occurred_at=datetime(2026, 11, 22, tzinfo=UTC),
        sequence="1",
    )
    assert event is not None and (event.entity_id, event.event_type) == ("binv_1", expected)
    assert event.actor == "system:unknown" and event.source is ChangeSource.UNKNOWN


def test_diff_leaves_out_bookkeeping_attributes() -> None:
    assert diff({"status": "a", "version": 1, "updated_at": "x"}, {"status": "b", "version": 2, "updated_at": "y"}) == {
        "status": ["a", "b"]
    }


# --- dunning cases (audit/dunning.py) ----------------------------------------------------------------------------

CASE_KEYS = {"invoice_id": "binv_1", "sk": "CYCLE#001"}


def case_item(actor: str = "system:dunning", source: str = "dunning", **document: Any) -> dict[str, Any]:
    """A DunningTable item as the store writes it: the case as a JSON document beside its key attributes."""
    case = {"invoice_id": "binv_1", "cycle": 1, "status": "active", "retries": [], "notices": [], "version": 1}
    case.update(document)
    return {
        **CASE_KEYS,
        "status": case["status"],
        "version": case["version"],
        "document": json.dumps(case),
        "last_actor": actor,
        "last_change_source": source,
        "last_correlation_id": "dunning-binv_1-1",
    }


def retry(sequence: int, status: str, **fields: Any) -> dict[str, Any]:
    return {"sequence": sequence, "slot": sequence, "status": status, **fields}


def case_event(event_name: str, before: dict[str, Any] | None, after: dict[str, Any] | None) -> EntityEvent:
    event = entity_event(
        table_kind="dunning",
        event_name=event_name,
        keys=CASE_KEYS,
        before=before,
        after=after,
        occurred_at=datetime(2026, 11, 22, tzinfo=UTC),
        sequence="7",
    )
    assert event is not None
    return event


@pytest.mark.parametrize(
    ("event_name", "before", "after", "expected"),
    [
        ("INSERT", None, {}, "dunning.opened"),
        ("INSERT", None, {"cycle": 2, "restarted_from_cycle": 1, "restarted_by": "user:admin"}, "dunning.restarted"),
        ("MODIFY", {}, {"notices": ["dunning:binv_1:1:payment_failed"]}, "dunning.notice_queued"),
        ("MODIFY", {}, {"suppressed_notices": ["dunning:binv_1:1:payment_failed"]}, "dunning.notice_suppressed"),
        ("MODIFY", {}, {"retries": [retry(1, "pending")]}, "dunning.retry_started"),
        ("MODIFY", {"retries": [retry(1, "pending")]}, {"retries": [retry(1, "failed")]}, "dunning.retry_failed"),
        (
            "MODIFY",
            {"retries": [retry(1, "pending")]},
            {"retries": [retry(1, "unknown")]},
            "dunning.retry_outcome_unknown",
        ),
        (
            "MODIFY",
            {},
            {"retries": [retry(1, "suppressed", decline_code="auto_charge_off")]},
            "dunning.retry_suppressed",
        ),
        ("MODIFY", {}, {"retries": [retry(1, "skipped", decline_code="expired_card")]}, "dunning.retry_skipped"),
        ("MODIFY", {}, {"status": "recovered", "end_reason": "invoice_paid"}, "dunning.recovered"),
        ("MODIFY", {}, {"status": "closed", "end_reason": "invoice_not_payable"}, "dunning.closed"),
        ("MODIFY", {}, {"status": "dunning_failed", "end_reason": "ConfigurationError: x"}, "dunning.failed"),
        ("MODIFY", {}, {"status": "exhausted", "end_reason": "final_action:cancel"}, "dunning.final_action_applied"),
        (
            "MODIFY",
            {},
            {"status": "exhausted", "end_reason": "final_action_suppressed:cancel"},
            "dunning.final_action_suppressed",
        ),
        ("MODIFY", {}, {"hard_declined": True}, "dunning.updated"),
        ("REMOVE", {}, None, "dunning.removed"),
    ],
)
def test_a_dunning_case_change_is_named_by_what_the_write_did(
    event_name: str, before: dict[str, Any] | None, after: dict[str, Any] | None, expected: str
) -> None:
    # Given a stream record of a case (before and after as the store writes them)
    old = case_item(**before) if before is not None else None
    new = case_item(**after) if after is not None else None
    # Then the event names the fact, for the invoice's dunning
    event = case_event(event_name, old, new)
    assert (event.entity_type, event.entity_id, event.event_type) == (EntityType.DUNNING, "binv_1", expected)


def test_a_dunning_case_is_shown_decoded_with_each_retry_and_the_end_by_field() -> None:
    # Given a case whose last retry is settled by the write that ends it (the final action applied)
    before = case_item(retries=[retry(1, "suppressed", decline_code="auto_charge_off"), retry(2, "pending")], version=5)
    after = case_item(
        retries=[retry(1, "suppressed", decline_code="auto_charge_off"), retry(2, "failed", decline_code="x")],
        status="exhausted",
        end_reason="final_action:cancel",
        version=6,
    )
    event = case_event("MODIFY", before, after)
    # Then before/after are the case documents, and the changes name the retry and the end (no version noise)
    assert event.event_type == "dunning.final_action_applied"
    assert event.after is not None and event.after["end_reason"] == "final_action:cancel"
    assert "document" not in event.after
    assert event.changes == {
        "end_reason": [None, "final_action:cancel"],
        "retries.2": [retry(2, "pending"), retry(2, "failed", decline_code="x")],
        "status": ["active", "exhausted"],
    }
    # and who and why come from the item: dunning's workflow, its execution
    assert (event.actor, event.source, event.correlation_id) == (
        "system:dunning",
        ChangeSource.DUNNING,
        "dunning-binv_1-1",
    )


def test_an_operators_restart_is_audited_with_the_operator() -> None:
    after = case_item(actor="user:admin", source="api", cycle=2, restarted_from_cycle=1, restarted_by="user:admin")
    event = case_event("INSERT", None, after)
    assert (event.event_type, event.actor, event.source) == ("dunning.restarted", "user:admin", ChangeSource.API)
    assert event.before is None and event.after is not None and event.after["restarted_from_cycle"] == 1


def test_a_dunning_item_without_a_readable_document_is_shown_as_stored() -> None:
    item = {**CASE_KEYS, "status": "active", "document": "{not json"}
    event = case_event("INSERT", None, item)
    assert event.after == item and event.event_type == "dunning.opened"
