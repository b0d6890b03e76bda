"""Dunning end to end through the local runtime: the billing run hands a declined renewal to DunningQueue, its
consumer starts the dunning state machine, and moto's ASL executor runs it with our functions as its tasks -
Wait states on the case's own times (the local profile's time scale plays a policy day in a second), the charges
against localstripe, the final action. What AWS would run, not a replay of it in the test."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import stripe

from billing_core.adapters.dynamodb.subscription_store import DynamoDBSubscriptionStore
from billing_core.adapters.dynamodb.table import DynamoDB
from billing_core.customers import customer_id_for
from billing_core.invoices.model import invoice_id_for
from billing_core.periods import Interval
from billing_core.subscriptions.model import BillingMode, InternalTerms, Subscription
from billing_core.subscriptions.state_machine import SubscriptionStatus
from local_profile import running_stripe
from local_runtime.runtime import LocalRuntime
from tests.e2e.test_billing_ledger_audit_http import get
from tests.support import wait_for

DECLINED = {"number": "4000000000000341", "exp_month": 12, "exp_year": 2030, "cvc": "123"}


def declined_subscription(runtime: LocalRuntime) -> tuple[str, str]:
    """A subscription billed by us, due a minute ago, whose card attaches but is declined on every charge."""
    client = stripe.StripeClient("sk_test_local", base_addresses={"api": running_stripe(runtime).api_base or ""})
    customer = client.v1.customers.create().id
    method = client.v1.payment_methods.create(params={"type": "card", "card": DECLINED}).id
    client.v1.payment_methods.attach(method, params={"customer": customer})
    assert runtime.resolver is not None
    store = DynamoDBSubscriptionStore(
        runtime.resolver.physical["SubscriptionsTable"].ref, DynamoDB(runtime.client("dynamodb"))
    )
    period_end = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    subscription_id = f"bsub_{uuid.uuid4().hex[:24]}"
    assert store.create_internal(
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
                plan_id="pro-monthly",
                price_version="2026-11-01",
                amount_minor=4900,
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
    return subscription_id, invoice_id_for(subscription_id, period_end)


def execution(runtime: LocalRuntime, name: str) -> dict[str, Any] | None:
    assert runtime.resolver is not None
    machine = runtime.resolver.physical["DunningStateMachine"].ref
    stepfunctions = runtime.client("stepfunctions")
    for found in stepfunctions.list_executions(stateMachineArn=machine)["executions"]:
        if found["name"] == name:
            return dict(stepfunctions.describe_execution(executionArn=found["executionArn"]))
    return None


def test_a_declined_renewal_runs_the_dunning_state_machine_to_its_final_action(runtime: LocalRuntime) -> None:
    # Given a renewal whose card is declined
    subscription_id, invoice_id = declined_subscription(runtime)
    # When the billing run fires
    [fired] = runtime.trigger("BillingRunFunction")
    assert "error" not in fired, fired
    assert fired["payload"]["handed_to_dunning"] >= 1
    # Then the hand-over starts one dunning execution, which retries on days 1, 3, 5 and 7 (seconds here)
    # and applies the default policy's final action
    name = f"dunning-{invoice_id}-1"

    def finished() -> dict[str, Any] | None:
        found = execution(runtime, name)
        return found if found and found["status"] != "RUNNING" else None

    done = wait_for(finished, timeout_seconds=90, interval_seconds=0.5)
    assert done["status"] == "SUCCEEDED", done
    invoice = get(runtime, f"/invoices/{invoice_id}").json()
    assert invoice["invoice"]["status"] == "open"
    assert [(a["attempt_number"], a["status"], a["dunning_key"]) for a in invoice["attempts"]] == [
        (1, "FAILED", None),
        (2, "FAILED", "1:1"),
        (3, "FAILED", "1:2"),
        (4, "FAILED", "1:3"),
        (5, "FAILED", "1:4"),
    ]
    subscription = get(runtime, f"/subscriptions/{subscription_id}").json()
    assert subscription.get("status") == "canceled", subscription
    # and the execution ended in its Exhausted state, through the transitions the design counts
    assert runtime.resolver is not None
    history = runtime.client("stepfunctions").get_execution_history(executionArn=done["executionArn"], maxResults=1000)
    entered = [e["stateEnteredEventDetails"]["name"] for e in history["events"] if "stateEnteredEventDetails" in e]
    assert entered[-1] == "Exhausted"
    assert entered.count("Charge") == 4 and entered.count("FinalAction") == 1
    assert len(entered) == 23, entered
    # and the customer was told five times, in order
    sqs = runtime.client("sqs")
    url = runtime.resolver.physical["CustomerNotificationsQueue"].ref
    kinds = []
    while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        kinds += [json.loads(m["Body"])["kind"] for m in batch if json.loads(m["Body"]).get("invoice_id") == invoice_id]
    assert kinds == [
        "dunning_payment_failed",
        "dunning_retry_scheduled",
        "dunning_retry_scheduled",
        "dunning_final_warning",
        "dunning_final_action",
    ]
    # and GET /invoices/{id}/dunning shows the whole story, as documented
    view = get(runtime, f"/invoices/{invoice_id}/dunning").json()
    assert (view["status"], view["end_reason"], view["policy_source"]) == (
        "exhausted",
        "final_action:cancel",
        "default",  # the seeded price book sets no dunning policy for this plan
    )
    assert [(r["slot"], r["status"], r["attempt_number"], r["decline_code"]) for r in view["schedule"]] == [
        (slot, "failed", slot + 1, "card_declined") for slot in (1, 2, 3, 4)
    ]
    assert view["next_step"] is None
    assert view["execution"]["name"] == name and view["execution"]["status"] == "SUCCEEDED"
    assert len(view["notices"]) == 5
    # and the subscription's access is revoked
    assert (subscription["access"], subscription["grace_until"]) == ("revoked", None)


def test_an_invoice_never_in_dunning_has_no_dunning_to_show(runtime: LocalRuntime) -> None:
    response = get(runtime, f"/invoices/binv_{'0' * 24}/dunning")
    assert (response.status_code, response.json()["code"]) == (404, "invoice_not_found")
    response = get(runtime, "/invoices/not-an-invoice/dunning")
    assert (response.status_code, response.json()["code"]) == (400, "invalid_invoice_id")
