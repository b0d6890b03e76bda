"""Our billing cycle on DynamoDB: due subscriptions, invoices and charge attempts, each step one
conditional write so a run can be repeated, run concurrently or resumed after a crash.

InvoicesTable holds, per invoice id, the INVOICE item and ATTEMPT#nnn items. A sparse `pending-work`
index (pending_work, pending_since) is the billing run's to-do list: `charge` (issued, first attempt
not claimed), `resolve_attempt` (an attempt that is PENDING or UNKNOWN), `dunning_handoff` (a failed
attempt not yet handed to dunning). Every item leaves the index in the write that finishes its step."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from billing_core.adapters.aws import client, error_code, translate
from billing_core.adapters.dynamodb.ledger_items import n, posting_items, s
from billing_core.adapters.dynamodb.webhook_store import subscription_from_item
from billing_core.invoices.model import (
    AttemptStatus,
    ChargeAttempt,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    InvoiceView,
    IssueResult,
)
from billing_core.ledger.model import LedgerTransaction
from billing_core.subscriptions.model import BillingMode, Subscription
from billing_core.subscriptions.state_machine import SubscriptionStatus

DUE = "due"
INVOICE_SK = "INVOICE"


def attempt_sk(number: int) -> str:
    return f"ATTEMPT#{number:03d}"


def _time(value: datetime | None) -> dict[str, str] | None:
    return s(value.isoformat()) if value else None


def _when(item: dict[str, Any], name: str) -> datetime | None:
    return datetime.fromisoformat(item[name]["S"]) if name in item else None


def _text(item: dict[str, Any], name: str) -> str | None:
    return item[name]["S"] if name in item else None


def invoice_from_item(item: dict[str, Any]) -> Invoice:
    return Invoice(
        invoice_id=item["invoice_id"]["S"],
        subscription_id=item["subscription_id"]["S"],
        customer_id=item["customer_id"]["S"],
        provider=item["provider"]["S"],
        provider_customer_id=item["provider_customer_id"]["S"],
        currency=item["currency"]["S"],
        lines=tuple(InvoiceLine.model_validate(line) for line in json.loads(item["lines"]["S"])),
        status=InvoiceStatus(item["status"]["S"]),
        period_start=datetime.fromisoformat(item["period_start"]["S"]),
        period_end=datetime.fromisoformat(item["period_end"]["S"]),
        issued_at=datetime.fromisoformat(item["issued_at"]["S"]),
        paid_at=_when(item, "paid_at"),
        attempt_count=int(item.get("attempt_count", {"N": "0"})["N"]),
        version=int(item["version"]["N"]),
    )


def attempt_from_item(item: dict[str, Any]) -> ChargeAttempt:
    return ChargeAttempt(
        invoice_id=item["invoice_id"]["S"],
        attempt_number=int(item["attempt_number"]["N"]),
        status=AttemptStatus(item["status"]["S"]),
        amount_minor=int(item["amount_minor"]["N"]),
        currency=item["currency"]["S"],
        provider=item["provider"]["S"],
        idempotency_key=item["idempotency_key"]["S"],
        provider_payment_id=_text(item, "provider_payment_id"),
        failure_code=_text(item, "failure_code"),
        failure_message=_text(item, "failure_message"),
        attempted_at=datetime.fromisoformat(item["attempted_at"]["S"]),
        lease_until=datetime.fromisoformat(item["lease_until"]["S"]),
        unknown_since=_when(item, "unknown_since"),
        resolved_at=_when(item, "resolved_at"),
    )


def invoice_item(
    invoice: Invoice, now: datetime, *, actor: str, source: str, correlation_id: str | None = None
) -> dict[str, Any]:
    """An invoice as first written; an open invoice with something due goes onto the charge list."""
    item: dict[str, Any] = {
        "invoice_id": s(invoice.invoice_id),
        "sk": s(INVOICE_SK),
        "subscription_id": s(invoice.subscription_id),
        "customer_id": s(invoice.customer_id),
        "provider": s(invoice.provider),
        "provider_customer_id": s(invoice.provider_customer_id),
        "currency": s(invoice.currency),
        "lines": s(json.dumps([line.model_dump(mode="json") for line in invoice.lines])),
        "total_minor": n(invoice.total_minor),
        "status": s(invoice.status.value),
        "period_start": s(invoice.period_start.isoformat()),
        "period_end": s(invoice.period_end.isoformat()),
        "issued_at": s(invoice.issued_at.isoformat()),
        "attempt_count": n(invoice.attempt_count),
        "version": n(1),
        "last_actor": s(actor),
        "last_change_source": s(source),
        "last_correlation_id": s(correlation_id or invoice.invoice_id),
    }
    if invoice.status is InvoiceStatus.OPEN and invoice.total_minor > 0:
        item["pending_work"] = s("charge")
        item["pending_since"] = s(now.isoformat())
    if invoice.paid_at:
        item["paid_at"] = s(invoice.paid_at.isoformat())
    return item


def internal_subscription_item(
    subscription: Subscription, *, actor: str, source: str, correlation_id: str | None = None
) -> dict[str, Any]:
    """The item of a subscription billed by us, as first written."""
    terms = subscription.terms
    if subscription.billing_mode is not BillingMode.INTERNAL or terms is None:
        raise ValueError("an internal subscription needs BillingMode.INTERNAL and terms")
    item: dict[str, Any] = {
        "subscription_id": s(subscription.subscription_id),
        "provider": s(subscription.provider),
        "billing_mode": s(BillingMode.INTERNAL.value),
        "status": s(subscription.status.value),
        "version": n(1),
        "position": n(0),
        "cancel_at_period_end": {"BOOL": subscription.cancel_at_period_end},
        "updated_at": s(subscription.updated_at.isoformat()),
        "customer_id": s(terms.customer_id),
        "plan_id": s(terms.plan_id),
        "price_version": s(terms.price_version),
        "amount_minor": n(terms.amount_minor),
        "currency": s(terms.currency),
        "interval": s(terms.interval.value),
        "billing_anchor_day": n(terms.billing_anchor_day),
        "last_actor": s(actor),
        "last_change_source": s(source),
        "last_correlation_id": s(correlation_id or subscription.subscription_id),
    }
    item["trial_end_policy"] = s(terms.trial_end_policy)
    if subscription.trial_end is not None:
        item["trial_end"] = s(subscription.trial_end.isoformat())
    if terms.next_billing_at is not None:
        item["next_billing_at"] = s(terms.next_billing_at.isoformat())
        item["billing_due"] = s(DUE)
    optional = {
        "provider_customer_id": subscription.provider_customer_id,
        "payment_method_id": terms.payment_method_id,
        "current_period_start": subscription.current_period_start.isoformat()
        if subscription.current_period_start
        else None,
        "current_period_end": subscription.current_period_end.isoformat() if subscription.current_period_end else None,
    }
    item.update({name: s(value) for name, value in optional.items() if value})
    return item


class DynamoDBBillingStore:
    def __init__(
        self,
        *,
        subscriptions_table: str,
        invoices_table: str,
        ledger_table: str,
        balances_table: str,
        dynamodb: Any | None = None,
    ):
        self._subscriptions_table = subscriptions_table
        self._invoices_table = invoices_table
        self._ledger_table = ledger_table
        self._balances_table = balances_table
        self._dynamodb = dynamodb or client("dynamodb")

    # --- helpers -----------------------------------------------------------------------------------

    def _transact(self, items: list[dict[str, Any]]) -> list[str] | None:
        """None when written; the cancellation codes when a condition failed."""
        try:
            self._dynamodb.transact_write_items(TransactItems=items)
        except ClientError as exc:
            if error_code(exc) == "TransactionCanceledException":
                codes = [r.get("Code", "None") for r in exc.response.get("CancellationReasons", [])]
                if "ConditionalCheckFailed" in codes:
                    return codes
            raise translate(exc, operation="dynamodb.TransactWriteItems") from exc
        except BotoCoreError as exc:
            raise translate(exc, operation="dynamodb.TransactWriteItems") from exc
        return None

    def _update(self, **request: Any) -> bool:
        try:
            self._dynamodb.update_item(**request)
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise translate(exc, operation="dynamodb.UpdateItem") from exc
        except BotoCoreError as exc:
            raise translate(exc, operation="dynamodb.UpdateItem") from exc
        return True

    def _query(self, **request: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        try:
            while True:
                response = self._dynamodb.query(**request)
                items += response.get("Items", [])
                if "LastEvaluatedKey" not in response or len(items) >= request.get("Limit", 10**9):
                    return items
                request["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, operation="dynamodb.Query") from exc

    # --- subscriptions -----------------------------------------------------------------------------

    def create_internal_subscription(self, subscription: Subscription, *, actor: str, source: str) -> bool:
        """Store a subscription billed by us. False if one with this id exists (nothing written)."""
        item = internal_subscription_item(subscription, actor=actor, source=source)
        try:
            self._dynamodb.put_item(
                TableName=self._subscriptions_table,
                Item=item,
                ConditionExpression="attribute_not_exists(subscription_id)",
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise translate(exc, operation="dynamodb.PutItem") from exc
        except BotoCoreError as exc:
            raise translate(exc, operation="dynamodb.PutItem") from exc
        return True

    def due_subscriptions(self, now: datetime, limit: int) -> list[Subscription]:
        items = self._query(
            TableName=self._subscriptions_table,
            IndexName="billing-due",
            KeyConditionExpression="billing_due = :due AND next_billing_at <= :now",
            ExpressionAttributeValues={":due": s(DUE), ":now": s(now.isoformat())},
            Limit=limit,
        )
        # The index is eventually consistent: read each one back before acting on it.
        due = []
        for item in items:
            current = self.get_subscription(item["subscription_id"]["S"])
            due_at = current.terms.next_billing_at if current is not None and current.terms else None
            if current is not None and due_at is not None and due_at <= now:
                due.append(current)
        return due

    def get_subscription(self, subscription_id: str) -> Subscription | None:
        try:
            item = self._dynamodb.get_item(
                TableName=self._subscriptions_table, Key={"subscription_id": s(subscription_id)}, ConsistentRead=True
            ).get("Item")
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, operation="dynamodb.GetItem") from exc
        return subscription_from_item(item) if item else None

    def _advance_item(
        self,
        subscription: Subscription,
        *,
        new_start: datetime,
        new_end: datetime,
        status: SubscriptionStatus,
        now: datetime,
        correlation_id: str,
    ) -> dict[str, Any]:
        assert subscription.terms is not None and subscription.current_period_end is not None
        values = {
            ":expected_end": s(subscription.current_period_end.isoformat()),
            ":start": s(new_start.isoformat()),
            ":end": s(new_end.isoformat()),
            ":status": s(status.value),
            ":now": s(now.isoformat()),
            ":one": n(1),
            ":internal": s(BillingMode.INTERNAL.value),
            ":actor": s("system:billing_run"),
            ":source": s("schedule"),
            ":correlation": s(correlation_id),
        }
        expression = (
            "SET current_period_start = :start, current_period_end = :end, #status = :status, "
            "updated_at = :now, version = version + :one, last_actor = :actor, last_change_source = :source, "
            "last_correlation_id = :correlation"
        )
        removals = []
        names = {"#status": "status"}
        if status in (SubscriptionStatus.CANCELED, SubscriptionStatus.PAUSED):
            removals += ["billing_due", "next_billing_at"]
        else:
            expression += ", next_billing_at = :end"
        change = subscription.terms.scheduled_change
        if change is not None and status not in (SubscriptionStatus.CANCELED, SubscriptionStatus.PAUSED):
            # An end-of-term order takes effect with the period it was scheduled for.
            expression += (
                ", plan_id = :plan, price_version = :price_version, amount_minor = :amount, #interval = :interval"
            )
            values.update(
                {
                    ":plan": s(change.plan_id),
                    ":price_version": s(change.price_version),
                    ":amount": n(change.amount_minor),
                    ":interval": s(change.interval.value),
                }
            )
            names["#interval"] = "interval"
            removals.append("scheduled_change")
        if removals:
            expression += " REMOVE " + ", ".join(removals)
        return {
            "Update": {
                "TableName": self._subscriptions_table,
                "Key": {"subscription_id": s(subscription.subscription_id)},
                "UpdateExpression": expression,
                # The period has not moved since we read it: two runs cannot both advance it.
                "ConditionExpression": "current_period_end = :expected_end AND billing_mode = :internal",
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": values,
            }
        }

    def end_subscription(
        self, subscription: Subscription, now: datetime, status: SubscriptionStatus = SubscriptionStatus.CANCELED
    ) -> bool:
        """The period ended and nothing follows: canceled (cancel_at_period_end, a trial's cancel policy)
        or paused (a trial's pause policy). No invoice; the subscription leaves the billing list."""
        assert subscription.current_period_end is not None
        update = self._advance_item(
            subscription,
            new_start=subscription.current_period_end,
            new_end=subscription.current_period_end,
            status=status,
            now=now,
            correlation_id=f"period_end:{subscription.subscription_id}",
        )["Update"]
        update["UpdateExpression"] = update["UpdateExpression"].replace(
            "current_period_start = :start, current_period_end = :end, ", ""
        )
        del update["ExpressionAttributeValues"][":start"], update["ExpressionAttributeValues"][":end"]
        return self._update(**update)

    def hold_subscription(self, subscription: Subscription) -> bool:
        """Take a due subscription that cannot be billed now (unpaid, paused) off the billing list, so it
        never blocks the ones behind it; whatever makes it billable again (dunning recovery, resume) puts
        billing_due back."""
        return self._update(
            TableName=self._subscriptions_table,
            Key={"subscription_id": s(subscription.subscription_id)},
            UpdateExpression="SET billing_due = :held, last_actor = :actor, last_change_source = :source",
            ConditionExpression="billing_due = :due AND #status = :status",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={
                ":held": s("held"),
                ":due": s(DUE),
                ":status": s(subscription.status.value),
                ":actor": s("system:billing_run"),
                ":source": s("schedule"),
            },
        )

    def trials_ending(self, before: datetime, limit: int) -> list[Subscription]:
        """Trialing subscriptions whose trial ends before `before` and that were not told yet."""
        items = self._query(
            TableName=self._subscriptions_table,
            IndexName="billing-due",
            KeyConditionExpression="billing_due = :due AND next_billing_at <= :before",
            ExpressionAttributeValues={":due": s(DUE), ":before": s(before.isoformat())},
            Limit=limit,
        )
        found = []
        for item in items:
            current = self.get_subscription(item["subscription_id"]["S"])
            if current is not None and current.status is SubscriptionStatus.TRIALING and current.trial_end:
                found.append(current)
        return found

    def mark_trial_notice(self, subscription: Subscription) -> bool:
        """Once per trial end: True for the first caller only."""
        assert subscription.trial_end is not None
        return self._update(
            TableName=self._subscriptions_table,
            Key={"subscription_id": s(subscription.subscription_id)},
            UpdateExpression="SET trial_notice_for = :trial_end, last_actor = :actor, last_change_source = :source",
            ConditionExpression="attribute_not_exists(trial_notice_for) OR trial_notice_for <> :trial_end",
            ExpressionAttributeValues={
                ":trial_end": s(subscription.trial_end.isoformat()),
                ":actor": s("system:billing_run"),
                ":source": s("schedule"),
            },
        )

    def trial_notice_sent(self, subscription: Subscription) -> bool:
        try:
            item = self._dynamodb.get_item(
                TableName=self._subscriptions_table,
                Key={"subscription_id": s(subscription.subscription_id)},
                ConsistentRead=True,
                ProjectionExpression="trial_notice_for",
            ).get("Item", {})
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, operation="dynamodb.GetItem") from exc
        return bool(subscription.trial_end) and item.get("trial_notice_for", {}).get("S") == (
            subscription.trial_end.isoformat() if subscription.trial_end else None
        )

    # --- invoices ----------------------------------------------------------------------------------

    def issue_invoice(
        self,
        invoice: Invoice,
        subscription: Subscription,
        postings: Sequence[LedgerTransaction],
        *,
        status: SubscriptionStatus,
        now: datetime,
        balance_limits: Mapping[tuple[str, str], int] | None = None,
    ) -> IssueResult:
        """Invoice + period advance + postings (revenue; credit applied) in one transaction."""
        item = invoice_item(invoice, now, actor="system:billing_run", source="schedule")
        items: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": self._invoices_table,
                    "Item": item,
                    "ConditionExpression": "attribute_not_exists(invoice_id)",
                }
            },
            self._advance_item(
                subscription,
                new_start=invoice.period_start,
                new_end=invoice.period_end,
                status=status,
                now=now,
                correlation_id=invoice.invoice_id,
            ),
        ]
        if postings:
            items += posting_items(
                postings,
                ledger_table=self._ledger_table,
                balances_table=self._balances_table,
                now=now,
                balance_limits=balance_limits,
            ).items
        codes = self._transact(items)
        if codes is None:
            return IssueResult.ISSUED
        if codes[0] == "ConditionalCheckFailed" or codes[1] == "ConditionalCheckFailed":
            return IssueResult.ALREADY_ISSUED  # the invoice exists or the period moved: another run did it
        return IssueResult.CREDIT_CHANGED  # the customer's credit changed since it was read

    def get_invoice(self, invoice_id: str) -> InvoiceView | None:
        items = self._query(
            TableName=self._invoices_table,
            KeyConditionExpression="invoice_id = :id",
            ExpressionAttributeValues={":id": s(invoice_id)},
            ConsistentRead=True,
        )
        invoice = next((invoice_from_item(i) for i in items if i["sk"]["S"] == INVOICE_SK), None)
        if invoice is None:
            return None
        attempts = [attempt_from_item(i) for i in items if i["sk"]["S"].startswith("ATTEMPT#")]
        return InvoiceView(invoice=invoice, total_minor=invoice.total_minor, attempts=attempts)

    def pending(self, work: str, now: datetime, limit: int) -> list[tuple[str, str]]:
        """(invoice id, sort key) of items waiting for `work`, oldest first."""
        items = self._query(
            TableName=self._invoices_table,
            IndexName="pending-work",
            KeyConditionExpression="pending_work = :work AND pending_since <= :now",
            ExpressionAttributeValues={":work": s(work), ":now": s(now.isoformat())},
            Limit=limit,
        )
        return [(i["invoice_id"]["S"], i["sk"]["S"]) for i in items[:limit]]

    # --- charge attempts ---------------------------------------------------------------------------

    def claim_attempt(self, attempt: ChargeAttempt) -> bool:
        """Create attempt N (PENDING) and take the invoice's `charge` work, atomically. Exactly one
        claimant wins; the attempt goes onto the `resolve_attempt` list from its lease's end."""
        item = {
            "invoice_id": s(attempt.invoice_id),
            "sk": s(attempt_sk(attempt.attempt_number)),
            "attempt_number": n(attempt.attempt_number),
            "status": s(AttemptStatus.PENDING.value),
            "amount_minor": n(attempt.amount_minor),
            "currency": s(attempt.currency),
            "provider": s(attempt.provider),
            "idempotency_key": s(attempt.idempotency_key),
            "attempted_at": s(attempt.attempted_at.isoformat()),
            "lease_until": s(attempt.lease_until.isoformat()),
            "pending_work": s("resolve_attempt"),
            "pending_since": s(attempt.lease_until.isoformat()),
            "last_actor": s("system:billing_run"),
            "last_change_source": s("schedule"),
            "last_correlation_id": s(attempt.idempotency_key),
        }
        return (
            self._transact(
                [
                    {
                        "Put": {
                            "TableName": self._invoices_table,
                            "Item": item,
                            "ConditionExpression": "attribute_not_exists(invoice_id)",
                        }
                    },
                    {
                        "Update": {
                            "TableName": self._invoices_table,
                            "Key": {"invoice_id": s(attempt.invoice_id), "sk": s(INVOICE_SK)},
                            "UpdateExpression": "SET attempt_count = :n, version = version + :one "
                            "REMOVE pending_work, pending_since",
                            # pending_work guards against a claimant acting on a stale list entry
                            # after another claimant's attempt was created and not yet settled.
                            "ConditionExpression": "attempt_count = :previous AND #status = :open "
                            "AND pending_work = :charge",
                            "ExpressionAttributeNames": {"#status": "status"},
                            "ExpressionAttributeValues": {
                                ":charge": s("charge"),
                                ":n": n(attempt.attempt_number),
                                ":previous": n(attempt.attempt_number - 1),
                                ":one": n(1),
                                ":open": s(InvoiceStatus.OPEN.value),
                            },
                        }
                    },
                ]
            )
            is None
        )

    def get_attempt(self, invoice_id: str, number: int) -> ChargeAttempt | None:
        try:
            item = self._dynamodb.get_item(
                TableName=self._invoices_table,
                Key={"invoice_id": s(invoice_id), "sk": s(attempt_sk(number))},
                ConsistentRead=True,
            ).get("Item")
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, operation="dynamodb.GetItem") from exc
        return attempt_from_item(item) if item else None

    def record_payment_id(self, attempt: ChargeAttempt, payment_id: str) -> bool:
        """Written before confirming: from here on the attempt can only be resolved by reading it back."""
        return self._update(
            TableName=self._invoices_table,
            Key={"invoice_id": s(attempt.invoice_id), "sk": s(attempt_sk(attempt.attempt_number))},
            UpdateExpression="SET provider_payment_id = :payment",
            ConditionExpression="attribute_not_exists(provider_payment_id) OR provider_payment_id = :payment",
            ExpressionAttributeValues={":payment": s(payment_id)},
        )

    def mark_unknown(self, attempt: ChargeAttempt, now: datetime, reason: str, retry_at: datetime) -> bool:
        return self._update(
            TableName=self._invoices_table,
            Key={"invoice_id": s(attempt.invoice_id), "sk": s(attempt_sk(attempt.attempt_number))},
            UpdateExpression="SET #status = :unknown, unknown_since = if_not_exists(unknown_since, :now), "
            "failure_message = :reason, pending_work = :work, pending_since = :retry_at",
            ConditionExpression="#status IN (:pending, :unknown)",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={
                ":unknown": s(AttemptStatus.UNKNOWN.value),
                ":pending": s(AttemptStatus.PENDING.value),
                ":now": s(now.isoformat()),
                ":reason": s(reason[:500]),
                ":retry_at": s(retry_at.isoformat()),
                ":work": s("resolve_attempt"),
            },
        )

    def settle_succeeded(
        self, attempt: ChargeAttempt, payment_id: str, posting: LedgerTransaction, now: datetime
    ) -> bool:
        """Attempt SUCCEEDED + invoice paid + money posted, atomically; False if already settled."""
        open_items = self._settle_items(attempt, AttemptStatus.SUCCEEDED, now, payment_id=payment_id)
        invoice_update = {
            "Update": {
                "TableName": self._invoices_table,
                "Key": {"invoice_id": s(attempt.invoice_id), "sk": s(INVOICE_SK)},
                "UpdateExpression": "SET #status = :paid, paid_at = :now, version = version + :one, "
                "last_actor = :actor, last_change_source = :source, last_correlation_id = :payment",
                "ConditionExpression": "#status IN (:open, :uncollectible)",
                "ExpressionAttributeNames": {"#status": "status"},
                "ExpressionAttributeValues": {
                    ":paid": s(InvoiceStatus.PAID.value),
                    ":open": s(InvoiceStatus.OPEN.value),
                    ":uncollectible": s(InvoiceStatus.UNCOLLECTIBLE.value),
                    ":now": s(now.isoformat()),
                    ":one": n(1),
                    ":actor": s("system:billing_run"),
                    ":source": s("schedule"),
                    ":payment": s(payment_id),
                },
            }
        }
        ledger = posting_items([posting], ledger_table=self._ledger_table, balances_table=self._balances_table, now=now)
        codes = self._transact([open_items, invoice_update, *ledger.items])
        if codes is None:
            return True
        if codes[0] == "ConditionalCheckFailed":
            return False  # settled before
        if codes[1] == "ConditionalCheckFailed":
            # Money moved for an invoice that is no longer payable (paid by another attempt, or void):
            # record the attempt and the money; reconciliation reports the duplicate for a refund.
            return self._transact([open_items, *ledger.items]) is None
        return False  # the posting exists: another writer settled this payment

    def close_invoice(
        self,
        invoice: Invoice,
        to_status: InvoiceStatus,
        posting: LedgerTransaction | None,
        *,
        actor: str,
        reason: str,
        now: datetime,
    ) -> bool:
        """open -> void | uncollectible (uncollectible -> void), with its ledger posting, atomically. The
        condition includes the attempt count the caller saw, so a charge claimed in between wins."""
        update = {
            "Update": {
                "TableName": self._invoices_table,
                "Key": {"invoice_id": s(invoice.invoice_id), "sk": s(INVOICE_SK)},
                "UpdateExpression": "SET #status = :to, closed_at = :now, close_reason = :reason, "
                "version = version + :one, last_actor = :actor, last_change_source = :source, "
                "last_correlation_id = :correlation REMOVE pending_work, pending_since",
                "ConditionExpression": "#status = :from AND attempt_count = :attempts",
                "ExpressionAttributeNames": {"#status": "status"},
                "ExpressionAttributeValues": {
                    ":to": s(to_status.value),
                    ":from": s(invoice.status.value),
                    ":attempts": n(invoice.attempt_count),
                    ":now": s(now.isoformat()),
                    ":reason": s(reason[:500]),
                    ":one": n(1),
                    ":actor": s(actor),
                    ":source": s("api"),
                    ":correlation": s(f"{invoice.invoice_id}:{to_status.value}"),
                },
            }
        }
        items = [update]
        if posting is not None:
            items += posting_items(
                [posting], ledger_table=self._ledger_table, balances_table=self._balances_table, now=now
            ).items
        return self._transact(items) is None

    def settle_failed(self, attempt: ChargeAttempt, failure_code: str, failure_message: str, now: datetime) -> bool:
        """Attempt FAILED; the invoice goes onto the dunning hand-over list in the same write."""
        return (
            self._transact(
                [
                    self._settle_items(
                        attempt, AttemptStatus.FAILED, now, failure_code=failure_code, failure_message=failure_message
                    ),
                    {
                        "Update": {
                            "TableName": self._invoices_table,
                            "Key": {"invoice_id": s(attempt.invoice_id), "sk": s(INVOICE_SK)},
                            "UpdateExpression": "SET pending_work = :work, pending_since = :now",
                            "ExpressionAttributeValues": {":work": s("dunning_handoff"), ":now": s(now.isoformat())},
                        }
                    },
                ]
            )
            is None
        )

    def _settle_items(
        self,
        attempt: ChargeAttempt,
        status: AttemptStatus,
        now: datetime,
        *,
        payment_id: str | None = None,
        failure_code: str | None = None,
        failure_message: str | None = None,
    ) -> dict[str, Any]:
        values: dict[str, Any] = {
            ":status": s(status.value),
            ":pending": s(AttemptStatus.PENDING.value),
            ":unknown": s(AttemptStatus.UNKNOWN.value),
            ":now": s(now.isoformat()),
        }
        assignments = ["#status = :status", "resolved_at = :now"]
        for name, value in (
            ("provider_payment_id", payment_id),
            ("failure_code", failure_code),
            ("failure_message", failure_message),
        ):
            if value:
                assignments.append(f"{name} = :{name}")
                values[f":{name}"] = s(value[:500])
        return {
            "Update": {
                "TableName": self._invoices_table,
                "Key": {"invoice_id": s(attempt.invoice_id), "sk": s(attempt_sk(attempt.attempt_number))},
                "UpdateExpression": "SET " + ", ".join(assignments) + " REMOVE pending_work, pending_since",
                "ConditionExpression": "#status IN (:pending, :unknown)",
                "ExpressionAttributeNames": {"#status": "status"},
                "ExpressionAttributeValues": values,
            }
        }

    def complete_handoff(self, invoice_id: str) -> bool:
        return self._update(
            TableName=self._invoices_table,
            Key={"invoice_id": s(invoice_id), "sk": s(INVOICE_SK)},
            UpdateExpression="REMOVE pending_work, pending_since",
            ConditionExpression="pending_work = :work",
            ExpressionAttributeValues={":work": s("dunning_handoff")},
        )

    def unknown_attempts(self, limit: int) -> list[ChargeAttempt]:
        """Every attempt still waiting for resolution, however recent (reconciliation's view)."""
        items = self._query(
            TableName=self._invoices_table,
            IndexName="pending-work",
            KeyConditionExpression="pending_work = :work",
            ExpressionAttributeValues={":work": s("resolve_attempt")},
            Limit=limit,
        )
        return [
            attempt
            for attempt in (self.get_attempt(i["invoice_id"]["S"], int(i["sk"]["S"][8:])) for i in items)
            if attempt
        ]
