# Past 400 lines: it is the one store of the invoice aggregate (INVOICE and ATTEMPT#nnn items, their codec and every
# condition on them); splitting it would give the aggregate two stores.
"""Invoices and their charge attempts on DynamoDB (InvoicesTable): per invoice id, the INVOICE item and
ATTEMPT#nnn items. This module owns both items: their codec, their conditions, and the parts other writes
put in their own transactions (a new invoice, an attempt settled, an invoice paid or closed).

The sparse `pending-work` index (pending_work, pending_since) is the billing run's to-do list (PendingWork):
every item leaves it in the write that finishes its step, so a run can be repeated, run concurrently or
resumed after a crash."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from billing_core.adapters.dynamodb.table import (
    DynamoDB,
    Item,
    TransactItem,
    number,
    read_int,
    read_moment,
    read_text,
    text,
)
from billing_core.invoices.model import (
    AttemptStatus,
    ChargeAttempt,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    InvoiceView,
    PendingItem,
    PendingWork,
)

INVOICE_SK = "INVOICE"
ATTEMPT_PREFIX = "ATTEMPT#"
# Charge attempts are made by the billing run's charge service (also when an order charges a proration
# invoice at once): the audit trail names it.
ATTEMPT_ACTOR = "system:billing_run"
ATTEMPT_SOURCE = "schedule"
DUNNING_ACTOR = "system:dunning"
DUNNING_SOURCE = "dunning"


def attempt_sk(number_: int) -> str:
    return f"{ATTEMPT_PREFIX}{number_:03d}"


def attempt_number_of(sk: str) -> int:
    return int(sk[len(ATTEMPT_PREFIX) :])


def invoice_from_item(item: Item) -> Invoice:
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
        paid_at=read_moment(item, "paid_at"),
        attempt_count=read_int(item, "attempt_count"),
        version=int(item["version"]["N"]),
    )


def attempt_from_item(item: Item) -> ChargeAttempt:
    return ChargeAttempt(
        invoice_id=item["invoice_id"]["S"],
        attempt_number=int(item["attempt_number"]["N"]),
        status=AttemptStatus(item["status"]["S"]),
        amount_minor=int(item["amount_minor"]["N"]),
        currency=item["currency"]["S"],
        provider=item["provider"]["S"],
        idempotency_key=item["idempotency_key"]["S"],
        provider_payment_id=read_text(item, "provider_payment_id"),
        failure_code=read_text(item, "failure_code"),
        failure_message=read_text(item, "failure_message"),
        attempted_at=datetime.fromisoformat(item["attempted_at"]["S"]),
        lease_until=datetime.fromisoformat(item["lease_until"]["S"]),
        unknown_since=read_moment(item, "unknown_since"),
        resolved_at=read_moment(item, "resolved_at"),
        dunning_key=read_text(item, "dunning_key"),
    )


def _invoice_item(invoice: Invoice, now: datetime, *, actor: str, source: str, correlation_id: str | None) -> Item:
    """An invoice as first written; an open invoice with something due goes onto the charge list."""
    item: Item = {
        "invoice_id": text(invoice.invoice_id),
        "sk": text(INVOICE_SK),
        "subscription_id": text(invoice.subscription_id),
        "customer_id": text(invoice.customer_id),
        "provider": text(invoice.provider),
        "provider_customer_id": text(invoice.provider_customer_id),
        "currency": text(invoice.currency),
        "lines": text(json.dumps([line.model_dump(mode="json") for line in invoice.lines])),
        "total_minor": number(invoice.total_minor),
        "status": text(invoice.status.value),
        "period_start": text(invoice.period_start.isoformat()),
        "period_end": text(invoice.period_end.isoformat()),
        "issued_at": text(invoice.issued_at.isoformat()),
        "attempt_count": number(invoice.attempt_count),
        "version": number(1),
        "last_actor": text(actor),
        "last_change_source": text(source),
        "last_correlation_id": text(correlation_id or invoice.invoice_id),
    }
    if invoice.status is InvoiceStatus.OPEN and invoice.total_minor > 0:
        item["pending_work"] = text(PendingWork.CHARGE.value)
        item["pending_since"] = text(now.isoformat())
    if invoice.paid_at:
        item["paid_at"] = text(invoice.paid_at.isoformat())
    return item


class DynamoDBInvoiceStore:
    def __init__(self, table: str, dynamodb: DynamoDB | None = None):
        self._table = table
        self._db = dynamodb or DynamoDB()

    def _key(self, invoice_id: str, sk: str = INVOICE_SK) -> Item:
        return {"invoice_id": text(invoice_id), "sk": text(sk)}

    # --- reads -------------------------------------------------------------------------------------

    def get(self, invoice_id: str) -> InvoiceView | None:
        items = self._db.query(
            TableName=self._table,
            KeyConditionExpression="invoice_id = :id",
            ExpressionAttributeValues={":id": text(invoice_id)},
            ConsistentRead=True,
        )
        invoice = next((invoice_from_item(i) for i in items if i["sk"]["S"] == INVOICE_SK), None)
        if invoice is None:
            return None
        attempts = [attempt_from_item(i) for i in items if i["sk"]["S"].startswith(ATTEMPT_PREFIX)]
        return InvoiceView(invoice=invoice, total_minor=invoice.total_minor, attempts=attempts)

    def get_attempt(self, invoice_id: str, number_: int) -> ChargeAttempt | None:
        item = self._db.get(self._table, self._key(invoice_id, attempt_sk(number_)))
        return attempt_from_item(item) if item else None

    def pending(self, work: PendingWork, now: datetime, limit: int) -> list[PendingItem]:
        items = self._db.query(
            TableName=self._table,
            IndexName="pending-work",
            KeyConditionExpression="pending_work = :work AND pending_since <= :now",
            ExpressionAttributeValues={":work": text(work.value), ":now": text(now.isoformat())},
            Limit=limit,
        )
        return [
            PendingItem(
                i["invoice_id"]["S"],
                attempt_number_of(i["sk"]["S"]) if i["sk"]["S"].startswith(ATTEMPT_PREFIX) else None,
            )
            for i in items
        ]

    def unknown_attempts(self, limit: int) -> list[ChargeAttempt]:
        """Every attempt still waiting for resolution, however recent (reconciliation's view)."""
        items = self._db.query(
            TableName=self._table,
            IndexName="pending-work",
            KeyConditionExpression="pending_work = :work",
            ExpressionAttributeValues={":work": text(PendingWork.RESOLVE_ATTEMPT.value)},
            Limit=limit,
        )
        found = (self.get_attempt(i["invoice_id"]["S"], attempt_number_of(i["sk"]["S"])) for i in items)
        return [attempt for attempt in found if attempt]

    # --- charge attempts ---------------------------------------------------------------------------

    def _attempt_item(self, attempt: ChargeAttempt, *, actor: str, source: str) -> Item:
        item = {
            "invoice_id": text(attempt.invoice_id),
            "sk": text(attempt_sk(attempt.attempt_number)),
            "attempt_number": number(attempt.attempt_number),
            "status": text(AttemptStatus.PENDING.value),
            "amount_minor": number(attempt.amount_minor),
            "currency": text(attempt.currency),
            "provider": text(attempt.provider),
            "idempotency_key": text(attempt.idempotency_key),
            "attempted_at": text(attempt.attempted_at.isoformat()),
            "lease_until": text(attempt.lease_until.isoformat()),
            "pending_work": text(PendingWork.RESOLVE_ATTEMPT.value),
            "pending_since": text(attempt.lease_until.isoformat()),
            "last_actor": text(actor),
            "last_change_source": text(source),
            "last_correlation_id": text(attempt.idempotency_key),
        }
        if attempt.dunning_key is not None:
            item["dunning_key"] = text(attempt.dunning_key)
        return item

    def claim_attempt(self, attempt: ChargeAttempt) -> bool:
        """Create attempt N (PENDING) and take the invoice's `charge` work, atomically. Exactly one
        claimant wins; the attempt goes onto the `resolve_attempt` list from its lease's end."""
        item = self._attempt_item(attempt, actor=ATTEMPT_ACTOR, source=ATTEMPT_SOURCE)
        claim = {
            "Update": {
                "TableName": self._table,
                "Key": self._key(attempt.invoice_id),
                "UpdateExpression": "SET attempt_count = :n, version = version + :one "
                "REMOVE pending_work, pending_since",
                # pending_work guards against a claimant acting on a stale list entry after another
                # claimant's attempt was created and not yet settled.
                "ConditionExpression": "attempt_count = :previous AND #status = :open AND pending_work = :charge",
                "ExpressionAttributeNames": {"#status": "status"},
                "ExpressionAttributeValues": {
                    ":charge": text(PendingWork.CHARGE.value),
                    ":n": number(attempt.attempt_number),
                    ":previous": number(attempt.attempt_number - 1),
                    ":one": number(1),
                    ":open": text(InvoiceStatus.OPEN.value),
                },
            }
        }
        put = {
            "Put": {"TableName": self._table, "Item": item, "ConditionExpression": "attribute_not_exists(invoice_id)"}
        }
        return self._db.transact_or_refuse([put, claim]) is None

    def claim_retry(self, attempt: ChargeAttempt, rank: int) -> bool:
        """A dunning retry: attempt N, while the invoice is open (the paid fence), attempt N-1 FAILED (no charge
        in flight) and no dunning charge of this rank or a later one was claimed before. The invoice's
        `dunning_rank` only grows, so a redelivered step can never claim a second attempt for one charge."""
        if attempt.dunning_key is None or attempt.attempt_number < 2:
            raise ValueError("a dunning retry follows a failed attempt and carries its dunning key")
        item = self._attempt_item(attempt, actor=DUNNING_ACTOR, source=DUNNING_SOURCE)
        put = {
            "Put": {"TableName": self._table, "Item": item, "ConditionExpression": "attribute_not_exists(invoice_id)"}
        }
        claim = {
            "Update": {
                "TableName": self._table,
                "Key": self._key(attempt.invoice_id),
                "UpdateExpression": "SET attempt_count = :n, dunning_rank = :rank, version = version + :one "
                "REMOVE pending_work, pending_since",
                "ConditionExpression": "attempt_count = :previous AND #status = :open "
                "AND (attribute_not_exists(pending_work) OR pending_work = :handoff) "
                "AND (attribute_not_exists(dunning_rank) OR dunning_rank < :rank)",
                "ExpressionAttributeNames": {"#status": "status"},
                "ExpressionAttributeValues": {
                    ":n": number(attempt.attempt_number),
                    ":previous": number(attempt.attempt_number - 1),
                    ":rank": number(rank),
                    ":one": number(1),
                    ":open": text(InvoiceStatus.OPEN.value),
                    ":handoff": text(PendingWork.DUNNING_HANDOFF.value),
                },
            }
        }
        previous_failed = {
            "ConditionCheck": {
                "TableName": self._table,
                "Key": self._key(attempt.invoice_id, attempt_sk(attempt.attempt_number - 1)),
                "ConditionExpression": "#status = :failed",
                "ExpressionAttributeNames": {"#status": "status"},
                "ExpressionAttributeValues": {":failed": text(AttemptStatus.FAILED.value)},
            }
        }
        return self._db.transact_or_refuse([put, claim, previous_failed]) is None

    def record_payment_id(self, attempt: ChargeAttempt, payment_id: str) -> bool:
        """Written before confirming: from here on the attempt can only be resolved by reading it back."""
        return self._db.update(
            TableName=self._table,
            Key=self._key(attempt.invoice_id, attempt_sk(attempt.attempt_number)),
            UpdateExpression="SET provider_payment_id = :payment",
            ConditionExpression="attribute_not_exists(provider_payment_id) OR provider_payment_id = :payment",
            ExpressionAttributeValues={":payment": text(payment_id)},
        )

    def mark_unknown(self, attempt: ChargeAttempt, now: datetime, reason: str, retry_at: datetime) -> bool:
        return self._db.update(
            TableName=self._table,
            Key=self._key(attempt.invoice_id, attempt_sk(attempt.attempt_number)),
            UpdateExpression="SET #status = :unknown, unknown_since = if_not_exists(unknown_since, :now), "
            "failure_message = :reason, pending_work = :work, pending_since = :retry_at",
            ConditionExpression="#status IN (:pending, :unknown)",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={
                ":unknown": text(AttemptStatus.UNKNOWN.value),
                ":pending": text(AttemptStatus.PENDING.value),
                ":now": text(now.isoformat()),
                ":reason": text(reason[:500]),
                ":retry_at": text(retry_at.isoformat()),
                ":work": text(PendingWork.RESOLVE_ATTEMPT.value),
            },
        )

    def settle_failed(self, attempt: ChargeAttempt, failure_code: str, failure_message: str, now: datetime) -> bool:
        """Attempt FAILED; the invoice goes onto the dunning hand-over list in the same write - unless it was
        one of dunning's retries, whose running workflow reads the failure itself."""
        settled = self.attempt_settled_op(
            attempt, AttemptStatus.FAILED, now, failure_code=failure_code, failure_message=failure_message
        )
        if attempt.dunning_key is not None:
            return self._db.transact_or_refuse([settled]) is None
        handoff = {
            "Update": {
                "TableName": self._table,
                "Key": self._key(attempt.invoice_id),
                "UpdateExpression": "SET pending_work = :work, pending_since = :now",
                "ExpressionAttributeValues": {
                    ":work": text(PendingWork.DUNNING_HANDOFF.value),
                    ":now": text(now.isoformat()),
                },
            }
        }
        return self._db.transact_or_refuse([settled, handoff]) is None

    def complete_handoff(self, invoice_id: str) -> bool:
        return self._db.update(
            TableName=self._table,
            Key=self._key(invoice_id),
            UpdateExpression="REMOVE pending_work, pending_since",
            ConditionExpression="pending_work = :work",
            ExpressionAttributeValues={":work": text(PendingWork.DUNNING_HANDOFF.value)},
        )

    # --- parts of other writes' transactions -------------------------------------------------------

    def new_invoice_op(
        self, invoice: Invoice, now: datetime, *, actor: str, source: str, correlation_id: str | None = None
    ) -> TransactItem:
        """A new invoice; refused if the id exists (ids are deterministic: issuing twice yields one)."""
        return {
            "Put": {
                "TableName": self._table,
                "Item": _invoice_item(invoice, now, actor=actor, source=source, correlation_id=correlation_id),
                "ConditionExpression": "attribute_not_exists(invoice_id)",
            }
        }

    def attempt_settled_op(
        self,
        attempt: ChargeAttempt,
        status: AttemptStatus,
        now: datetime,
        *,
        payment_id: str | None = None,
        failure_code: str | None = None,
        failure_message: str | None = None,
    ) -> TransactItem:
        """The attempt's outcome, off the pending list; refused once it is settled."""
        values: dict[str, Any] = {
            ":status": text(status.value),
            ":pending": text(AttemptStatus.PENDING.value),
            ":unknown": text(AttemptStatus.UNKNOWN.value),
            ":now": text(now.isoformat()),
        }
        assignments = ["#status = :status", "resolved_at = :now"]
        for name, value in (
            ("provider_payment_id", payment_id),
            ("failure_code", failure_code),
            ("failure_message", failure_message),
        ):
            if value:
                assignments.append(f"{name} = :{name}")
                values[f":{name}"] = text(value[:500])
        return {
            "Update": {
                "TableName": self._table,
                "Key": self._key(attempt.invoice_id, attempt_sk(attempt.attempt_number)),
                "UpdateExpression": "SET " + ", ".join(assignments) + " REMOVE pending_work, pending_since",
                "ConditionExpression": "#status IN (:pending, :unknown)",
                "ExpressionAttributeNames": {"#status": "status"},
                "ExpressionAttributeValues": values,
            }
        }

    def open_check_op(self, invoice_id: str) -> TransactItem:
        """A check, in another write's transaction, that the invoice is still open: the paid fence."""
        return {
            "ConditionCheck": {
                "TableName": self._table,
                "Key": self._key(invoice_id),
                "ConditionExpression": "#status = :open",
                "ExpressionAttributeNames": {"#status": "status"},
                "ExpressionAttributeValues": {":open": text(InvoiceStatus.OPEN.value)},
            }
        }

    def paid_op(self, invoice_id: str, payment_id: str, now: datetime, *, actor: str, source: str) -> TransactItem:
        """open or uncollectible -> paid; refused once it is paid or void."""
        return {
            "Update": {
                "TableName": self._table,
                "Key": self._key(invoice_id),
                "UpdateExpression": "SET #status = :paid, paid_at = :now, version = version + :one, "
                "last_actor = :actor, last_change_source = :source, last_correlation_id = :payment",
                "ConditionExpression": "#status IN (:open, :uncollectible)",
                "ExpressionAttributeNames": {"#status": "status"},
                "ExpressionAttributeValues": {
                    ":paid": text(InvoiceStatus.PAID.value),
                    ":open": text(InvoiceStatus.OPEN.value),
                    ":uncollectible": text(InvoiceStatus.UNCOLLECTIBLE.value),
                    ":now": text(now.isoformat()),
                    ":one": number(1),
                    ":actor": text(actor),
                    ":source": text(source),
                    ":payment": text(payment_id),
                },
            }
        }

    def closed_op(
        self, invoice: Invoice, to_status: InvoiceStatus, now: datetime, *, actor: str, reason: str
    ) -> TransactItem:
        """open -> void | uncollectible (uncollectible -> void). The condition includes the attempt count
        the caller saw, so a charge claimed in between wins."""
        return {
            "Update": {
                "TableName": self._table,
                "Key": self._key(invoice.invoice_id),
                "UpdateExpression": "SET #status = :to, closed_at = :now, close_reason = :reason, "
                "version = version + :one, last_actor = :actor, last_change_source = :source, "
                "last_correlation_id = :correlation REMOVE pending_work, pending_since",
                "ConditionExpression": "#status = :from AND attempt_count = :attempts",
                "ExpressionAttributeNames": {"#status": "status"},
                "ExpressionAttributeValues": {
                    ":to": text(to_status.value),
                    ":from": text(invoice.status.value),
                    ":attempts": number(invoice.attempt_count),
                    ":now": text(now.isoformat()),
                    ":reason": text(reason[:500]),
                    ":one": number(1),
                    ":actor": text(actor),
                    ":source": text("api"),
                    ":correlation": text(f"{invoice.invoice_id}:{to_status.value}"),
                },
            }
        }
