"""What the invoice context's users need: reading invoices, the charge-attempt bookkeeping on the pending
work list, and the transactions that move an invoice together with the ledger (and, when issuing, its
subscription's period)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # annotations only: a caller of one port does not pay for the others' models
    from billing_core.invoices.model import (
        ChargeAttempt,
        Invoice,
        InvoiceStatus,
        InvoiceView,
        IssueResult,
        PendingItem,
        PendingWork,
    )
    from billing_core.ledger.model import LedgerTransaction
    from billing_core.subscriptions.model import Subscription
    from billing_core.subscriptions.state_machine import SubscriptionStatus


class InvoiceReader(Protocol):
    def get(self, invoice_id: str) -> InvoiceView | None: ...


class InvoiceStore(InvoiceReader, Protocol):
    def pending(self, work: PendingWork, now: datetime, limit: int) -> list[PendingItem]:
        """What waits for `work` since `now` or earlier, oldest first."""
        ...

    def claim_attempt(self, attempt: ChargeAttempt) -> bool:
        """Create attempt N and take the invoice's charge work, atomically: exactly one claimant wins."""
        ...

    def claim_retry(self, attempt: ChargeAttempt, rank: int) -> bool:
        """Create a dunning retry (attempt N, whose `dunning_key` is set) only while the invoice is open, its
        attempt N-1 has FAILED (none in flight) and no dunning charge of this `rank` or later was claimed:
        exactly one claimant wins, and a redelivered step never claims a second attempt for one charge."""
        ...

    def get_attempt(self, invoice_id: str, number: int) -> ChargeAttempt | None: ...

    def record_payment_id(self, attempt: ChargeAttempt, payment_id: str) -> bool: ...

    def mark_unknown(self, attempt: ChargeAttempt, now: datetime, reason: str, retry_at: datetime) -> bool: ...

    def settle_failed(self, attempt: ChargeAttempt, failure_code: str, failure_message: str, now: datetime) -> bool: ...

    def complete_handoff(self, invoice_id: str) -> bool: ...

    def unknown_attempts(self, limit: int) -> list[ChargeAttempt]: ...


class InvoiceTransactions(Protocol):
    def settle_succeeded(
        self, attempt: ChargeAttempt, payment_id: str, posting: LedgerTransaction, now: datetime
    ) -> bool:
        """Attempt SUCCEEDED + invoice paid + money posted, atomically; False if settled before."""
        ...

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
        """open -> void | uncollectible (uncollectible -> void) with its posting; False if the invoice
        changed since it was read."""
        ...


class InvoiceIssuer(Protocol):
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
        """The invoice, the subscription's next period and the postings in one transaction."""
        ...
