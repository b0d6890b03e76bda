"""What one webhook event changes (Effect), how it is recorded (EventRecord, the dedupe marker), what the
apply step decided to write (EventWrite) and what the store found (WriteResult)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict

from billing_core.errors import ValidationFailedError
from billing_core.ledger.model import LedgerTransaction
from billing_core.payments.model import PaymentOutcome
from billing_core.subscriptions.model import SnapshotGuard, Subscription, SubscriptionSnapshot


class DunningSignal(BaseModel):
    """What dunning must hear of the invoices the provider bills: a charge failed (open a case); an invoice
    was paid, voided or written off (end its case); a customer's default payment method changed (retry their
    cases at once). Sent as is on DunningQueue; dunning's consumer parses it (dunning/service.py:
    ProviderHandoff, ProviderInvoiceChanged, ProviderPaymentMethodChanged)."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["provider_invoice_payment_failed", "provider_invoice_changed", "provider_payment_method_changed"]
    provider: str
    event_id: str
    provider_invoice_id: str | None = None
    provider_subscription_id: str | None = None
    provider_customer_id: str | None = None
    payment_method_id: str | None = None


class Effect(BaseModel):
    """What one event changes. Empty for events that are recorded and acknowledged only."""

    model_config = ConfigDict(frozen=True)

    subscription: SubscriptionSnapshot | None = None
    # Several transactions when one event reports several movements (e.g. each refund of a charge);
    # each has its own source-derived id, so one already posted never blocks the others.
    ledger: tuple[LedgerTransaction, ...] = ()
    note: str | None = None
    # A payment that settles one of our orders (its PaymentIntent carries metadata.order_id).
    order_payment: PaymentOutcome | None = None
    order_id: str | None = None
    dunning: DunningSignal | None = None

    @property
    def empty(self) -> bool:
        return self.subscription is None and not self.ledger


class ApplyOutcome(StrEnum):
    APPLIED = "APPLIED"  # every part of the effect was written
    DUPLICATE = "DUPLICATE"  # this event was applied before: nothing written
    STALE = "STALE"  # older than the stored state: recorded, state not moved backwards
    ILLEGAL_TRANSITION = "ILLEGAL_TRANSITION"  # recorded and alarmed, not applied
    RECORDED = "RECORDED"  # no effect (unknown or informational type): recorded and acknowledged


class EventRecord(BaseModel):
    """The archived event (audit and replay) and, by its key, the dedupe marker of its effect."""

    model_config = ConfigDict(frozen=True)

    provider: str
    provider_event_id: str
    event_type: str
    group_key: str
    received_at: datetime
    signed_at: datetime
    applied_at: datetime
    raw_body: str  # personal fields sealed (privacy/personal_data.py) under personal_data_key
    personal_data_key: str | None = None  # the wrapped data key; None when nothing was personal
    redacted_paths: tuple[str, ...] = ()  # where the receive step masked card numbers

    @property
    def event_key(self) -> str:
        return f"{self.provider}:{self.provider_event_id}"


class ApplyResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    event_key: str
    outcome: ApplyOutcome
    subscription: str | None = None  # the subscription verdict (APPLY / STALE / ILLEGAL_TRANSITION)
    ledger: str | None = None  # POSTED / ALREADY_POSTED
    note: str | None = None


class EventWrite(BaseModel):
    """One event's record and what goes with it, written together or not at all: the snapshot under its
    guard and the postings, each refused if its transaction id was posted before."""

    model_config = ConfigDict(frozen=True)

    record: EventRecord
    outcome: ApplyOutcome
    subscription_verdict: str | None = None  # recorded when the snapshot was not applied (STALE, ...)
    ledger_state: str | None = None
    note: str | None = None
    subscription: SubscriptionSnapshot | None = None
    guard: SnapshotGuard | None = None
    postings: tuple[LedgerTransaction, ...] = ()


class WriteResult(BaseModel):
    """written, or why not: the record exists (duplicate), the snapshot's guard refused (with the stored
    subscription), some postings exist, or other writers were in the way (contended: nothing decided)."""

    model_config = ConfigDict(frozen=True)

    written: bool
    duplicate: bool = False
    subscription_refused: bool = False
    stored_subscription: Subscription | None = None
    already_posted: frozenset[str] = frozenset()
    contended: bool = False


def summarize(effect: Effect, subscription: str | None, ledger: str | None) -> ApplyOutcome:
    if effect.empty:
        return ApplyOutcome.RECORDED
    if subscription == "ILLEGAL_TRANSITION":
        return ApplyOutcome.ILLEGAL_TRANSITION
    if subscription == "APPLY" or ledger == "POSTED":
        return ApplyOutcome.APPLIED
    if subscription == "STALE":
        return ApplyOutcome.STALE
    return ApplyOutcome.RECORDED  # e.g. invoice.paid after invoice.payment_succeeded posted the payment


def effect_by_type[E](
    handlers: Mapping[str, Callable[[E], Effect]], event: E, *, event_type: str, event_id: str
) -> Effect:
    """A provider's table of handlers applied to one event: an unknown type is recorded and acknowledged; a handler
    that finds the event malformed (KeyError, ValueError) makes it `malformed_event` (dead-lettered with the reason)."""
    handler = handlers.get(event_type)
    if handler is None:
        return Effect(note=f"unknown event type {event_type}: recorded and acknowledged")
    try:
        return handler(event)
    except (KeyError, ValueError) as exc:
        raise ValidationFailedError(
            f"{event_type} {event_id} cannot be applied: {exc}", code="malformed_event"
        ) from exc
