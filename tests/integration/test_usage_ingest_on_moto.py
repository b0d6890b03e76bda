"""POST /usage/events through its handler on moto server with the real adapters (#12): the request's reads and
writes counted by DynamoDB operation (100 events: 4 requests with a hard stop, 3 without), documents naming each event's billing period as stored, a retry answered
`duplicate` from the markers' cancellation reasons, a hard stop refusing past the limit record, and a
whole-request error writing nothing."""

from __future__ import annotations

import importlib
import json
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

import pytest

from billing_core.adapters import aws as aws_adapter
from billing_core.adapters.dynamodb.price_book_store import DynamoDBPriceBookStore
from billing_core.adapters.dynamodb.usage_store import DynamoDBUsageStore
from billing_core.pricing.model import CapPolicy, PriceBook, UsageComponent
from billing_core.usage.accounts import AccountPeriod, UsageAccount
from billing_core.usage.entitlements import LimitRecord
from billing_core.usage.ports import BatchState
from tests.integration.conftest import Stack
from tests.openapi_contract import assert_answer_matches
from tests.support import ROOT, load_event

CUSTOMER = "bcus_0123456789abcdef01234567"
HARD = UsageComponent(
    metric="api_calls", unit_amount_minor=1, included_quantity=0, cap_policy=CapPolicy.HARD_STOP, cap_quantity=150
)


@pytest.fixture
def configured(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> tuple[Stack, DynamoDBUsageStore, datetime]:
    monkeypatch.setenv("USAGE_TABLE_NAME", stack.ref("UsageTable"))
    monkeypatch.setenv("PRICE_BOOK_TABLE_NAME", stack.ref("PriceBookTable"))
    now = datetime.now(UTC)
    book = PriceBook.model_validate_json((ROOT / "price_books" / "2026-11-01.json").read_text())
    DynamoDBPriceBookStore(stack.ref("PriceBookTable")).publish(book, actor="test", now=now)
    store = DynamoDBUsageStore(stack.ref("UsageTable"))
    previous = AccountPeriod(
        start=now - timedelta(days=40), end=now - timedelta(days=10), subscription_id="bsub_1", components=(HARD,)
    )
    current = AccountPeriod(
        start=previous.end, end=now + timedelta(days=20), subscription_id="bsub_1", components=(HARD,)
    )
    account = UsageAccount(
        customer_id=CUSTOMER,
        billing_mode="internal",
        provider="stripe",
        currency="EUR",
        periods=(previous, current),
        version=1,
        updated_at=now,
    )
    assert store.put_account(account)
    store.put_limit(LimitRecord.for_component(CUSTOMER, HARD, current.period, now))
    return stack, store, now


def handler() -> ModuleType:
    module = importlib.import_module("functions.usage_ingest.app")
    module.wiring.reset()
    return module


def post(module: ModuleType, lambda_context: Any, body: Any) -> tuple[dict[str, Any], Any]:
    event = load_event("api/usage_events_post.json")
    event["body"] = body if isinstance(body, str) else json.dumps(body)
    response = module.lambda_handler(event, lambda_context)
    return response, assert_answer_matches(event, response)


def usage(event_id: str, moment: datetime, value: int = 1) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "customer_id": CUSTOMER,
        "meter": "api_calls",
        "value": value,
        "timestamp": moment.isoformat(),
    }


