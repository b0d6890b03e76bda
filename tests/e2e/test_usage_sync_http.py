"""Through the local runtime (#12): an order committed over HTTP creates a subscription we bill; the runtime delivers
SubscriptionsTable's stream to both its consumers (the audit projector and UsageSyncFunction, through the template's
filter), and the customer's usage account and the period's limit record appear in UsageTable."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

import requests
import stripe

from billing_core.adapters.dynamodb.usage_store import account_key, limit_key
from local_profile import LOCAL_OPERATOR_TOKENS, running_stripe
from local_runtime.runtime import LocalRuntime
from tests.support import ROOT, wait_for

ADMIN = {"Authorization": f"Bearer {LOCAL_OPERATOR_TOKENS['admin']}"}


def test_a_committed_order_opens_the_customers_usage_account_with_the_plans_limits(runtime: LocalRuntime) -> None:
    api = runtime.api_url
    book = json.loads((ROOT / "price_books" / "2026-11-01.json").read_text())
    [pro] = [plan for plan in book["plans"] if plan["plan_id"] == "pro-monthly"]
    [component] = pro["usage_components"]
    # Given a localstripe customer with a card, and an order for pro-monthly committed over HTTP
    client = stripe.StripeClient("sk_test_local", base_addresses={"api": running_stripe(runtime).api_base or ""})
    customer = client.v1.customers.create()
    method = client.v1.payment_methods.create(
        params={"type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"}}
    )
    client.v1.payment_methods.attach(method.id, params={"customer": customer.id})
    created = requests.post(
        f"{api}/orders",
        json={"customer_id": customer.id, "plan_id": "pro-monthly", "payment_method_id": method.id},
        headers=ADMIN,
        timeout=30,
    )
    assert created.status_code == 201, created.text
    committed = requests.post(
        f"{api}/orders/{created.json()['order_id']}/commit",
        headers={**ADMIN, "Idempotency-Key": str(uuid.uuid4())},
        timeout=60,
    )
    assert committed.status_code == 200, committed.text
    subscription = requests.get(
        f"{api}/subscriptions/{committed.json()['subscription_id']}", headers=ADMIN, timeout=30
    ).json()
    customer_id = subscription["terms"]["customer_id"]
    start = datetime.fromisoformat(subscription["current_period_start"])
    table = runtime.resolver.physical["UsageTable"].ref if runtime.resolver else ""
    dynamodb = runtime.client("dynamodb")

    # When the stream reaches the usage sync, Then the account appears, keyed by our customer id
    def account() -> dict[str, Any] | None:
        item = dynamodb.get_item(TableName=table, Key=account_key(customer_id), ConsistentRead=True)
        return json.loads(item["Item"]["account"]["S"]) if "Item" in item else None

    found = wait_for(account, timeout_seconds=30, interval_seconds=0.5)
    assert found is not None
    assert (found["billing_mode"], found["currency"], found["version"]) == ("internal", pro["currency"], 1)
    [period] = found["periods"]
    assert (period["subscription_id"], period["plan_id"], period["price_version"]) == (
        subscription["subscription_id"],
        "pro-monthly",
        book["version"],
    )
    assert [c["metric"] for c in period["components"]] == [component["metric"]]
    assert datetime.fromisoformat(period["start"]) == start
    # and the period's limit record, with the component's limit (its included quantity) and policy
    limit = dynamodb.get_item(TableName=table, Key=limit_key(customer_id, "api_calls", start), ConsistentRead=True)
    item = limit["Item"]
    assert (item["limit"]["N"], item["policy"]["S"]) == (str(component["included_quantity"]), component["cap_policy"])
