"""Stripe events -> effects, through a table: one small function per event type. Unknown types map to
no effect (recorded and acknowledged, never an error)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from billing_core.customers import customer_id_for
from billing_core.errors import ValidationFailedError
from billing_core.ledger import postings
from billing_core.payments.model import PaymentOutcome, PaymentStatus
from billing_core.subscriptions.model import SubscriptionSnapshot
from billing_core.subscriptions.state_machine import SubscriptionStatus, parse_status
from billing_core.webhooks.effects import DunningSignal, Effect, effect_by_type
from billing_core.webhooks.model import WebhookEnvelope

PROVIDER = "stripe"
ACTOR = f"provider:{PROVIDER}"


class StripeEventData(BaseModel):
    model_config = ConfigDict(extra="ignore")

    object: dict[str, Any]
    previous_attributes: dict[str, Any] | None = None


class StripeEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1)
    type: str = Field(min_length=1)
    created: int = Field(ge=0)
    api_version: str | None = None
    data: StripeEventData


def parse_event(raw_body: str) -> StripeEvent:
    try:
        return StripeEvent.model_validate_json(raw_body)
    except ValueError as exc:
        raise ValidationFailedError("not a Stripe event", code="malformed_event") from exc


def _id(value: Any) -> str | None:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, Mapping) and isinstance(value.get("id"), str):
        return str(value["id"])
    return None


def _customer(value: Any) -> str | None:
    """Our customer id for the provider's customer reference (id or expanded object)."""
    provider_customer_id = _id(value)
    return customer_id_for(PROVIDER, provider_customer_id) if provider_customer_id else None


def _time(value: Any) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if isinstance(value, int) and value > 0 else None


def _period(obj: Mapping[str, Any], key: str) -> datetime | None:
    # API versions from 2025 move the period onto subscription items; read either place.
    if key in obj:
        return _time(obj.get(key))
    items = obj.get("items")
    data = items.get("data") if isinstance(items, Mapping) else None
    if isinstance(data, list) and data and isinstance(data[0], Mapping):
        return _time(data[0].get(key))
    return None


def _subscription(event: StripeEvent, *, deleted: bool = False) -> Effect:
    obj = event.data.object
    previous = (event.data.previous_attributes or {}).get("status")
    snapshot = SubscriptionSnapshot(
        provider=PROVIDER,
        provider_subscription_id=str(obj["id"]),
        provider_customer_id=_id(obj.get("customer")),
        status=SubscriptionStatus.CANCELED if deleted else parse_status(obj.get("status")),
        previous_status=parse_status(previous) if isinstance(previous, str) else None,
        position=event.created,
        current_period_start=_period(obj, "current_period_start"),
        current_period_end=_period(obj, "current_period_end"),
        trial_end=_time(obj.get("trial_end")),
        cancel_at_period_end=bool(obj.get("cancel_at_period_end", False)),
        source_event_id=event.id,
    )
    return Effect(subscription=snapshot)


def _record_only(note: str) -> Callable[[StripeEvent], Effect]:
    def handler(event: StripeEvent) -> Effect:
        return Effect(note=note)

    return handler


def _invoice_subscription(invoice: Mapping[str, Any]) -> str | None:
    """API versions from 2025 move the invoice's subscription under parent.subscription_details."""
    direct = _id(invoice.get("subscription"))
    if direct:
        return direct
    parent = invoice.get("parent")
    details = parent.get("subscription_details") if isinstance(parent, Mapping) else None
    return _id(details.get("subscription")) if isinstance(details, Mapping) else None


def _invoice_payment_failed(event: StripeEvent) -> Effect:
    """A renewal the provider bills was declined: dunning opens a case for it (once; the provider's invoice,
    read afresh, decides). A subscription's first invoice is not dunned: the subscription stays incomplete."""
    invoice = event.data.object
    subscription = _invoice_subscription(invoice)
    customer = _id(invoice.get("customer"))
    if not subscription or not customer:
        return Effect(note="payment failed on an invoice without a subscription: not dunned")
    if invoice.get("billing_reason") == "subscription_create":
        return Effect(note="first payment failed: the subscription stays incomplete, not dunned")
    if invoice.get("status") != "open":
        return Effect(note=f"payment failed on a {invoice.get('status')} invoice: nothing to dun")
    return Effect(
        note="payment failed: handed to dunning",
        dunning=DunningSignal(
            kind="provider_invoice_payment_failed",
            provider=PROVIDER,
            provider_invoice_id=str(invoice["id"]),
            provider_subscription_id=subscription,
            provider_customer_id=customer,
            event_id=event.id,
        ),
    )


