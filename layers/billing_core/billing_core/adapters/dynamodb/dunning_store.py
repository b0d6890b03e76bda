"""Dunning cases on DynamoDB (DunningTable): one item per (invoice, cycle). This module owns the item: the
case as a JSON document plus the attributes its conditions and index read (status, version, subscription),
the optimistic lock on `version`, and the parts of the transactions that open and end a case together with
its subscription (fenced on the invoice being open).

Index `by-subscription` (subscription_id, started_at): a subscription's cases, for its access and history.
Index `by-provider-customer` (provider_customer, started_at), sparse: the provider-billed cases of a customer at
the provider, for the provider's payment-method events."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from billing_core.adapters.dynamodb.invoice_store import DynamoDBInvoiceStore
from billing_core.adapters.dynamodb.ledger_store import unposted_check_op
from billing_core.adapters.dynamodb.subscription_store import DynamoDBSubscriptionStore
from billing_core.adapters.dynamodb.table import DynamoDB, Item, TransactItem, number, text
from billing_core.dunning.model import BillingMode, DunningCase
from billing_core.errors import ConfigurationError
from billing_core.ledger import postings
from billing_core.subscriptions.model import Subscription
from billing_core.subscriptions.state_machine import SubscriptionStatus

ACTOR = "system:dunning"
SOURCE = "dunning"
OPERATOR_SOURCE = "api"  # an operator's write through the admin API (a restart)


def cycle_sk(cycle: int) -> str:
    return f"CYCLE#{cycle:03d}"


def cycle_of(sk: str) -> int:
    return int(sk.removeprefix("CYCLE#"))


def case_from_item(item: Item) -> DunningCase:
    return DunningCase.model_validate_json(item["document"]["S"])


def provider_customer_key(provider: str, provider_customer_id: str) -> str:
    return f"{provider}:{provider_customer_id}"


def _case_item(
    case: DunningCase, *, actor: str = ACTOR, source: str = SOURCE, correlation_id: str | None = None
) -> Item:
    item = {
        "invoice_id": text(case.invoice_id),
        "sk": text(cycle_sk(case.cycle)),
        "cycle": number(case.cycle),
        "subscription_id": text(case.subscription_id),
        "customer_id": text(case.customer_id),
        "status": text(case.status.value),
        "started_at": text(case.started_at.isoformat()),
        "execution_name": text(case.execution_name),
        "version": number(case.version),
        "document": text(case.model_dump_json()),
        "last_actor": text(actor),
        "last_change_source": text(source),
        "last_correlation_id": text(correlation_id or case.execution_name),
    }
    if case.provider_customer_id is not None:
        # the sparse index by-provider-customer: a provider's payment-method event names the customer only
        item["provider_customer"] = text(provider_customer_key(case.provider, case.provider_customer_id))
    return item


class DynamoDBDunningStore:
    def __init__(self, table: str, dynamodb: DynamoDB | None = None):
        self._table = table
        self._db = dynamodb or DynamoDB()

    def get(self, invoice_id: str, cycle: int) -> DunningCase | None:
        item = self._db.get(self._table, {"invoice_id": text(invoice_id), "sk": text(cycle_sk(cycle))})
        return case_from_item(item) if item else None

    def latest(self, invoice_id: str) -> DunningCase | None:
        items, _ = self._db.query_page(
            TableName=self._table,
            KeyConditionExpression="invoice_id = :invoice AND begins_with(sk, :cycle)",
            ExpressionAttributeValues={":invoice": text(invoice_id), ":cycle": text("CYCLE#")},
            ScanIndexForward=False,
            Limit=1,
            ConsistentRead=True,
        )
        return case_from_item(items[0]) if items else None

    def for_subscription(self, subscription_id: str, limit: int = 20) -> list[DunningCase]:
        """The subscription's cases, newest first (eventually consistent index: each is read back)."""
        items = self._db.query(
            TableName=self._table,
            IndexName="by-subscription",
            KeyConditionExpression="subscription_id = :subscription",
            ExpressionAttributeValues={":subscription": text(subscription_id)},
            ScanIndexForward=False,
            Limit=limit,
        )
        # KEYS_ONLY: the table's key (invoice_id, sk) is what the index gives back
        found = (self.get(item["invoice_id"]["S"], cycle_of(item["sk"]["S"])) for item in items)
        return [case for case in found if case is not None]

    def for_provider_customer(self, provider: str, provider_customer_id: str, limit: int = 20) -> list[DunningCase]:
        """The provider-billed cases of a customer at the provider, newest first (each read back)."""
        items = self._db.query(
            TableName=self._table,
            IndexName="by-provider-customer",
            KeyConditionExpression="provider_customer = :customer",
            ExpressionAttributeValues={":customer": text(provider_customer_key(provider, provider_customer_id))},
            ScanIndexForward=False,
            Limit=limit,
        )
        found = (self.get(item["invoice_id"]["S"], cycle_of(item["sk"]["S"])) for item in items)
        return [case for case in found if case is not None]

    def save(self, case: DunningCase) -> bool:
        return self._db.transact_or_refuse([self.save_op(case)]) is None

    # --- parts of other writes' transactions -------------------------------------------------------

    def create_op(
        self, case: DunningCase, *, actor: str = ACTOR, source: str = SOURCE, correlation_id: str | None = None
    ) -> TransactItem:
        """A new case; refused if this (invoice, cycle) has one. Dunning's own unless an actor is given (an
        operator's restart)."""
        if case.version != 1:
            raise ValueError("a new case starts at version 1")
        return {
            "Put": {
                "TableName": self._table,
                "Item": _case_item(case, actor=actor, source=source, correlation_id=correlation_id),
                "ConditionExpression": "attribute_not_exists(invoice_id)",
            }
        }

    def unchanged_check_op(self, case: DunningCase) -> TransactItem:
        """A check, in another write's transaction, that the case is still stored with this status and version
        (e.g. the failed cycle a restart continues)."""
        return {
            "ConditionCheck": {
                "TableName": self._table,
                "Key": {"invoice_id": text(case.invoice_id), "sk": text(cycle_sk(case.cycle))},
                "ConditionExpression": "#status = :status AND version = :version",
                "ExpressionAttributeNames": {"#status": "status"},
                "ExpressionAttributeValues": {":status": text(case.status.value), ":version": number(case.version)},
            }
        }

    def save_op(self, case: DunningCase) -> TransactItem:
        """The case over the version before it (optimistic locking): refused if it moved meanwhile."""
        return {
            "Put": {
                "TableName": self._table,
                "Item": _case_item(case),
                "ConditionExpression": "version = :previous",
                "ExpressionAttributeValues": {":previous": number(case.version - 1)},
            }
        }


