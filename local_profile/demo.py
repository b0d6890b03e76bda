# Past 500 lines: one scenario of 23 steps sharing one runtime, one HTTP session and the admin and stripe
# helpers; each step is a closure reading the same state, so splitting would pass that state around.
"""The bundle's demo scenario (`make demo`): drives the running stack over HTTP like a client would and prints
a report.

It grows with each capability. Every step checks an outcome; the demo exits 1 if any step fails. It reaches
the stack only through its API, boto3 clients pointed at moto, moto's record of the email its SES accepted
(`/moto-api/data.json`), and the Stripe peer's API."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import requests
from stripe import StripeClient

from local_profile.demo_breaker import BreakerDemo
from local_profile.demo_dlq import DeadLetterReplayDemo
from local_profile.operators import LOCAL_OPERATOR_TOKENS
from local_profile.price_book_seed import seed_enabled
from local_profile.stripe_peer import running_stripe
from local_runtime.runtime import LocalRuntime


@dataclass
class Step:
    name: str
    ok: bool
    detail: str
    elapsed_ms: float


class StepFailedError(Exception):
    pass


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise StepFailedError(message)


def _poll(check: Callable[[], Any], *, timeout_seconds: float, interval_seconds: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout_seconds
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            return value
        time.sleep(interval_seconds)


def run_demo(runtime: LocalRuntime) -> bool:
    api = runtime.api_url
    assert runtime.provisioner is not None
    stripe = running_stripe(runtime)
    # The local admin's ID token (local_profile/operators.py), verified by the stack's Cognito authorizer
    admin = {"Authorization": f"Bearer {LOCAL_OPERATOR_TOKENS['admin']}"}
    http = requests.Session()
    steps: list[Step] = []

    def step(name: str, action: Callable[[], str]) -> None:
        started = time.monotonic()
        try:
            detail = action()
            steps.append(Step(name, True, detail, (time.monotonic() - started) * 1000))
        except Exception as exc:  # noqa: BLE001 - the report shows any failure and carries on
            steps.append(Step(name, False, f"{type(exc).__name__}: {exc}", (time.monotonic() - started) * 1000))

    def health() -> str:
        response = http.get(f"{api}/health", timeout=15)
        _expect(response.status_code == 200, f"GET /health -> {response.status_code} {response.text}")
        checks = response.json()["checks"]
        _expect(all(check["status"] == "ok" for check in checks), f"failing checks: {checks}")
        return f"200, {len(checks)} backends answer: " + ", ".join(check["name"] for check in checks)

    def unauthenticated() -> str:
        response = http.post(f"{api}/canary/probes", json={}, timeout=15)
        _expect(response.status_code == 401, f"expected 401, got {response.status_code}")
        return f"401 {response.json()['code']}"

    def malformed() -> str:
        response = http.post(
            f"{api}/canary/probes",
            data=b"{not json",
            headers={**admin, "Content-Type": "application/json"},
            timeout=15,
        )
        _expect(response.status_code == 400, f"expected 400, got {response.status_code} {response.text}")
        return f"400 {response.json()['code']}"

    def round_trip() -> str:
        started = time.monotonic()
        response = http.post(f"{api}/canary/probes", json={}, headers=admin, timeout=15)
        _expect(response.status_code == 202, f"POST /canary/probes -> {response.status_code} {response.text}")
        probe_id = response.json()["probe_id"]

        def recorded() -> dict[str, Any] | None:
            reply = http.get(f"{api}/canary/probes/{probe_id}", headers=admin, timeout=15)
            return reply.json() if reply.status_code == 200 else None

        found = _poll(recorded, timeout_seconds=20)
        _expect(bool(found), f"probe {probe_id} never reached DynamoDB")
        _expect(found["status"] == "RECORDED", f"unexpected status {found}")
        return f"{probe_id} recorded in DynamoDB {int((time.monotonic() - started) * 1000)} ms after POST"

    def state_machine() -> str:
        results = runtime.trigger("CanaryScheduleFunction")
        _expect(len(results) == 1 and "payload" in results[0], f"schedule invocation failed: {results}")
        name = results[0]["payload"]["execution_name"]
        sfn = runtime.client("stepfunctions")
        arn = runtime.resolver.physical["CanaryStateMachine"].ref if runtime.resolver else ""
        execution_arn = arn.replace(":stateMachine:", ":execution:") + f":{name}"

        def finished() -> str | None:
            status = sfn.describe_execution(executionArn=execution_arn)["status"]
            return None if status == "RUNNING" else str(status)

        status = _poll(finished, timeout_seconds=60, interval_seconds=0.5)
        _expect(status == "SUCCEEDED", f"execution {name} ended {status}")
        return f"schedule -> execution {name} -> probe sent, recorded, verified: SUCCEEDED"

    def redelivered_schedule() -> str:
        event = {
            "version": "0",
            "id": "7bf73129-1428-4cd3-a780-95db273d1602",
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": "123456789012",
            "time": "2026-01-01T00:00:00Z",
            "region": runtime.config.region,
            "resources": ["arn:aws:events:us-east-1:123456789012:rule/demo"],
            "detail": {},
        }
        first = runtime.invoke("CanaryScheduleFunction", event)
        second = runtime.invoke("CanaryScheduleFunction", event)
        _expect("payload" in first and "payload" in second, f"invocations failed: {first} {second}")
        name = first["payload"]["execution_name"]
        _expect(name == second["payload"]["execution_name"], f"names differ: {first} {second}")
        arn = runtime.resolver.physical["CanaryStateMachine"].ref if runtime.resolver else ""
        executions = runtime.client("stepfunctions").list_executions(stateMachineArn=arn)["executions"]
        same_name = [execution for execution in executions if execution["name"] == name]
        _expect(len(same_name) == 1, f"{len(same_name)} executions named {name}")
        return f"same event twice -> exactly one execution named {name}"

    def dead_letter() -> str:
        sqs = runtime.client("sqs")
        queue = runtime.resolver.physical["CanaryQueue"] if runtime.resolver else None
        dlq = runtime.resolver.physical["CanaryDeadLetterQueue"] if runtime.resolver else None
        assert queue is not None and dlq is not None
        body = json.dumps({"probe_id": "poison"})
        sent = sqs.send_message(QueueUrl=queue.ref, MessageBody=body)["MessageId"]
        looked_at: set[str] = set()

        def in_dlq() -> bool:
            messages = sqs.receive_message(QueueUrl=dlq.ref, MaxNumberOfMessages=10, VisibilityTimeout=0).get(
                "Messages", []
            )
            return any(message["MessageId"] == sent for message in messages)

        def archived() -> bool:
            """The archiver drains every DLQ into DeadLettersTable (ADR 0029): the moved message may already be
            an item there, a bare body SQS moved (`origin` redrive), with the body intact."""
            listed = http.get(f"{api}/ops/dlq", params={"job_type": "canary_record"}, headers=admin, timeout=15)
            for item in listed.json().get("items", []) if listed.status_code == 200 else []:
                if item["id"] in looked_at:
                    continue
                looked_at.add(item["id"])
                shown = http.get(f"{api}/ops/dlq/{item['id']}", headers=admin, timeout=15).json()
                if shown.get("envelope", {}).get("payload") == body:
                    return True
            return False

        _expect(
            bool(_poll(lambda: in_dlq() or archived(), timeout_seconds=45, interval_seconds=0.5)),
            "poison message never reached the DLQ",
        )
        return (
            "malformed message retried 5 times (maxReceiveCount), then moved to the DLQ with its body intact "
            "(read there or from the archive it is drained into)"
        )

    def stripe_peer() -> str:
        if not stripe.api_base:
            return "skipped (--stripe off)"
        response = http.post(
            f"{stripe.api_base}/v1/customers",
            data={"email": "demo@example.com"},
            auth=("sk_test_local", ""),
            timeout=15,
        )
        _expect(response.status_code == 200, f"localstripe answered {response.status_code}")
        return f"localstripe at {stripe.api_base} created customer {response.json()['id']}"

    def stripe_webhook() -> str:
        if not stripe.webhook_url:
            return "skipped (no localstripe webhook registration)"
        response = http.post(
            f"{stripe.api_base}/v1/customers",
            data={"email": "webhook-demo@example.com"},
            auth=("sk_test_local", ""),
            timeout=15,
        )
        customer = response.json()["id"]
        assert runtime.resolver is not None
        dynamodb = runtime.client("dynamodb")
        table = runtime.resolver.physical["WebhookEventsTable"].ref

        def applied() -> dict[str, Any] | None:
            for item in dynamodb.scan(TableName=table).get("Items", []):
                if customer in item["raw_body"]["S"] and item["event_type"]["S"] == "customer.created":
                    return {name: next(iter(value.values())) for name, value in item.items()}
            return None

        record = _poll(applied, timeout_seconds=30, interval_seconds=0.5)
        _expect(bool(record), "localstripe's signed customer.created was never applied")
        return (
            f"localstripe -> POST /webhooks/stripe (verified) -> FIFO group {record['group_key']} "
            f"-> applied once ({record['outcome']})"
        )

    def subscription_mirror() -> str:
        if not stripe.api_base:
            return "skipped (--stripe off)"
        stripe_api = stripe.api_base
        key = ("sk_test_local", "")
        customer = http.post(
            f"{stripe_api}/v1/customers", data={"email": "sub-demo@example.com"}, auth=key, timeout=15
        ).json()
        method = http.post(
            f"{stripe_api}/v1/payment_methods",
            data={
                "type": "card",
                "card[number]": "4242424242424242",
                "card[exp_month]": "12",
                "card[exp_year]": "2030",
                "card[cvc]": "123",
            },
            auth=key,
            timeout=15,
        ).json()
        http.post(
            f"{stripe_api}/v1/payment_methods/{method['id']}/attach",
            data={"customer": customer["id"]},
            auth=key,
            timeout=15,
        )
        http.post(
            f"{stripe_api}/v1/customers/{customer['id']}",
            data={"invoice_settings[default_payment_method]": method["id"]},
            auth=key,
            timeout=15,
        )
        product = http.post(f"{stripe_api}/v1/products", data={"name": "Pro"}, auth=key, timeout=15).json()
        plan = http.post(
            f"{stripe_api}/v1/plans",
            data={"product": product["id"], "amount": "2900", "currency": "eur", "interval": "month"},
            auth=key,
            timeout=15,
        ).json()
        subscription = http.post(
            f"{stripe_api}/v1/subscriptions",
            data={"customer": customer["id"], "items[0][plan]": plan["id"]},
            auth=key,
            timeout=15,
        ).json()

        def mirrored() -> dict[str, Any] | None:
            reply = http.get(f"{api}/subscriptions/{subscription['id']}", headers=admin, timeout=15)
            return dict(reply.json()) if reply.status_code == 200 else None

        found = _poll(mirrored, timeout_seconds=45, interval_seconds=0.5)
        _expect(bool(found), f"subscription {subscription['id']} never appeared in GET /subscriptions")
        _expect(found["status"] == subscription["status"], f"status {found['status']} != {subscription['status']}")
        return f"{subscription['id']} -> {found['subscription_id']} {found['status']} (version {found['version']})"

    def seeded_price_book() -> str:
        answer = http.get(f"{api}/price-book", headers=admin, timeout=30)
        if answer.status_code == 404 and not seed_enabled(runtime):
            return "skipped (--no-seed)"
        _expect(answer.status_code == 200, f"GET /price-book -> {answer.status_code} {answer.text}")
        book = answer.json()
        plans = ", ".join(plan["plan_id"] for plan in book["plans"])
        return f"version {book['version']} in force since {book['effective_from']}: {plans}"

    def paid_signup() -> str:
        if not stripe.api_base:
            return "skipped (--stripe off)"
        answer = http.get(f"{api}/price-book", headers=admin, timeout=30)
        if answer.status_code == 404 and not seed_enabled(runtime):
            return "skipped (--no-seed)"
        _expect(answer.status_code == 200, f"GET /price-book -> {answer.status_code} {answer.text}")
        # A plan that is paid at once: a price, and no trial
        plan = next(p for p in answer.json()["plans"] if p["amount_minor"] > 0 and not p.get("trial_days"))
        # The customer and card live at the provider; the stripe SDK makes them, as a client's backend would
        client = StripeClient("sk_test_local", base_addresses={"api": stripe.api_base})
        customer = client.v1.customers.create(params={"email": "signup-demo@example.com"})
        method = client.v1.payment_methods.create(
            params={
                "type": "card",
                "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"},
            }
        )
        client.v1.payment_methods.attach(method.id, params={"customer": customer.id})
        created = http.post(
            f"{api}/orders",
            json={"customer_id": customer.id, "plan_id": plan["plan_id"], "payment_method_id": method.id},
            headers=admin,
            timeout=30,
        )
        _expect(created.status_code == 201, f"POST /orders -> {created.status_code} {created.text}")
        order = created.json()
        commit = f"{api}/orders/{order['order_id']}/commit"
        key = {**admin, "Idempotency-Key": f"demo-signup-{order['order_id']}"}
        committed = http.post(commit, headers=key, timeout=60)
        _expect(committed.status_code == 200, f"commit -> {committed.status_code} {committed.text}")
        body = committed.json()
        _expect(body["status"] == "committed", f"order {body['status']}")
        again = http.post(commit, headers=key, timeout=60)
        _expect(again.status_code == 200 and again.json() == body, f"the same key answered {again.text}")
        subscription = http.get(f"{api}/subscriptions/{body['subscription_id']}", headers=admin, timeout=30).json()
        _expect(subscription["status"] == "active", f"subscription {subscription['status']}")
        due = order["quote"]["amount_due_minor"]
        _expect(subscription["terms"]["amount_minor"] == due, f"terms {subscription['terms']} != quote {due}")
        invoice = http.get(f"{api}/invoices/{body['invoice_id']}", headers=admin, timeout=30).json()
        _expect(invoice["invoice"]["status"] == "paid", f"invoice {invoice['invoice']['status']}")
        _expect(invoice["total_minor"] == due, f"invoice total {invoice['total_minor']} != quote {due}")
        charges = [
            intent
            for intent in client.v1.payment_intents.list(params={"limit": 100}).auto_paging_iter()
            if intent.to_dict().get("metadata", {}).get("order_id") == order["order_id"]
        ]
        _expect([intent.status for intent in charges] == ["succeeded"], f"PaymentIntents: {charges}")
        currency = order["quote"]["currency"]
        return (
            f"{plan['plan_id']}: {order['order_id']} committed twice under one Idempotency-Key -> one answer, "
            f"{body['subscription_id']} active, {body['invoice_id']} paid {due} {currency}, "
            f"one PaymentIntent {charges[0].id} succeeded at localstripe"
        )

    def dunning() -> str:
        """A renewal whose card is declined: past due with access kept (grace), a scheduled retry fails, the
        customer replaces the card, dunning charges it at once and the subscription is active again."""
        if not stripe.api_base:
            return "skipped (--stripe off)"
        answer = http.get(f"{api}/price-book", headers=admin, timeout=30)
        if answer.status_code == 404 and not seed_enabled(runtime):
            return "skipped (--no-seed)"
        plan = next(p for p in answer.json()["plans"] if p["amount_minor"] > 0 and not p.get("trial_days"))
        client = StripeClient("sk_test_local", base_addresses={"api": stripe.api_base})
        customer = client.v1.customers.create(params={"email": "dunning-demo@example.com"})

        def card(number: str) -> str:
            method = client.v1.payment_methods.create(
                params={"type": "card", "card": {"number": number, "exp_month": 12, "exp_year": 2030, "cvc": "123"}}
            )
            client.v1.payment_methods.attach(method.id, params={"customer": customer.id})
            return str(method.id)

        good = card("4242424242424242")
        order = http.post(
            f"{api}/orders",
            json={"customer_id": customer.id, "plan_id": plan["plan_id"], "payment_method_id": good},
            headers=admin,
            timeout=30,
        ).json()
        key = {**admin, "Idempotency-Key": f"demo-dunning-{order['order_id']}"}
        committed = http.post(f"{api}/orders/{order['order_id']}/commit", headers=key, timeout=60).json()
        _expect(committed.get("status") == "committed", f"signup {committed}")
        subscription_id = committed["subscription_id"]
        # The customer's card now declines every charge (it attaches; localstripe declines its charges)
        declining = card("4000000000000341")
        moved = http.put(
            f"{api}/subscriptions/{subscription_id}/payment-method",
            json={"payment_method_id": declining},
            headers=admin,
            timeout=30,
        )
        _expect(moved.status_code == 200, f"PUT payment-method -> {moved.status_code} {moved.text}")
        # The renewal comes due: the local runtime has no clock to advance, so the demo moves the period's end
        # to a minute ago in the table (boto3 on moto), as the e2e tests do
        assert runtime.resolver is not None
        ago = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(time.time() - 60))
        runtime.client("dynamodb").update_item(
            TableName=runtime.resolver.physical["SubscriptionsTable"].ref,
            Key={"subscription_id": {"S": subscription_id}},
            UpdateExpression="SET current_period_end = :at, next_billing_at = :at",
            ExpressionAttributeValues={":at": {"S": ago}},
        )
        [fired] = runtime.trigger("BillingRunFunction")
        _expect("error" not in fired and fired["payload"]["failed"] >= 1, f"billing run {fired}")

        def subscription() -> dict[str, Any]:
            return dict(http.get(f"{api}/subscriptions/{subscription_id}", headers=admin, timeout=30).json())

        in_grace = _poll(lambda: (s := subscription())["access"] == "grace" and s, timeout_seconds=30)
        _expect(bool(in_grace) and in_grace["status"] == "past_due", f"no grace: {subscription()}")
        invoice_id = in_grace["dunning_invoice_ids"][0]

        def dunning_view() -> dict[str, Any]:
            return dict(http.get(f"{api}/invoices/{invoice_id}/dunning", headers=admin, timeout=30).json())

        retried = _poll(lambda: (v := dunning_view())["schedule"][0]["status"] == "failed" and v, timeout_seconds=30)
        _expect(bool(retried), f"the first retry did not run: {dunning_view()}")
        # The customer replaces the card: dunning charges it at once
        replaced = http.put(
            f"{api}/subscriptions/{subscription_id}/payment-method",
            json={"payment_method_id": card("4242424242424242")},
            headers=admin,
            timeout=30,
        )
        _expect(replaced.status_code == 200, f"PUT payment-method -> {replaced.status_code}")
        # The execution ends through its Recovered state, or - when the paid invoice's change reaches
        # DunningWatchFunction while the execution still waits for its next retry - is stopped (ABORTED)
        done = _poll(
            lambda: (v := dunning_view())["execution"]["status"] in ("SUCCEEDED", "ABORTED") and v, timeout_seconds=60
        )
        _expect(bool(done) and done["status"] == "recovered", f"not recovered: {dunning_view()}")
        after = subscription()
        _expect((after["status"], after["access"]) == ("active", "granted"), f"after: {after}")
        invoice = http.get(f"{api}/invoices/{invoice_id}", headers=admin, timeout=30).json()
        _expect(invoice["invoice"]["status"] == "paid", f"invoice {invoice['invoice']['status']}")
        attempts = [a["status"] for a in invoice["attempts"]]
        _expect(attempts.count("SUCCEEDED") == 1, f"attempts {attempts}")
        return (
            f"{invoice_id}: declined -> past_due, access grace until {in_grace['grace_until']}; "
            f"retry 1 declined; new card charged at once -> recovered, {subscription_id} active; "
            f"attempts {', '.join(attempts)}"
        )

    # The usage scenario (#12): a customer on a plan with a hard-stopped meter sends usage over HTTP. Its steps
    # share what the first one sets up; a later step fails at once, naming the cause, if that one did not.
    usage: dict[str, Any] = {}
    ingestion_key = runtime.provisioner.api_key_value("BillingApiApiKey", {})  # the local key, overrides applied
    metered_plan = "metered-monthly"

    def usage_step(action: Callable[[], str]) -> Callable[[], str]:
        """A step after the signup: skipped as the signup was, failed at once (naming the cause) if it failed."""

        def run() -> str:
            if "skipped" in usage:
                return str(usage["skipped"])
            _expect("customer_id" in usage, "no usage customer: the hard_stop plan's signup step did not pass")
            return action()

        return run

    def send_events(events: list[dict[str, Any]], *, with_key: bool = True) -> requests.Response:
        headers = {"x-api-key": ingestion_key} if with_key else {}
        return http.post(f"{api}/usage/events", json={"events": events}, headers=headers, timeout=30)

    def event(event_id: str, value: int) -> dict[str, Any]:
        # Timestamped now, to the microsecond: inside the period that began at the signup (a time truncated to
        # the second could fall before its start and be rejected outside_billing_period), not in the future
        at = datetime.now(UTC).isoformat()
        return {
            "event_id": event_id,
            "customer_id": usage["customer_id"],
            "meter": "api_calls",
            "value": value,
            "timestamp": at,
            "properties": {"endpoint": "/v1/things"},
        }

    def verdicts(response: requests.Response) -> list[str]:
        _expect(response.status_code == 202, f"POST /usage/events -> {response.status_code} {response.text}")
        return [
            f"{result['verdict']}:{result['reason']}" if result.get("reason") else str(result["verdict"])
            for result in response.json()["results"]
        ]

    def entitlement() -> dict[str, Any]:
        customer_id = usage["customer_id"]
        reply = http.get(f"{api}/customers/{customer_id}/entitlements/api_calls", headers=admin, timeout=30)
        return dict(reply.json()) if reply.status_code == 200 else {"status": reply.status_code, "body": reply.text}

    def usage_signup() -> str:
        """An operator publishes a new price-book version (the seed's plans and meters plus a plan whose api_calls
        stop hard at 1,000), effective a few seconds ahead; a customer signs up to that plan."""
        if not stripe.api_base:
            usage["skipped"] = "skipped (--stripe off)"
            return str(usage["skipped"])
        answer = http.get(f"{api}/price-book", headers=admin, timeout=30)
        if answer.status_code == 404 and not seed_enabled(runtime):
            usage["skipped"] = "skipped (--no-seed)"
            return str(usage["skipped"])
        _expect(answer.status_code == 200, f"GET /price-book -> {answer.status_code} {answer.text}")
        current = answer.json()
        _expect(any(m["meter_id"] == "api_calls" for m in current.get("meters", [])), f"no api_calls meter: {current}")
        # A published version is immutable and may not take effect in the past: a new one, 5 s ahead
        effective = time.time() + 5
        version = f"demo-{int(effective)}"
        book = {
            "version": version,
            "effective_from": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(effective)),
            "meters": current["meters"],
            "plans": [plan for plan in current["plans"] if plan["plan_id"] != metered_plan]
            + [
                {
                    "plan_id": metered_plan,
                    "product_id": "billing-platform",
                    "name": "Metered",
                    "amount_minor": 1900,
                    "currency": "EUR",
                    "interval": "month",
                    "trial_days": 0,
                    "usage_components": [
                        {
                            "metric": "api_calls",
                            "unit_amount_minor": 1,
                            "included_quantity": 1000,
                            "cap_policy": "hard_stop",
                            "cap_quantity": 1000,
                            "alert_thresholds_percent": [50, 80, 100],
                        }
                    ],
                }
            ],
        }
        published = http.post(f"{api}/price-book", json=book, headers=admin, timeout=60)
        _expect(published.status_code in (200, 201), f"POST /price-book -> {published.status_code} {published.text}")
        in_force = _poll(
            lambda: (
                (b := http.get(f"{api}/price-book", headers=admin, timeout=30).json()).get("version") == version and b
            ),
            timeout_seconds=20,
            interval_seconds=0.5,
        )
        _expect(bool(in_force), f"price book {version} not in force 20 s after publishing it")
        client = StripeClient("sk_test_local", base_addresses={"api": stripe.api_base})
        address = f"usage-demo-{int(time.time() * 1000)}@example.com"
        customer = client.v1.customers.create(params={"email": address})
        method = client.v1.payment_methods.create(
            params={
                "type": "card",
                "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"},
            }
        )
        client.v1.payment_methods.attach(method.id, params={"customer": customer.id})
        created = http.post(
            f"{api}/orders",
            json={"customer_id": customer.id, "plan_id": metered_plan, "payment_method_id": method.id},
            headers=admin,
            timeout=30,
        )
        _expect(created.status_code == 201, f"POST /orders -> {created.status_code} {created.text}")
        order = created.json()
        key = {**admin, "Idempotency-Key": f"demo-usage-{order['order_id']}"}
        committed = http.post(f"{api}/orders/{order['order_id']}/commit", headers=key, timeout=60)
        _expect(committed.status_code == 200, f"commit -> {committed.status_code} {committed.text}")
        _expect(committed.json()["status"] == "committed", f"order {committed.json()}")
        subscription_id = committed.json()["subscription_id"]
        subscription = http.get(f"{api}/subscriptions/{subscription_id}", headers=admin, timeout=30).json()
        # Usage is keyed by our customer id (bcus_...), not the provider's: the subscription's terms name it
        usage.update(
            subscription_id=subscription_id,
            customer_id=subscription["terms"]["customer_id"],
            address=address,
            period_start=subscription["current_period_start"],
            period_end=subscription["current_period_end"],
        )
        # The usage sync (SubscriptionsTable stream -> UsageSyncFunction) opens the account and the limit
        synced = _poll(
            lambda: (e := entitlement()).get("limit") == 1000 and e, timeout_seconds=45, interval_seconds=0.5
        )
        _expect(bool(synced), f"entitlement never showed the plan's limit: {entitlement()}")
        _expect(synced["policy"] == "hard_stop" and synced["allowed"] and synced["used"] == 0, f"{synced}")
        return (
            f"price book {version} published (effective +5 s, in force), {metered_plan} signed up: "
            f"{subscription_id} for {usage['customer_id']}; entitlement limit 1000 hard_stop, used 0"
        )

    def usage_ingest() -> str:
        usage["first"] = [event(f"demo-call-{index}", value) for index, value in enumerate((100, 200, 300))]
        refused = send_events(usage["first"], with_key=False)
        _expect(refused.status_code == 401, f"without the key: {refused.status_code} {refused.text}")
        answered = verdicts(send_events(usage["first"]))
        _expect(answered == ["accepted"] * 3, f"verdicts {answered}")
        return f"3 events (100+200+300) -> 202 {', '.join(answered)}; without x-api-key -> 401 {refused.json()['code']}"

    def usage_duplicate() -> str:
        _expect("first" in usage, "the ingestion step sent nothing")
        again = verdicts(send_events(usage["first"]))
        _expect(again == ["duplicate"] * 3, f"the same request again: {again}")
        changed = {**usage["first"][0], "value": 999}
        conflicting = verdicts(send_events([changed]))
        _expect(conflicting == ["conflict"], f"same event_id, another value: {conflicting}")
        return f"same request -> 202 {', '.join(again)}; same event_id with value 999 -> {conflicting[0]}"

    def usage_period_total() -> int | None:
        customer_id = usage["customer_id"]
        reply = http.get(
            f"{api}/customers/{customer_id}/usage",
            params={"meter": "api_calls", "window": "period", "from": usage["period_start"], "to": usage["period_end"]},
            headers=admin,
            timeout=30,
        )
        _expect(reply.status_code == 200, f"GET usage -> {reply.status_code} {reply.text}")
        total = reply.json()["total"]
        return int(total) if total is not None else None

    def usage_aggregated() -> str:
        started = time.monotonic()
        counted = _poll(lambda: usage_period_total() == 600, timeout_seconds=45, interval_seconds=0.5)
        _expect(bool(counted), f"period total {usage_period_total()}, expected 600")
        used = entitlement()["used"]
        _expect(used == 600, f"entitlement used {used}, expected 600")
        return (
            f"GET usage (window=period) total 600 = 100+200+300 (the repeats and the conflicting 999 count "
            f"nothing), entitlement used 600; {int((time.monotonic() - started) * 1000)} ms after the repeats"
        )

    def emails() -> list[dict[str, Any]]:
        data = http.get(f"{runtime.moto_endpoint}/moto-api/data.json", timeout=15).json()
        address = usage["address"]
        return [m for m in data["ses"]["Message"] if address in m["destinations"].get("ToAddresses", [])]

    def usage_thresholds() -> str:
        """600 of 1000 already reached 50 %; +250 takes it to 850, past 80 %: one email per threshold, each naming
        the total it was reached at (thresholds.crossed; NotificationSendFunction through moto's SES)."""
        answered = verdicts(send_events([event("demo-call-3", 250)]))
        _expect(answered == ["accepted"], f"+250: {answered}")
        _expect(bool(_poll(lambda: usage_period_total() == 850, timeout_seconds=45)), "850 never counted")
        _poll(lambda: len(emails()) >= 2, timeout_seconds=45, interval_seconds=0.5)
        time.sleep(2)  # a second email for one threshold would come right after the first
        sent = sorted((m["subject"], m["body"]) for m in emails())
        expected = [
            (f"You have used {percent}% of your api_calls limit", total) for percent, total in ((50, 600), (80, 850))
        ]
        _expect(
            [subject for subject, _ in sent] == [subject for subject, _ in expected],
            f"emails to {usage['address']}: {[subject for subject, _ in sent]}",
        )
        for (subject, body), (_, total) in zip(sent, expected, strict=True):
            _expect(
                f"{total} of 1000" in body and usage["subscription_id"] in body,
                f"{subject!r} does not name {total} of 1000 and {usage['subscription_id']}: {body!r}",
            )
        return (
            "600 reached 50% -> 1 email (600 of 1000); +250 -> 850 reached 80% -> 1 email (850 of 1000); "
            f"{len(sent)} emails in all, each naming {usage['subscription_id']}"
        )

    def usage_hard_stop() -> str:
        customer_id = usage["customer_id"]
        refused = verdicts(send_events([event("demo-call-4", 200)]))
        _expect(refused == ["rejected:limit_exceeded"], f"200 more at 850 of 1000: {refused}")
        consume = f"{api}/customers/{customer_id}/entitlements/api_calls/consume"

        def take(quantity: int) -> requests.Response:
            key = {**admin, "Idempotency-Key": f"demo-consume-{customer_id}-{quantity}"}
            return http.post(consume, json={"quantity": quantity}, headers=key, timeout=30)

        too_much = take(151)
        _expect(too_much.status_code == 409, f"consume 151 -> {too_much.status_code} {too_much.text}")
        _expect(too_much.json()["code"] == "limit_exceeded", f"consume 151 -> {too_much.text}")
        fits = take(150)
        _expect(fits.status_code == 200, f"consume 150 -> {fits.status_code} {fits.text}")
        retried = take(150)  # a client's retry under the same Idempotency-Key: the same answer, nothing taken twice
        _expect(retried.status_code == 200 and retried.json() == fits.json(), f"retry answered {retried.text}")
        after = entitlement()
        _expect((after["used"], after["limit"], after["allowed"]) == (1000, 1000, False), f"entitlement after: {after}")
        # Units taken by consume reach no batch document, so consume checks the thresholds itself
        # (usage/limits.announce_due): 1000 of 1000 is the 100 % threshold, emailed once.
        full = _poll(lambda: [m for m in emails() if "100%" in m["subject"]], timeout_seconds=20, interval_seconds=0.5)
        _expect(len(full) == 1, f"the 100% threshold was emailed {len(full)} times")
        earlier = sorted(m["subject"] for m in emails() if "100%" not in m["subject"])
        _expect(len(earlier) == 2, f"the 50%/80% emails are now {earlier}")
        return (
            f"event of 200 at 850/1000 -> {refused[0]}; consume 151 -> 409 limit_exceeded; consume 150 -> 200 "
            f"(its retry: the same answer); entitlement used 1000 of 1000, allowed false; "
            "the 100% threshold reached through consume emailed once"
        )

    def forged_webhook() -> str:
        body = json.dumps({"id": "evt_forged", "type": "invoice.paid", "data": {"object": {}}})
        forged = f"t={int(time.time())},v1={'0' * 64}"
        response = http.post(
            f"{api}/webhooks/stripe",
            data=body,
            headers={"Stripe-Signature": forged, "Content-Type": "application/json"},
            timeout=15,
        )
        _expect(response.status_code == 401, f"expected 401, got {response.status_code} {response.text}")
        return f"401 {response.json()['code']}, nothing queued"

    print(f"billing demo against {api}\n", flush=True)
    step("GET /health reports every backend", health)
    step("admin route refuses a request without a token", unauthenticated)
    step("malformed JSON gets a 400 with a stable code", malformed)
    step("POST -> SQS -> consumer -> DynamoDB round trip", round_trip)
    step("schedule -> Step Functions -> Lambda task", state_machine)
    step("a redelivered schedule event starts nothing new", redelivered_schedule)
    step("poison message ends in the dead-letter queue", dead_letter)
    step("Stripe peer answers", stripe_peer)
    step("localstripe's signed webhook is verified, queued, applied", stripe_webhook)
    step("localstripe subscription -> webhooks -> GET /subscriptions", subscription_mirror)
    step("the shipped price book is in force (seeded at start)", seeded_price_book)
    step("paid signup: order, commit once per Idempotency-Key, charge", paid_signup)
    step("dunning: failure -> grace -> retry -> recovery", dunning)
    step("usage: a hard_stop plan published, signed up, limit synced", usage_signup)
    step("usage: POST /usage/events accepts with the key, 401 without", usage_step(usage_ingest))
    step("usage: a repeat is duplicate, a changed event a conflict", usage_step(usage_duplicate))
    step("usage: the aggregator counts accepted usage once", usage_step(usage_aggregated))
    step("usage: thresholds 50% and 80% emailed once each", usage_step(usage_thresholds))
    step("usage: hard stop refuses events and consumes past the limit", usage_step(usage_hard_stop))
    step("a forged webhook is refused", forged_webhook)
    dead_letters = DeadLetterReplayDemo(runtime, http, expect=_expect, poll=_poll)
    step("poison notice: SES refuses it, dead-lettered with its reason, GET /ops/dlq", dead_letters.poison)
    step("cause fixed: POST replay -> processed once; replay again refused", dead_letters.replay)
    breaker = BreakerDemo(runtime, http, stripe, admin, expect=_expect, poll=_poll)
    step("provider down: breaker opens, work waits; back: all paid once", breaker.run)
    width = max(len(s.name) for s in steps)
    for item in steps:
        mark = "PASS" if item.ok else "FAIL"
        print(f"  {mark}  {item.name.ljust(width)}  {item.elapsed_ms:7.0f} ms  {item.detail}", flush=True)
    failed = [s for s in steps if not s.ok]
    print(f"\n{len(steps) - len(failed)} passed, {len(failed)} failed", flush=True)
    return not failed
