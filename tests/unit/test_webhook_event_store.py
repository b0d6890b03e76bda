"""How the webhook event store reads a cancelled TransactWriteItems (adapters/dynamodb/webhook_event_store.py): which
part refused - the record (a duplicate delivery), the snapshot's guard, which postings - or whether only other
writers were in the way. DynamoDB answers with one reason per item, in the items' order; here a stub client gives
those answers, so each reading is checked without a server (tests/integration checks the same writes on moto).
Written to kill the mutants `make mutation` found surviving in the store's dedupe (docs/testing.md)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from billing_core.adapters.dynamodb.ledger_store import DynamoDBLedgerStore
from billing_core.adapters.dynamodb.subscription_store import DynamoDBSubscriptionStore
from billing_core.adapters.dynamodb.table import DynamoDB
from billing_core.adapters.dynamodb.webhook_event_store import DynamoDBWebhookEventStore
from billing_core.ledger.model import Account, LedgerTransaction, transfer
from billing_core.webhooks.effects import ApplyOutcome, EventRecord, EventWrite

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
CUSTOMER = "bcus_0123456789abcdef01234567"


class CancellingClient:
    """A DynamoDB client whose TransactWriteItems is cancelled with the reason codes `reasons` gives per item."""

    def __init__(self, reasons: dict[int, str]):
        self.reasons = reasons
        self.items: list[dict[str, Any]] = []

    def transact_write_items(self, TransactItems: list[dict[str, Any]]) -> None:  # boto3 names it so
        self.items = TransactItems
        codes = [{"Code": self.reasons.get(index, "None")} for index in range(len(TransactItems))]
        error = {"Code": "TransactionCanceledException", "Message": "cancelled"}
        raise ClientError({"Error": error, "CancellationReasons": codes}, "TransactWriteItems")  # type: ignore[arg-type]


def store(client: CancellingClient) -> DynamoDBWebhookEventStore:
    db = DynamoDB(client)
    ledger = DynamoDBLedgerStore(ledger_table="ledger", balances_table="balances", dynamodb=db)
    return DynamoDBWebhookEventStore(
        "events", subscriptions=DynamoDBSubscriptionStore("subscriptions", db), ledger=ledger, dynamodb=db
    )


def posting(transaction_id: str) -> LedgerTransaction:
    return transfer(
        transaction_id=transaction_id,
        source="evt_1",
        debit=Account.receivable(CUSTOMER),
        credit=Account.REVENUE,
        amount_minor=500,
        currency="EUR",
        occurred_at=NOW,
        customer=CUSTOMER,
    )


def paid_invoice_write() -> EventWrite:
    """An invoice.paid: its record, then two postings (issuing and payment), two entries each."""
    record = EventRecord(
        provider="stripe",
        provider_event_id="evt_1",
        event_type="invoice.paid",
        group_key="stripe:sub_1",
        received_at=NOW,
        signed_at=NOW,
        applied_at=NOW,
        raw_body="{}",
    )
    return EventWrite(
        record=record,
        outcome=ApplyOutcome.APPLIED,
        postings=(posting("invoice_issued:in_1"), posting("payment:stripe:pi_1")),
    )


def test_a_write_refused_at_its_record_is_a_duplicate_delivery() -> None:
    result = store(CancellingClient({0: "ConditionalCheckFailed"})).write(paid_invoice_write())
    assert (result.written, result.duplicate, result.already_posted) == (False, True, frozenset())


def test_only_the_postings_whose_own_entries_were_refused_count_as_already_posted() -> None:
    # Given the record (item 0), then the issuing's entries (items 1-2) and the payment's (items 3-4)
    client = CancellingClient({3: "ConditionalCheckFailed"})
    result = store(client).write(paid_invoice_write())
    assert client.items[3]["Put"]["Item"]["transaction_id"]["S"] == "payment:stripe:pi_1"
    # Then the payment alone was posted before: the issuing must still be written on the retry
    assert (result.written, result.duplicate, result.contended) == (False, False, False)
    assert result.already_posted == frozenset({"payment:stripe:pi_1"})
    first_only = store(CancellingClient({2: "ConditionalCheckFailed"})).write(paid_invoice_write())
    assert first_only.already_posted == frozenset({"invoice_issued:in_1"})


def test_a_write_cancelled_by_other_writers_alone_decided_nothing() -> None:
    result = store(CancellingClient({1: "TransactionConflict"})).write(paid_invoice_write())
    assert (result.written, result.duplicate, result.contended, result.already_posted) == (
        False,
        False,
        True,
        frozenset(),
    )