def _invoice_changed(event: StripeEvent) -> DunningSignal | None:
    """Paid, voided or written off: a running dunning of the invoice ends now."""
    invoice = event.data.object
    if not _invoice_subscription(invoice):
        return None
    return DunningSignal(
        kind="provider_invoice_changed", provider=PROVIDER, provider_invoice_id=str(invoice["id"]), event_id=event.id
    )


# invoice.updated fires for any change; only these move what dunning asks for.
_OWED_FIELDS = frozenset({"amount_remaining", "amount_paid", "status"})


def _invoice_updated(event: StripeEvent) -> Effect:
    """What the invoice still asks for changed (a partial payment, a credit note): its dunning re-reads it."""
    previous = event.data.previous_attributes or {}
    if not _OWED_FIELDS & set(previous):
        return Effect(note="invoice updated: nothing owed changed")
    return Effect(note="invoice amount or status changed", dunning=_invoice_changed(event))


def _invoice_closed(event: StripeEvent) -> Effect:
    return Effect(note=f"{event.type}: nothing to post", dunning=_invoice_changed(event))


def _customer_updated(event: StripeEvent) -> Effect:
    """A new default payment method for the customer's invoices: dunning retries their provider-billed cases at
    once on it (a hard decline's pause ends with it)."""
    customer = event.data.object
    previous = (event.data.previous_attributes or {}).get("invoice_settings")
    if not isinstance(previous, Mapping) or "default_payment_method" not in previous:
        return Effect(note="customer updated: recorded")
    settings = customer.get("invoice_settings")
    method = _id(settings.get("default_payment_method")) if isinstance(settings, Mapping) else None
    if method is None or method == _id(previous.get("default_payment_method")):
        return Effect(note="default payment method removed or unchanged: recorded")
    return Effect(
        note="new default payment method: handed to dunning",
        dunning=DunningSignal(
            kind="provider_payment_method_changed",
            provider=PROVIDER,
            provider_customer_id=str(customer["id"]),
            payment_method_id=method,
            event_id=event.id,
        ),
    )


def _invoice_finalized(event: StripeEvent) -> Effect:
    invoice = event.data.object
    customer, amount = _customer(invoice.get("customer")), invoice.get("amount_due")
    if not customer or not isinstance(amount, int) or amount <= 0:
        return Effect(note="nothing due")
    return Effect(
        ledger=(
            postings.provider_invoice_finalized(
                provider=PROVIDER,
                provider_invoice_id=str(invoice["id"]),
                customer=customer,
                amount_minor=amount,
                currency=str(invoice.get("currency", "")),
                at=_time(event.created) or datetime.now(UTC),
                source=f"stripe:{event.id}",
                actor=ACTOR,
            ),
        )
    )


def _invoice_paid(event: StripeEvent) -> Effect:
    """invoice.paid and invoice.payment_succeeded describe the same payment: one transaction id for both.
    The invoice's own issuing is posted too, under invoice.finalized's id: if that event is late, lost
    or not subscribed to, the receivable still balances; if it came first, its copy is ALREADY_POSTED."""
    invoice = event.data.object
    customer, amount = _customer(invoice.get("customer")), invoice.get("amount_paid")
    if not customer or not isinstance(amount, int) or amount <= 0:
        return Effect(note="nothing paid", dunning=_invoice_changed(event))
    issued = _invoice_finalized(event).ledger
    return Effect(
        dunning=_invoice_changed(event),
        ledger=(
            *issued,
            postings.provider_invoice_paid(
                provider=PROVIDER,
                provider_invoice_id=str(invoice["id"]),
                customer=customer,
                amount_minor=amount,
                currency=str(invoice.get("currency", "")),
                at=_time(event.created) or datetime.now(UTC),
                source=f"stripe:{event.id}",
                actor=ACTOR,
            ),
        ),
    )


