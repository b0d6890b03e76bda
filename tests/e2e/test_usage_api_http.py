"""The usage routes through the local runtime over HTTP (#12): GET .../entitlements/{meter} across a hard stop,
POST .../consume refused at the limit with zero overshoot under 8 concurrent clients, a retried consume taking
nothing more, and GET .../usage windows and totals. Accounts, limits and counted events are written straight
through the store (the sync, POST /usage/events and the aggregator are other parts of #12); the seed price book
declares the meter (`api_calls`, sum)."""

from __future__ import annotations

import statistics
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from billing_core.adapters.dynamodb.table import DynamoDB
from billing_core.adapters.dynamodb.usage_store import DynamoDBUsageStore
from billing_core.pricing.model import CapPolicy, UsageComponent
from billing_core.usage import service
from billing_core.usage.accounts import AccountPeriod, UsageAccount
from billing_core.usage.entitlements import LimitRecord
from billing_core.usage.ingestion import plan_request
from billing_core.usage.model import Aggregation, Meter, UsageEventSubmission
from billing_core.usage.windows import BillingPeriod
from local_profile import LOCAL_OPERATOR_TOKENS
from local_runtime.runtime import LocalRuntime
from tests.openapi_contract import assert_http_response_matches

ADMIN = {"Authorization": f"Bearer {LOCAL_OPERATOR_TOKENS['admin']}"}
LIMIT = 100
CALLS = Meter(meter_id="api_calls", aggregation=Aggregation.SUM)


def call(runtime: LocalRuntime, method: str, path: str, *, body: Any = None, headers: Any = None) -> Any:
    response = requests.request(
        method, f"{runtime.api_url}{path}", json=body, headers={**ADMIN, **(headers or {})}, timeout=30
    )
    return response.status_code, assert_http_response_matches(response)


def customer_with_usage(runtime: LocalRuntime, counted_units: int) -> tuple[str, DynamoDBUsageStore, BillingPeriod]:
    """A customer of our own, whose current period has a hard stop at LIMIT and `counted_units` counted."""
    customer = f"bcus_{uuid.uuid4().hex[:24]}"
    now = datetime.now(UTC).replace(microsecond=0)
    current = BillingPeriod(now - timedelta(days=3), now + timedelta(days=27))
    component = UsageComponent(
        metric="api_calls",
        unit_amount_minor=1,
        included_quantity=LIMIT,
        cap_policy=CapPolicy.HARD_STOP,
        cap_quantity=LIMIT,
    )
    store = DynamoDBUsageStore(runtime.resolver.physical["UsageTable"].ref, DynamoDB(runtime.client("dynamodb")))
    held = AccountPeriod(start=current.start, end=current.end, subscription_id="bsub_e2e", components=(component,))
    assert store.put_account(
        UsageAccount(
            customer_id=customer,
            billing_mode="internal",
            provider="stripe",
            currency="EUR",
            periods=(held,),
            version=1,
            updated_at=now,
        )
    )
    store.put_limit(LimitRecord.for_component(customer, component, current, now))
    submissions = [
        UsageEventSubmission(
            event_id=f"e{index}",
            customer_id=customer,
            meter="api_calls",
            value=1,
            timestamp=now - timedelta(hours=index % 48),
            properties={},
        )
        for index in range(counted_units)
    ]
    for start in range(0, len(submissions), 100):
        plan = plan_request(
            submissions[start : start + 100], now=now, meters={"api_calls": CALLS}, known_customers={customer}
        )
        service.accept(plan, store)
        store.count(plan.documents(), lambda _, __: current, now)
    return customer, store, current


