"""Through the local runtime: with the price book the stack was seeded with, create an order for a localstripe customer,
commit it with an Idempotency-Key, and see the subscription active, the order committed, the charge at
localstripe, its payment_intent.succeeded webhook recorded, and the order's audit trail."""

from __future__ import annotations

import json
import uuid
from typing import Any

import requests
import stripe

from local_profile import LOCAL_OPERATOR_TOKENS, running_stripe
from local_runtime.runtime import LocalRuntime
from tests.openapi_contract import assert_http_response_matches
from tests.support import ROOT, wait_for

ADMIN = {"Authorization": f"Bearer {LOCAL_OPERATOR_TOKENS['admin']}"}


def test_order_create_commit_charge_webhook_active(runtime: LocalRuntime) -> None:
    api = runtime.api_url
    # Given the stack with the shipped price book in force (seeded at start) and a localstripe customer with a card
    book = json.loads((ROOT / "price_books" / "2026-11-01.json").read_text())
    published = requests.post(f"{api}/price-book", json=book, headers=ADMIN, timeout=30)
    # the seed published it when the stack started: again is refused, a version may not start in the past
    assert (published.status_code, published.json()["code"]) == (409, "effective_from_in_past"), published.text
    assert_http_response_matches(published)
    in_force = requests.get(f"{api}/price-book", headers=ADMIN, timeout=30)
    assert assert_http_response_matches(in_force)["version"] == book["version"]
    too_early = requests.get(f"{api}/price-book", params={"at": "2000-01-01"}, headers=ADMIN, timeout=30)
    assert (too_early.status_code, assert_http_response_matches(too_early)["code"]) == (404, "price_book_not_found")

    client = stripe.StripeClient("sk_test_local", base_addresses={"api": running_stripe(runtime).api_base or ""})
    customer = client.v1.customers.create()
    method = client.v1.payment_methods.create(
        params={"type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"}}
    )
    client.v1.payment_methods.attach(method.id, params={"customer": customer.id})

    # When an order is created and committed over HTTP
    created = requests.post(
        f"{api}/orders",
        json={"customer_id": customer.id, "plan_id": "pro-monthly", "payment_method_id": method.id},
        headers=ADMIN,
        timeout=30,
    )
    assert created.status_code == 201, created.text
    order = assert_http_response_matches(created)
    key = str(uuid.uuid4())
    committed = requests.post(
        f"{api}/orders/{order['order_id']}/commit", headers={**ADMIN, "Idempotency-Key": key}, timeout=60
    )
    assert committed.status_code == 200, committed.text
    body = assert_http_response_matches(committed)
    # Then the order is committed and its subscription is active, at the quoted price
    assert body["status"] == "committed"
    subscription = assert_http_response_matches(
        requests.get(f"{api}/subscriptions/{body['subscription_id']}", headers=ADMIN, timeout=30)
    )
    assert subscription["status"] == "active" and subscription["billing_mode"] == "internal"
    assert subscription["terms"]["amount_minor"] == order["quote"]["amount_due_minor"] == 4900
    invoice = assert_http_response_matches(
        requests.get(f"{api}/invoices/{body['invoice_id']}", headers=ADMIN, timeout=30)
    )
    assert invoice["invoice"]["status"] == "paid"
    # and the same key repeats the answer
    again = requests.post(
        f"{api}/orders/{order['order_id']}/commit", headers={**ADMIN, "Idempotency-Key": key}, timeout=60
    )
    assert again.status_code == 200 and assert_http_response_matches(again) == body

    # and localstripe charged once and its webhook for that payment was received and applied
    intents = [
        i
        for i in client.v1.payment_intents.list(params={"limit": 100}).auto_paging_iter()
        if i.to_dict().get("metadata", {}).get("order_id") == order["order_id"]
    ]
    assert [i.status for i in intents] == ["succeeded"]

    def webhook_recorded() -> dict[str, Any] | None:
        item = (
            runtime.client("dynamodb")
            .get_item(
                TableName=runtime.resolver.physical["WebhookEventsTable"].ref if runtime.resolver else "",
                Key={"event_key": {"S": f"stripe:{_event_id(client, intents[0].id)}"}},
            )
            .get("Item")
        )
        return item or None

    assert wait_for(webhook_recorded, timeout_seconds=30, interval_seconds=0.5)

    # and the order's life is in the audit trail
    def order_trail() -> list[str] | None:
        trail = requests.get(f"{api}/audit/order/{order['order_id']}", headers=ADMIN, timeout=30)
        events = assert_http_response_matches(trail)["events"]
        kinds = [e["event_type"] for e in events]
        return kinds if "order.status_changed" in kinds else None

    trail = wait_for(order_trail, timeout_seconds=30, interval_seconds=0.5)
    assert trail and trail[0] == "order.created"


def _event_id(client: stripe.StripeClient, payment_intent_id: str) -> str:
    for event in client.v1.events.list(params={"limit": 100}).auto_paging_iter():
        if event.type == "payment_intent.succeeded" and event.to_dict()["data"]["object"]["id"] == payment_intent_id:
            return str(event.id)
    return "missing"
