"""UsageSyncFunction on moto server (#12): SubscriptionsTable's real stream - items written by the subscription store
itself (a signup we bill, its next period on a new price version, a provider-billed snapshot) - passed through the
filter template.yaml declares into the function's handler. The usage account and its limit records land in
UsageTable; a redelivered batch changes nothing; changes without a current period never reach the function."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from billing_core.adapters import aws as aws_adapter
from billing_core.adapters.dynamodb.price_book_store import DynamoDBPriceBookStore
from billing_core.adapters.dynamodb.subscription_store import DynamoDBSubscriptionStore
from billing_core.adapters.dynamodb.table import DynamoDB
from billing_core.adapters.dynamodb.usage_store import DynamoDBUsageStore
from billing_core.periods import Interval
from billing_core.pricing.model import CapPolicy, Meter, Plan, PriceBook, UsageComponent
from billing_core.subscriptions.model import (
    BillingMode,
    InternalTerms,
    ScheduledChange,
    SnapshotGuard,
    Subscription,
    SubscriptionSnapshot,
)
from billing_core.subscriptions.state_machine import SubscriptionStatus
from billing_core.usage.model import Aggregation
from local_runtime.event_filters import compile_filter_criteria, passes
from local_runtime.template import load_template
from tests.integration.conftest import Stack
from tests.integration.dead_letter_queues import envelopes_mentioning
from tests.integration.test_audit_on_moto import stream_event
from tests.support import ROOT

TEMPLATE = load_template(ROOT / "template.yaml", validate=False)
[SYNC_EVENT] = [
    event
    for event in TEMPLATE.resources["UsageSyncFunction"]["Properties"]["Events"].values()
    if event["Type"] == "DynamoDB"
]  # the stream, not the replay queue
FILTERS = compile_filter_criteria(SYNC_EVENT["Properties"]["FilterCriteria"])

NOW = datetime(2026, 12, 1, 0, 0, 5, tzinfo=UTC)
START, END, NEXT_END = (
    datetime(2026, 11, 1, tzinfo=UTC),
    datetime(2026, 12, 1, tzinfo=UTC),
    datetime(2027, 1, 1, tzinfo=UTC),
)
CUSTOMER = "bcus_0123456789abcdef01234567"
CALLS = UsageComponent(
    metric="api_calls", unit_amount_minor=2, included_quantity=1000, cap_policy=CapPolicy.HARD_STOP, cap_quantity=1500
)
CALLS_V2 = CALLS.model_copy(update={"cap_quantity": 5000, "alert_thresholds_percent": (50, 90)})
METERS = (Meter(meter_id="api_calls", aggregation=Aggregation.SUM),)


def book(version: str, effective_from: datetime, component: UsageComponent) -> PriceBook:
    plan = Plan(
        plan_id="pro",
        product_id="api",
        name="Pro",
        amount_minor=4900,
        currency="EUR",
        interval=Interval.MONTH,
        usage_components=(component,),
    )
    return PriceBook(version=version, effective_from=effective_from, plans=(plan,), meters=METERS)


class Stream:
    """SubscriptionsTable's stream as the mapping reads it: what was written since the last read, filtered."""

    def __init__(self, stack: Stack):
        self._stack, self._seen = stack, set[str]()

    def read(self) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        records = [
            record
            for record in stream_event(self._stack, "SubscriptionsTable")["Records"]
            if record["dynamodb"]["SequenceNumber"] not in self._seen
        ]
        self._seen |= {record["dynamodb"]["SequenceNumber"] for record in records}
        return records, {"Records": [record for record in records if passes(FILTERS, record)]}


