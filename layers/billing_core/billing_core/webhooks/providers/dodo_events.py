"""Dodo Payments events -> effects: the same subscription state machine and the same ledger postings as Stripe's
(stripe_events.py), so a customer billed by either ends in the same canonical state.

Dodo bills its subscriptions itself. A renewal is a payment (`payment.succeeded` with the `subscription_id`),
and Dodo issues the invoice for that payment: the payment id is the provider invoice id, so one event posts the
invoice's issuing (Dr receivable, Cr revenue) and its payment (Dr clearing, Cr receivable) under the ids Stripe's
`invoice.paid` uses. Dodo retries a failed renewal itself and reports the outcome as subscription events
(`subscription.on_hold`, then `subscription.active`/`renewed` or `cancelled`): our dunning is not handed Dodo's
failures (it reads a provider's invoice through the Stripe gateway; docs/architecture.md, "Inbound providers").

Ordering: a subscription snapshot's position is the event's `timestamp` in milliseconds (Stripe's is in seconds:
each subscription is compared only with events of its own provider), so Dodo's later snapshot wins and an older
one arriving late is STALE, never applied backwards. Unknown event types are recorded and acknowledged."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from billing_core.customers import customer_id_for
from billing_core.errors import ValidationFailedError
from billing_core.ledger import postings
from billing_core.subscriptions.model import SubscriptionSnapshot
from billing_core.subscriptions.state_machine import SubscriptionStatus
from billing_core.webhooks.effects import Effect, effect_by_type
from billing_core.webhooks.model import WebhookEnvelope

PROVIDER = "dodo"
ACTOR = f"provider:{PROVIDER}"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Dodo's subscription statuses in ours. `failed` is a subscription whose mandate was never created (Stripe's
# incomplete_expired); `expired` reached the end of its fixed term.
STATUSES: dict[str, SubscriptionStatus] = {
    "pending": SubscriptionStatus.INCOMPLETE,
    "active": SubscriptionStatus.ACTIVE,
    "on_hold": SubscriptionStatus.PAST_DUE,
    "paused": SubscriptionStatus.PAUSED,
    "cancelled": SubscriptionStatus.CANCELED,
    "failed": SubscriptionStatus.CANCELED,
    "expired": SubscriptionStatus.CANCELED,
}
# When a subscription event carries no status, its type says it.
TYPE_STATUSES: dict[str, str] = {
    "subscription.active": "active",
    "subscription.renewed": "active",
    "subscription.on_hold": "on_hold",
    "subscription.cancelled": "cancelled",
    "subscription.failed": "failed",
    "subscription.expired": "expired",
}


class DodoEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1)  # the `webhook-id` of the delivery (the body has none)
    type: str = Field(min_length=1)
    timestamp: datetime | None = None  # when it happened; required for a subscription snapshot (its position)
    signed_at: datetime  # the verified `webhook-timestamp`: the time of a posting when nothing better is given
    data: dict[str, Any]

    @property
    def at(self) -> datetime:
        return self.timestamp or self.signed_at


def parse_event(envelope: WebhookEnvelope) -> DodoEvent:
    """The body is signed without an id: it is the verified `webhook-id` header's."""
    try:
        body = json.loads(envelope.raw_body)
        if not isinstance(body, dict):
            raise ValueError("not an object")
        return DodoEvent.model_validate({**body, "id": envelope.provider_event_id, "signed_at": envelope.signed_at})
    except ValueError as exc:
        raise ValidationFailedError("not a Dodo event", code="malformed_event") from exc


