"""The event mapping module of "Acme Billing", a Standard Webhooks provider the test suite adds to the registry by
configuration only (tests/integration/test_dodo_apply_on_moto.py): the registry's contract for a mapping module
is this one function, `effect_of_envelope(envelope) -> Effect`, built from the bundle's own parts."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from billing_core.customers import customer_id_for
from billing_core.ledger import postings
from billing_core.subscriptions.model import SubscriptionSnapshot
from billing_core.subscriptions.state_machine import parse_status
from billing_core.webhooks.effects import Effect
from billing_core.webhooks.model import WebhookEnvelope

PROVIDER = "acme"


def effect_of_envelope(envelope: WebhookEnvelope) -> Effect:
    event = json.loads(envelope.raw_body)
    data, at = event["data"], datetime.fromisoformat(event["timestamp"])
    if event["type"] == "plan.status_changed":
        return Effect(
            subscription=SubscriptionSnapshot(
                provider=PROVIDER,
                provider_subscription_id=data["plan_id"],
                provider_customer_id=data["account_id"],
                status=parse_status(data["status"]),
                position=int(at.timestamp()),
                source_event_id=envelope.provider_event_id,
            )
        )
    if event["type"] == "charge.settled":
        customer = customer_id_for(PROVIDER, data["account_id"])
        common: dict[str, Any] = {
            "provider": PROVIDER,
            "provider_invoice_id": data["charge_id"],
            "customer": customer,
            "amount_minor": int(data["amount_minor"]),
            "currency": data["currency"],
            "at": at.astimezone(UTC),
            "source": f"{PROVIDER}:{envelope.provider_event_id}",
            "actor": f"provider:{PROVIDER}",
        }
        return Effect(ledger=(postings.provider_invoice_finalized(**common), postings.provider_invoice_paid(**common)))
    return Effect(note=f"{event['type']}: recorded")
