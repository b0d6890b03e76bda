"""Append-only stores refuse a second write under the same key and keep the first byte for byte (#16).

Each store's "write once" is a condition on a PutItem (`attribute_not_exists`). Without it DynamoDB silently
replaces the item, so these tests write a second, *different* item under the same key (a redelivered stream
record, a replayed webhook, a reposted transaction whose body changed) and compare the stored items, every
attribute, with what was there before. Dropping a store's condition fails its test here: nothing else in the
suite would notice (the outside mutation check of #16 found the audit store's guard untested)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from billing_core.adapters.dynamodb.audit_store import DynamoDBAuditStore
from billing_core.adapters.dynamodb.ledger_store import DynamoDBLedgerStore
from billing_core.adapters.dynamodb.table import DynamoDB
from billing_core.audit.model import ChangeSource, EntityEvent, EntityType
from billing_core.ledger.model import Entry, LedgerTransaction, PostingResult
from billing_core.webhooks.effects import ApplyOutcome, EventRecord, EventWrite
from tests.integration.conftest import Stack
from tests.integration.test_webhook_apply_on_moto import dynamodb_store

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
CUSTOMER = "bcus_" + "1" * 24


def scan(stack: Stack, logical_id: str) -> list[dict[str, Any]]:
    """Every item of the table, raw (attribute values as DynamoDB stores them), in a stable order."""
    items: list[dict[str, Any]] = []
    pages = stack.client("dynamodb").get_paginator("scan").paginate(TableName=stack.ref(logical_id))
    for page in pages:
        items += page["Items"]
    return sorted(items, key=repr)


def audit_event(**changes: Any) -> EntityEvent:
    values: dict[str, Any] = {
        "entity_type": EntityType.SUBSCRIPTION,
        "entity_id": "sub_append_only_1",
        "event_type": "subscription.status_changed",
        "actor": "provider:stripe",
        "source": ChangeSource.STRIPE,
        "correlation_id": "evt_1",
        "before": {"status": "trialing"},
        "after": {"status": "active"},
        "changes": {"status": ["trialing", "active"]},
        "occurred_at": NOW,
        "sequence": "4900000000000000000001",
    }
    return EntityEvent(**{**values, **changes})


def test_a_second_append_of_an_audit_event_is_refused_and_the_stored_event_is_unchanged(stack: Stack) -> None:
    store = DynamoDBAuditStore(stack.ref("AuditTable"), DynamoDB(stack.client("dynamodb")))
    # Given one recorded change
    assert store.append(audit_event()) is True
    stored = scan(stack, "AuditTable")
    # When the same change (same entity and stream sequence) comes again, identical or with other content
    again = store.append(audit_event())
    rewritten = store.append(
        audit_event(actor="user:mallory", after={"status": "canceled"}, changes={"status": ["trialing", "canceled"]})
    )
    # Then both are "already there", and the stored event is what was first recorded, attribute for attribute
    assert (again, rewritten) == (False, False)
    assert scan(stack, "AuditTable") == stored
    # And a different change of the same entity is a new event
    assert store.append(audit_event(sequence="4900000000000000000002")) is True
    assert len(scan(stack, "AuditTable")) == 2


def transaction(amount_minor: int, occurred_at: datetime = NOW) -> LedgerTransaction:
    return LedgerTransaction(
        transaction_id="invoice_issued:binv_append_only_1",
        source="binv_append_only_1",
        customer=CUSTOMER,
        entries=(
            Entry(account=f"customer_receivable:{CUSTOMER}", amount_minor=amount_minor, currency="EUR"),
            Entry(account="revenue", amount_minor=-amount_minor, currency="EUR"),
        ),
        occurred_at=occurred_at,
    )


def test_a_reposted_ledger_transaction_is_refused_and_entries_and_balances_are_unchanged(stack: Stack) -> None:
    ledger = DynamoDBLedgerStore(
        ledger_table=stack.ref("LedgerTable"),
        balances_table=stack.ref("AccountBalancesTable"),
        dynamodb=DynamoDB(stack.client("dynamodb")),
    )
    # Given a posted transaction
    assert ledger.post(transaction(1200), now=NOW) is PostingResult.POSTED
    entries, balances = scan(stack, "LedgerTable"), scan(stack, "AccountBalancesTable")
    # When its id is posted again: the same, with other amounts, and later (the entries' sort keys differ)
    again = ledger.post(transaction(1200), now=NOW)
    changed = ledger.post(transaction(99_999), now=NOW)
    later = ledger.post(transaction(99_999, NOW + timedelta(days=1)), now=NOW + timedelta(days=1))
    # Then each is "already posted", and no entry or balance changed
    assert (again, changed, later) == (PostingResult.ALREADY_POSTED,) * 3
    assert scan(stack, "LedgerTable") == entries
    assert scan(stack, "AccountBalancesTable") == balances


def event_write(raw_body: str, outcome: ApplyOutcome = ApplyOutcome.RECORDED) -> EventWrite:
    record = EventRecord(
        provider="stripe",
        provider_event_id="evt_append_only_1",
        event_type="customer.created",
        group_key="stripe:cus_append_only",
        received_at=NOW,
        signed_at=NOW,
        applied_at=NOW,
        raw_body=raw_body,
    )
    return EventWrite(record=record, outcome=outcome)


def test_a_second_record_of_a_webhook_event_is_refused_and_the_archived_event_is_unchanged(stack: Stack) -> None:
    store = dynamodb_store(stack)
    # Given an applied event's record (its archive and dedupe marker)
    assert store.write(event_write('{"id": "evt_append_only_1", "n": 1}')).written
    stored = scan(stack, "WebhookEventsTable")
    # When the same event id is written again, identical or with another body and outcome
    again = store.write(event_write('{"id": "evt_append_only_1", "n": 1}'))
    replaced = store.write(event_write('{"id": "evt_append_only_1", "n": 2}', ApplyOutcome.APPLIED))
    # Then both are duplicates, and the archived event is the first one, attribute for attribute
    assert (again.written, again.duplicate, replaced.written, replaced.duplicate) == (False, True, False, True)
    assert scan(stack, "WebhookEventsTable") == stored
