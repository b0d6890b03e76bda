# Past 400 lines: one customer story told by two providers, applied as it arrives, by a provider added by
# configuration, and held while a provider is paused; every test shares the stories, the signing, the draining and
# the canonical state, which a split would pass around.
"""Dodo Payments events are applied, not only recorded (issue #14): the same customer story told by Stripe and
by Dodo - subscribe, pay a renewal, get part of it refunded, fall behind, cancel - goes through the real receive
and apply functions (moto server: Secrets Manager, the FIFO queue, DynamoDB, KMS) and ends in the same canonical
state, whether the deliveries come in order, twice, out of order or with a tampered copy. Dodo's deliveries are
signed by the `standardwebhooks` reference library, Stripe's by the stripe SDK's helper."""

from __future__ import annotations

import base64
import importlib
import json
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

import pytest
import stripe
from standardwebhooks.webhooks import Webhook

from billing_core.adapters import aws as aws_adapter
from billing_core.adapters.dynamodb.switch_store import DynamoDBSwitchStore
from billing_core.adapters.dynamodb.table import DynamoDB
from billing_core.operations.switches import SwitchAdmin, SwitchChange
from billing_core.webhooks.providers import PROVIDERS, standard_webhooks_provider
from local_profile import LOCAL_SECRET_SEEDS
from tests.integration.conftest import Stack
from tests.support import EVENTS

T0 = int(time.time()) - 120  # the story happened in the last two minutes (inside the signature tolerance)
AMOUNT, REFUNDED = 2500, 500


class Context:
    function_name = "billing-local-WebhookApplyFunction"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:billing-local-WebhookApplyFunction"
    aws_request_id = "req-dodo"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


# --- the story, in each provider's words -------------------------------------------------------------------------


