"""Orders on DynamoDB. What an order was quoted is written once (`document`); what happened to it lives in
attributes the conditions test: status, payment_claimed_at, payment_id. A commit is one transaction:
the order's pending -> committed transition together with the subscription it creates or changes, the
invoice and the ledger postings - so two commits can never both apply."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from billing_core.adapters.aws import client, error_code, translate
from billing_core.adapters.dynamodb.billing_store import internal_subscription_item, invoice_item
from billing_core.adapters.dynamodb.ledger_items import n, posting_items, s
from billing_core.invoices.model import Invoice
from billing_core.ledger.model import LedgerTransaction
from billing_core.orders.model import Order, OrderStatus
from billing_core.subscriptions.model import ScheduledChange, Subscription

DYNAMIC = ("status", "committed_at", "expired_at", "failed_at", "failure_code", "payment_id", "invoice_id")


class DynamoDBOrderStore:
    def __init__(
        self,
        *,
        orders_table: str,
        subscriptions_table: str,
        invoices_table: str,
        ledger_table: str,
        balances_table: str,
        dynamodb: Any | None = None,
    ):
        self._orders_table = orders_table
        self._subscriptions_table = subscriptions_table
        self._invoices_table = invoices_table
        self._ledger_table = ledger_table
        self._balances_table = balances_table
        self._dynamodb = dynamodb or client("dynamodb")

    # --- basics ------------------------------------------------------------------------------------

    def create(self, order: Order) -> None:
        document = order.model_dump(mode="json", exclude=set(DYNAMIC))
        item = {
            "order_id": s(order.order_id),
            "document": s(json.dumps(document, sort_keys=True)),
            "status": s(order.status.value),
            "kind": s(order.kind.value),
            "subscription_id": s(order.subscription_id),
            "created_at": s(order.created_at.isoformat()),
            "expires_at": s(order.quote.expires_at.isoformat()),
            "last_actor": s("user:admin"),
            "last_change_source": s("api"),
            "last_correlation_id": s(order.order_id),
        }
        try:
            self._dynamodb.put_item(
                TableName=self._orders_table, Item=item, ConditionExpression="attribute_not_exists(order_id)"
            )
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, operation="dynamodb.PutItem") from exc

    def get(self, order_id: str) -> Order | None:
        try:
            item = self._dynamodb.get_item(
                TableName=self._orders_table, Key={"order_id": s(order_id)}, ConsistentRead=True
            ).get("Item")
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, operation="dynamodb.GetItem") from exc
        if not item:
            return None
        values = json.loads(item["document"]["S"])
        values.update({name: item[name]["S"] for name in DYNAMIC if name in item})
        return Order.model_validate(values)

    def payment_claimed_at(self, order_id: str) -> datetime | None:
        try:
            item = self._dynamodb.get_item(
                TableName=self._orders_table,
                Key={"order_id": s(order_id)},
                ConsistentRead=True,
                ProjectionExpression="payment_claimed_at",
            ).get("Item", {})
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, operation="dynamodb.GetItem") from exc
        return datetime.fromisoformat(item["payment_claimed_at"]["S"]) if "payment_claimed_at" in item else None

    def _update(self, order_id: str, expression: str, condition: str, values: dict[str, Any]) -> bool:
        try:
            self._dynamodb.update_item(
                TableName=self._orders_table,
                Key={"order_id": s(order_id)},
                UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise translate(exc, operation="dynamodb.UpdateItem") from exc
        except BotoCoreError as exc:
            raise translate(exc, operation="dynamodb.UpdateItem") from exc
        return True

    def expire(self, order_id: str, now: datetime) -> bool:
        """pending -> expired, unless a payment is under way (its money may yet arrive)."""
        return self._update(
            order_id,
            "SET #status = :expired, expired_at = :now, last_change_source = :source, last_actor = :actor",
            "#status = :pending AND attribute_not_exists(payment_claimed_at)",
            {
                ":expired": s(OrderStatus.EXPIRED.value),
                ":pending": s(OrderStatus.PENDING.value),
                ":now": s(now.isoformat()),
                ":source": s("api"),
                ":actor": s("system:orders"),
            },
        )

    def fail(self, order_id: str, code: str, now: datetime) -> bool:
        return self._update(
            order_id,
            "SET #status = :failed, failed_at = :now, failure_code = :code, last_actor = :actor",
            "#status = :pending",
            {
                ":failed": s(OrderStatus.FAILED.value),
                ":pending": s(OrderStatus.PENDING.value),
                ":now": s(now.isoformat()),
                ":code": s(code),
                ":actor": s("system:orders"),
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
                ":now": s(now.isoformat()),
                ":pending": s(OrderStatus.PENDING.value),
                ":stale": s(stale_before.isoformat()),
                ":actor": s("system:orders"),
            },
        )

    def record_payment(self, order_id: str, payment_id: str) -> bool:
        return self._update(
            order_id,
            "SET payment_id = :payment, last_actor = :actor",
            "#status = :pending AND (attribute_not_exists(payment_id) OR payment_id = :payment)",
            {":payment": s(payment_id), ":pending": s(OrderStatus.PENDING.value), ":actor": s("system:orders")},
        )

    # --- commits -----------------------------------------------------------------------------------

    def _commit_item(self, order: Order, now: datetime, invoice_id: str | None) -> dict[str, Any]:
        values: dict[str, Any] = {
            ":committed": s(OrderStatus.COMMITTED.value),
            ":pending": s(OrderStatus.PENDING.value),
            ":now": s(now.isoformat()),
            ":actor": s("system:orders"),
        }
        expression = "SET #status = :committed, committed_at = :now, last_actor = :actor"
        if invoice_id:
            expression += ", invoice_id = :invoice"
            values[":invoice"] = s(invoice_id)
        return {
            "Update": {
                "TableName": self._orders_table,
                "Key": {"order_id": s(order.order_id)},
                "UpdateExpression": expression,
                "ConditionExpression": "#status = :pending",
                "ExpressionAttributeNames": {"#status": "status"},
                "ExpressionAttributeValues": values,
            }
        }

    def _transact(self, items: list[dict[str, Any]]) -> bool:
        try:
            self._dynamodb.transact_write_items(TransactItems=items)
        except ClientError as exc:
            if error_code(exc) == "TransactionCanceledException":
                codes = [r.get("Code", "None") for r in exc.response.get("CancellationReasons", [])]
                if "ConditionalCheckFailed" in codes:
                    return False
            raise translate(exc, operation="dynamodb.TransactWriteItems") from exc
        except BotoCoreError as exc:
            raise translate(exc, operation="dynamodb.TransactWriteItems") from exc
        return True

    def _tail(
        self, invoice: Invoice | None, postings: list[LedgerTransaction], now: datetime, order: Order
    ) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        if invoice is not None:
            items.append(
                {
                    "Put": {
                        "TableName": self._invoices_table,
                        "Item": invoice_item(
                            invoice, now, actor="system:orders", source="api", correlation_id=order.order_id
                        ),
                        "ConditionExpression": "attribute_not_exists(invoice_id)",
                    }
                }
            )
        if postings:
            items += posting_items(
                postings, ledger_table=self._ledger_table, balances_table=self._balances_table, now=now
            ).items
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
        return self._transact(
            [
                self._commit_item(order, now, invoice.invoice_id if invoice else None),
                {
                    "Put": {
                        "TableName": self._subscriptions_table,
                        "Item": internal_subscription_item(
                            subscription, actor="system:orders", source="api", correlation_id=order.order_id
                        ),
                        "ConditionExpression": "attribute_not_exists(subscription_id)",
                    }
                },
                *self._tail(invoice, postings, now, order),
            ]
        )

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
        values: dict[str, Any] = {
            ":version": n(order.subscription_version or 0),
            ":one": n(1),
            ":now": s(now.isoformat()),
            ":actor": s("system:orders"),
            ":source": s("api"),
            ":order": s(order.order_id),
        }
        assignments = [
            "version = version + :one",
            "updated_at = :now",
            "last_actor = :actor",
            "last_change_source = :source",
            "last_correlation_id = :order",
        ]
        if immediate is not None:
            assignments += [
                "plan_id = :plan",
                "price_version = :price_version",
                "amount_minor = :amount",
                "#interval = :interval",
            ]
            values.update(
                {
                    ":plan": s(immediate.plan_id),
                    ":price_version": s(immediate.price_version),
                    ":amount": n(immediate.amount_minor),
                    ":interval": s(immediate.interval.value),
                }
            )
        if scheduled is not None:
            assignments.append("scheduled_change = :scheduled")
            values[":scheduled"] = s(scheduled.model_dump_json())
        subscription_update = {
            "Update": {
                "TableName": self._subscriptions_table,
                "Key": {"subscription_id": s(order.subscription_id)},
                "UpdateExpression": "SET " + ", ".join(assignments),
                "ConditionExpression": "version = :version",
                "ExpressionAttributeValues": values,
            }
        }
        if immediate is not None:
            subscription_update["Update"]["ExpressionAttributeNames"] = {"#interval": "interval"}
        return self._transact(
            [
                self._commit_item(order, now, invoice.invoice_id if invoice else None),
                subscription_update,
                *self._tail(invoice, postings, now, order),
            ]
        )