def test_a_hundred_events_two_documents_with_their_periods_and_the_reads_counted(
    configured: tuple[Stack, DynamoDBUsageStore, datetime], lambda_context: Any
) -> None:
    _, store, now = configured
    module = handler()
    module.wiring.usage_ingestion()  # built before counting: its client is the one counted below
    calls: list[str] = []
    dynamodb = aws_adapter.client("dynamodb")

    def record(model: Any, **_: Any) -> None:
        calls.append(model.name)

    dynamodb.meta.events.register("before-call.dynamodb", record)
    # Given 100 events, a third of them late into the previous period
    events = [
        usage(f"e{index:03}", now - timedelta(days=11) if index % 3 == 0 else now - timedelta(seconds=index))
        for index in range(100)
    ]
    # When they are posted
    response, body = post(module, lambda_context, {"events": events})
    # Then all are accepted
    assert response["statusCode"] == 202
    assert [result["verdict"] for result in body["results"]] == ["accepted"] * 100
    # And the request read the accounts once, the price book once, the hard-stopped period once, and wrote one
    # transaction (100 markers, the document riding on the first one's)
    assert sorted(calls) == sorted(["BatchGetItem", "Query", "BatchGetItem", "TransactWriteItems"])
    # And the stored document names each event's period
    stored = list(store.documents_of(CUSTOMER))
    assert len(stored) == 1
    document, state = stored[0]
    assert state is BatchState.PENDING
    assert len(document.events) == 100
    assert len(document.periods) == 2
    for event in document.events:
        assert document.period_of(CUSTOMER, event.timestamp).contains(event.timestamp)
    # When the same request is sent again, every event is a duplicate and nothing new is written
    calls.clear()
    response, body = post(module, lambda_context, {"events": events})
    assert [result["verdict"] for result in body["results"]] == ["duplicate"] * 100
    assert calls.count("TransactWriteItems") == 1  # refused whole, the stored hashes in its cancellation reasons
    dynamodb.meta.events.unregister("before-call.dynamodb", record)


def test_a_hard_stop_and_a_conflict_on_moto(
    configured: tuple[Stack, DynamoDBUsageStore, datetime], lambda_context: Any
) -> None:
    _, store, now = configured
    module = handler()
    first = [usage("a", now, 100), usage("b", now, 60), usage("c", now, 50)]
    _, body = post(module, lambda_context, {"events": first})
    assert [(r["event_id"], r["verdict"], r.get("reason")) for r in body["results"]] == [
        ("a", "accepted", None),
        ("b", "rejected", "limit_exceeded"),
        ("c", "accepted", None),
    ]
    # A raised limit is honoured at once (the limit record is the authority)
    record = store.period(CUSTOMER, "api_calls", now - timedelta(days=10)).limit
    assert record is not None
    store.put_limit(record.model_copy(update={"limit": 1000}))
    _, body = post(module, lambda_context, {"events": [usage("b", now, 60), usage("a", now, 99)]})
    assert [(r["event_id"], r["verdict"]) for r in body["results"]] == [("b", "accepted"), ("a", "conflict")]


def test_a_whole_request_error_writes_nothing(
    configured: tuple[Stack, DynamoDBUsageStore, datetime], lambda_context: Any
) -> None:
    stack, _, now = configured
    module = handler()
    events = [usage(f"x{index}", now) for index in range(101)]
    response, body = post(module, lambda_context, {"events": events})
    assert response["statusCode"] == 400
    assert body["code"] == "validation_failed"
    items = stack.client("dynamodb").scan(TableName=stack.ref("UsageTable"))["Items"]
    assert {item["sk"]["S"] for item in items} <= {"ACCOUNT", "LIMIT"}


def test_without_a_hard_stop_a_request_reads_no_period(
    configured: tuple[Stack, DynamoDBUsageStore, datetime], lambda_context: Any
) -> None:
    _, store, now = configured
    customer = "bcus_fedcba9876543210fedcba98"
    period = AccountPeriod(start=now - timedelta(days=5), end=now + timedelta(days=5), subscription_id="bsub_2")
    account = UsageAccount(
        customer_id=customer,
        billing_mode="provider",
        provider="stripe",
        periods=(period,),
        version=1,
        updated_at=now,
    )
    assert store.put_account(account)
    module = handler()
    module.wiring.usage_ingestion()
    calls: list[str] = []

    def record(model: Any, **_: Any) -> None:
        calls.append(model.name)

    dynamodb = aws_adapter.client("dynamodb")
    dynamodb.meta.events.register("before-call.dynamodb", record)
    events = [
        {**usage(f"n{index:03}", now - timedelta(seconds=index)), "customer_id": customer} for index in range(100)
    ]
    _, body = post(module, lambda_context, {"events": events})
    dynamodb.meta.events.unregister("before-call.dynamodb", record)
    assert [result["verdict"] for result in body["results"]] == ["accepted"] * 100
    assert sorted(calls) == ["BatchGetItem", "Query", "TransactWriteItems"]
