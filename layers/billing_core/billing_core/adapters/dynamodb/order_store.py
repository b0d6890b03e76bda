"""Orders on DynamoDB (OrdersTable). What an order was quoted is written once (`document`); what happened
to it lives in attributes the conditions test: status, payment_claimed_at, payment_id.

A commit is one transaction (DynamoDBOrderCommits): the order's pending -> committed transition together
with the subscription it creates or changes, the invoice and the ledger postings - so two commits can never
both apply. Each part comes from the store that owns its item."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from billing_core.adapters.dynamodb.invoice_store import DynamoDBInvoiceStore
from billing_core.adapters.dynamodb.ledger_store import DynamoDBLedgerStore
from billing_core.adapters.dynamodb.subscription_store import DynamoDBSubscriptionStore
from billing_core.adapters.dynamodb.table import DynamoDB, Item, TransactItem, text
from billing_core.errors import ConflictError
from billing_core.invoices.model import Invoice
from billing_core.ledger.model import LedgerTransaction
from billing_core.orders.model import Order, OrderStatus
from billing_core.subscriptions.model import ScheduledChange, Subscription

# Attributes that change after creation; everything else is the quote, kept in `document`.
DYNAMIC = ("status", "committed_at", "expired_at", "failed_at", "failure_code", "payment_id", "invoice_id")
ACTOR = "system:orders"
SOURCE = "api"


class DynamoDBOrderStore:
    def __init__(self, table: str, dynamodb: DynamoDB | None = None):
        self._table = table
        self._db = dynamodb or DynamoDB()

    def _key(self, order_id: str) -> Item:
        return {"order_id": text(order_id)}

    def create(self, order: Order, *, actor: str) -> None:
        document = order.model_dump(mode="json", exclude=set(DYNAMIC))
        item = {
            "order_id": text(order.order_id),
            "document": text(json.dumps(document, sort_keys=True)),
            "status": text(order.status.value),
            "kind": text(order.kind.value),
            "subscription_id": text(order.subscription_id),
            "created_at": text(order.created_at.isoformat()),
            "expires_at": text(order.quote.expires_at.isoformat()),
            "last_actor": text(actor),
            "last_change_source": text(SOURCE),
            "last_correlation_id": text(order.order_id),
        }
        # Order ids are random (uuid4): a refused put is a collision, never a repeat.
        if not self._db.put_new(self._table, item, key="order_id"):
            raise ConflictError(f"order id {order.order_id} is taken; create the order again", code="order_id_taken")

    def get(self, order_id: str) -> Order | None:
        item = self._db.get(self._table, self._key(order_id))
        if not item:
            return None
        values = json.loads(item["document"]["S"])
        values.update({name: item[name]["S"] for name in DYNAMIC if name in item})
        return Order.model_validate(values)

    def payment_claimed_at(self, order_id: str) -> datetime | None:
        item = self._db.get(self._table, self._key(order_id), projection="payment_claimed_at") or {}
        return datetime.fromisoformat(item["payment_claimed_at"]["S"]) if "payment_claimed_at" in item else None

    def _update(self, order_id: str, expression: str, condition: str, values: dict[str, Any]) -> bool:
        return self._db.update(
            TableName=self._table,
            Key=self._key(order_id),
            UpdateExpression=expression,
            ConditionExpression=condition,
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues=values,
        )

    def expire(self, order_id: str, now: datetime) -> bool:
        """pending -> expired, unless a payment is under way (its money may yet arrive)."""
        return self._update(
            order_id,
            "SET #status = :expired, expired_at = :now, last_change_source = :source, last_actor = :actor",
            "#status = :pending AND attribute_not_exists(payment_claimed_at)",
            {
                ":expired": text(OrderStatus.EXPIRED.value),
                ":pending": text(OrderStatus.PENDING.value),
                ":now": text(now.isoformat()),
                ":source": text(SOURCE),
                ":actor": text(ACTOR),
            },
        )

    def fail(self, order_id: str, code: str, now: datetime) -> bool:
        return self._update(
            order_id,
            "SET #status = :failed, failed_at = :now, failure_code = :code, last_actor = :actor",
            "#status = :pending",
            {
                ":failed": text(OrderStatus.FAILED.value),
                ":pending": text(OrderStatus.PENDING.value),
                ":now": text(now.isoformat()),
                ":code": text(code),
                ":actor": text(ACTOR),
            },
        )

    def claim_payment(self, order_id: str, now: datetime, stale_before: datetime) -> bool:
        """One committer at a time takes the payment step; a claim that never stored a payment id goes
        stale after its lease (creating a payment moves no money, so taking over is safe)."""
        return self._update(
            order_id,
            "SET payment_claimed_at = :now, last_actor = :actor",
            "#status = :pending AND (attribute_not_exists(payment_claimed_at) OR "
            "(payment_claimed_at < :stale AND attribute_not_exists(payment_id)))",
            {
                ":now": text(now.isoformat()),
                ":pending": text(OrderStatus.PENDING.value),
                ":stale": text(stale_before.isoformat()),
                ":actor": text(ACTOR),
            },
        )

    def release_payment_claim(self, order_id: str, claimed_at: datetime) -> bool:
        """The claim's committer could not create a payment (the provider refused, or did not answer): the
        step is free at once. Only that claim (its time), and never once a payment id is stored."""
        return self._update(
            order_id,
            "REMOVE payment_claimed_at SET last_actor = :actor",
            "#status = :pending AND payment_claimed_at = :claimed AND attribute_not_exists(payment_id)",
            {
                ":claimed": text(claimed_at.isoformat()),
                ":pending": text(OrderStatus.PENDING.value),
                ":actor": text(ACTOR),
            },
        )

    def record_payment(self, order_id: str, payment_id: str) -> bool:
        return self._update(
            order_id,
            "SET payment_id = :payment, last_actor = :actor",
            "#status = :pending AND (attribute_not_exists(payment_id) OR payment_id = :payment)",
            {":payment": text(payment_id), ":pending": text(OrderStatus.PENDING.value), ":actor": text(ACTOR)},
        )

    def committed_op(self, order: Order, now: datetime, invoice_id: str | None) -> TransactItem:
        """pending -> committed; refused unless the order is still pending (another commit won)."""
        values: dict[str, Any] = {
            ":committed": text(OrderStatus.COMMITTED.value),
            ":pending": text(OrderStatus.PENDING.value),
            ":now": text(now.isoformat()),
            ":actor": text(ACTOR),
        }
        expression = "SET #status = :committed, committed_at = :now, last_actor = :actor"
        if invoice_id:
            expression += ", invoice_id = :invoice"
            values[":invoice"] = text(invoice_id)
        return {
            "Update": {
                "TableName": self._table,
                "Key": self._key(order.order_id),
                "UpdateExpression": expression,
                "ConditionExpression": "#status = :pending",
                "ExpressionAttributeNames": {"#status": "status"},
                "ExpressionAttributeValues": values,
            }
        }


class DynamoDBOrderCommits:
    def __init__(
        self,
        orders: DynamoDBOrderStore,
        subscriptions: DynamoDBSubscriptionStore,
        invoices: DynamoDBInvoiceStore,
        ledger: DynamoDBLedgerStore,
        dynamodb: DynamoDB | None = None,
    ):
        self._orders = orders
        self._subscriptions = subscriptions
        self._invoices = invoices
        self._ledger = ledger
        self._db = dynamodb or DynamoDB()

    def _tail(
        self, order: Order, invoice: Invoice | None, postings: list[LedgerTransaction], now: datetime
    ) -> list[TransactItem]:
        items: list[TransactItem] = []
        if invoice is not None:
            items.append(
                self._invoices.new_invoice_op(invoice, now, actor=ACTOR, source=SOURCE, correlation_id=order.order_id)
            )
        if postings:
            items += self._ledger.posting_ops(postings, now=now).items
        return items

    def commit_signup(
        self,
        order: Order,
        subscription: Subscription,
        invoice: Invoice | None,
        postings: list[LedgerTransaction],
        now: datetime,
    ) -> bool:
        """pending -> committed + the new subscription + its first invoice and postings. False if the
        order was no longer pending (another commit won)."""
        items = [
            self._orders.committed_op(order, now, invoice.invoice_id if invoice else None),
            self._subscriptions.put_internal_op(
                subscription, actor=ACTOR, source=SOURCE, correlation_id=order.order_id
            ),
            *self._tail(order, invoice, postings, now),
        ]
        return self._db.transact_or_refuse(items) is None

    def commit_change(
        self,
        order: Order,
        *,
        immediate: ScheduledChange | None,
        scheduled: ScheduledChange | None,
        invoice: Invoice | None,
        postings: list[LedgerTransaction],
        now: datetime,
    ) -> bool:
        """pending -> committed + the subscription's new terms (now, or scheduled for its next period),
        conditioned on the version the quote was made against (optimistic locking)."""
        items = [
            self._orders.committed_op(order, now, invoice.invoice_id if invoice else None),
            self._subscriptions.change_terms_op(
                order.subscription_id,
                expected_version=order.subscription_version or 0,
                immediate=immediate,
                scheduled=scheduled,
                actor=ACTOR,
                source=SOURCE,
                correlation_id=order.order_id,
                now=now,
            ),
            *self._tail(order, invoice, postings, now),
        ]
        return self._db.transact_or_refuse(items) is None
