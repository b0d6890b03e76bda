"""What orders need from their store: the order's own transitions, and the commits that write an order
together with the subscription, invoice and postings it brings about."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # annotations only: a caller of one port does not pay for the others' models
    from billing_core.invoices.model import Invoice
    from billing_core.ledger.model import LedgerTransaction
    from billing_core.orders.model import Order
    from billing_core.subscriptions.model import ScheduledChange, Subscription


class OrderStore(Protocol):
    def create(self, order: Order, *, actor: str) -> None: ...

    def get(self, order_id: str) -> Order | None: ...

    def payment_claimed_at(self, order_id: str) -> datetime | None: ...

    def expire(self, order_id: str, now: datetime) -> bool: ...

    def fail(self, order_id: str, code: str, now: datetime) -> bool: ...

    def claim_payment(self, order_id: str, now: datetime, stale_before: datetime) -> bool: ...

    def record_payment(self, order_id: str, payment_id: str) -> bool: ...

    def release_payment_claim(self, order_id: str, claimed_at: datetime) -> bool:
        """Give up the claim taken at `claimed_at`, if it is still ours and no payment id was stored."""
        ...


class OrderCommits(Protocol):
    def commit_signup(
        self,
        order: Order,
        subscription: Subscription,
        invoice: Invoice | None,
        postings: list[LedgerTransaction],
        now: datetime,
    ) -> bool:
        """pending -> committed with the new subscription, its first invoice and postings; False if the
        order was no longer pending."""
        ...

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
        """pending -> committed with the subscription's new terms, conditioned on the version quoted."""
        ...
