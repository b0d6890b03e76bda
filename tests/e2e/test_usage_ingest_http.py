"""POST /usage/events through the local runtime over HTTP (#12): the ingestion key is checked as API Gateway
checks it (no key or a wrong one: 401 invalid_api_key, the function never runs), one verdict per event in
order, a retried request answers duplicate, a hard stop refuses past the limit, and whole-request errors
(400, 413) accept nothing. Every answer is checked against docs/openapi.yaml.

The customer's usage account and limit record are written through the store, as the usage sync would, except in
the last test, where an order committed over HTTP and the usage sync open them; each test makes up its own
customer (the stack is shared with the other e2e tests)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
import stripe

from billing_core.adapters.dynamodb.table import DynamoDB
from billing_core.adapters.dynamodb.usage_store import DynamoDBUsageStore
from billing_core.pricing.model import CapPolicy, UsageComponent
from billing_core.usage.accounts import AccountPeriod, UsageAccount
from billing_core.usage.entitlements import LimitRecord
from billing_core.usage.ingestion import USAGE_MAX_BODY_BYTES
from local_profile import LOCAL_OPERATOR_TOKENS, LOCAL_SECRET_SEEDS, running_stripe
from local_runtime.runtime import LocalRuntime
from tests.openapi_contract import assert_http_response_matches
from tests.support import wait_for

KEY = {"x-api-key": LOCAL_SECRET_SEEDS["BillingApiApiKey"]}
HARD = UsageComponent(
    metric="api_calls", unit_amount_minor=1, included_quantity=0, cap_policy=CapPolicy.HARD_STOP, cap_quantity=10
)


@pytest.fixture
def customer(runtime: LocalRuntime) -> str:
    """A customer with a usage account (a period around now, api_calls hard-stopped at 10) and its limit."""
    assert runtime.resolver is not None
    customer_id = f"bcus_{uuid.uuid4().hex[:24]}"
    now = datetime.now(UTC)
    store = DynamoDBUsageStore(runtime.resolver.physical["UsageTable"].ref, DynamoDB(runtime.client("dynamodb")))
    period = AccountPeriod(
        start=now - timedelta(days=5), end=now + timedelta(days=25), subscription_id="bsub_e2e", components=(HARD,)
    )
    account = UsageAccount(
        customer_id=customer_id,
        billing_mode="internal",
        provider="stripe",
        currency="EUR",
        periods=(period,),
        version=1,
        updated_at=now,
    )
    assert store.put_account(account)
    store.put_limit(LimitRecord.for_component(customer_id, HARD, period.period, now))
    return customer_id


def send(runtime: LocalRuntime, body: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = requests.post(
        f"{runtime.api_url}/usage/events",
        data=data,
        headers={"Content-Type": "application/json", **(KEY if headers is None else headers)},
        timeout=60,
    )
    return response.status_code, assert_http_response_matches(response)


def event(customer_id: str, event_id: str, value: int = 1, **changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "event_id": event_id,
        "customer_id": customer_id,
        "meter": "api_calls",
        "value": value,
        "timestamp": (datetime.now(UTC) - timedelta(seconds=30)).isoformat(),
        "properties": {"endpoint": "/v1/things"},
    }
    fields.update(changes)
    return fields


def verdicts(body: Any) -> list[tuple[str, str, str | None]]:
    return [(r["event_id"], r["verdict"], r.get("reason")) for r in body["results"]]


def test_the_ingestion_key_is_checked_before_the_function(runtime: LocalRuntime, customer: str) -> None:
    request = {"events": [event(customer, "k-1")]}
    # Without a key, or with a wrong one: API Gateway's INVALID_API_KEY answer, as the template configures it
    for headers in ({}, {"x-api-key": "not-the-key"}):
        status, body = send(runtime, request, headers=headers)
        assert (status, body["code"]) == (401, "invalid_api_key")
    # With the local key: through, and the event is new (the refused requests wrote nothing)
    status, body = send(runtime, request)
    assert (status, verdicts(body)) == (202, [("k-1", "accepted", None)])
    # Another route keeps its own authentication (no API key needed)
    assert requests.get(f"{runtime.api_url}/health", timeout=60).status_code in (200, 503)


def test_verdicts_in_order_a_retry_is_duplicate_and_the_hard_stop_refuses(runtime: LocalRuntime, customer: str) -> None:
    first = event(customer, "a", 6)
    request = {
        "events": [
            first,
            event(customer, "b", 5),  # 11 > 10
            event(customer, "c", 4),
            dict(first),  # a repeat inside the request
            event("bcus_nobody0000000000000000", "d"),
            event(customer, "e", meter="no_such_meter"),
            event(customer, "f", timestamp=(datetime.now(UTC) - timedelta(days=6)).isoformat()),
        ]
    }
    status, body = send(runtime, request)
    assert status == 202
    assert verdicts(body) == [
        ("a", "accepted", None),
        ("b", "rejected", "limit_exceeded"),
        ("c", "accepted", None),
        ("a", "duplicate", None),
        ("d", "rejected", "unknown_customer"),
        ("e", "rejected", "unknown_meter"),
        ("f", "rejected", "outside_billing_period"),
    ]
    # The client retries the whole request: what was accepted is a duplicate (a success), the rest judged again
    status, body = send(runtime, request)
    assert [verdict for _, verdict, _ in verdicts(body)] == [
        "duplicate",
        "rejected",
        "duplicate",
        "duplicate",
        "rejected",
        "rejected",
        "rejected",
    ]
    # The same key with another payload is a conflict
    status, body = send(runtime, {"events": [event(customer, "c", 3)]})
    assert verdicts(body) == [("c", "conflict", None)]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, "malformed_json"),
        ({"events": []}, 400, "validation_failed"),
        ("too_many", 400, "validation_failed"),
        ("bad_shape", 400, "validation_failed"),
        ("too_large", 413, "payload_too_large"),
    ],
)
def test_whole_request_errors_accept_nothing(
    runtime: LocalRuntime, customer: str, body: Any, status: int, code: str
) -> None:
    good = [event(customer, f"w-{index}") for index in range(3)]
    built = (
        {
            "too_many": {"events": good + [event(customer, f"x-{index}") for index in range(98)]},
            "bad_shape": {"events": [*good, event(customer, "has#hash")]},
            "too_large": {"events": good, "padding": "p" * USAGE_MAX_BODY_BYTES},
        }.get(body, body)
        if isinstance(body, str)
        else body
    )
    answer_status, answer = send(runtime, built)
    assert (answer_status, answer["code"]) == (status, code)
    # Nothing of it was accepted: the good events are new now
    answer_status, answer = send(runtime, {"events": good})
    assert [verdict for _, verdict, _ in verdicts(answer)] == ["accepted"] * 3


def test_a_customer_signed_up_through_an_order_can_send_usage(runtime: LocalRuntime) -> None:
    """The whole path: an order committed over HTTP, the usage sync opening the customer's account from
    SubscriptionsTable's stream, then usage accepted for that customer under the ingestion key."""
    admin = {"Authorization": f"Bearer {LOCAL_OPERATOR_TOKENS['admin']}"}
    api = runtime.api_url
    client = stripe.StripeClient("sk_test_local", base_addresses={"api": running_stripe(runtime).api_base or ""})
    stripe_customer = client.v1.customers.create()
    method = client.v1.payment_methods.create(
        params={"type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"}}
    )
    client.v1.payment_methods.attach(method.id, params={"customer": stripe_customer.id})
    order = {"customer_id": stripe_customer.id, "plan_id": "pro-monthly", "payment_method_id": method.id}
    created = requests.post(f"{api}/orders", json=order, headers=admin, timeout=30)
    assert created.status_code == 201, created.text
    committed = requests.post(
        f"{api}/orders/{created.json()['order_id']}/commit",
        headers={**admin, "Idempotency-Key": str(uuid.uuid4())},
        timeout=60,
    )
    assert committed.status_code == 200, committed.text
    subscription_id = committed.json()["subscription_id"]
    customer_id = requests.get(f"{api}/subscriptions/{subscription_id}", headers=admin, timeout=30).json()["terms"][
        "customer_id"
    ]

    # Until the sync has opened the account the customer is unknown (nothing written); then the event is accepted.
    # The event is stamped when sent: one stamped before the subscription's first period began would be
    # outside_billing_period.
    def answered() -> list[tuple[str, str, str | None]] | None:
        now = datetime.now(UTC).isoformat()
        status, body = send(runtime, {"events": [event(customer_id, "signed-up-1", 7, timestamp=now)]})
        assert status == 202
        found = verdicts(body)
        return found if found[0][2] != "unknown_customer" else None

    assert wait_for(answered, timeout_seconds=30, interval_seconds=0.5) == [("signed-up-1", "accepted", None)]
