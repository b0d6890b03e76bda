"""Dunning end to end through the local runtime: the billing run hands a declined renewal to DunningQueue, its
consumer starts the dunning state machine, and moto's ASL executor runs it with our functions as its tasks -
Wait states on the case's own times (the local profile's time scale plays a policy day in a second), the charges
against localstripe, the final action. What AWS would run, not a replay of it in the test."""

from __future__ import annotations

import json
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
from local_profile import running_stripe
from local_runtime.runtime import LocalRuntime
from tests.e2e.test_billing_ledger_audit_http import ADMIN, get
from tests.e2e.test_notices_http import emails_to
from tests.openapi_contract import assert_http_response_matches
from tests.support import wait_for

DECLINED = {"number": "4000000000000341", "exp_month": 12, "exp_year": 2030, "cvc": "123"}
RECOVERED_SUBJECT = "went through"  # notifications/templates/dunning_recovered.txt
GOOD = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"}


def put(runtime: LocalRuntime, path: str, body: dict[str, Any]) -> requests.Response:
    """An admin PUT, its answer checked against docs/openapi.yaml."""
    response = requests.put(f"{runtime.api_url}{path}", json=body, headers=ADMIN, timeout=30)
    assert_http_response_matches(response)
    return response


def declined_subscription(runtime: LocalRuntime, email: str) -> tuple[str, str]:
    """A subscription billed by us, due a minute ago, whose card attaches but is declined on every charge."""
    client = stripe.StripeClient("sk_test_local", base_addresses={"api": running_stripe(runtime).api_base or ""})
    customer = client.v1.customers.create(params={"email": email}).id
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
    email = f"dunning-{uuid.uuid4().hex[:8]}@example.com"
    subscription_id, invoice_id = declined_subscription(runtime, email)
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

    # and the customer was emailed five times, once per notice, in order (the notices consumer on moto's SES)
    def five_emails() -> list[dict[str, Any]] | None:
        found = emails_to(runtime, email)
        return found if len(found) >= 5 else None

    emails = wait_for(five_emails, timeout_seconds=60, interval_seconds=0.5)
    subjects = [message["subject"] for message in emails]
    assert len(subjects) == 5, subjects
    assert "could not collect" in subjects[0], subjects

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


def test_a_customer_who_fixes_their_card_mid_schedule_is_recovered_at_once(runtime: LocalRuntime) -> None:
    # Given a renewal in dunning (the execution waits for its first retry, a second away)
    email = f"dunning-{uuid.uuid4().hex[:8]}@example.com"
    subscription_id, invoice_id = declined_subscription(runtime, email)
    [fired] = runtime.trigger("BillingRunFunction")
    assert "error" not in fired, fired
    name = f"dunning-{invoice_id}-1"
    wait_for(lambda: execution(runtime, name), timeout_seconds=30, interval_seconds=0.2)
    # When the customer attaches a good card and support makes it the one we charge
    client = stripe.StripeClient("sk_test_local", base_addresses={"api": running_stripe(runtime).api_base or ""})
    customer = get(runtime, f"/subscriptions/{subscription_id}").json()["provider_customer_id"]
    method = client.v1.payment_methods.create(params={"type": "card", "card": GOOD}).id
    client.v1.payment_methods.attach(method, params={"customer": customer})
    changed = put(runtime, f"/subscriptions/{subscription_id}/payment-method", {"payment_method_id": method})
    assert changed.status_code == 200 and changed.json()["terms"]["payment_method_id"] == method

    # Then dunning charges the new card at once, the invoice is paid, and the execution ends as recovered
    def recovered() -> dict[str, Any] | None:
        found = execution(runtime, name)
        return found if found and found["status"] != "RUNNING" else None

    done = wait_for(recovered, timeout_seconds=60, interval_seconds=0.5)
    # (ended through its Recovered state when a step of its own found the invoice paid; or, when the invoice's
    # change reached DunningWatchFunction first - the usual case: the execution waits for its next retry - stopped)
    assert_ended_through(runtime, done, "Recovered")
    invoice = get(runtime, f"/invoices/{invoice_id}").json()
    assert invoice["invoice"]["status"] == "paid"
    # (the first attempt, then as many scheduled retries as ran before the new card - seconds apart at the local
    # time scale - then exactly one success)
    statuses = [a["status"] for a in invoice["attempts"]]
    assert statuses[-1] == "SUCCEEDED" and set(statuses[:-1]) == {"FAILED"}, statuses
    subscription = get(runtime, f"/subscriptions/{subscription_id}").json()
    assert (subscription["status"], subscription["access"]) == ("active", "granted")
    view = get(runtime, f"/invoices/{invoice_id}/dunning").json()
    # (the immediate retry, or the first scheduled one a second later if it came first: whichever charged the
    # new card, the other found the invoice paid)
    assert view["status"] == "recovered" and view["retries"][-1]["status"] == "succeeded"
    assert [r["status"] for r in view["retries"]].count("succeeded") == 1

    # and the customer was told of the failure first and of the recovery last
    def told() -> list[dict[str, Any]] | None:
        found = emails_to(runtime, email)
        return found if any(RECOVERED_SUBJECT in e["subject"] for e in found) else None

    emails = wait_for(told, timeout_seconds=30)
    subjects = [e["subject"] for e in emails]
    assert "could not collect" in subjects[0] and RECOVERED_SUBJECT in subjects[-1], subjects