class DynamoDBDunningTransitions:
    """A case's opening and end, in one transaction with its subscription's move and (where fenced) the paid
    fence: for an invoice we bill, a check that it is still open; for one the provider bills, a check that
    its payment has not been posted to the ledger (the provider's invoice.paid, applied by the webhooks)."""

    def __init__(
        self,
        cases: DynamoDBDunningStore,
        subscriptions: DynamoDBSubscriptionStore,
        invoices: DynamoDBInvoiceStore,
        dynamodb: DynamoDB | None = None,
        *,
        ledger_table: Callable[[], str] | None = None,
    ):
        self._cases = cases
        self._subscriptions = subscriptions
        self._invoices = invoices
        self._ledger_table = ledger_table  # asked only for provider-billed cases
        self._db = dynamodb or DynamoDB()

    def open(
        self, case: DunningCase, subscription: Subscription | None, to_status: SubscriptionStatus | None, now: datetime
    ) -> bool:
        items = [self._cases.create_op(case), self._fence(case)]
        items += self._moves(case, subscription, to_status, now)
        return self._db.transact_or_refuse(items) is None

    def claim(self, case: DunningCase) -> bool:
        return self._db.transact_or_refuse([self._cases.save_op(case), self._fence(case)]) is None

    def _fence(self, case: DunningCase) -> TransactItem:
        if case.billing_mode is BillingMode.INTERNAL:
            return self._invoices.open_check_op(case.invoice_id)
        if self._ledger_table is None or case.provider_invoice_id is None:
            raise ConfigurationError("a provider-billed case needs the ledger table for its paid fence")
        paid = postings.provider_invoice_paid_id(case.provider, case.provider_invoice_id)
        return unposted_check_op(self._ledger_table(), paid)

    def close(
        self,
        case: DunningCase,
        subscription: Subscription | None,
        to_status: SubscriptionStatus | None,
        now: datetime,
        *,
        fenced: bool,
    ) -> bool:
        items = [self._cases.save_op(case)]
        if fenced:
            items.append(self._fence(case))
        items += self._moves(case, subscription, to_status, now)
        return self._db.transact_or_refuse(items) is None

    def restart(
        self,
        failed: DunningCase,
        case: DunningCase,
        subscription: Subscription | None,
        to_status: SubscriptionStatus | None,
        now: datetime,
        *,
        actor: str,
        correlation_id: str | None,
    ) -> bool:
        if case.invoice_id != failed.invoice_id or case.cycle != failed.cycle + 1:
            raise ValueError("a restart opens the cycle after the failed one, of the same invoice")
        correlation = correlation_id or case.execution_name
        items = [
            self._cases.unchanged_check_op(failed),
            self._cases.create_op(case, actor=actor, source=OPERATOR_SOURCE, correlation_id=correlation),
            self._fence(case),
        ]
        items += self._moves(case, subscription, to_status, now, actor=actor, source=OPERATOR_SOURCE)
        return self._db.transact_or_refuse(items) is None

    def _moves(
        self,
        case: DunningCase,
        subscription: Subscription | None,
        to_status: SubscriptionStatus | None,
        now: datetime,
        *,
        actor: str = ACTOR,
        source: str = SOURCE,
    ) -> list[TransactItem]:
        if subscription is None or to_status is None:
            return []
        op: dict[str, Any] = self._subscriptions.status_op(
            subscription, to_status, now=now, actor=actor, source=source, correlation_id=case.execution_name
        )
        return [op]
