"""Inbound webhooks over HTTP through the local runtime and the real template: localstripe's signed
deliveries are accepted and queued; forged ones are refused and nothing is queued."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import requests
import stripe
from standardwebhooks.webhooks import Webhook

from local_runtime.runtime import LOCAL_SECRET_SEEDS, LocalRuntime
from tests.support import wait_for


def queued(runtime: LocalRuntime) -> list[dict[str, Any]]:
    """Peek at the webhook FIFO queue (no consumer yet: the apply step is the next slice of work).
    A peek is a receive, and receives count toward maxReceiveCount, so the DLQ is read as well."""
    assert runtime.resolver is not None
    return peek(runtime, "WebhookEventsQueue") + peek(runtime, "WebhookEventsDeadLetterQueue")


def peek(runtime: LocalRuntime, logical_id: str) -> list[dict[str, Any]]:
    assert runtime.resolver is not None
    sqs = runtime.client("sqs")
    url = runtime.resolver.physical[logical_id].ref
    found: list[dict[str, Any]] = []
    for _ in range(20):
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0).get("Messages", [])
        if not messages:
            break
        found += [json.loads(m["Body"]) for m in messages]
        for message in messages:  # hand them back so the next peek sees the whole queue
            sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0)
        if len(found) >= 50:
            break
    return found


def test_localstripe_deliveries_are_verified_and_queued(runtime: LocalRuntime) -> None:
    # Given localstripe registered to deliver to our route
    assert runtime.stripe_webhook and runtime.stripe_webhook.endswith("/webhooks/stripe")
    client = stripe.StripeClient("sk_test_local", base_addresses={"api": runtime.stripe_api_base or ""})
    # When a customer is created there
    customer = client.v1.customers.create(params={"email": "receive@example.com"})

    def arrived() -> list[dict[str, Any]]:
        return [e for e in queued(runtime) if customer.id in e["raw_body"] and e["event_type"] == "customer.created"]

    # Then the signed delivery was accepted and queued in the customer's group, raw body intact
    found = wait_for(arrived, timeout_seconds=30, interval_seconds=0.5)
    assert found, "localstripe's customer.created never reached the webhook queue"
    assert found[0]["group_key"] == f"stripe:{customer.id}"
    assert json.loads(found[0]["raw_body"])["data"]["object"]["email"] == "receive@example.com"


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
        assert (response.status_code, response.json()["code"]) == (status, code)
    unknown = requests.post(f"{runtime.api_url}/webhooks/paypal", data=body, timeout=30)
    assert (unknown.status_code, unknown.json()["code"]) == (404, "unknown_provider")
    assert not [e for e in queued(runtime) if e["provider_event_id"] == "evt_forged_1"]


def test_a_standard_webhooks_delivery_signed_by_hand_is_accepted(runtime: LocalRuntime) -> None:
    # The README's recipe: sign with the fixed local secret and POST
    body = json.dumps({"type": "payment.succeeded", "data": {"customer_id": "cus_dodo_e2e", "payment_id": "pay_1"}})
    message_id = f"msg_{int(time.time() * 1000)}"
    signature = Webhook(LOCAL_SECRET_SEEDS["DodoWebhookSecret"]).sign(message_id, datetime.now(UTC), body)
    headers = {"webhook-id": message_id, "webhook-timestamp": str(int(time.time())), "webhook-signature": signature}
    response = requests.post(f"{runtime.api_url}/webhooks/dodo", data=body, headers=headers, timeout=30)
    assert response.status_code == 202
    assert response.json()["provider_event_id"] == message_id
    assert next(e for e in queued(runtime) if e["provider_event_id"] == message_id)["group_key"] == "dodo:cus_dodo_e2e"