def assert_ended_through(runtime: LocalRuntime, done: dict[str, Any], state: str) -> None:
    """The execution ended in `state`, or DunningWatchFunction stopped it (ABORTED) after the invoice changed."""
    if done["status"] == "ABORTED":
        assert invocations(runtime, "DunningWatchFunction") >= 1
        return
    history = runtime.client("stepfunctions").get_execution_history(executionArn=done["executionArn"], maxResults=1000)
    entered = [e["stateEnteredEventDetails"]["name"] for e in history["events"] if "stateEnteredEventDetails" in e]
    assert (done["status"], entered[-1]) == ("SUCCEEDED", state), entered


def invocations(runtime: LocalRuntime, function: str) -> int:
    status = requests.get(f"{runtime.api_url}/__local__/status", timeout=10).json()
    return int(status["invocations"].get(function, 0))


def test_an_invoice_voided_mid_schedule_ends_its_dunning_through_the_invoice_stream(runtime: LocalRuntime) -> None:
    # Given a renewal in dunning whose first retry has been declined (the next one comes two policy days later,
    # two seconds here)
    email = f"dunning-{uuid.uuid4().hex[:8]}@example.com"
    subscription_id, invoice_id = declined_subscription(runtime, email)
    [fired] = runtime.trigger("BillingRunFunction")
    assert "error" not in fired, fired
    name = f"dunning-{invoice_id}-1"

    def first_retry_failed() -> bool:
        response = get(runtime, f"/invoices/{invoice_id}/dunning")
        return response.status_code == 200 and response.json()["schedule"][0]["status"] == "failed"

    wait_for(first_retry_failed, timeout_seconds=30, interval_seconds=0.2)
    watched = invocations(runtime, "DunningWatchFunction")

    # When support voids the invoice (retrying while an attempt is still being settled: 409 until it is)
    def voided() -> bool:
        response = requests.post(
            f"{runtime.api_url}/invoices/{invoice_id}/void", json={"reason": "e2e"}, headers=ADMIN, timeout=30
        )
        assert_http_response_matches(response)
        assert response.status_code in (200, 409), response.text
        return response.status_code == 200

    wait_for(voided, timeout_seconds=30, interval_seconds=0.2)

    # Then the invoice's change passes DunningWatchFunction's filter locally as in AWS, the case is closed, the
    # subscription keeps its status, and the execution is no longer running
    def closed() -> dict[str, Any] | None:
        view = get(runtime, f"/invoices/{invoice_id}/dunning").json()
        return view if view["status"] == "closed" and view["execution"]["status"] != "RUNNING" else None

    view = wait_for(closed, timeout_seconds=30, interval_seconds=0.2)
    assert view["end_reason"] == "invoice_not_payable" and view["next_step"] is None
    wait_for(lambda: invocations(runtime, "DunningWatchFunction") > watched, timeout_seconds=30)
    done = execution(runtime, name)
    assert done is not None
    assert_ended_through(runtime, done, "Closed")
    subscription = get(runtime, f"/subscriptions/{subscription_id}").json()
    assert subscription["status"] == "past_due" and subscription["dunning_invoice_ids"] == []