def position_of(at: datetime) -> int:
    """Milliseconds since the epoch, exactly (a naive time is UTC)."""
    aware = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    return (aware - EPOCH) // timedelta(milliseconds=1)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _amount(value: Any) -> int | None:
    """Minor units; Dodo sends most amounts as integers and a dispute's as a string of digits."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return None


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _provider_customer(data: Mapping[str, Any]) -> str | None:
    customer = data.get("customer")
    nested = _text(customer.get("customer_id")) if isinstance(customer, Mapping) else None
    return nested or _text(data.get("customer_id"))


def _customer(data: Mapping[str, Any]) -> str | None:
    provider_customer_id = _provider_customer(data)
    return customer_id_for(PROVIDER, provider_customer_id) if provider_customer_id else None


def _subscription(event: DodoEvent) -> Effect:
    data = event.data
    subscription_id = _text(data.get("subscription_id"))
    if subscription_id is None:
        raise ValueError("data.subscription_id is missing")
    if event.timestamp is None:
        raise ValueError("timestamp is missing: the snapshot could not be ordered")
    status = _text(data.get("status")) or TYPE_STATUSES.get(event.type)
    snapshot = SubscriptionSnapshot(
        provider=PROVIDER,
        provider_subscription_id=subscription_id,
        provider_customer_id=_provider_customer(data),
        status=STATUSES.get(status or "", SubscriptionStatus.UNKNOWN),
        position=position_of(event.timestamp),
        current_period_start=_time(data.get("previous_billing_date")),
        current_period_end=_time(data.get("next_billing_date")),
        cancel_at_period_end=data.get("cancel_at_next_billing_date") is True,
        source_event_id=event.id,
    )
    return Effect(subscription=snapshot)


def _payment_succeeded(event: DodoEvent) -> Effect:
    data = event.data
    payment_id = _text(data.get("payment_id"))
    customer, amount = _customer(data), _amount(data.get("total_amount"))
    if payment_id is None:
        raise ValueError("data.payment_id is missing")
    if customer is None or amount is None or amount <= 0:
        return Effect(note="nothing paid")
    currency = str(data.get("currency", ""))
    at = _time(data.get("created_at")) or event.at
    common: dict[str, Any] = {
        "provider": PROVIDER,
        "provider_invoice_id": payment_id,
        "customer": customer,
        "amount_minor": amount,
        "currency": currency,
        "at": at,
        "source": f"{PROVIDER}:{event.id}",
        "actor": ACTOR,
    }
    return Effect(ledger=(postings.provider_invoice_finalized(**common), postings.provider_invoice_paid(**common)))


def _refund_succeeded(event: DodoEvent) -> Effect:
    data = event.data
    refund_id, amount = _text(data.get("refund_id")), _amount(data.get("amount"))
    if refund_id is None:
        raise ValueError("data.refund_id is missing")
    if amount is None or amount <= 0:
        return Effect(note="no refund amount")
    return Effect(
        ledger=(
            postings.refund(
                provider=PROVIDER,
                provider_refund_id=refund_id,
                customer=_customer(data),
                amount_minor=amount,
                currency=str(data.get("currency", "")),
                at=_time(data.get("created_at")) or event.at,
                source=f"{PROVIDER}:{event.id}",
                actor=ACTOR,
            ),
        )
    )


def _dispute_opened(event: DodoEvent) -> Effect:
    data = event.data
    dispute_id, amount = _text(data.get("dispute_id")), _amount(data.get("amount"))
    if dispute_id is None:
        raise ValueError("data.dispute_id is missing")
    if amount is None or amount <= 0:
        return Effect(note="no dispute amount")
    return Effect(
        ledger=(
            postings.dispute(
                provider=PROVIDER,
                provider_dispute_id=dispute_id,
                amount_minor=amount,
                currency=str(data.get("currency", "")),
                at=_time(data.get("created_at")) or event.at,
                source=f"{PROVIDER}:{event.id}",
                actor=ACTOR,
            ),
        )
    )


def _record_only(note: str) -> Callable[[DodoEvent], Effect]:
    def handler(event: DodoEvent) -> Effect:
        return Effect(note=note)

    return handler


HANDLERS: dict[str, Callable[[DodoEvent], Effect]] = {
    **dict.fromkeys((*TYPE_STATUSES, "subscription.updated", "subscription.plan_changed"), _subscription),
    "payment.succeeded": _payment_succeeded,
    "payment.failed": _record_only("payment failed: Dodo retries it; its subscription events carry the outcome"),
    "payment.processing": _record_only("payment processing: nothing moved yet"),
    "payment.cancelled": _record_only("payment cancelled: nothing moved"),
    "refund.succeeded": _refund_succeeded,
    "refund.failed": _record_only("refund failed: nothing moved"),
    "dispute.opened": _dispute_opened,
}


def effect_of_envelope(envelope: WebhookEnvelope) -> Effect:
    event = parse_event(envelope)
    return effect_by_type(HANDLERS, event, event_type=event.type, event_id=event.id)