@pytest.fixture
def world(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("USAGE_TABLE_NAME", stack.ref("UsageTable"))
    monkeypatch.setenv("PRICE_BOOK_TABLE_NAME", stack.ref("PriceBookTable"))
    aws_adapter.clear_clients()
    module = importlib.import_module("functions.usage_sync.app")
    module.wiring.reset()
    db = DynamoDB()
    books = DynamoDBPriceBookStore(stack.ref("PriceBookTable"), db)
    books.publish(book("v1", datetime(2026, 1, 1, tzinfo=UTC), CALLS), actor="test", now=NOW)
    books.publish(book("v2", datetime(2026, 11, 15, tzinfo=UTC), CALLS_V2), actor="test", now=NOW)
    return (
        module,
        DynamoDBSubscriptionStore(stack.ref("SubscriptionsTable"), db),
        DynamoDBUsageStore(stack.ref("UsageTable"), db),
        db,
        Stream(stack),
    )


def signup() -> Subscription:
    terms = InternalTerms(
        customer_id=CUSTOMER,
        plan_id="pro",
        price_version="v1",
        amount_minor=4900,
        currency="EUR",
        interval=Interval.MONTH,
        billing_anchor_day=1,
        next_billing_at=END,
    )
    return Subscription(
        subscription_id="bsub_usage1",
        provider="stripe",
        provider_subscription_id=None,
        provider_customer_id="cus_QStripe1",
        billing_mode=BillingMode.INTERNAL,
        status=SubscriptionStatus.ACTIVE,
        version=1,
        position=0,
        current_period_start=START,
        current_period_end=END,
        last_event_id=None,
        updated_at=NOW,
        terms=terms,
    )


def test_a_signup_and_its_next_period_on_a_new_price_version_reach_the_usage_account(
    world: Any, lambda_context: Any
) -> None:
    handler, subscriptions, usage, db, stream = world
    # Given a subscription we bill, written by the subscription store, on v1
    subscription = signup()
    assert subscriptions.create_internal(subscription, actor="test", source="test")
    # When its insert is delivered through the template's filter
    written, event = stream.read()
    assert len(written) == 1 and len(event["Records"]) == 1
    assert handler.lambda_handler(event, lambda_context) == {"batchItemFailures": []}
    # Then the customer's account holds the period with v1's components, and the period's limit record is written
    account = usage.accounts([CUSTOMER])[CUSTOMER]
    assert (account.version, account.billing_mode, account.currency) == (1, "internal", "EUR")
    assert [(p.start, p.end, p.price_version, p.components) for p in account.periods] == [(START, END, "v1", (CALLS,))]
    limit = usage.period(CUSTOMER, "api_calls", START).limit
    assert limit is not None and (limit.limit, limit.policy, limit.period_end) == (1500, CapPolicy.HARD_STOP, END)
    # When the same batch is delivered again
    assert handler.lambda_handler(event, lambda_context) == {"batchItemFailures": []}
    # Then nothing changes
    assert usage.accounts([CUSTOMER])[CUSTOMER] == account
    # When an end-of-term order schedules v2 (a change inside the period: it passes the filter, changes nothing)
    scheduled = ScheduledChange(
        order_id="bord_1", plan_id="pro", price_version="v2", amount_minor=4900, currency="EUR", interval=Interval.MONTH
    )
    order = subscriptions.change_terms_op(
        subscription.subscription_id,
        expected_version=1,
        immediate=None,
        scheduled=scheduled,
        actor="test",
        source="order",
        correlation_id="bord_1",
        now=NOW,
    )
    assert db.transact([order]) is None
    _, event = stream.read()
    assert len(event["Records"]) == 1
    assert handler.lambda_handler(event, lambda_context) == {"batchItemFailures": []}
    assert usage.accounts([CUSTOMER])[CUSTOMER] == account
    # When the billing run advances it to its next period (the end-of-term change applied in the same write)
    stored = subscriptions.get(subscription.subscription_id)
    advance = subscriptions.advance_op(
        stored,
        new_start=END,
        new_end=NEXT_END,
        status=SubscriptionStatus.ACTIVE,
        now=NOW,
        actor="billing_run",
        source="billing_run",
        correlation_id="binv_1",
    )
    assert db.transact([advance]) is None
    _, event = stream.read()
    assert handler.lambda_handler(event, lambda_context) == {"batchItemFailures": []}
    # Then the next period is appended with v2's components and its own limit record; the first keeps v1's
    account = usage.accounts([CUSTOMER])[CUSTOMER]
    assert [(p.start, p.price_version, p.components) for p in account.periods] == [
        (START, "v1", (CALLS,)),
        (END, "v2", (CALLS_V2,)),
    ]
    assert account.version == 2
    new = usage.period(CUSTOMER, "api_calls", END).limit
    assert new is not None and (new.limit, new.thresholds_percent) == (5000, (50, 90))
    old = usage.period(CUSTOMER, "api_calls", START).limit
    assert old is not None and old.limit == 1500


def test_a_provider_billed_subscription_opens_an_account_by_the_providers_customer_without_limits(
    world: Any, lambda_context: Any
) -> None:
    handler, subscriptions, usage, db, stream = world
    snapshot = SubscriptionSnapshot(
        provider="stripe",
        provider_subscription_id="sub_QUsage1",
        provider_customer_id="cus_QUsage1",
        status=SubscriptionStatus.INCOMPLETE,
        position=1,
        source_event_id="evt_1",
    )
    guard = SnapshotGuard(position=1, newer_from=frozenset(), same_position_from=None)
    # Given a snapshot without a period (the filter drops it), then one with its period
    assert db.transact([subscriptions.snapshot_op(snapshot, guard, NOW)]) is None
    written, event = stream.read()
    assert len(written) == 1 and event["Records"] == []
    active = snapshot.model_copy(
        update={
            "status": SubscriptionStatus.ACTIVE,
            "position": 2,
            "current_period_start": START,
            "current_period_end": END,
            "source_event_id": "evt_2",
        }
    )
    later = SnapshotGuard(position=2, newer_from=frozenset({SubscriptionStatus.INCOMPLETE}), same_position_from=None)
    assert db.transact([subscriptions.snapshot_op(active, later, NOW)]) is None
    _, event = stream.read()
    assert len(event["Records"]) == 1
    assert handler.lambda_handler(event, lambda_context) == {"batchItemFailures": []}
    account = usage.accounts(["cus_QUsage1"])["cus_QUsage1"]
    assert (account.billing_mode, account.currency) == ("provider", None)
    assert [(p.start, p.end, p.components) for p in account.periods] == [(START, END, ())]
    assert usage.period("cus_QUsage1", "api_calls", START).limit is None


def test_a_record_that_cannot_be_synced_is_dead_lettered_alone(world: Any, lambda_context: Any, stack: Stack) -> None:
    handler, subscriptions, usage, _, stream = world
    # Given two signups in one batch, one of them on a price version never published
    good = signup()
    assert good.terms is not None
    bad = good.model_copy(
        update={
            "subscription_id": "bsub_usage2",
            "terms": good.terms.model_copy(update={"customer_id": "bcus_other", "price_version": "v9"}),
        }
    )
    assert subscriptions.create_internal(good, actor="test", source="test")
    assert subscriptions.create_internal(bad, actor="test", source="test")
    _, event = stream.read()
    # When the batch is handled, Then only the bad record is dead-lettered in our envelope (a permanent error: it
    # holds nothing up, ADR 0030), and the good one is synced
    answer = handler.lambda_handler(event, lambda_context)
    assert answer == {"batchItemFailures": []}
    [envelope] = envelopes_mentioning(stack, "UsageSyncDeadLetterQueue", "bsub_usage2")
    assert (envelope.job_type, envelope.source) == ("usage_sync", "UsageSyncFunction"), envelope
    assert CUSTOMER in usage.accounts([CUSTOMER, "bcus_other"])
    assert "bcus_other" not in usage.accounts([CUSTOMER, "bcus_other"])


def test_concurrent_syncs_of_one_customers_subscriptions_lose_no_period(world: Any, stack: Stack) -> None:
    # Given 8 provider-billed subscriptions of one customer with consecutive one-day periods, synced at once from
    # 8 threads against moto server (each sync a separate service, as separate shards' invocations would be)
    from concurrent.futures import ThreadPoolExecutor

    from billing_core.errors import RetryableError
    from billing_core.usage.sync import MAX_ROUNDS, SubscriptionImage, SyncOutcome, UsageSync

    _, _, usage, db, _ = world
    books = DynamoDBPriceBookStore(stack.ref("PriceBookTable"), db)  # never read: provider-billed
    first = datetime(2026, 11, 20, tzinfo=UTC)
    images = [
        SubscriptionImage(
            subscription_id=f"bsub_race{day}",
            provider="stripe",
            billing_mode="provider",
            provider_customer_id="cus_QRace",
            current_period_start=first + timedelta(days=day),
            current_period_end=first + timedelta(days=day + 1),
        )
        for day in range(8)
    ]
    retried: list[str] = []
    lost: list[int] = []
    put_account = usage.put_account

    def counting_put(account: Any) -> bool:
        written = bool(put_account(account))
        if not written:
            lost.append(account.version)
        return written

    usage.put_account = counting_put

    def deliver(image: SubscriptionImage) -> SyncOutcome:
        while True:  # the stream redelivers a record that failed as retryable
            try:
                return UsageSync(usage, books).subscription_changed(image, NOW)
            except RetryableError:
                retried.append(image.subscription_id)

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(deliver, images))
    # Then every period was added exactly once, in order, one version per write
    assert outcomes == [SyncOutcome.ADDED] * 8
    account = usage.accounts(["cus_QRace"])["cus_QRace"]
    assert [period.subscription_id for period in account.periods] == [image.subscription_id for image in images]
    assert account.version == 8
    print(f"lost version races: {len(lost)}, records redelivered after {MAX_ROUNDS} rounds: {len(retried)}")