def test_changing_a_payment_method_refuses_what_it_cannot_do(runtime: LocalRuntime) -> None:
    unknown = put(runtime, f"/subscriptions/bsub_{'0' * 24}/payment-method", {"payment_method_id": "pm_1Abc"})
    assert (unknown.status_code, unknown.json()["code"]) == (404, "subscription_not_found")
    malformed = put(runtime, f"/subscriptions/bsub_{'0' * 24}/payment-method", {"payment_method_id": "x"})
    assert (malformed.status_code, malformed.json()["code"]) == (400, "validation_failed")


def post(runtime: LocalRuntime, path: str, body: dict[str, Any]) -> requests.Response:
    """An admin POST, its answer checked against docs/openapi.yaml."""
    response = requests.post(f"{runtime.api_url}{path}", json=body, headers=ADMIN, timeout=30)
    assert_http_response_matches(response)
    return response


def test_a_failed_dunning_is_restarted_into_cycle_2_and_recovered(runtime: LocalRuntime) -> None:
    # Given a declined renewal in dunning: cycle 1's execution waits for its first retry
    email = f"dunning-{uuid.uuid4().hex[:8]}@example.com"
    subscription_id, invoice_id = declined_subscription(runtime, email)
    [fired] = runtime.trigger("BillingRunFunction")
    assert "error" not in fired, fired
    first = f"dunning-{invoice_id}-1"
    assert wait_for(lambda: execution(runtime, first), timeout_seconds=30, interval_seconds=0.2)
    restart_path = f"/invoices/{invoice_id}/dunning/restart"
    # When an operator tries to restart it while it runs, it is refused
    running = post(runtime, restart_path, {"cycle": 1, "reason": "too early"})
    assert (running.status_code, running.json()["code"]) == (409, "dunning_still_active")
    # When a step's error outlives its retries: the state machine's Catch hands DunningFailFunction the error (here
    # handed as the Catch would, on the real function), the case is recorded dunning_failed and the execution fails
    failure = {"Error": "ConfigurationError", "Cause": '{"code": "configuration_error", "message": "bad key"}'}

    def failed() -> dict[str, Any] | None:
        answer = runtime.invoke("DunningFailFunction", {"invoice_id": invoice_id, "cycle": 1, "error": failure})
        assert "error" not in answer, answer
        shown = get(runtime, f"/invoices/{invoice_id}/dunning").json()
        return shown if shown["status"] == "dunning_failed" else None

    shown = wait_for(failed, timeout_seconds=30, interval_seconds=0.5)
    assert shown and shown["end_reason"].startswith("ConfigurationError"), shown
    ended = wait_for(
        lambda: (found := execution(runtime, first)) and found["status"] != "RUNNING" and found,
        timeout_seconds=30,
        interval_seconds=0.5,
    )
    assert ended and ended["status"] == "FAILED", ended
    subscription = get(runtime, f"/subscriptions/{subscription_id}").json()
    assert subscription["status"] == "past_due", subscription  # the failure left it past due
    # and the customer's card is replaced with one that works (the cause fixed)
    client = stripe.StripeClient("sk_test_local", base_addresses={"api": running_stripe(runtime).api_base or ""})
    method = client.v1.payment_methods.create(params={"type": "card", "card": GOOD}).id
    client.v1.payment_methods.attach(method, params={"customer": subscription["provider_customer_id"]})
    assert put(runtime, f"/subscriptions/{subscription_id}/payment-method", {"payment_method_id": method}).ok
    # When the operator restarts the failed dunning
    restarted = post(runtime, restart_path, {"cycle": 1, "reason": "card replaced; SUP-42"})
    # Then cycle 2 opened and its execution runs under dunning-<invoice>-2
    second = f"dunning-{invoice_id}-2"
    assert restarted.status_code == 202, restarted.text
    body = restarted.json()
    assert (body["outcome"], body["cycle"], body["restarted_from_cycle"], body["restarted_by"]) == (
        "restarted",
        2,
        1,
        "user:admin",
    )
    assert body["execution_name"] == second
    started = execution(runtime, second)
    assert started is not None and started["status"] == "RUNNING", started
    # the execution's input names the case, and carries the restart request's correlation id (ADR 0031)
    assert json.loads(started["input"]) == {
        "invoice_id": invoice_id,
        "cycle": 2,
        "correlation_id": restarted.headers["X-Correlation-Id"],
    }
    # and the same request again opens nothing more and starts nothing more
    again = post(runtime, restart_path, {"cycle": 1, "reason": "card replaced; SUP-42"})
    assert (again.status_code, again.json()["outcome"], again.json()["cycle"]) == (200, "already_restarted", 2)
    assert runtime.resolver is not None
    machine = runtime.resolver.physical["DunningStateMachine"].ref
    names = [
        e["name"]
        for e in runtime.client("stepfunctions").list_executions(stateMachineArn=machine)["executions"]
        if e["name"].startswith(f"dunning-{invoice_id}-")
    ]
    assert sorted(names) == [first, second]
    # When cycle 2 runs, it charges the new card and ends recovered: the invoice paid, the subscription active
    done = wait_for(
        lambda: (found := execution(runtime, second)) and found["status"] != "RUNNING" and found,
        timeout_seconds=60,
        interval_seconds=0.5,
    )
    # (its own Recovered state, or DunningWatchFunction stopped it first after the charge paid the invoice: ADR 0023)
    assert done, "cycle 2 never ended"
    assert_ended_through(runtime, done, "Recovered")
    view = get(runtime, f"/invoices/{invoice_id}/dunning").json()
    assert (view["cycle"], view["status"], view["restarted_from_cycle"]) == (2, "recovered", 1)
    assert get(runtime, f"/invoices/{invoice_id}").json()["invoice"]["status"] == "paid"
    subscription = get(runtime, f"/subscriptions/{subscription_id}").json()
    assert (subscription["status"], subscription["access"]) == ("active", "granted")

    # and the dunning's audit trail (DunningTable's stream, projected by the runtime) tells the failure with its
    # reason, the operator's restart and the recovery
    def audited() -> list[dict[str, Any]] | None:
        events = get(runtime, f"/audit/dunning/{invoice_id}?limit=100").json()["events"]
        return events if "dunning.recovered" in [e["event_type"] for e in events] else None

    events = wait_for(audited, timeout_seconds=30, interval_seconds=0.5)
    assert events, "the dunning never reached its audit trail"
    kinds = [e["event_type"] for e in events]
    assert kinds[0] == "dunning.opened" and "dunning.failed" in kinds, kinds
    [restart_event] = [e for e in events if e["event_type"] == "dunning.restarted"]
    assert (restart_event["actor"], restart_event["source"], restart_event["after"]["restart_reason"]) == (
        "user:admin",
        "api",
        "card replaced; SUP-42",
    )
    assert kinds.index("dunning.failed") < kinds.index("dunning.restarted") < kinds.index("dunning.recovered")
