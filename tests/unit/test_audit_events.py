"""Entity events from stream records: one per change, noise left out of the diff, who and why taken
from the item itself; records of tables that are not audited are refused, not guessed."""

from __future__ import annotations

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
