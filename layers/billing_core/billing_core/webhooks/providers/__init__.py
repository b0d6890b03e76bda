"""Provider registry: one `Provider` entry per provider we accept webhooks from.

An entry names the provider's signature scheme, how to read an event's identity (id, type, FIFO group) and the
module that maps its events to effects (`events`, imported by the apply step only, so the receive path never
loads the mapping). A new Standard Webhooks provider (`webhook-id`/`webhook-timestamp`/`webhook-signature`, a
JSON body with `type` and `data`) is `standard_webhooks_provider(name, events=..., group_fields=...)` here plus
its mapping module plus its signing secret's name in `WEBHOOK_SECRET_NAMES` (template.yaml); nothing else
changes (docs/architecture.md, "Inbound providers")."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from billing_core.webhooks.providers import stripe
from billing_core.webhooks.providers.standard_webhooks import StandardWebhooksSignature, standard_identity
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
    # The mapping module: `effect_of(envelope) -> Effect` (webhooks/apply.py imports it on first use).
    events: str


def _stripe_identity(event: Mapping[str, Any], headers: Mapping[str, str]) -> EventIdentity:
    return EventIdentity(*stripe.identify(event))


def standard_webhooks_provider(name: str, *, events: str, group_fields: tuple[str, ...]) -> Provider:
    """A provider signing per Standard Webhooks: the `webhook-id` header is the event id, `type` the event type
    and the first of `group_fields` found in `data` (or in `data.customer`) the FIFO group."""

    def identify(event: Mapping[str, Any], headers: Mapping[str, str]) -> EventIdentity:
        return EventIdentity(*standard_identity(name, event, headers, group_fields))

    return Provider(name, StandardWebhooksSignature, identify, events)


PROVIDERS: dict[str, Provider] = {
    "stripe": Provider("stripe", StripeSignature, _stripe_identity, "billing_core.webhooks.providers.stripe_events"),
    "dodo": standard_webhooks_provider(
        "dodo", events="billing_core.webhooks.providers.dodo_events", group_fields=("subscription_id", "customer_id")
    ),
}
