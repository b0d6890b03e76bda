"""Writes that move an invoice together with other aggregates, in one TransactWriteItems each: issuing
(the invoice, its subscription's next period and the postings), settling a paid attempt (the attempt, the
invoice and the payment's posting) and closing (the invoice and its posting). Each part comes from the
store that owns its item; this module only puts them together and reads which part refused."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from billing_core.adapters.dynamodb.invoice_store import DynamoDBInvoiceStore
from billing_core.adapters.dynamodb.ledger_store import DynamoDBLedgerStore
from billing_core.adapters.dynamodb.subscription_store import DynamoDBSubscriptionStore
from billing_core.adapters.dynamodb.table import DynamoDB
from billing_core.invoices.model import AttemptStatus, ChargeAttempt, Invoice, InvoiceStatus, IssueResult
from billing_core.ledger.model import LedgerTransaction
from billing_core.subscriptions.model import Subscription
from billing_core.subscriptions.state_machine import SubscriptionStatus

RUN_ACTOR = "system:billing_run"
RUN_SOURCE = "schedule"


class DynamoDBInvoiceTransactions:
    def __init__(self, invoices: DynamoDBInvoiceStore, ledger: DynamoDBLedgerStore, dynamodb: DynamoDB | None = None):
        self._invoices = invoices
        self._ledger = ledger
        self._db = dynamodb or DynamoDB()

    def settle_succeeded(
        self, attempt: ChargeAttempt, payment_id: str, posting: LedgerTransaction, now: datetime
    ) -> bool:
        settled = self._invoices.attempt_settled_op(attempt, AttemptStatus.SUCCEEDED, now, payment_id=payment_id)
        paid = self._invoices.paid_op(attempt.invoice_id, payment_id, now, actor=RUN_ACTOR, source=RUN_SOURCE)
        money = self._ledger.posting_ops([posting], now=now).items
        cancelled = self._db.transact_or_refuse([settled, paid, *money])
        if cancelled is None:
            return True
        if cancelled.failed(0):
            return False  # settled before
        if cancelled.failed(1):
            # Money moved for an invoice that is no longer payable (paid by another attempt, or void):
            # record the attempt and the money; reconciliation reports the duplicate for a refund.
            return self._db.transact_or_refuse([settled, *money]) is None
        return False  # the posting exists: another writer settled this payment

    def close(
        self,
        invoice: Invoice,
        to_status: InvoiceStatus,
        posting: LedgerTransaction | None,
        *,
        actor: str,
        reason: str,
        now: datetime,
    ) -> bool:
        items = [self._invoices.closed_op(invoice, to_status, now, actor=actor, reason=reason)]
        if posting is not None:
            items += self._ledger.posting_ops([posting], now=now).items
        return self._db.transact_or_refuse(items) is None


class DynamoDBInvoiceIssuer:
    def __init__(
        self,
        subscriptions: DynamoDBSubscriptionStore,
        invoices: DynamoDBInvoiceStore,
        ledger: DynamoDBLedgerStore,
        dynamodb: DynamoDB | None = None,
    ):
        self._subscriptions = subscriptions
        self._invoices = invoices
        self._ledger = ledger
        self._db = dynamodb or DynamoDB()

    def issue(
        self,
        invoice: Invoice,
        subscription: Subscription,
        postings: Sequence[LedgerTransaction],
        *,
        status: SubscriptionStatus,
        now: datetime,
        balance_limits: Mapping[tuple[str, str], int] | None = None,
    ) -> IssueResult:
        items = [
            self._invoices.new_invoice_op(invoice, now, actor=RUN_ACTOR, source=RUN_SOURCE),
            self._subscriptions.advance_op(
                subscription,
                new_start=invoice.period_start,
                new_end=invoice.period_end,
                status=status,
                now=now,
                actor=RUN_ACTOR,
                source=RUN_SOURCE,
                correlation_id=invoice.invoice_id,
            ),
        ]
        if postings:
            items += self._ledger.posting_ops(postings, now=now, balance_limits=balance_limits).items
        cancelled = self._db.transact_or_refuse(items)
        if cancelled is None:
            return IssueResult.ISSUED
        if cancelled.failed(0) or cancelled.failed(1):
            return IssueResult.ALREADY_ISSUED  # the invoice exists or the period moved: another run did it
        return IssueResult.CREDIT_CHANGED  # the customer's credit changed since it was read
