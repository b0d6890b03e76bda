"""localstripe -> signed webhook -> our API route, raw body intact (verified with Stripe's own check)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import stripe

from local_profile import LOCAL_SECRET_SEEDS, bundle_profile, running_stripe
from local_runtime.runtime import LocalRuntime, RuntimeConfig
from tests.local_runtime.echo_stack import echo_template
from tests.support import free_port, wait_for


def test_localstripe_delivers_signed_webhooks_with_the_raw_body(tmp_path: Path) -> None:
    # Given a template with a Stripe webhook route and signing secret, served by the runtime
    capture = tmp_path / "captured.jsonl"
    capture.touch()
    path = tmp_path / "template.yaml"
    path.write_text(echo_template(capture))
    runtime = LocalRuntime(
        RuntimeConfig(
            template_path=path,
            profile=bundle_profile(stripe_port=free_port()),
            api_port=0,
            moto_port=0,
            stack_name="echo",
            log=lambda _: None,
        )
    ).start()
    try:
        assert running_stripe(runtime).webhook_url == f"{runtime.api_url}/webhooks/stripe"
        # When something happens in localstripe
        client = stripe.StripeClient("sk_test_local", base_addresses={"api": running_stripe(runtime).api_base or ""})
        customer = client.v1.customers.create(params={"email": "webhook@example.com"})

        def delivered() -> list[dict[str, Any]]:
            lines = [json.loads(line) for line in capture.read_text().splitlines() if line]
            return [d for d in lines if customer.id in (d["body"] or "")]

        deliveries = wait_for(delivered, timeout_seconds=30, interval_seconds=0.3)
    finally:
        runtime.stop()
    # Then the event arrived signed, and the body the handler saw verifies byte for byte
    assert deliveries, "localstripe never delivered a webhook for the new customer"
    delivery = deliveries[0]
    assert delivery["isBase64Encoded"] is False
    event = stripe.Webhook.construct_event(
        delivery["body"], delivery["headers"]["Stripe-Signature"], LOCAL_SECRET_SEEDS["StripeWebhookSecret"]
    )
    assert event["type"] == "customer.created"
    assert event["data"]["object"]["id"] == customer.id
    tampered = delivery["body"].replace("webhook@example.com", "attacker@example.com")
    try:
        stripe.Webhook.construct_event(
            tampered, delivery["headers"]["Stripe-Signature"], LOCAL_SECRET_SEEDS["StripeWebhookSecret"]
        )
    except stripe.SignatureVerificationError:
        pass
    else:
        raise AssertionError("a tampered body verified")