def stripe_story() -> list[dict[str, Any]]:
    subscription = {"object": "subscription", "id": "sub_story", "customer": "cus_story"}
    period = {"current_period_start": T0, "current_period_end": T0 + 30 * 86400, "cancel_at_period_end": False}

    def event(n: int, kind: str, obj: dict[str, Any], previous: dict[str, Any] | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {"object": obj}
        if previous is not None:
            data["previous_attributes"] = previous
        return {"id": f"evt_story_{n}", "object": "event", "type": kind, "created": T0 + n, "data": data}

    invoice = {
        "object": "invoice",
        "id": "in_story",
        "customer": "cus_story",
        "subscription": "sub_story",
        "amount_due": AMOUNT,
        "amount_paid": AMOUNT,
        "currency": "usd",
        "status": "paid",
    }
    refund = {"id": "re_story", "object": "refund", "amount": REFUNDED, "currency": "usd", "status": "succeeded"}
    charge = {"object": "charge", "id": "ch_story", "customer": "cus_story", "refunds": {"data": [refund]}}
    return [
        event(1, "customer.subscription.created", {**subscription, **period, "status": "active"}),
        event(2, "invoice.paid", invoice),
        event(3, "charge.refunded", charge),
        event(
            4, "customer.subscription.updated", {**subscription, **period, "status": "past_due"}, {"status": "active"}
        ),
        event(5, "customer.subscription.deleted", {**subscription, **period, "status": "canceled"}),
    ]


def dodo_story() -> list[tuple[str, dict[str, Any]]]:
    """(webhook-id, body). Dodo's timestamps carry milliseconds; its bodies carry no event id."""
    customer = {"customer_id": "cus_dodo_story", "email": "story@example.com", "name": "Story"}
    subscription = {
        "subscription_id": "sub_dodo_story",
        "customer": customer,
        "previous_billing_date": datetime.fromtimestamp(T0, UTC).isoformat(),
        "next_billing_date": datetime.fromtimestamp(T0 + 30 * 86400, UTC).isoformat(),
        "cancel_at_next_billing_date": False,
        "recurring_pre_tax_amount": AMOUNT,
        "currency": "USD",
    }

    def event(n: int, kind: str, data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        at = datetime.fromtimestamp(T0 + n, UTC) + timedelta(milliseconds=137)
        body = {"business_id": "bus_story", "type": kind, "timestamp": at.isoformat(), "data": data}
        return f"msg_story_{n}", body

    payment = {
        "payment_id": "pay_dodo_story",
        "status": "succeeded",
        "total_amount": AMOUNT,
        "currency": "USD",
        "subscription_id": "sub_dodo_story",
        "customer": customer,
        "created_at": datetime.fromtimestamp(T0 + 2, UTC).isoformat(),
    }
    refund = {
        "refund_id": "rfd_dodo_story",
        "payment_id": "pay_dodo_story",
        "amount": REFUNDED,
        "currency": "USD",
        "status": "succeeded",
        "customer": customer,
    }
    return [
        event(1, "subscription.active", {**subscription, "status": "active"}),
        event(2, "payment.succeeded", payment),
        event(3, "refund.succeeded", refund),
        event(4, "subscription.on_hold", {**subscription, "status": "on_hold"}),
        event(5, "subscription.cancelled", {**subscription, "status": "cancelled"}),
    ]


# --- the functions, on moto --------------------------------------------------------------------------------------


@pytest.fixture
def functions(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ModuleType, ModuleType]]:
    for name, logical_id in {
        "WEBHOOK_EVENTS_TABLE_NAME": "WebhookEventsTable",
        "SUBSCRIPTIONS_TABLE_NAME": "SubscriptionsTable",
        "LEDGER_TABLE_NAME": "LedgerTable",
        "ACCOUNT_BALANCES_TABLE_NAME": "AccountBalancesTable",
        "IDEMPOTENCY_TABLE_NAME": "IdempotencyTable",
        "ORDERS_TABLE_NAME": "OrdersTable",
        "INVOICES_TABLE_NAME": "InvoicesTable",
        "PRICE_BOOK_TABLE_NAME": "PriceBookTable",
        "DUNNING_QUEUE_URL": "DunningQueue",
        "SWITCHES_TABLE_NAME": "SwitchesTable",
        "WEBHOOK_HOLDS_TABLE_NAME": "WebhookHoldsTable",
    }.items():
        monkeypatch.setenv(name, stack.ref(logical_id))
    monkeypatch.setenv("PERSONAL_DATA_KEY_ID", stack.attribute("PersonalDataKey", "Arn"))
    secrets = {"stripe": stack.ref("StripeWebhookSecret"), "dodo": stack.ref("DodoWebhookSecret")}
    monkeypatch.setenv("WEBHOOK_SECRET_NAMES", json.dumps(secrets))
    monkeypatch.setenv("WEBHOOK_TOLERANCE_SECONDS", "300")
    monkeypatch.setenv("WEBHOOK_MAX_BODY_BYTES", "204800")
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "billing-local-WebhookApplyFunction")
    aws_adapter.clear_clients()
    receive = importlib.import_module("functions.webhook_receive.app")
    apply = importlib.import_module("functions.webhook_apply.app")
    for module in (receive, apply):
        module.wiring.reset()
    yield receive, apply
    for module in (receive, apply):
        module.wiring.reset()


def post(receive: ModuleType, provider: str, body: str, headers: dict[str, str]) -> int:
    event = json.loads((EVENTS / "api" / "webhook_stripe_subscription_created.json").read_text())
    event.update(
        path=f"/webhooks/{provider}",
        pathParameters={"provider": provider},
        headers={"Content-Type": "application/json", **headers},
        multiValueHeaders={"Content-Type": ["application/json"], **{k: [v] for k, v in headers.items()}},
        body=body,
    )
    return int(receive.lambda_handler(event, Context())["statusCode"])


def tampered(body: str) -> str:
    """Signed, then changed on the way: the amounts a forger would like, and a field of theirs."""
    changed = body.replace(str(AMOUNT), str(AMOUNT * 10)).replace(str(REFUNDED), str(REFUNDED * 10))
    return changed[:-1] + ', "forged": true}'


def send_stripe(receive: ModuleType, event: dict[str, Any], *, tamper: bool = False) -> int:
    body = json.dumps(event)
    signature = stripe.WebhookSignature.generate_signature_header(body, LOCAL_SECRET_SEEDS["StripeWebhookSecret"])
    if tamper:
        body = tampered(body)
    return post(receive, "stripe", body, {"Stripe-Signature": signature})


