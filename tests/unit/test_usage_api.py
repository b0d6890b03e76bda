"""functions/usage_api over the fake store: each route maps its event to one call into billing_core.usage.queries
and its result or error to the answer docs/openapi.yaml promises."""

from __future__ import annotations

import importlib
import json
from datetime import timedelta
from types import ModuleType
from typing import Any

import pytest

from billing_core.usage.counting import UsageCounter
from billing_core.usage.queries import Consumed, EntitlementReader
from tests.fakes.audit import InMemoryAuditLog
from tests.fakes.reconciliation import InMemoryDocumentQueue
from tests.fakes.usage import InMemoryUsageStore
from tests.openapi_contract import assert_answer_matches
from tests.support import as_operator, load_event
from tests.unit.usage_api_samples import LIMIT, counted, open_account
from tests.unit.usage_samples import CUSTOMER, METERS, NOW, event


class Once:
    """consume_units_once without Powertools: straight to the keyed consumption (its marker is the store's)."""

    def __init__(self, reads: EntitlementReader) -> None:
        self.reads = reads

    def register(self, context: Any) -> None:
        pass

    def __call__(self, request: dict[str, Any]) -> Consumed:
        return self.reads.consume(
            request["customer_id"], request["meter"], request["quantity"], NOW, key=request["idempotency_key"]
        )


@pytest.fixture
def usage_api(monkeypatch: pytest.MonkeyPatch) -> tuple[ModuleType, InMemoryUsageStore]:
    module = importlib.import_module("functions.usage_api.app")
    store = InMemoryUsageStore()
    reads = EntitlementReader(store, METERS.get)
    monkeypatch.setattr(module.wiring, "usage_reads", lambda: reads)
    once = Once(reads)
    monkeypatch.setattr(module.wiring, "consume_units_once", lambda: once)
    monkeypatch.setattr(module.wiring, "usage_store", lambda: store)
    audit = InMemoryAuditLog()
    monkeypatch.setattr(module.wiring, "audit_log", lambda: audit)
    notices = InMemoryDocumentQueue()
    counter = UsageCounter(store=store, notices=notices, audit=audit, clock=lambda: NOW)
    monkeypatch.setattr(module.wiring, "usage_counter", lambda: counter)
    monkeypatch.setattr(module, "notices_sent", notices.sent, raising=False)
    monkeypatch.setitem(
        module.wiring.__dict__,
        "settings",
        module.Settings(
            usage_table_name="u",
            price_book_table_name="p",
            idempotency_table_name="i",
            audit_table_name="a",
            notifications_queue_url="q",
        ),
    )
    # the entitlement asks "now": the samples' periods are around NOW
    monkeypatch.setattr(module, "datetime", type("Frozen", (), {"now": staticmethod(lambda tz=None: NOW)}))
    return module, store


def call(module: ModuleType, event: dict[str, Any], context: Any) -> Any:
    response = module.lambda_handler(event, context)
    return response["statusCode"], assert_answer_matches(event, response)


def test_usage_windows_and_total(usage_api: Any, lambda_context: Any) -> None:
    module, store = usage_api
    open_account(store)
    counted(store, [event(f"e{i}", value=i + 1, timestamp=NOW - timedelta(hours=i)) for i in range(5)], NOW)
    sample = load_event("api/usage_get.json")
    sample["queryStringParameters"] = {
        "meter": "api_calls",
        "from": (NOW - timedelta(hours=6, minutes=30)).isoformat(),
        "to": (NOW + timedelta(minutes=30)).isoformat(),
        "window": "hour",
    }
    status, body = call(module, sample, lambda_context)
    assert status == 200
    assert body["total"] == 15 and body["aggregation"] == "sum" and body["from"].startswith("2026-12-10T09:00")
    assert [w["value"] for w in body["windows"]] == [0, 0, 5, 4, 3, 2, 1]


