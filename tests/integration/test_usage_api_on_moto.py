"""The usage routes on moto server (#12): the real handler, store, price book and Powertools idempotency, with
every DynamoDB request counted (botocore hooks on the function's own client). The entitlement of a sum meter is
one request once the function holds the customer's current period, two on its first call; a unique_count meter
adds its COUNT query; a usage report costs one BatchGetItem per 100 shard keys; a consume retried with its
Idempotency-Key takes nothing more; eight concurrent consumers never pass the hard stop."""

from __future__ import annotations

import importlib
import json
import threading
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

import pytest

from billing_core.adapters.dynamodb.price_book_store import DynamoDBPriceBookStore
from billing_core.adapters.dynamodb.table import DynamoDB
from billing_core.adapters.dynamodb.usage_store import DynamoDBUsageStore
from billing_core.errors import ConflictError
from billing_core.pricing.model import PriceBook
from billing_core.usage import service
from billing_core.usage.entitlements import LimitRecord
from billing_core.usage.ingestion import plan_request
from billing_core.usage.model import UsageEvent
from billing_core.usage.queries import EntitlementReader
from billing_core.usage.windows import BillingPeriod
from tests.integration.conftest import Stack
from tests.openapi_contract import assert_answer_matches
from tests.support import ROOT, load_event
from tests.unit.usage_api_samples import LIMIT, account, submission_of
from tests.unit.usage_samples import ALL_METERS, CUSTOMER

NOW = datetime.now(UTC)
# the customer's current period around the real clock (the handler asks datetime.now)
CURRENT = BillingPeriod(
    NOW.replace(microsecond=0) - timedelta(days=10), NOW.replace(microsecond=0) + timedelta(days=20)
)
PREVIOUS = BillingPeriod(CURRENT.start - timedelta(days=30), CURRENT.start)


