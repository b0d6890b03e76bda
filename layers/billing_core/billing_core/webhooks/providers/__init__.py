"""Provider registry. Adding a provider is one module here (how to read its event id, type and the
customer/subscription the event concerns) plus configuration (its signing secret's name)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from billing_core.webhooks.providers import dodo, stripe
from billing_core.webhooks.providers.standard_webhooks import StandardWebhooksSignature
from billing_core.webhooks.providers.stripe import StripeSignature
from billing_core.webhooks.verification import SignatureScheme


@dataclass(frozen=True)
class EventIdentity:
    provider_event_id: str
    event_type: str
    group_key: str


@dataclass(frozen=True)
class Provider:
    name: str
    scheme: Callable[[int], SignatureScheme]
    identify: Callable[[Mapping[str, Any], Mapping[str, str]], EventIdentity]


def _stripe_identity(event: Mapping[str, Any], headers: Mapping[str, str]) -> EventIdentity:
    return EventIdentity(*stripe.identify(event))


def _dodo_identity(event: Mapping[str, Any], headers: Mapping[str, str]) -> EventIdentity:
    return EventIdentity(*dodo.identify(event, headers))


PROVIDERS: dict[str, Provider] = {
    "stripe": Provider("stripe", StripeSignature, _stripe_identity),
    "dodo": Provider("dodo", StandardWebhooksSignature, _dodo_identity),
}
