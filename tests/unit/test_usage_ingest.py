"""`POST /usage/events` as a service (usage/ingest.py) over the in-memory store: one answer per event in the
request's order, every verdict and every rejection reason, documents naming each event's billing period, the
reads it makes (accounts once, one period read per hard-stopped customer-meter) and the metrics it emits (#12)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from billing_core.pricing.model import CapPolicy, PublishedPriceBook, UsageComponent
from billing_core.usage import ingest as ingest_module
from billing_core.usage.accounts import AccountPeriod, UsageAccount
from billing_core.usage.entitlements import LimitRecord
from billing_core.usage.ingest import UsageIngestion, rejection_metric
from billing_core.usage.ingestion import UsageRequest
from billing_core.usage.model import RejectionReason, UsageEvent, Verdict
from billing_core.usage.ports import PeriodRead
from billing_core.usage.windows import BillingPeriod
from tests.fakes.usage import InMemoryUsageStore
from tests.unit.usage_samples import ALL_METERS, CUSTOMER, NOW, OTHER_CUSTOMER, PERIOD

PREVIOUS = BillingPeriod(datetime(2026, 10, 15, 10, 30, tzinfo=UTC), PERIOD.start)
THIRD_CUSTOMER = "bcus_third000000000000000000"  # has an account whose first period is PERIOD
HARD = UsageComponent(
    metric="api_calls", unit_amount_minor=1, included_quantity=50, cap_policy=CapPolicy.HARD_STOP, cap_quantity=100
)
SOFT = UsageComponent(metric="requests", unit_amount_minor=1, included_quantity=10, cap_policy=CapPolicy.SOFT_CAP)


def account_period(bounds: BillingPeriod, *components: UsageComponent) -> AccountPeriod:
    return AccountPeriod(
        start=bounds.start,
        end=bounds.end,
        subscription_id="bsub_1",
        price_version="v1",
        plan_id="pro",
        components=components,
    )


def account(customer_id: str, *periods: AccountPeriod) -> UsageAccount:
    return UsageAccount(
        customer_id=customer_id,
        billing_mode="internal",
        provider="stripe",
        provider_customer_id="cus_X",
        currency="EUR",
        periods=periods,
        version=1,
        updated_at=NOW,
    )


class Books:
    """The price book port as ingestion uses it: the version in force declares the meters."""

    def __init__(self, meters: Iterable[Any] = ALL_METERS) -> None:
        self.book: PublishedPriceBook | None = PublishedPriceBook.model_construct(meters=tuple(meters))

    def effective_at(self, at: datetime) -> PublishedPriceBook | None:
        return self.book


class CountingStore(InMemoryUsageStore):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, Any]] = []

    def accounts(self, customer_ids: Iterable[str]) -> dict[str, UsageAccount]:
        customer_ids = tuple(customer_ids)
        self.calls.append(("accounts", customer_ids))
        return super().accounts(customer_ids)

    def period(self, customer_id: str, meter: str, period_start: datetime) -> PeriodRead:
        self.calls.append(("period", (customer_id, meter, period_start)))
        return super().period(customer_id, meter, period_start)


@pytest.fixture
def store() -> CountingStore:
    store = CountingStore()
    store.usage_accounts[CUSTOMER] = account(
        CUSTOMER, account_period(PREVIOUS, HARD, SOFT), account_period(PERIOD, HARD, SOFT)
    )
    store.usage_accounts[THIRD_CUSTOMER] = account(THIRD_CUSTOMER, account_period(PERIOD))
    return store


@pytest.fixture
def metrics(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    seen: dict[str, int] = {}

    def count(name: str, value: int = 1) -> None:
        seen[name] = seen.get(name, 0) + value

    monkeypatch.setattr(ingest_module, "count", count)
    return seen


def raw(event_id: str, **changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "event_id": event_id,
        "customer_id": CUSTOMER,
        "meter": "requests",
        "value": 1,
        "timestamp": (NOW - timedelta(minutes=1)).isoformat(),
    }
    fields.update(changes)
    return fields


def send(store: CountingStore, *events: dict[str, Any], now: datetime = NOW) -> list[tuple[str, str, str | None]]:
    results = UsageIngestion(store, Books()).ingest(UsageRequest.model_validate({"events": list(events)}), now)
    return [
        (result.event_id, result.verdict.value, result.reason.value if result.reason else None) for result in results
    ]


def test_every_reason_answered_in_request_order_and_only_accepted_events_written(
    store: CountingStore, metrics: dict[str, int]
) -> None:
    # Given one request holding an event for every outcome, interleaved
    events = [
        raw("ok-1"),
        raw("bad", value=-1),
        raw("meter", meter="no_such_meter"),
        raw("prop", meter="active_users"),
        raw("who", customer_id=OTHER_CUSTOMER),
        raw("future", timestamp=(NOW + timedelta(minutes=6)).isoformat()),
        raw("late", timestamp=(NOW - timedelta(days=36)).isoformat()),
        # inside the lateness window, before the third customer's first period
        raw("outside", customer_id=THIRD_CUSTOMER, timestamp=(PERIOD.start - timedelta(days=2)).isoformat()),
        raw("limit", meter="api_calls", value=101),
        raw("ok-2", meter="api_calls", value=100),
        raw("ok-3", customer_id=THIRD_CUSTOMER),
    ]
    # When it is ingested
    answers = send(store, *events)
    # Then each event gets its answer, in order
    assert answers == [
        ("ok-1", "accepted", None),
        ("bad", "rejected", "bad_value"),
        ("meter", "rejected", "unknown_meter"),
        ("prop", "rejected", "missing_property"),
        ("who", "rejected", "unknown_customer"),
        ("future", "rejected", "in_the_future"),
        ("late", "rejected", "too_late"),
        ("outside", "rejected", "outside_billing_period"),
        ("limit", "rejected", "limit_exceeded"),
        ("ok-2", "accepted", None),
        ("ok-3", "accepted", None),
    ]
    # And only the accepted events hold a marker
    assert set(store.markers) == {(CUSTOMER, "ok-1"), (CUSTOMER, "ok-2"), (THIRD_CUSTOMER, "ok-3")}
    # And the metrics count verdicts and reasons
    assert metrics["UsageEventsAccepted"] == 3
    assert metrics["UsageEventsRejected"] == 8
    assert metrics["UsageEventsRejectedOutsideBillingPeriod"] == 1
    assert metrics["UsageEventsRejectedLimitExceeded"] == 1
    assert all(metrics[rejection_metric(reason)] == 1 for reason in RejectionReason)


def test_reads_accounts_once_and_one_period_per_hard_stopped_customer_meter(store: CountingStore) -> None:
    # Given a request naming two customers, a hard-stopped meter (three times), a soft-capped one and an unknown one
    events = [
        raw("a", meter="api_calls"),
        raw("b", meter="api_calls"),
        raw("c", meter="requests"),
        raw("d", customer_id=THIRD_CUSTOMER, meter="api_calls"),
        raw("e", customer_id=OTHER_CUSTOMER, meter="api_calls"),
        raw("f", meter="api_calls"),
    ]
    # When it is ingested
    send(store, *events)
    # Then the accounts are one call, and the only period read is the hard-stopped customer-meter's
    assert store.calls == [
        ("accounts", (CUSTOMER, THIRD_CUSTOMER, OTHER_CUSTOMER)),
        ("period", (CUSTOMER, "api_calls", PERIOD.start)),
    ]


def test_a_retried_request_answers_duplicate_and_a_changed_payload_conflict_keeping_the_original(
    store: CountingStore, metrics: dict[str, int]
) -> None:
    # Given an accepted request
    first = [raw("one", value=5), raw("two", value=7)]
    assert [verdict for _, verdict, _ in send(store, *first)] == ["accepted", "accepted"]
    original = dict(store.markers)
    # When it is sent again, once as it was and once with a changed value
    retried = send(store, raw("one", value=5), raw("two", value=8), raw("three"))
    # Then the same payload is a duplicate, the changed one a conflict, and the new event accepted
    assert retried == [("one", "duplicate", None), ("two", "conflict", None), ("three", "accepted", None)]
    # And the original payload is what is kept
    assert store.markers[(CUSTOMER, "two")] == original[(CUSTOMER, "two")]
    assert metrics["UsageEventsDuplicate"] == 1
    assert metrics["UsageEventsConflict"] == 1


def test_repeats_inside_one_request_answer_against_the_first(store: CountingStore) -> None:
    answers = send(store, raw("same"), raw("same"), raw("same", value=2))
    assert answers == [("same", "accepted", None), ("same", "duplicate", None), ("same", "conflict", None)]
    assert len(store.documents) == 1


def test_a_hundred_events_are_one_document_naming_the_periods_of_its_events(store: CountingStore) -> None:
    # Given 100 events, some in the previous period (late, inside the window) and some in the current one
    events = [
        raw(f"e{index:03}", timestamp=(PERIOD.start - timedelta(hours=1 + index)).isoformat())
        if index % 3 == 0
        else raw(f"e{index:03}")
        for index in range(100)
    ]
    # When they are ingested
    answers = send(store, *events)
    # Then all are accepted, in one document (it rides on its first event's marker: 100 items, one transaction)
    assert [verdict for _, verdict, _ in answers] == ["accepted"] * 100
    documents = [document for document, _ in store.documents.values()]
    assert [len(document.events) for document in documents] == [100]
    assert {(period.start, period.end) for period in documents[0].periods} == {
        (PREVIOUS.start, PREVIOUS.end),
        (PERIOD.start, PERIOD.end),
    }
    # And every event's period is named by its document, as the account holds it
    for document in documents:
        for event in document.events:
            named = document.period_of(event.customer_id, event.timestamp)
            expected = PREVIOUS if event.timestamp < PERIOD.start else PERIOD
            assert (named.start, named.end) == (expected.start, expected.end)


def test_a_hard_stop_counts_what_is_consumed_and_counted_and_the_requests_own_events(store: CountingStore) -> None:
    # Given a limit record of 100 with 90 units consumed (put_limit keeps consumed units: set them directly)
    record = LimitRecord.for_component(CUSTOMER, HARD, PERIOD, NOW)
    store.limits[(CUSTOMER, "api_calls", PERIOD.start)] = record.model_copy(update={"consumed": 90})
    # When events of the current period would pass it, and one of the previous period is sent too
    answers = send(
        store,
        raw("a", meter="api_calls", value=6),
        raw("b", meter="api_calls", value=5),
        raw("c", meter="api_calls", value=4),
        raw("d", meter="api_calls", value=500, timestamp=(PERIOD.start - timedelta(hours=1)).isoformat()),
    )
    # Then the one that would pass the limit is refused, the one that fits after it is accepted, and another
    # period's event is not judged by this period's limit
    assert answers == [
        ("a", "accepted", None),
        ("b", "rejected", "limit_exceeded"),
        ("c", "accepted", None),
        ("d", "accepted", None),
    ]


def test_a_raised_limit_record_wins_over_the_plan(store: CountingStore) -> None:
    store.put_limit(LimitRecord.for_component(CUSTOMER, HARD, PERIOD, NOW).model_copy(update={"limit": 1000}))
    assert send(store, raw("big", meter="api_calls", value=900)) == [("big", "accepted", None)]


def test_counted_usage_counts_against_the_hard_stop(store: CountingStore) -> None:
    # Given 98 units of the period already counted by the aggregator
    send(store, raw("early", meter="api_calls", value=98))
    store.count([document for document, _ in store.documents.values()], lambda *_: PERIOD, NOW)
    # When 3 more arrive, then 2
    assert send(store, raw("x", meter="api_calls", value=3), raw("y", meter="api_calls", value=2)) == [
        ("x", "rejected", "limit_exceeded"),
        ("y", "accepted", None),
    ]


def test_a_retry_of_counted_events_at_the_limit_is_duplicate_or_conflict_not_refused(store: CountingStore) -> None:
    # Given 60 + 40 units accepted and counted: the period's hard stop (100) is reached by them
    send(store, raw("a", meter="api_calls", value=60), raw("c", meter="api_calls", value=40))
    store.count([document for document, _ in store.documents.values()], lambda *_: PERIOD, NOW)
    # When the client retries them (a lost answer), one with another value under its key, and a new one comes
    answers = send(
        store,
        raw("a", meter="api_calls", value=60),
        raw("c", meter="api_calls", value=3),
        raw("new", meter="api_calls", value=1),
    )
    # Then the retried events are what they were - a duplicate and a conflict - and only the new one is refused
    assert answers == [("a", "duplicate", None), ("c", "conflict", None), ("new", "rejected", "limit_exceeded")]
    # and nothing was written for them
    assert len(store.documents) == 1


def test_without_a_price_book_every_meter_is_unknown(store: CountingStore) -> None:
    books = Books()
    books.book = None
    results = UsageIngestion(store, books).ingest(UsageRequest.model_validate({"events": [raw("a")]}), NOW)
    assert [(result.verdict, result.reason) for result in results] == [
        (Verdict.REJECTED, RejectionReason.UNKNOWN_METER)
    ]


def test_documents_are_what_the_aggregator_counts_by(store: CountingStore) -> None:
    send(store, raw("a"), raw("b", timestamp=(PERIOD.start - timedelta(minutes=1)).isoformat()))
    ((document, _),) = store.documents.values()
    events: dict[str, UsageEvent] = {event.event_id: event for event in document.events}
    assert document.period_of(CUSTOMER, events["a"].timestamp).start == PERIOD.start
    assert document.period_of(CUSTOMER, events["b"].timestamp).start == PREVIOUS.start