def send_dodo(receive: ModuleType, message: tuple[str, dict[str, Any]], *, tamper: bool = False) -> int:
    message_id, payload = message
    body = json.dumps(payload)
    now = datetime.now(UTC)
    signature = Webhook(LOCAL_SECRET_SEEDS["DodoWebhookSecret"]).sign(message_id, now, body)
    if tamper:
        body = tampered(body)
    headers = {"webhook-id": message_id, "webhook-timestamp": str(int(now.timestamp())), "webhook-signature": signature}
    return post(receive, "dodo", body, headers)


def drain(stack: Stack, apply: ModuleType, *, redeliver: bool = False) -> int:
    """Hands everything on the FIFO queue to the apply function, as the event source mapping would (one group's
    messages in order); with `redeliver`, every batch is handed over a second time, as SQS may."""
    sqs = stack.client("sqs")
    url = stack.ref("WebhookEventsQueue")
    handled = 0
    while True:
        messages = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"], VisibilityTimeout=60
        ).get("Messages", [])
        if not messages:
            return handled
        records = [
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": message["Attributes"],
                "messageAttributes": {},
                "md5OfBody": message["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": stack.attribute("WebhookEventsQueue", "Arn"),
                "awsRegion": "us-east-1",
            }
            for message in messages
        ]
        for _ in range(2 if redeliver else 1):
            assert apply.lambda_handler({"Records": records}, Context()) == {"batchItemFailures": []}
            apply.wiring.apply_webhook_once().config.use_local_cache = False  # the next delivery: a new instance
        for message in messages:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        handled += len(messages)


# --- the canonical state -----------------------------------------------------------------------------------------


def scan(stack: Stack, logical_id: str) -> list[dict[str, Any]]:
    dynamodb = stack.client("dynamodb")
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": stack.ref(logical_id), "ConsistentRead": True}
    while True:
        page = dynamodb.scan(**kwargs)
        items += [{k: next(iter(v.values())) for k, v in item.items()} for item in page["Items"]]
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def canonical(stack: Stack, provider: str) -> dict[str, Any]:
    """What the story left, in words neither provider owns: the subscription, the ledger's balances per kind of
    account (in minor units and currency), how many ledger transactions, and how each event ended."""
    words = {provider: "provider", "cus_story": "customer", "cus_dodo_story": "customer", "acc_1": "customer"}

    def neutral(text: str) -> str:
        for word, meaning in words.items():
            text = text.replace(word, meaning)
        return text

    subscriptions = [s for s in scan(stack, "SubscriptionsTable") if s.get("provider") == provider]
    events = [e for e in scan(stack, "WebhookEventsTable") if e["event_key"].startswith(f"{provider}:")]
    ledger = [e for e in scan(stack, "LedgerTable") if provider in json.dumps(e)]
    balances: dict[str, int] = {}
    for entry in ledger:
        if "amount_minor" in entry and "account" in entry:
            key = f"{neutral(entry['account']).split(':bcus_')[0]} {entry.get('currency', '')}"
            balances[key] = balances.get(key, 0) + int(entry["amount_minor"])
    return {
        "subscriptions": sorted(
            (s["status"], s.get("cancel_at_period_end"), s.get("current_period_end")) for s in subscriptions
        ),
        "balances": dict(sorted(balances.items())),
        "transactions": len({e["transaction_id"] for e in ledger if "transaction_id" in e}),
        "events": sorted(e["outcome"] for e in events),
    }


ORDERS = {
    "in order": [0, 1, 2, 3, 4],
    "reordered": [4, 2, 0, 3, 1],  # the cancellation first, the activation after the refund
}


