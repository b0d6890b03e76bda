"""Changing the payment method we charge a subscription we bill, and telling dunning: a running dunning of the
subscription retries at once on the new method (its consumer dedupes by change_id)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field

from billing_core.errors import ConflictError, NotFoundError
from billing_core.ports import DocumentQueue
from billing_core.subscriptions.model import BillingMode, Subscription
from billing_core.subscriptions.ports import SubscriptionStore
from billing_core.subscriptions.queries import find_subscription

PAYMENT_METHOD_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_]{2,254}$")


class PaymentMethodRequest(BaseModel):
    """PUT /subscriptions/{id}/payment-method: the provider's payment method (e.g. Stripe's `pm_...`), already
    attached to the customer at the provider."""

    model_config = ConfigDict(extra="forbid")

    payment_method_id: str = Field(pattern=PAYMENT_METHOD_ID.pattern)


def change_id_for(subscription_id: str, payment_method_id: str, version: int) -> str:
    """The same change (same subscription, method and version it was made on) has one id: a retried request
    or a redelivered message triggers one immediate retry."""
    digest = hashlib.sha256(f"{subscription_id}:{payment_method_id}:{version}".encode()).hexdigest()[:24]
    return f"pmc_{digest}"


def change_payment_method(
    store: SubscriptionStore,
    dunning: DocumentQueue,
    subscription_id: str,
    request: PaymentMethodRequest,
    *,
    actor: str,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Subscription:
    subscription = find_subscription(store, subscription_id)
    if subscription.billing_mode is not BillingMode.INTERNAL or subscription.terms is None:
        raise ConflictError(
            "the provider bills this subscription: change its payment method at the provider",
            code="billed_by_provider",
        )
    if subscription.terms.payment_method_id == request.payment_method_id:
        # A repeated request: announce again (under the same change id while nothing else changed since), so a
        # request whose announcement was lost is finished by its retry; the consumer dedupes by change id.
        _announce(
            dunning,
            subscription,
            request,
            change_id_for(subscription.subscription_id, request.payment_method_id, subscription.version - 1),
        )
        return subscription
    change_id = change_id_for(subscription.subscription_id, request.payment_method_id, subscription.version)
    if not store.set_payment_method(
        subscription.subscription_id,
        request.payment_method_id,
        now=clock(),
        actor=actor,
        source="api",
        correlation_id=change_id,
    ):
        raise NotFoundError(f"no subscription {subscription_id}", code="subscription_not_found")
    _announce(dunning, subscription, request, change_id)
    changed = store.get(subscription.subscription_id)
    if changed is None:  # pragma: no cover - written a moment ago
        raise NotFoundError(f"no subscription {subscription_id}", code="subscription_not_found")
    return changed


def _announce(
    dunning: DocumentQueue, subscription: Subscription, request: PaymentMethodRequest, change_id: str
) -> None:
    dunning.send(
        {
            "kind": "payment_method_changed",
            "change_id": change_id,
            "subscription_id": subscription.subscription_id,
            "payment_method_id": request.payment_method_id,
        }
    )