def test_usage_refusals(usage_api: Any, lambda_context: Any) -> None:
    module, store = usage_api
    sample = load_event("api/usage_get.json")
    status, body = call(module, sample, lambda_context)
    assert (status, body["code"]) == (404, "customer_not_found")
    open_account(store)
    for query, code in (
        ({**sample["queryStringParameters"], "meter": "nope"}, "unknown_meter"),
        ({**sample["queryStringParameters"], "to": sample["queryStringParameters"]["from"]}, "validation_failed"),
        ({"from": "2026-12-10T00:00:00Z", "to": "2026-12-11T00:00:00Z"}, "validation_failed"),
        ({**sample["queryStringParameters"], "extra": "1"}, "validation_failed"),
    ):
        status, body = call(module, {**sample, "queryStringParameters": query}, lambda_context)
        assert (status, body["code"]) == (400, code)
    bad = {**sample, "pathParameters": {"customer_id": "no#pe"}, "path": "/customers/no%23pe/usage"}
    status, body = call(module, bad, lambda_context)
    assert (status, body["code"]) == (400, "invalid_customer_id")


def test_entitlement_and_consume_across_the_hard_stop(usage_api: Any, lambda_context: Any) -> None:
    module, store = usage_api
    open_account(store)
    counted(store, [event(f"e{i}", value=10, timestamp=NOW - timedelta(minutes=i)) for i in range(9)], NOW)
    status, body = call(module, load_event("api/entitlement_get.json"), lambda_context)
    assert status == 200
    assert (body["used"], body["limit"], body["allowed"], body["policy"]) == (90, LIMIT, True, "hard_stop")
    consume = load_event("api/entitlement_consume.json")
    consume["body"] = json.dumps({"quantity": 10})
    status, body = call(module, consume, lambda_context)
    assert (status, body) == (200, {"consumed": True, "used": LIMIT, "limit": LIMIT})
    # the same key again: the saved answer, nothing more taken
    assert call(module, consume, lambda_context) == (200, body)
    status, body = call(module, load_event("api/entitlement_get.json"), lambda_context)
    assert (body["used"], body["allowed"]) == (LIMIT, False)
    another = {**consume, "headers": {**consume["headers"], "Idempotency-Key": "second"}}
    status, body = call(module, another, lambda_context)
    assert (status, body["code"]) == (409, "limit_exceeded")
    assert body["details"] == {"used": LIMIT, "limit": LIMIT, "quantity": 10}


def test_consume_refusals(usage_api: Any, lambda_context: Any) -> None:
    module, store = usage_api
    consume = load_event("api/entitlement_consume.json")
    status, body = call(module, consume, lambda_context)
    assert (status, body["code"]) == (404, "customer_not_found")
    open_account(store)
    no_key = {**consume, "headers": {k: v for k, v in consume["headers"].items() if k != "Idempotency-Key"}}
    assert call(module, no_key, lambda_context)[1]["code"] == "missing_idempotency_key"
    for payload, code in (
        ('{"quantity": 0}', "validation_failed"),
        ('{"quantity": "1"}', "validation_failed"),
        ("", "missing_body"),
        ("{", "malformed_json"),
    ):
        status, body = call(module, {**consume, "body": payload}, lambda_context)
        assert (status, body["code"]) == (400, code)
    unknown = {
        **consume,
        "pathParameters": {"customer_id": CUSTOMER, "meter": "nope"},
        "path": f"/customers/{CUSTOMER}/entitlements/nope/consume",
    }
    status, body = call(module, unknown, lambda_context)
    assert (status, body["code"]) == (404, "unknown_meter")


def test_the_routes_refuse_a_request_without_a_verified_operator(usage_api: Any, lambda_context: Any) -> None:
    module, _ = usage_api
    for name in ("usage_get", "entitlement_get", "entitlement_consume", "entitlement_limit_put"):
        sample = as_operator(load_event(f"api/{name}.json"), None)
        status, body = call(module, sample, lambda_context)
        assert (status, body["code"]) == (401, "missing_credentials")


