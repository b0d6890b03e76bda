"""POST /usage/events through its handler (functions/usage_ingest) over the in-memory store: 202 with one result
per event in order; whole-request errors (bad JSON, not 1..100 events, a bad event shape: 400; a body over
USAGE_MAX_BODY_BYTES: 413) answer with the bundle's error body and write nothing; the largest request within
every bound fits under the limit (#12)."""

from __future__ import annotations

import importlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from billing_core.usage.ingest import UsageIngestion
from billing_core.usage.ingestion import USAGE_MAX_BODY_BYTES
from billing_core.usage.model import (
    MAX_EVENTS_PER_REQUEST,
    MAX_PROPERTIES,
    MAX_PROPERTY_VALUE_LENGTH,
    UsageEventSubmission,
)
from billing_core.usage.windows import BillingPeriod
from tests.fakes.usage import InMemoryUsageStore
from tests.support import load_event
from tests.unit.test_usage_ingest import HARD, Books, account, account_period

CUSTOMER = "bcus_0123456789abcdef01234567"  # the sample event's customer


@pytest.fixture
def store() -> InMemoryUsageStore:
    now = datetime.now(UTC)
    store = InMemoryUsageStore()
    period = BillingPeriod(now - timedelta(days=20), now + timedelta(days=10))
    store.usage_accounts[CUSTOMER] = account(CUSTOMER, account_period(period, HARD))
    return store


@pytest.fixture
def handler(monkeypatch: pytest.MonkeyPatch, store: InMemoryUsageStore) -> Any:
    module = importlib.import_module("functions.usage_ingest.app")
    monkeypatch.setattr(module.wiring, "usage_ingestion", lambda: UsageIngestion(store, Books()))
    return module.lambda_handler


def post(handler: Any, lambda_context: Any, body: str | dict[str, Any]) -> tuple[int, dict[str, Any]]:
    event = load_event("api/usage_events_post.json")
    event["body"] = body if isinstance(body, str) else json.dumps(body)
    response = handler(event, lambda_context)
    return response["statusCode"], json.loads(response["body"])


def fresh(event_id: str, **changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "event_id": event_id,
        "customer_id": CUSTOMER,
        "meter": "api_calls",
        "value": 1,
        "timestamp": (datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
    }
    fields.update(changes)
    return fields


def test_the_sample_request_is_answered_202_in_order(handler: Any, lambda_context: Any) -> None:
    # Given the sample event with its events moved to now (its own timestamps age out of the lateness window)
    sample = json.loads(load_event("api/usage_events_post.json")["body"])
    for each in sample["events"]:
        each["timestamp"] = (datetime.now(UTC) - timedelta(minutes=2)).isoformat()
    sample["events"].append(fresh("nope", meter="no_such_meter"))
    # When it is posted
    status, body = post(handler, lambda_context, sample)
    # Then each event has its verdict, in order, a reason only on the rejection
    assert status == 202
    assert body == {
        "results": [
            {"event_id": "req-20261122-0001", "verdict": "accepted"},
            {"event_id": "req-20261122-0002", "verdict": "accepted"},
            {"event_id": "nope", "verdict": "rejected", "reason": "unknown_meter"},
        ]
    }
    # And a retry answers duplicate
    status, body = post(handler, lambda_context, sample)
    assert [result["verdict"] for result in body["results"]] == ["duplicate", "duplicate", "rejected"]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ("{not json", "malformed_json"),
        ("[]", "malformed_json"),
        ("", "missing_body"),
        ({"events": []}, "validation_failed"),
        ({"events": [fresh(f"e{index}") for index in range(MAX_EVENTS_PER_REQUEST + 1)]}, "validation_failed"),
        ({"events": [fresh("ok"), fresh("has#hash")]}, "validation_failed"),
        ({"events": [fresh("ok"), fresh("no-time", timestamp=1796000000)]}, "validation_failed"),
        ({"events": [fresh("ok"), {"event_id": "x"}]}, "validation_failed"),
        ({"events": [fresh("ok", extra=1)]}, "validation_failed"),
        ({"events": [fresh("ok")], "more": 1}, "validation_failed"),
    ],
)
def test_a_request_that_is_not_one_is_400_and_writes_nothing(
    handler: Any, lambda_context: Any, store: InMemoryUsageStore, body: Any, code: str
) -> None:
    status, answer = post(handler, lambda_context, body)
    assert status == 400
    assert answer["code"] == code
    assert answer["message"]
    assert store.markers == {} and store.documents == {}


def test_a_body_over_the_limit_is_413_and_writes_nothing(
    handler: Any, lambda_context: Any, store: InMemoryUsageStore
) -> None:
    padding = "x" * (USAGE_MAX_BODY_BYTES + 1 - len(json.dumps({"events": [fresh("ok")], "pad": ""})))
    status, answer = post(handler, lambda_context, json.dumps({"events": [fresh("ok")], "pad": padding}))
    assert status == 413
    assert answer["code"] == "payload_too_large"
    assert answer["details"] == {"max_bytes": USAGE_MAX_BODY_BYTES}
    assert store.markers == {}


def largest_legal_request() -> str:
    """100 events, every field at its longest: property values of characters outside the BMP, which JSON
    escapes as two \\uXXXX each (12 bytes per character) when sent ASCII-only, as json.dumps does by default."""
    wide = "\U0001f600" * MAX_PROPERTY_VALUE_LENGTH
    events = [
        {
            "event_id": f"{index:03}" + "e" * 197,
            "customer_id": CUSTOMER + "c" * (128 - len(CUSTOMER)),
            "meter": "m" * 64,
            "value": 2**53 - 1,
            "timestamp": "2026-12-07T06:00:00.123456+00:00",
            "properties": {f"{index:02}" + "p" * 38: wide for index in range(MAX_PROPERTIES)},
        }
        for index in range(MAX_EVENTS_PER_REQUEST)
    ]
    for each in events:
        UsageEventSubmission.model_validate(each)  # within every bound
    return json.dumps({"events": events}, separators=(",", ":"))


def test_the_largest_legal_request_fits_under_the_limit(handler: Any, lambda_context: Any) -> None:
    body = largest_legal_request()
    size = len(body.encode())
    # Measured: 1,298,312 bytes compact (62% of the limit); indented by 2 it stays under the limit too
    assert size == 1_298_312 < USAGE_MAX_BODY_BYTES
    indented = json.dumps(json.loads(body), indent=2)
    assert len(indented.encode()) < USAGE_MAX_BODY_BYTES
    status, answer = post(handler, lambda_context, body)
    assert status == 202
    assert {result["reason"] for result in answer["results"]} == {"unknown_meter"}
