"""Through the local runtime (HTTP API, worker processes, SQS and stream pollers, localstripe): a Stripe
Billing subscription's payment lands in the customer's ledger and the subscription's audit trail; a
subscription billed by us is invoiced and charged by the scheduled billing run, and reconciliation finds
its payment in order."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
import stripe

from billing_core.adapters.dynamodb.subscription_store import DynamoDBSubscriptionStore
from billing_core.adapters.dynamodb.table import DynamoDB
from billing_core.customers import customer_id_for
from billing_core.invoices.model import invoice_id_for
from billing_core.periods import Interval
from billing_core.subscriptions.model import BillingMode, InternalTerms, Subscription
from billing_core.subscriptions.state_machine import SubscriptionStatus
from local_profile import LOCAL_OPERATOR_TOKENS, running_stripe
from local_runtime.runtime import LocalRuntime
from tests.openapi_contract import assert_http_response_matches
from tests.support import wait_for

ADMIN = {"Authorization": f"Bearer {LOCAL_OPERATOR_TOKENS['admin']}"}
CARD = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"}


def get(runtime: LocalRuntime, path: str) -> requests.Response:
    """An admin GET, its answer checked against docs/openapi.yaml."""
    response = requests.get(f"{runtime.api_url}{path}", headers=ADMIN, timeout=30)
    assert_http_response_matches(response)
    return response


def customer_with_card(client: stripe.StripeClient) -> tuple[str, str]:
    customer = client.v1.customers.create()
    method = client.v1.payment_methods.create(params={"type": "card", "card": CARD})
    client.v1.payment_methods.attach(method.id, params={"customer": customer.id})
    client.v1.customers.update(customer.id, params={"invoice_settings": {"default_payment_method": method.id}})
    return str(customer.id), str(method.id)


def test_a_provider_billed_payment_reaches_the_ledger_and_the_audit_trail(runtime: LocalRuntime) -> None:
    client = stripe.StripeClient("sk_test_local", base_addresses={"api": running_stripe(runtime).api_base or ""})
    customer, _ = customer_with_card(client)
    product = client.v1.products.create(params={"name": "Team"})
    plan = client.v1.plans.create(
        params={"product": product.id, "amount": 4900, "currency": "eur", "interval": "month"}
    )
    subscription = client.v1.subscriptions.create(params={"customer": customer, "items": [{"plan": plan.id}]})

    # When the webhooks are applied, the customer's ledger shows the invoice and its payment
    def settled() -> Any:
        reply = get(runtime, f"/customers/{customer}/ledger")
        body = reply.json() if reply.status_code == 200 else None
        return body if body and len(body["entries"]) == 2 else None

    ledger = wait_for(settled, timeout_seconds=60, interval_seconds=0.5)
    assert ledger, "the payment never reached GET /customers/{id}/ledger"
    assert ledger["customer_id"] == customer_id_for("stripe", customer)
    assert sorted(e["amount_minor"] for e in ledger["entries"]) == [-4900, 4900]
    balance = get(runtime, f"/customers/{ledger['customer_id']}/balance").json()
    assert [(b["amount_minor"], b["entry_count"]) for b in balance["balances"]] == [(0, 2)]

    # and the subscription's audit trail (projected from the table's stream) names Stripe as the source
    ours = get(runtime, f"/subscriptions/{subscription.id}").json()["subscription_id"]

    def audited() -> Any:
        events = get(runtime, f"/audit/subscription/{ours}").json()["events"]
        return events or None

    events = wait_for(audited, timeout_seconds=30, interval_seconds=0.5)
    assert events and events[0]["event_type"] == "subscription.created"
    assert {(e["actor"], e["source"]) for e in events} == {("provider:stripe", "stripe")}


def test_the_scheduled_billing_run_invoices_and_charges_a_subscription_billed_by_us(runtime: LocalRuntime) -> None:
    # Given a subscription billed by us whose period ended a minute ago
    client = stripe.StripeClient("sk_test_local", base_addresses={"api": running_stripe(runtime).api_base or ""})
    customer, method = customer_with_card(client)
    assert runtime.resolver is not None
    physical = runtime.resolver.physical
    store = DynamoDBSubscriptionStore(physical["SubscriptionsTable"].ref, DynamoDB(runtime.client("dynamodb")))
    period_end = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    subscription_id = f"bsub_{uuid.uuid4().hex[:24]}"
    store.create_internal(
        Subscription(
            subscription_id=subscription_id,
            provider="stripe",
            provider_subscription_id=None,
            provider_customer_id=customer,
            billing_mode=BillingMode.INTERNAL,
            status=SubscriptionStatus.ACTIVE,
            version=1,
            position=0,
            current_period_start=period_end - timedelta(days=30),
            current_period_end=period_end,
            last_event_id=None,
            updated_at=period_end,
            terms=InternalTerms(
                customer_id=customer_id_for("stripe", customer),
                plan_id="pro",
                price_version="2026-11-01",
                amount_minor=1990,
                currency="EUR",
                interval=Interval.MONTH,
                billing_anchor_day=period_end.day,
                payment_method_id=method,
                next_billing_at=period_end,
            ),
        ),
        actor="user:e2e",
        source="api",
    )
    # When the schedule fires (on demand locally)
    [fired] = runtime.trigger("BillingRunFunction")
    assert "error" not in fired, fired
    assert fired["payload"]["issued"] >= 1 and fired["payload"]["complete"]
    # Then the invoice is paid through one charge attempt
    invoice_id = invoice_id_for(subscription_id, period_end)
    invoice = get(runtime, f"/invoices/{invoice_id}").json()
    assert invoice["invoice"]["status"] == "paid" and invoice["total_minor"] == 1990
    assert [(a["attempt_number"], a["status"]) for a in invoice["attempts"]] == [(1, "SUCCEEDED")]

    # and the invoice's audit trail shows its life, written by the billing run
    def invoice_trail() -> list[str] | None:
        kinds = [e["event_type"] for e in get(runtime, f"/audit/invoice/{invoice_id}").json()["events"]]
        return kinds if "invoice.status_changed" in kinds else None  # the stream is projected asynchronously

    trail = wait_for(invoice_trail, timeout_seconds=30, interval_seconds=0.5)
    assert trail and trail[0] == "invoice.created" and "invoice.status_changed" in trail
    # and reconciliation, run on demand, has nothing to say about this payment
    [reconciled] = runtime.trigger("ReconciliationRunFunction", "Daily")
    assert "error" not in reconciled, reconciled
    subjects = {d["subject"] for d in reconciled["payload"]["discrepancies"]}
    payment = invoice["attempts"][0]["provider_payment_id"]
    assert payment not in subjects and invoice_id not in subjects
    # and the daily ledger integrity check (its own schedule, same function) finds the books balanced
    [integrity] = runtime.trigger("ReconciliationRunFunction", "LedgerIntegrity")
    assert "error" not in integrity, integrity
    assert integrity["payload"]["discrepancies"] == [], integrity["payload"]
