"""Dunning of an invoice the provider bills, end to end through the local runtime: the provider's signed
invoice.payment_failed arrives at POST /webhooks/stripe, the webhook pipeline applies it and hands the invoice to
DunningQueue, DunningStartFunction starts the dunning state machine, and moto's ASL executor runs it with our
functions as its tasks - each retry asking localstripe to collect its own invoice, the final action cancelling the
subscription there. localstripe raises no webhook when collecting an invoice fails, so the test signs the event
Stripe would send, built from localstripe's own invoice, with the local webhook secret."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import requests
import stripe

from billing_core.adapters.stripe_gateway import StripePaymentGateway
from local_profile import LOCAL_SECRET_SEEDS, running_stripe
from local_runtime.runtime import LocalRuntime
from tests.e2e.test_billing_ledger_audit_http import get
from tests.e2e.test_dunning_http import DECLINED, GOOD, execution
from tests.openapi_contract import assert_http_response_matches
from tests.support import wait_for


def client(runtime: LocalRuntime) -> stripe.StripeClient:
    return stripe.StripeClient("sk_test_local", base_addresses={"api": running_stripe(runtime).api_base or ""})


def make_default(runtime: LocalRuntime, customer: str, card: dict[str, Any]) -> None:
    stripe_client = client(runtime)
    method = stripe_client.v1.payment_methods.create(params={"type": "card", "card": card}).id
    stripe_client.v1.payment_methods.attach(method, params={"customer": customer})
    stripe_client.v1.customers.update(customer, params={"invoice_settings": {"default_payment_method": method}})


def failed_provider_renewal(runtime: LocalRuntime) -> tuple[str, str, str]:
    """A subscription localstripe bills, whose renewal invoice it failed to collect: (customer, subscription,
    invoice)."""
    stripe_client = client(runtime)
    customer = stripe_client.v1.customers.create(params={"email": f"pdun-{uuid.uuid4().hex[:8]}@example.com"}).id
    make_default(runtime, customer, GOOD)
    product = stripe_client.v1.products.create(params={"name": "Pro"}).id
    plan = stripe_client.v1.plans.create(
        params={"product": product, "amount": 2900, "currency": "eur", "interval": "month"}
    ).id
    subscription = stripe_client.v1.subscriptions.create(params={"customer": customer, "items": [{"plan": plan}]}).id
    make_default(runtime, customer, DECLINED)
    stripe_client.v1.invoice_items.create(
        params={"customer": customer, "amount": 2900, "currency": "eur", "subscription": subscription}
    )
    invoice = stripe_client.v1.invoices.create(params={"customer": customer, "subscription": subscription}).id
    gateway = StripePaymentGateway(
        "sk_test_local", api_base=running_stripe(runtime).api_base, confirm_off_session=False
    )
    assert gateway.pay_invoice(invoice, idempotency_key=f"renewal-{invoice}").status == "open"
    return customer, subscription, invoice


def send_signed(runtime: LocalRuntime, event_type: str, invoice_id: str) -> None:
    """What Stripe would send about the invoice now, signed with the local webhook secret."""
    obj = client(runtime).v1.invoices.retrieve(invoice_id).to_dict()
    obj["billing_reason"] = "subscription_cycle"
    body = json.dumps(
        {
            "id": f"evt_{uuid.uuid4().hex[:24]}",
            "object": "event",
            "type": event_type,
            "created": int(time.time()),
            "data": {"object": json.loads(json.dumps(obj, default=str))},
        }
    )
    signature = stripe.WebhookSignature.generate_signature_header(body, LOCAL_SECRET_SEEDS["StripeWebhookSecret"])
    response = requests.post(
        f"{runtime.api_url}/webhooks/stripe",
        data=body,
        headers={"Content-Type": "application/json", "Stripe-Signature": signature},
        timeout=30,
    )
    assert response.status_code == 202, response.text
    assert_http_response_matches(response)


def dunning(runtime: LocalRuntime, invoice_id: str) -> dict[str, Any] | None:
    response = get(runtime, f"/invoices/{invoice_id}/dunning")
    return response.json() if response.status_code == 200 else None


def test_a_provider_billed_renewal_is_dunned_by_the_state_machine_to_the_final_action(runtime: LocalRuntime) -> None:
    # Given a renewal the provider failed to collect, and its signed invoice.payment_failed
    _, subscription, invoice = failed_provider_renewal(runtime)
    send_signed(runtime, "invoice.payment_failed", invoice)

    # When the pipeline hands it to dunning and the state machine runs (a policy day is a second locally)
    def ended() -> dict[str, Any] | None:
        view = dunning(runtime, invoice)
        return view if view and view["status"] != "active" else None

    view = wait_for(ended, timeout_seconds=120, interval_seconds=0.5)
    # Then each retry asked localstripe to collect, each was declined, and the final action cancelled the
    # subscription at the provider
    assert view, "the provider-billed invoice never finished dunning"
    assert (view["status"], view["end_reason"], view["billing_mode"], view["provider_invoice_id"]) == (
        "exhausted",
        "final_action:cancel",
        "provider",
        invoice,
    )
    assert [(r["slot"], r["status"], r["decline_code"]) for r in view["schedule"]] == [
        (slot, "failed", "card_declined") for slot in (1, 2, 3, 4)
    ]
    assert client(runtime).v1.subscriptions.retrieve(subscription).status == "canceled"
    assert client(runtime).v1.invoices.retrieve(invoice).status == "open"  # still owed
    done = execution(runtime, view["execution"]["name"])
    assert done is not None and done["status"] == "SUCCEEDED"
    # and the same story is found under our id for it
    ours = dunning(runtime, view["invoice_id"])
    assert ours is not None and ours["provider_invoice_id"] == invoice and ours["status"] == "exhausted"


def test_a_provider_billed_invoice_the_customer_pays_mid_schedule_ends_its_dunning(runtime: LocalRuntime) -> None:
    # Given a running dunning of a provider-billed invoice
    customer, _, invoice = failed_provider_renewal(runtime)
    send_signed(runtime, "invoice.payment_failed", invoice)
    assert wait_for(lambda: dunning(runtime, invoice), timeout_seconds=60, interval_seconds=0.3)
    # When the customer makes a good card their default (the next retry collects), or pays themselves
    make_default(runtime, customer, GOOD)

    # Then dunning ends recovered and the invoice is paid once at the provider
    def ended() -> dict[str, Any] | None:
        view = dunning(runtime, invoice)
        return view if view and view["status"] != "active" else None

    view = wait_for(ended, timeout_seconds=120, interval_seconds=0.5)
    assert view and view["status"] == "recovered", view
    paid = client(runtime).v1.invoices.retrieve(invoice)
    assert paid.status == "paid"
    succeeded = [r for r in view["retries"] if r["status"] == "succeeded"]
    assert len(succeeded) <= 1
    charges = client(runtime).v1.charges.list(params={"customer": customer}).data
    assert len([c for c in charges if c.paid and c.amount == paid.amount_due]) == 1
