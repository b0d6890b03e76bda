"""Inbound webhooks over HTTP through the local runtime and the real template: localstripe's signed
deliveries are verified, queued and applied; forged ones are refused and leave no trace."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import requests
import stripe
from standardwebhooks.webhooks import Webhook

from billing_core.adapters.kms_vault import KmsPersonalDataVault
from billing_core.privacy.personal_data import reveal
from local_profile import LOCAL_OPERATOR_TOKENS, LOCAL_SECRET_SEEDS, running_stripe
from local_runtime.runtime import LocalRuntime
from tests.openapi_contract import assert_http_response_matches
from tests.support import wait_for


def recorded(runtime: LocalRuntime, event_key: str) -> dict[str, Any] | None:
    """The archived event (audit + dedupe marker) the apply step wrote, or None."""
    assert runtime.resolver is not None
    item = (
        runtime.client("dynamodb")
        .get_item(
            TableName=runtime.resolver.physical["WebhookEventsTable"].ref,
            Key={"event_key": {"S": event_key}},
            ConsistentRead=True,
        )
        .get("Item")
    )
    return {name: next(iter(value.values())) for name, value in item.items()} if item else None


def recorded_where(runtime: LocalRuntime, predicate: Any) -> list[dict[str, Any]]:
    assert runtime.resolver is not None
    items = runtime.client("dynamodb").scan(TableName=runtime.resolver.physical["WebhookEventsTable"].ref)["Items"]
    flat = [{name: next(iter(value.values())) for name, value in item.items()} for item in items]
    return [item for item in flat if predicate(item)]


def test_localstripe_deliveries_are_verified_and_queued(runtime: LocalRuntime) -> None:
    # Given localstripe registered to deliver to our route
    assert running_stripe(runtime).webhook_url and running_stripe(runtime).webhook_url.endswith("/webhooks/stripe")
    client = stripe.StripeClient("sk_test_local", base_addresses={"api": running_stripe(runtime).api_base or ""})
    # When a customer is created there
    customer = client.v1.customers.create(params={"email": "receive@example.com"})

    def arrived() -> list[dict[str, Any]]:
        return recorded_where(runtime, lambda e: customer.id in e["raw_body"] and e["event_type"] == "customer.created")

    # Then the signed delivery was verified, queued in the customer's group and applied (recorded:
    # customer.created has no effect), the customer's e-mail sealed in the archive
    found = wait_for(arrived, timeout_seconds=30, interval_seconds=0.5)
    assert found, "localstripe's customer.created was never applied"
    assert found[0]["group_key"] == f"stripe:{customer.id}"
    assert found[0]["outcome"] == "RECORDED"
    assert "receive@example.com" not in found[0]["raw_body"]
    # and it opens with the stack's key (moto's KMS), as an operator's reveal would
    assert runtime.resolver is not None
    vault = KmsPersonalDataVault(runtime.resolver.physical["PersonalDataKey"].attributes["Arn"], runtime.client("kms"))
    revealed = reveal(
        found[0]["raw_body"], wrapped_key=found[0]["personal_data_key"], context=found[0]["event_key"], vault=vault
    )
    assert json.loads(revealed)["data"]["object"]["email"] == "receive@example.com"


def test_forged_and_malformed_deliveries_are_refused_and_nothing_is_queued(runtime: LocalRuntime) -> None:
    url = f"{runtime.api_url}/webhooks/stripe"
    body = json.dumps({"id": "evt_forged_1", "type": "invoice.paid", "data": {"object": {"customer": "cus_x"}}})
    forged = stripe.WebhookSignature.generate_signature_header(body, "whsec_attacker")
    cases = [
        ({"Stripe-Signature": forged}, body, 401, "signature_mismatch"),
        ({}, body, 401, "missing_signature"),
        ({"Stripe-Signature": "nonsense"}, body, 401, "malformed_signature"),
        ({"Stripe-Signature": forged}, "x" * (200 * 1024 + 1), 413, "payload_too_large"),
    ]
    for headers, data, status, code in cases:
        response = requests.post(url, data=data, headers={"Content-Type": "application/json", **headers}, timeout=30)
        assert (response.status_code, assert_http_response_matches(response)["code"]) == (status, code)
        assert "WWW-Authenticate" not in response.headers  # a signature refusal is no credentials challenge
    unknown = requests.post(f"{runtime.api_url}/webhooks/paypal", data=body, timeout=30)
    assert (unknown.status_code, assert_http_response_matches(unknown)["code"]) == (404, "unknown_provider")
    time.sleep(1.5)  # an accepted event would have been applied by now
    assert recorded(runtime, "stripe:evt_forged_1") is None


def test_a_standard_webhooks_delivery_signed_by_hand_is_accepted(runtime: LocalRuntime) -> None:
    # The README's recipe: sign with the fixed local secret and POST
    body = json.dumps({"type": "payment.succeeded", "data": {"customer_id": "cus_dodo_e2e", "payment_id": "pay_1"}})
    message_id = f"msg_{int(time.time() * 1000)}"
    signature = Webhook(LOCAL_SECRET_SEEDS["DodoWebhookSecret"]).sign(message_id, datetime.now(UTC), body)
    headers = {"webhook-id": message_id, "webhook-timestamp": str(int(time.time())), "webhook-signature": signature}
    response = requests.post(f"{runtime.api_url}/webhooks/dodo", data=body, headers=headers, timeout=30)
    assert response.status_code == 202
    assert assert_http_response_matches(response)["provider_event_id"] == message_id
    found = wait_for(lambda: recorded(runtime, f"dodo:{message_id}"), timeout_seconds=30, interval_seconds=0.3)
    assert found and found["group_key"] == "dodo:cus_dodo_e2e" and found["outcome"] == "RECORDED"


def test_localstripe_subscription_reaches_dynamodb_and_the_api(runtime: LocalRuntime) -> None:
    # Given a customer with a card and a subscription created in localstripe through the stripe SDK
    client = stripe.StripeClient("sk_test_local", base_addresses={"api": running_stripe(runtime).api_base or ""})
    customer = client.v1.customers.create(params={"email": "subscriber@example.com"})
    method = client.v1.payment_methods.create(
        params={"type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"}}
    )
    client.v1.payment_methods.attach(method.id, params={"customer": customer.id})
    client.v1.customers.update(customer.id, params={"invoice_settings": {"default_payment_method": method.id}})
    product = client.v1.products.create(params={"name": "Pro"})
    plan = client.v1.plans.create(
        params={"product": product.id, "amount": 2900, "currency": "eur", "interval": "month"}
    )
    subscription = client.v1.subscriptions.create(params={"customer": customer.id, "items": [{"plan": plan.id}]})
    admin = {"Authorization": f"Bearer {LOCAL_OPERATOR_TOKENS['admin']}"}

    # When localstripe's signed webhooks have been received, queued and applied
    def mirrored() -> dict[str, Any] | None:
        reply = requests.get(f"{runtime.api_url}/subscriptions/{subscription.id}", headers=admin, timeout=30)
        return assert_http_response_matches(reply) if reply.status_code == 200 else None

    found = wait_for(mirrored, timeout_seconds=60, interval_seconds=0.5)
    # Then our mirror of the subscription is readable by the provider's id and by ours
    assert found, "the subscription never appeared in GET /subscriptions/{id}"
    assert found["status"] == subscription.status == "active"
    assert found["provider_customer_id"] == customer.id and found["billing_mode"] == "provider"
    ours = requests.get(f"{runtime.api_url}/subscriptions/{found['subscription_id']}", headers=admin, timeout=30)
    assert ours.status_code == 200 and assert_http_response_matches(ours)["provider_subscription_id"] == subscription.id
    missing = requests.get(f"{runtime.api_url}/subscriptions/sub_nope", headers=admin, timeout=30)
    assert (missing.status_code, assert_http_response_matches(missing)["code"]) == (404, "subscription_not_found")
    unauthenticated = requests.get(f"{runtime.api_url}/subscriptions/{subscription.id}", timeout=30)
    assert unauthenticated.status_code == 401
    assert assert_http_response_matches(unauthenticated)["code"] == "invalid_credentials"  # the Cognito authorizer