@pytest.mark.parametrize("variant", ["in order", "duplicated", "reordered", "tampered"])
def test_the_dodo_story_ends_where_the_stripe_story_ends(
    stack: Stack, functions: tuple[ModuleType, ModuleType], variant: str
) -> None:
    receive, apply = functions
    stripe_events, dodo_events = stripe_story(), dodo_story()
    order = ORDERS.get(variant, ORDERS["in order"])
    for index in order:
        if variant == "tampered":
            # Given a tampered copy of each delivery first: refused, and nothing reaches the queue
            assert send_stripe(receive, stripe_events[index], tamper=True) == 401
            assert send_dodo(receive, dodo_events[index], tamper=True) == 401
        assert send_stripe(receive, stripe_events[index]) == 202
        assert send_dodo(receive, dodo_events[index]) == 202
        if variant == "duplicated":  # the provider retries: a second delivery of the same event
            assert send_stripe(receive, stripe_events[index]) == 202
            assert send_dodo(receive, dodo_events[index]) == 202
    # When the queue is drained (every batch twice when the variant duplicates)
    handled = drain(stack, apply, redeliver=variant == "duplicated")
    assert handled == 10  # the queue deduplicates a retried delivery by its event id
    stripe_state, dodo_state = canonical(stack, "stripe"), canonical(stack, "dodo")
    # Then both providers' stories end in one state
    assert dodo_state == stripe_state
    period_end = datetime.fromtimestamp(T0 + 30 * 86400, UTC).isoformat()
    assert dodo_state["subscriptions"] == [("canceled", False, period_end)]
    # Paid in full, then part of it given back: debits positive, credits negative, each currency summing to zero
    assert dodo_state["balances"] == {
        "customer_receivable USD": 0,
        "provider_clearing:provider USD": AMOUNT - REFUNDED,
        "refunds USD": REFUNDED,
        "revenue USD": -AMOUNT,
    }
    assert dodo_state["transactions"] == 3  # the invoice's issuing, its payment, the refund
    # The subscription events that arrived after a later one are STALE (recorded, not applied backwards)
    expected_outcomes = {"in order": 5 * ["APPLIED"], "reordered": 3 * ["APPLIED"] + 2 * ["STALE"]}
    assert dodo_state["events"] == sorted(expected_outcomes.get(variant, expected_outcomes["in order"]))


# --- a new Standard Webhooks provider, added by configuration only ----------------------------------------------


def test_a_new_standard_webhooks_provider_is_one_registry_entry_a_mapping_module_and_its_secret(
    stack: Stack, functions: tuple[ModuleType, ModuleType], monkeypatch: pytest.MonkeyPatch
) -> None:
    receive, apply = functions
    # Given "acme": its signing secret in Secrets Manager, its name in WEBHOOK_SECRET_NAMES, one registry entry
    # (tests/fakes/acme_events.py is its mapping module) - and no change to the bundle's code
    secret = "whsec_" + base64.b64encode(b"acme-signing-key-of-32-bytes-ok!").decode()
    arn = stack.client("secretsmanager").create_secret(
        Name=f"acme-{stack.ref('DodoWebhookSecret')}", SecretString=secret
    )
    names = {**json.loads(os.environ["WEBHOOK_SECRET_NAMES"]), "acme": arn["ARN"]}
    monkeypatch.setenv("WEBHOOK_SECRET_NAMES", json.dumps(names))
    monkeypatch.setitem(
        PROVIDERS,
        "acme",
        standard_webhooks_provider("acme", events="tests.fakes.acme_events", group_fields=("plan_id",)),
    )
    receive.wiring.reset()
    at = datetime.now(UTC)
    story = [
        ("acme_1", "plan.status_changed", {"plan_id": "pl_1", "account_id": "acc_1", "status": "active"}),
        (
            "acme_2",
            "charge.settled",
            {"plan_id": "pl_1", "account_id": "acc_1", "charge_id": "chg_1", "amount_minor": 1200, "currency": "EUR"},
        ),
        ("acme_3", "plan.status_changed", {"plan_id": "pl_1", "account_id": "acc_1", "status": "canceled"}),
    ]
    # When its signed deliveries arrive (and a forged one)
    for n, (message_id, kind, data) in enumerate(story):
        body = json.dumps({"type": kind, "timestamp": (at + timedelta(seconds=n)).isoformat(), "data": data})
        signature = Webhook(secret).sign(message_id, at, body)
        headers = {
            "webhook-id": message_id,
            "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": signature,
        }
        assert post(receive, "acme", body, headers) == 202
        assert post(receive, "acme", tampered(body), {**headers, "webhook-id": f"{message_id}_forged"}) == 401
    assert drain(stack, apply) == 3
    # Then they are applied like any provider's: the subscription state machine and the balanced ledger
    state = canonical(stack, "acme")
    assert state["subscriptions"] == [("canceled", False, None)]
    assert state["events"] == ["APPLIED", "APPLIED", "APPLIED"]
    assert state["balances"] == {
        "customer_receivable EUR": 0,
        "provider_clearing:provider EUR": 1200,
        "revenue EUR": -1200,
    }


