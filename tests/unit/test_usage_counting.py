"""The aggregator's service (billing_core.usage.counting, #12) over the in-memory store: documents are counted once
however often they are delivered, and every threshold their period reaches is announced - a notice under its one
notice_id, a metric, an audit entry - then marked, once per (customer, meter, period, percent), even when
aggregators race or a redelivery follows a count whose thresholds were never checked."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from typing import Any

import pytest

from billing_core.errors import InvariantViolation, ValidationFailedError
from billing_core.notifications.model import NoticeDocument, notice_of
from billing_core.pricing.model import CapPolicy
from billing_core.usage.accounts import AccountPeriod, UsageAccount
from billing_core.usage.counting import CountReport, UsageCounter, pending_document
from billing_core.usage.entitlements import LimitRecord
from billing_core.usage.model import BatchDocument, DocumentPeriod, UsageEvent
from billing_core.usage.windows import BillingPeriod
from tests.fakes.audit import InMemoryAuditLog
from tests.fakes.reconciliation import InMemoryDocumentQueue
from tests.fakes.usage import InMemoryUsageStore
from tests.unit.usage_samples import CALLS, CUSTOMER, NOW, PERIOD, REQUESTS, event

SUBSCRIPTION = "bsub_usage_1"


def named(bounds: BillingPeriod = PERIOD, customer_id: str = CUSTOMER) -> DocumentPeriod:
    return DocumentPeriod(customer_id=customer_id, start=bounds.start, end=bounds.end)


def document(*events: UsageEvent) -> BatchDocument:
    return BatchDocument.of(events, [CALLS, REQUESTS], NOW, [named()])


def calls(prefix: str, *values: int) -> BatchDocument:
    return document(*(event(f"{prefix}-{index}", value=value) for index, value in enumerate(values)))


class World:
    def __init__(self, limit: int | None = 100, thresholds: tuple[int, ...] = (50, 80, 100)) -> None:
        self.store = InMemoryUsageStore()
        self.notices = InMemoryDocumentQueue()
        self.audit = InMemoryAuditLog()
        self.store.put_limit(
            LimitRecord(
                customer_id=CUSTOMER,
                meter="api_calls",
                period_start=PERIOD.start,
                period_end=PERIOD.end,
                limit=limit,
                policy=CapPolicy.SOFT_CAP,
                updated_at=NOW,
                thresholds_percent=thresholds,
            )
        )
        assert self.store.put_account(
            UsageAccount(
                customer_id=CUSTOMER,
                billing_mode="internal",
                provider="stripe",
                provider_customer_id="cus_X",
                currency="EUR",
                periods=(AccountPeriod(start=PERIOD.start, end=PERIOD.end, subscription_id=SUBSCRIPTION),),
                version=1,
                updated_at=NOW,
            )
        )

    def counter(self) -> UsageCounter:
        return UsageCounter(store=self.store, notices=self.notices, audit=self.audit, clock=lambda: NOW)

    def accept(self, *documents: BatchDocument) -> None:
        for each in documents:
            assert self.store.write_batch(each) == {}

    def notice_ids(self) -> list[str]:
        return [notice["notice_id"] for notice in self.notices.sent]

    def marked(self) -> frozenset[int]:
        return self.store.announced(CUSTOMER, "api_calls", PERIOD.start)


def notice_id(percent: int) -> str:
    return f"usage_threshold:{CUSTOMER}:api_calls:2026-11-15T10:30:00.000000Z:{percent}"


def test_a_count_that_reaches_one_threshold_announces_it_with_a_notice_an_audit_entry_and_its_marker() -> None:
    # Given a limit of 100 with thresholds 50/80/100, and a document of 55 calls
    world = World()
    batch = calls("a", 30, 25)
    world.accept(batch)
    # When it is counted
    report = world.counter().count([batch])
    # Then it is counted, and 50% (only) is announced: a notice the notices consumer accepts, an audit entry, marked
    assert report.counted == (batch.batch_id,) and report.already_counted == ()
    assert [threshold.percent for threshold in report.announced] == [50]
    [notice] = world.notices.sent
    assert notice["notice_id"] == notice_id(50)
    parsed: Any = notice_of(NoticeDocument.model_validate(notice))
    assert (parsed.kind, parsed.subscription_id, parsed.customer_id) == ("usage_threshold", SUBSCRIPTION, CUSTOMER)
    assert (parsed.percent, parsed.limit, parsed.total, parsed.period_end) == (50, 100, 55, PERIOD.end)
    [entry] = world.audit.events.values()
    assert (entry.entity_type.value, entry.entity_id, entry.event_type) == (
        "usage_threshold",
        f"{CUSTOMER}:api_calls",
        "usage_threshold.crossed",
    )
    assert entry.after is not None and entry.after["total"] == 55 and entry.after["notice_sent"] is True
    assert world.marked() == {50}


def test_several_thresholds_crossed_at_once_all_fire_lowest_first() -> None:
    # Given 10 calls counted (below every threshold), then a document of 95 more
    world = World()
    first, jump = calls("a", 10), calls("b", 95)
    world.accept(first, jump)
    assert world.counter().count([first]).announced == ()
    # When the jump is counted
    report = world.counter().count([jump])
    # Then 50, 80 and 100 fire, each once, lowest first
    assert [threshold.percent for threshold in report.announced] == [50, 80, 100]
    assert world.notice_ids() == [notice_id(50), notice_id(80), notice_id(100)]
    assert world.marked() == {50, 80, 100} and len(world.audit.events) == 3


def test_a_redelivered_document_counts_nothing_new_but_still_checks_thresholds() -> None:
    # Given a document counted, whose invocation died before it announced anything (the count committed)
    world = World()
    batch = calls("a", 85)
    world.accept(batch)
    world.store.count([batch], lambda customer, moment: PERIOD_BOUNDS, NOW)
    assert world.notices.sent == []
    # When the stream delivers it again
    report = world.counter().count([batch])
    # Then nothing is counted twice, and the thresholds its period reached are announced now
    assert report.counted == () and report.already_counted == (batch.batch_id,)
    assert [threshold.percent for threshold in report.announced] == [50, 80]
    assert world.store.period(CUSTOMER, "api_calls", PERIOD.start).shards[0].tally.value_sum == 85
    # And a third delivery announces nothing again
    assert world.counter().count([batch]).announced == ()
    assert world.notice_ids() == [notice_id(50), notice_id(80)]


PERIOD_BOUNDS = BillingPeriod(PERIOD.start, PERIOD.end)


def test_a_crash_between_announcing_and_marking_announces_again_under_the_same_notice_id() -> None:
    # Given a count whose announcement went out but whose marker write failed
    world = World()
    batch = calls("a", 60)
    world.accept(batch)

    class Crash(Exception):
        pass

    def crash(*_: Any) -> bool:
        raise Crash

    original = world.store.mark_announced
    world.store.mark_announced = crash  # type: ignore[method-assign]
    with pytest.raises(Crash):
        world.counter().count([batch])
    world.store.mark_announced = original  # type: ignore[method-assign]
    # When the batch is delivered again
    world.counter().count([batch])
    # Then the notice went out twice under one id (the consumer sends one email), one audit entry, one marker
    assert world.notice_ids() == [notice_id(50), notice_id(50)]
    assert len(world.audit.events) == 1 and world.marked() == {50}


def test_two_aggregators_racing_mark_each_threshold_once_and_announce_it_under_one_notice_id() -> None:
    # Given 16 documents of 10 calls each (160: past 50, 80 and 100), delivered to 8 aggregators at once, each
    # document to two of them
    world = World()
    documents = [calls(f"d{index}", 10) for index in range(16)]
    world.accept(*documents)
    reports: list[CountReport] = []
    barrier = threading.Barrier(8)

    def aggregate(index: int) -> None:
        barrier.wait()
        for position in range(4):
            reports.append(world.counter().count([documents[(index * 2 + position) % 16]]))

    threads = [threading.Thread(target=aggregate, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then every document was counted once, the total is exact, and each threshold is marked once, audited once,
    # and every notice of it carries the same id
    assert sorted(batch for report in reports for batch in report.counted) == sorted(d.batch_id for d in documents)
    assert world.store.period(CUSTOMER, "api_calls", PERIOD.start).shards != ()
    total = sum(shard.tally.value_sum for shard in world.store.period(CUSTOMER, "api_calls", PERIOD.start).shards)
    assert total == 160
    assert world.marked() == {50, 80, 100}
    assert set(world.notice_ids()) == {notice_id(50), notice_id(80), notice_id(100)}
    assert len(world.audit.events) == 3


@pytest.mark.parametrize("case", ["no limit record", "a limit of none"])
def test_no_limit_or_an_unlimited_record_announces_nothing(case: str) -> None:
    world = World(limit=None)
    if case == "no limit record":
        world.store.limits.clear()
    batch = calls("a", 500)
    world.accept(batch)
    assert world.counter().count([batch]).announced == ()
    assert world.notices.sent == [] and world.audit.events == {}


def test_consumed_units_count_toward_the_thresholds() -> None:
    world = World()
    key = (CUSTOMER, "api_calls", PERIOD.start)
    world.store.limits[key] = world.store.limits[key].model_copy(update={"consumed": 45})
    batch = calls("a", 40)
    world.accept(batch)
    assert [threshold.percent for threshold in world.counter().count([batch]).announced] == [50, 80]


def test_a_threshold_without_an_account_period_is_still_marked_and_audited_without_a_notice() -> None:
    world = World()
    world.store.usage_accounts.clear()
    batch = calls("a", 60)
    world.accept(batch)
    assert [threshold.percent for threshold in world.counter().count([batch]).announced] == [50]
    assert world.notices.sent == []
    [entry] = world.audit.events.values()
    assert entry.after is not None and entry.after["notice_sent"] is False
    assert world.marked() == {50}


def test_a_document_without_periods_is_refused() -> None:
    world = World()
    bare = BatchDocument.of([event("a")], [CALLS], NOW)
    with pytest.raises(InvariantViolation) as raised:
        world.counter().count([bare])
    assert raised.value.code == "batch_without_periods"


def image(batch: BatchDocument, **changes: Any) -> dict[str, Any]:
    return {
        "pk": "EVENT#{}#{}".format(*min(event.key for event in batch.events)),
        "sk": "EVENT",
        "kind": "event",
        "state": "pending",
        "document": batch.model_dump_json(),
    } | changes


def test_pending_document_reads_a_batch_from_a_new_image_and_refuses_anything_else() -> None:
    batch = calls("a", 1)
    assert pending_document(image(batch)) == batch
    refusals = {
        "not_a_batch_document": image(batch, pk="COUNT#x"),
        "batch_not_pending": image(batch, state="counted"),
        "malformed_batch_document": image(batch, document="{}"),
    }
    for code, bad in refusals.items():
        with pytest.raises(ValidationFailedError) as raised:
            pending_document(bad)
        assert raised.value.code == code
    other = calls("b", 1)
    with pytest.raises(ValidationFailedError):
        pending_document(image(batch, document=other.model_dump_json()))
    bare = BatchDocument.of([event("c")], [CALLS], NOW)
    with pytest.raises(InvariantViolation):
        pending_document(image(bare, document=json.dumps(json.loads(bare.model_dump_json()))))


def test_late_events_count_toward_their_own_period() -> None:
    world = World()
    late = document(event("late", value=60, timestamp=PERIOD.start + timedelta(hours=1)))
    world.accept(late)
    assert [threshold.percent for threshold in world.counter().count([late]).announced] == [50]