def test_an_operator_raises_a_hard_limit_and_it_holds_at_once_audited(usage_api: Any, lambda_context: Any) -> None:
    module, store = usage_api
    audit = module.wiring.audit_log()
    open_account(store)
    counted(store, [event(f"e{i}", value=10, timestamp=NOW - timedelta(minutes=i)) for i in range(10)], NOW)
    consume = load_event("api/entitlement_consume.json")
    consume["body"] = json.dumps({"quantity": 5})
    # Given the hard stop reached: a consumption is refused
    assert call(module, consume, lambda_context)[1]["code"] == "limit_exceeded"
    # When an operator raises the limit to 150
    change = load_event("api/entitlement_limit_put.json")
    change["body"] = json.dumps({"limit": 150, "reason": "ticket 1: launch week"})
    status, body = call(module, change, lambda_context)
    assert status == 200
    assert (body["limit_before"], body["limit"], body["changed"], body["used"], body["allowed"]) == (
        LIMIT,
        150,
        True,
        100,
        True,
    )
    assert body["policy"] == "hard_stop"
    # Then the next consumption fits, the entitlement says so, and the change is audited with its reason
    retry = {**consume, "headers": {**consume["headers"], "Idempotency-Key": "after-raise"}}
    assert call(module, retry, lambda_context) == (200, {"consumed": True, "used": 105, "limit": 150})
    status, view = call(module, load_event("api/entitlement_get.json"), lambda_context)
    assert (view["limit"], view["used"], view["allowed"]) == (150, 105, True)
    [entry] = audit.events.values()
    assert (entry.event_type, entry.entity_id, entry.actor) == (
        "usage_limit.changed",
        f"{CUSTOMER}:api_calls",
        "user:admin",
    )
    assert entry.changes["limit"] == [LIMIT, 150] and entry.after is not None
    assert entry.after["reason"] == "ticket 1: launch week"
    # And the same limit again writes and audits nothing
    status, again = call(module, change, lambda_context)
    assert (status, again["changed"], len(audit.events)) == (200, False, 1)


def test_a_limit_change_refuses_what_it_cannot_place(usage_api: Any, lambda_context: Any) -> None:
    module, store = usage_api
    change = load_event("api/entitlement_limit_put.json")
    assert call(module, change, lambda_context)[1]["code"] == "customer_not_found"
    open_account(store)
    for payload in ('{"limit": -1, "reason": "x"}', '{"limit": 5}', '{"limit": 5, "reason": ""}'):
        status, body = call(module, {**change, "body": payload}, lambda_context)
        assert (status, body["code"]) == (400, "validation_failed")
    unknown = {
        **change,
        "pathParameters": {"customer_id": CUSTOMER, "meter": "nope"},
        "path": f"/customers/{CUSTOMER}/entitlements/nope/limit",
    }
    assert call(module, unknown, lambda_context)[1]["code"] == "unknown_meter"
    # a limit of none is a valid change: the hard stop then stops nothing
    status, body = call(module, {**change, "body": '{"limit": null, "reason": "unlimited trial"}'}, lambda_context)
    assert (status, body["limit"], body["allowed"]) == (200, None, True)


def test_a_threshold_reached_through_a_limit_change_is_announced_once(usage_api: Any, lambda_context: Any) -> None:
    module, store = usage_api
    open_account(store)
    counted(store, [event(f"e{i}", value=10, timestamp=NOW - timedelta(minutes=i)) for i in range(6)], NOW)
    # Given 60 of 100 used: nothing reached (80 and 100 are the thresholds)
    change = load_event("api/entitlement_limit_put.json")
    # When an operator lowers the limit to 70: 60 is past 80 % of it
    change["body"] = json.dumps({"limit": 70, "reason": "abuse review"})
    status, body = call(module, change, lambda_context)
    assert (status, body["used"], body["allowed"]) == (200, 60, True)
    # Then the 80 % threshold is announced once, under its one notice id, and marked
    [notice] = module.notices_sent
    assert notice["notice_id"].endswith(":80")
    period_start = next(key[2] for key in store.limits if key[:2] == (CUSTOMER, "api_calls"))
    assert store.announced(CUSTOMER, "api_calls", period_start) == {80}
    # And a repeat of the change (nothing changes) announces nothing more
    call(module, change, lambda_context)
    assert len(module.notices_sent) == 1