# --- a provider's inbound processing paused, then resumed ---------------------------------------------------------


def set_switch(stack: Stack, name: str, enabled: bool) -> None:
    admin = SwitchAdmin(
        DynamoDBSwitchStore(stack.ref("SwitchesTable"), DynamoDB(stack.client("dynamodb"))), cache_max_age_seconds=1
    )
    change = SwitchChange(enabled=enabled, reason="INC-130: Dodo's mapping is being fixed")
    admin.set(name, change, actor="user:ada", correlation_id=None)


def held(stack: Stack) -> list[tuple[str, str]]:
    return sorted(
        (item["provider"], json.loads(item["envelope"])["provider_event_id"])
        for item in scan(stack, "WebhookHoldsTable")
    )


def test_a_paused_providers_events_are_held_in_order_then_applied_once_after_the_resume(
    stack: Stack, functions: tuple[ModuleType, ModuleType], monkeypatch: pytest.MonkeyPatch
) -> None:
    receive, apply = functions
    monkeypatch.setenv("SWITCHES_CACHE_MAX_AGE_SECONDS", "1")  # the template's default is 30 s: same code, shorter
    monkeypatch.setenv("WEBHOOK_HOLDS_TABLE_NAME", stack.ref("WebhookHoldsTable"))
    release = importlib.import_module("functions.webhook_release.app")
    release.wiring.reset()
    apply.wiring.reset()
    scheduled = json.loads((EVENTS / "eventbridge" / "webhook_release_scheduled.json").read_text())
    try:
        # Given an operator paused Dodo's inbound processing (Stripe's is not)
        set_switch(stack, "inbound_paused_dodo", True)
        # When both stories arrive and the queue is drained - every batch handed over twice, as SQS may
        for stripe_event, dodo_event in zip(stripe_story(), dodo_story(), strict=True):
            assert send_stripe(receive, stripe_event) == 202
            assert send_dodo(receive, dodo_event) == 202  # the provider sees no difference
        assert drain(stack, apply, redeliver=True) == 10
        # Then Stripe's story is applied; Dodo's left no trace but five held events (one each, despite the redelivery)
        stripe_state = canonical(stack, "stripe")
        assert stripe_state["events"] == 5 * ["APPLIED"]
        assert canonical(stack, "dodo") == {"subscriptions": [], "balances": {}, "transactions": 0, "events": []}
        assert held(stack) == [("dodo", f"msg_story_{n}") for n in range(1, 6)]
        # And a release while the switch is on sends nothing back
        report = release.lambda_handler(scheduled, Context())
        assert (report["released"], report["still_paused"]) == ({}, ["dodo"])
        assert drain(stack, apply) == 0
        # When the operator resumes it and, past the cache age, the minute's release runs - within the queue's
        # five-minute deduplication window of the original sends, which a resend under the original id would hit
        set_switch(stack, "inbound_paused_dodo", False)
        time.sleep(1.2)
        report = release.lambda_handler(scheduled, Context())
        assert (report["released"], report["still_paused"], report["more"]) == ({"dodo": 5}, [], [])
        assert held(stack) == []
        # Then the held events are applied once each, and Dodo's story ends where Stripe's did
        assert drain(stack, apply, redeliver=True) == 5
        assert canonical(stack, "dodo") == stripe_state
        assert release.lambda_handler(scheduled, Context())["released"] == {}
        assert drain(stack, apply) == 0
    finally:
        release.wiring.reset()