@pytest.fixture
def usage_api(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> tuple[ModuleType, DynamoDBUsageStore, list[str]]:
    for name, logical in (
        ("USAGE_TABLE_NAME", "UsageTable"),
        ("PRICE_BOOK_TABLE_NAME", "PriceBookTable"),
        ("IDEMPOTENCY_TABLE_NAME", "IdempotencyTable"),
        ("AUDIT_TABLE_NAME", "AuditTable"),
        ("NOTIFICATIONS_QUEUE_URL", "CustomerNotificationsQueue"),
    ):
        monkeypatch.setenv(name, stack.ref(logical))
    module = importlib.import_module("functions.usage_api.app")
    module.wiring.reset()
    # the price book in force declares every sample meter
    seed = json.loads((ROOT / "price_books" / "2026-11-01.json").read_text())
    seed["meters"] = [meter.model_dump(mode="json", exclude_none=True) for meter in ALL_METERS]
    DynamoDBPriceBookStore(stack.ref("PriceBookTable"), DynamoDB(stack.client("dynamodb"))).publish(
        PriceBook.model_validate(seed), actor="test", now=NOW
    )
    store = DynamoDBUsageStore(stack.ref("UsageTable"), DynamoDB(stack.client("dynamodb")))
    opened = account(periods=(PREVIOUS, CURRENT))
    assert store.put_account(opened)
    for held in opened.periods:
        for component in held.components:
            store.put_limit(LimitRecord.for_component(CUSTOMER, component, held.period, held.start))
    calls: list[str] = []
    module.wiring.dynamodb().client.meta.events.register(
        "before-call.dynamodb", lambda model, **_: calls.append(model.name)
    )
    return module, store, calls


def count(store: DynamoDBUsageStore, events: list[UsageEvent]) -> None:
    meters = {meter.meter_id: meter for meter in ALL_METERS}
    periods = (PREVIOUS, CURRENT)

    def period_of(_: str, moment: datetime) -> BillingPeriod:
        return next(period for period in periods if period.contains(moment))

    plan = plan_request([submission_of(one) for one in events], now=NOW, meters=meters, known_customers={CUSTOMER})
    service.accept(plan, store)
    store.count(plan.documents(), period_of, NOW)


def events(meter: str, n: int, value: int = 1) -> list[UsageEvent]:
    return [
        UsageEvent(
            event_id=f"{meter}-{index}",
            customer_id=CUSTOMER,
            meter=meter,
            value=value,
            timestamp=NOW - timedelta(minutes=3 * index),
            properties={"user_id": f"u{index % 5}"},
        )
        for index in range(n)
    ]


def call(module: ModuleType, event: dict[str, Any], context: Any) -> tuple[int, Any]:
    response = module.lambda_handler(event, context)
    return response["statusCode"], assert_answer_matches(event, response)


def entitlement_event(meter: str) -> dict[str, Any]:
    sample = load_event("api/entitlement_get.json")
    sample["path"] = f"/customers/{CUSTOMER}/entitlements/{meter}"
    sample["pathParameters"] = {"customer_id": CUSTOMER, "meter": meter}
    return sample


def test_the_entitlement_of_a_sum_meter_is_one_request_once_the_period_is_held(
    usage_api: Any, lambda_context: Any
) -> None:
    module, store, calls = usage_api
    count(store, events("api_calls", 40, value=2))
    # The first call: the price book (meter), the account, then the period read
    status, body = call(module, entitlement_event("api_calls"), lambda_context)
    assert status == 200 and (body["used"], body["limit"], body["allowed"]) == (80, LIMIT, True)
    assert calls == ["Query", "BatchGetItem", "BatchGetItem"]
    # Every later call: the period read alone
    for _ in range(3):
        calls.clear()
        status, _ = call(module, entitlement_event("api_calls"), lambda_context)
        assert status == 200 and calls == ["BatchGetItem"]
    # A unique_count meter adds its COUNT query
    count(store, events("active_users", 12))
    call(module, entitlement_event("active_users"), lambda_context)
    calls.clear()
    status, body = call(module, entitlement_event("active_users"), lambda_context)
    assert body["used"] == 5 and calls == ["BatchGetItem", "Query"]


def test_a_usage_report_costs_one_batch_get_per_100_shard_keys(usage_api: Any, lambda_context: Any) -> None:
    module, store, calls = usage_api
    count(store, events("api_calls", 40, value=3))
    start = (NOW - timedelta(days=2)).replace(minute=0, second=0, microsecond=0)
    sample = load_event("api/usage_get.json")
    sample["queryStringParameters"] = {
        "meter": "api_calls",
        "window": "hour",
        "from": start.isoformat(),
        "to": (start + timedelta(days=3)).isoformat(),
    }
    call(module, sample, lambda_context)  # the meter is held from now on
    calls.clear()
    status, body = call(module, sample, lambda_context)
    assert status == 200 and body["total"] == 120 and len(body["windows"]) == 72
    # the account, then 72 windows x 16 shards = 1,152 keys: 12 BatchGetItem
    assert calls == ["BatchGetItem"] * 13


def test_consume_retried_with_its_key_takes_once_and_eight_threads_never_pass_the_limit(
    usage_api: Any, stack: Stack, lambda_context: Any
) -> None:
    module, store, _ = usage_api
    count(store, events("api_calls", 37))
    sample = load_event("api/entitlement_consume.json")
    sample["body"] = json.dumps({"quantity": 3})
    first = call(module, sample, lambda_context)
    assert first == (200, {"consumed": True, "used": 40, "limit": LIMIT})
    assert call(module, sample, lambda_context) == first  # the saved answer
    other = {**sample, "body": json.dumps({"quantity": 4})}
    status, body = call(module, other, lambda_context)
    assert (status, body["code"]) == (422, "idempotency_key_reused")
    # When 8 execution environments (a reader and a client each; one resolver is not shared by threads in
    # Lambda) consume 3 units at a time until refused
    answers: list[bool] = []
    lock = threading.Lock()

    def consumer() -> None:
        own = DynamoDBUsageStore(stack.ref("UsageTable"), DynamoDB(stack.client("dynamodb")))
        reader = EntitlementReader(own, {meter.meter_id: meter for meter in ALL_METERS}.get)
        for _ in range(10):
            try:
                reader.consume(CUSTOMER, "api_calls", 3, datetime.now(UTC))
                taken = True
            except ConflictError as refused:
                taken = refused.code != "limit_exceeded"  # any other conflict fails the count below
            with lock:
                answers.append(taken)

    threads = [threading.Thread(target=consumer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then 60 units were left: exactly 20 consumptions fit, every other one was refused, none overshot
    assert answers.count(True) == 20 and answers.count(False) == 60
    read = store.period(CUSTOMER, "api_calls", CURRENT.start)
    assert read.limit is not None and read.limit.consumed == 63
    status, body = call(module, entitlement_event("api_calls"), lambda_context)
    assert (body["used"], body["allowed"]) == (LIMIT, False)


def test_a_consume_whose_saved_answer_was_lost_is_not_taken_again(usage_api: Any, lambda_context: Any) -> None:
    module, store, calls = usage_api
    count(store, events("api_calls", 10))
    sample = load_event("api/entitlement_consume.json")
    sample["body"] = json.dumps({"quantity": 5})
    key = sample["headers"]["Idempotency-Key"]
    # Given a consumption that took effect, then crashed before Powertools saved its answer (the domain call
    # alone: the same write the handler makes, without the idempotency record)
    module.wiring.usage_reads().consume(CUSTOMER, "api_calls", 5, datetime.now(UTC), key=key)
    calls.clear()
    # When the client retries with its key
    status, body = call(module, sample, lambda_context)
    # Then it is answered as taken, and nothing more was taken
    assert (status, body) == (200, {"consumed": True, "used": 15, "limit": LIMIT})
    read = store.period(CUSTOMER, "api_calls", CURRENT.start)
    assert read.limit is not None and read.limit.consumed == 5
    # Cost of a consume: Powertools' PutItem, the period read, the marked write (a GetItem of the marker when
    # the units do not fit, here: the retry's transaction found the marker), the thresholds' period read (nothing
    # reached: the alert markers are not read), Powertools' UpdateItem
    assert calls == ["PutItem", "BatchGetItem", "TransactWriteItems", "BatchGetItem", "UpdateItem"]


def test_reaching_a_threshold_through_consume_announces_it_once(
    usage_api: Any, stack: Stack, lambda_context: Any
) -> None:
    module, store, _ = usage_api
    count(store, events("api_calls", 75))
    sample = load_event("api/entitlement_consume.json")
    sample["body"] = json.dumps({"quantity": 25})
    # When the customer's own backend takes the last 25 units through consume (75 + 25 = the limit)
    assert call(module, sample, lambda_context) == (200, {"consumed": True, "used": LIMIT, "limit": LIMIT})
    # Then 80 % and 100 % are announced (no batch will ever bring them to the aggregator: the meter is stopped)
    assert store.announced(CUSTOMER, "api_calls", CURRENT.start) == {80, 100}
    sqs = stack.client("sqs")
    received = sqs.receive_message(QueueUrl=stack.ref("CustomerNotificationsQueue"), MaxNumberOfMessages=10)
    percents = sorted(json.loads(message["Body"])["notice_id"].rsplit(":", 1)[1] for message in received["Messages"])
    assert percents == ["100", "80"]
    # And the retry with the same key (its saved answer) announces nothing more
    assert call(module, sample, lambda_context)[0] == 200
    again = sqs.receive_message(QueueUrl=stack.ref("CustomerNotificationsQueue"), MaxNumberOfMessages=10)
    assert "Messages" not in again