def test_entitlement_and_consume_across_the_hard_stop_under_8_clients(runtime: LocalRuntime) -> None:
    customer, store, current = customer_with_usage(runtime, 37)
    entitlement = f"/customers/{customer}/entitlements/api_calls"
    status, body = call(runtime, "GET", entitlement)
    assert status == 200, body
    assert (body["used"], body["limit"], body["allowed"], body["policy"]) == (37, LIMIT, True, "hard_stop")
    assert datetime.fromisoformat(body["resets_at"]) == current.end
    # A consume retried with its key takes once
    first = call(runtime, "POST", f"{entitlement}/consume", body={"quantity": 3}, headers={"Idempotency-Key": "once"})
    assert first == (200, {"consumed": True, "used": 40, "limit": LIMIT})
    assert (
        call(runtime, "POST", f"{entitlement}/consume", body={"quantity": 3}, headers={"Idempotency-Key": "once"})
        == first
    )
    # When 8 clients consume 3 units at a time, each request under its own key, until refused
    answers: list[int] = []
    lock = threading.Lock()

    def client(worker: int) -> None:
        for attempt in range(10):
            status, answer = call(
                runtime,
                "POST",
                f"{entitlement}/consume",
                body={"quantity": 3},
                headers={"Idempotency-Key": f"w{worker}-{attempt}"},
            )
            assert status == 200 or answer["code"] == "limit_exceeded", answer
            with lock:
                answers.append(status)

    threads = [threading.Thread(target=client, args=(worker,)) for worker in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then exactly the 60 units left were taken (20 consumptions), no more: zero overshoot
    assert answers.count(200) == 20 and answers.count(409) == 60
    read = store.period(customer, "api_calls", current.start)
    assert read.limit is not None and read.limit.consumed == 63
    status, body = call(runtime, "GET", entitlement)
    assert (body["used"], body["allowed"]) == (LIMIT, False)
    status, body = call(
        runtime, "POST", f"{entitlement}/consume", body={"quantity": 1}, headers={"Idempotency-Key": "late"}
    )
    assert (status, body["code"], body["details"]) == (
        409,
        "limit_exceeded",
        {"used": LIMIT, "limit": LIMIT, "quantity": 1},
    )


def test_usage_windows_and_totals(runtime: LocalRuntime) -> None:
    customer, _, _ = customer_with_usage(runtime, 96)  # 2 events in each of the last 48 hours
    now = datetime.now(UTC)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    hours = {
        "meter": "api_calls",
        "window": "hour",
        "from": (day - timedelta(days=1)).isoformat(),
        "to": (day + timedelta(days=1)).isoformat(),
    }
    status, body = call(
        runtime,
        "GET",
        f"/customers/{customer}/usage?" + "&".join(f"{k}={requests.utils.quote(v)}" for k, v in hours.items()),
    )
    assert status == 200, body
    assert len(body["windows"]) == 48 and body["total"] == sum(w["value"] for w in body["windows"])
    assert body["aggregation"] == "sum" and body["as_of"] is not None
    status, refused = call(
        runtime, "GET", f"/customers/{customer}/usage?meter=api_calls&from=2026-01-01T00:00:00Z&to=2026-01-01T00:00:00Z"
    )
    assert (status, refused["code"]) == (400, "validation_failed")
    status, missing = call(
        runtime,
        "GET",
        "/customers/bcus_nobody_here/usage?meter=api_calls&from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z",
    )
    assert (status, missing["code"]) == (404, "customer_not_found")


@pytest.mark.slow
def test_entitlement_latency_against_health(runtime: LocalRuntime, capsys: pytest.CaptureFixture[str]) -> None:
    customer, _, _ = customer_with_usage(runtime, 10)
    path = f"/customers/{customer}/entitlements/api_calls"

    def timings(target: str) -> list[float]:
        found = []
        for _ in range(40):
            started = time.perf_counter()
            assert requests.get(f"{runtime.api_url}{target}", headers=ADMIN, timeout=30).status_code == 200
            found.append((time.perf_counter() - started) * 1000)
        return sorted(found[5:])  # the first calls warm the function

    entitlement, health = timings(path), timings("/health")
    with capsys.disabled():
        for name, values in (("entitlement", entitlement), ("health", health)):
            print(f"\n{name}: p50 {statistics.median(values):.1f} ms, p95 {values[int(len(values) * 0.95) - 1]:.1f} ms")