def _charge_refunded(event: StripeEvent) -> Effect:
    """One ledger transaction per refund object, keyed by the refund's id: a later charge.refunded that
    lists earlier refunds again posts only the new ones."""
    charge = event.data.object
    refunds = (charge.get("refunds") or {}).get("data") if isinstance(charge.get("refunds"), Mapping) else None
    if not isinstance(refunds, list) or not refunds:
        # From API version 2022-11-15 charges omit `refunds` unless expanded. Without the refund objects
        # a partial refund's delta is unknown: record, never guess (the Ledger issue adds refund events).
        return Effect(note="refund objects not included: recorded, not posted")
    made = []
    for refund in refunds:
        if not (isinstance(refund, Mapping) and isinstance(refund.get("id"), str)):
            continue
        amount = refund.get("amount")
        if refund.get("status") in {"failed", "canceled"} or not isinstance(amount, int) or amount <= 0:
            continue
        made.append(
            postings.refund(
                provider=PROVIDER,
                provider_refund_id=str(refund["id"]),
                customer=_customer(charge.get("customer")),
                amount_minor=amount,
                currency=str(refund.get("currency") or charge.get("currency", "")),
                at=_time(refund.get("created")) or _time(event.created) or datetime.now(UTC),
                source=f"stripe:{event.id}",
                actor=ACTOR,
            )
        )
    if not made:
        return Effect(note="no refund amounts")
    return Effect(ledger=tuple(made))


def _dispute_created(event: StripeEvent) -> Effect:
    dispute = event.data.object
    amount = dispute.get("amount")
    if not isinstance(amount, int) or amount <= 0:
        return Effect(note="no dispute amount")
    return Effect(
        ledger=(
            postings.dispute(
                provider=PROVIDER,
                provider_dispute_id=str(dispute["id"]),
                amount_minor=amount,
                currency=str(dispute.get("currency", "")),
                at=_time(event.created) or datetime.now(UTC),
                source=f"stripe:{event.id}",
                actor=ACTOR,
            ),
        )
    )


def _payment_intent_succeeded(event: StripeEvent) -> Effect:
    """Money is posted from the invoice events - except for our own orders' first payments, which this
    event settles (the order commit posts it under the same payment id as any other path)."""
    intent = event.data.object
    raw_metadata = intent.get("metadata")
    metadata: Mapping[str, Any] = raw_metadata if isinstance(raw_metadata, Mapping) else {}
    order_id = metadata.get("order_id")
    amount = intent.get("amount_received", intent.get("amount"))
    if not isinstance(order_id, str) or not isinstance(amount, int):
        return Effect(note="money is posted from the invoice events")
    outcome = PaymentOutcome(
        payment_id=str(intent["id"]),
        status=PaymentStatus.SUCCEEDED,
        amount_minor=amount,
        currency=str(intent.get("currency", "")).upper(),
        provider_customer_id=_id(intent.get("customer")),
        metadata={str(k): str(v) for k, v in metadata.items()},
        created_at=_time(intent.get("created")) or _time(event.created),
    )
    return Effect(note=f"first payment of order {order_id}", order_payment=outcome, order_id=order_id)


HANDLERS: dict[str, Callable[[StripeEvent], Effect]] = {
    "customer.subscription.created": _subscription,
    "customer.subscription.updated": _subscription,
    "customer.subscription.deleted": lambda event: _subscription(event, deleted=True),
    "customer.subscription.trial_will_end": _record_only("trial ends soon (notification only)"),
    "customer.updated": _customer_updated,
    "invoice.created": _record_only("draft invoice: nothing owed yet"),
    "invoice.finalized": _invoice_finalized,
    "invoice.paid": _invoice_paid,
    "invoice.payment_succeeded": _invoice_paid,
    "invoice.payment_failed": _invoice_payment_failed,
    "invoice.voided": _invoice_closed,
    "invoice.updated": _invoice_updated,
    "invoice.marked_uncollectible": _invoice_closed,
    "payment_intent.succeeded": _payment_intent_succeeded,
    "payment_intent.payment_failed": _record_only("payment failed: dunning acts on it"),
    "charge.refunded": _charge_refunded,
    "charge.dispute.created": _dispute_created,
}


def effect_of(event: StripeEvent) -> Effect:
    return effect_by_type(HANDLERS, event, event_type=event.type, event_id=event.id)


def effect_of_envelope(envelope: WebhookEnvelope) -> Effect:
    """The registry's entry point (webhooks/providers/__init__.py: Provider.events)."""
    return effect_of(parse_event(envelope.raw_body))
