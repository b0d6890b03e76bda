"""The usage routes' domain (billing_core.usage.queries) over the in-memory store: windows per period (an hour
straddling a period's end is two windows), totals right per aggregation, unique_count totals only where exact,
the entitlement from one read once the customer's current period is held, and check-and-consume with zero
overshoot."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from billing_core.errors import ConflictError, NotFoundError, PermanentError, ValidationFailedError
from billing_core.usage.model import Aggregation, Meter, UsageEvent, WindowKind
from billing_core.usage.queries import EntitlementReader, UsageQuery
from tests.fakes.usage import InMemoryUsageStore
from tests.unit.usage_api_samples import AFTER_PERIOD_END, LIMIT, counted, open_account
from tests.unit.usage_samples import CUSTOMER, METERS, NEXT_PERIOD, NOW, PERIOD, event

END = PERIOD.end  # 2026-12-15T10:30Z: the hour 10:00-11:00 straddles it


class CountingStore(InMemoryUsageStore):
    """The fake, counting what each read would cost on DynamoDB (accounts, period, windows_shards, unique_count)."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[str] = []

    def accounts(self, customer_ids: Iterable[str]) -> Any:
        self.reads.append("accounts")
        return super().accounts(customer_ids)

    def period(self, customer_id: str, meter: str, period_start: datetime) -> Any:
        self.reads.append("period")
        return super().period(customer_id, meter, period_start)

    def unique_count(self, window: Any) -> int:
        self.reads.append("unique_count")
        return super().unique_count(window)


def reader(store: Any) -> EntitlementReader:
    return EntitlementReader(store, METERS.get)


def query(meter: str, start: datetime, end: datetime, window: str) -> UsageQuery:
    return UsageQuery.model_validate(
        {"meter": meter, "from": start.isoformat(), "to": end.isoformat(), "window": window}
    )


def around_the_end(meter: str) -> list[UsageEvent]:
    """Ten events from 09:05 to 11:20 on the day the period ends (10:30): both sides of the end."""
    return [
        event(
            f"{meter}-{index}",
            meter=meter,
            value=(index * 7) % 11 + 1,
            timestamp=END - timedelta(minutes=85) + timedelta(minutes=15 * index),
            properties={"user_id": f"u{index % 4}"},
        )
        for index in range(10)
    ]


def test_an_hour_straddling_the_period_end_is_two_windows_and_every_total_is_the_serial_one() -> None:
    store = InMemoryUsageStore()
    open_account(store)
    for meter in ("api_calls", "requests", "peak_seats", "storage_gb"):
        events = around_the_end(meter)
        counted(store, events, AFTER_PERIOD_END)
        # When the hours of that morning are read
        report = reader(store).report(
            CUSTOMER, query(meter, END - timedelta(hours=2, minutes=30), END + timedelta(hours=1, minutes=30), "hour")
        )
        # Then the straddling hour is two windows, each clipped to its period
        assert [(w.start.hour, w.start.minute, w.end.hour, w.end.minute) for w in report.windows] == [
            (8, 0, 9, 0),
            (9, 0, 10, 0),
            (10, 0, 10, 30),
            (10, 30, 11, 0),
            (11, 0, 12, 0),
        ]
        assert [w.period_start for w in report.windows] == [PERIOD.start] * 3 + [NEXT_PERIOD.start] * 2
        values = [one.value for one in events]
        aggregation = METERS[meter].aggregation
        expected = {
            Aggregation.SUM: sum(values),
            Aggregation.COUNT: len(values),
            Aggregation.MAX: max(values),
            Aggregation.LATEST: max(events, key=lambda one: (one.timestamp, one.event_id)).value,
        }[aggregation]
        assert report.total == expected, meter
        before = [one for one in events if one.timestamp < END and one.timestamp >= END - timedelta(minutes=30)]
        if aggregation is Aggregation.SUM:
            assert report.windows[2].value == sum(one.value for one in before)
            assert sum(w.value for w in report.windows) == report.total
        assert report.as_of == AFTER_PERIOD_END


def test_unique_count_totals_only_where_a_counter_holds_the_range() -> None:
    store = InMemoryUsageStore()
    open_account(store)
    counted(store, around_the_end("active_users"), AFTER_PERIOD_END)
    read = reader(store)
    # Over several windows: distinct values cannot be added, so no total
    many = read.report(
        CUSTOMER,
        query("active_users", END - timedelta(hours=2, minutes=30), END + timedelta(hours=1, minutes=30), "hour"),
    )
    assert many.total is None
    assert sum(w.value for w in many.windows) > 4  # what adding would wrongly say (4 distinct users)
    # One window: its own count
    one = read.report(CUSTOMER, query("active_users", END - timedelta(minutes=30), END + timedelta(minutes=30), "hour"))
    assert one.total is None  # two windows (the straddling hour), two periods
    day = read.report(
        CUSTOMER,
        query("active_users", END.replace(hour=0, minute=0), END.replace(hour=0, minute=0) + timedelta(days=1), "day"),
    )
    assert [w.value for w in day.windows] and day.total is None
    # Exactly one whole period, in days: the period's own counter answers
    whole = read.report(
        CUSTOMER,
        UsageQuery.model_validate(
            {
                "meter": "active_users",
                "from": PERIOD.start.isoformat(),
                "to": PERIOD.end.isoformat(),
                "window": "period",
            }
        ),
    )
    assert whole.total == 4 and len(whole.windows) == 1
    hour = read.report(
        CUSTOMER,
        query("active_users", END - timedelta(hours=2, minutes=30), END - timedelta(hours=1, minutes=30), "hour"),
    )
    assert len(hour.windows) == 1 and hour.total == hour.windows[0].value


def test_a_range_outside_the_accounts_periods_has_no_windows() -> None:
    store = InMemoryUsageStore()
    open_account(store)
    start = PERIOD.start - timedelta(days=10)
    report = reader(store).report(
        CUSTOMER,
        query("api_calls", start.replace(hour=0, minute=0), start.replace(hour=0, minute=0) + timedelta(days=5), "day"),
    )
    assert report.windows == () and report.total == 0 and report.as_of is None


@pytest.mark.parametrize(
    ("start", "end", "window", "problem"),
    [
        ("2026-12-10T00:00:00Z", "2026-12-10T00:00:00Z", "hour", "before"),
        ("2026-12-10T00:00:00Z", "2026-12-18T00:00:00Z", "hour", "at most 7 days"),
        ("2026-10-01T00:00:00Z", "2026-12-10T00:00:00Z", "day", "at most 62 days"),
        ("2026-12-10T00:30:00Z", "2026-12-10T02:00:00Z", "hour", "boundaries"),
        ("2026-12-10T01:00:00Z", "2026-12-11T00:00:00Z", "day", "boundaries"),
        ("2026-12-10T00:00:00", "2026-12-11T00:00:00Z", "day", "timezone"),
        ("2026-12-10T00:00:00Z", "2026-12-11T00:00:00Z", "week", "window"),
    ],
)
def test_a_query_out_of_bounds_is_refused(start: str, end: str, window: str, problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        UsageQuery.model_validate({"meter": "api_calls", "from": start, "to": end, "window": window})


def test_an_undeclared_meter_or_a_customer_without_account_is_refused() -> None:
    store = InMemoryUsageStore()
    open_account(store)
    day = query("api_calls", datetime(2026, 12, 10, tzinfo=UTC), datetime(2026, 12, 11, tzinfo=UTC), "day")
    with pytest.raises(ValidationFailedError) as unknown:
        reader(store).report(CUSTOMER, day.model_copy(update={"meter": "nope"}))
    assert unknown.value.code == "unknown_meter"
    with pytest.raises(NotFoundError) as missing:
        reader(store).report("bcus_nobody", day)
    assert missing.value.code == "customer_not_found"


def test_the_entitlement_is_one_read_once_the_current_period_is_held() -> None:
    store = CountingStore()
    open_account(store)
    read = reader(store)
    # Given 60 units counted and 30 consumed
    counted(store, [event(f"c{i}", value=2, timestamp=NOW - timedelta(minutes=i)) for i in range(30)], NOW)
    assert read.consume(CUSTOMER, "api_calls", 30, NOW).used == 90
    store.reads.clear()
    # When the entitlement is asked twice
    first = read.entitlement(CUSTOMER, "api_calls", NOW)
    second = read.entitlement(CUSTOMER, "api_calls", NOW + timedelta(seconds=1))
    # Then the held period made each one read of the period
    assert store.reads == ["period", "period"]
    assert (first.used, first.limit, first.allowed, first.policy.value) == (90, LIMIT, True, "hard_stop")
    assert first.resets_at == PERIOD.end and first.as_of >= NOW
    assert second == first
    # and a period roll reads the account again, then the new period
    store.reads.clear()
    rolled = read.entitlement(CUSTOMER, "api_calls", PERIOD.end + timedelta(minutes=1))
    assert store.reads == ["accounts", "period"] and rolled.used == 0 and rolled.resets_at == NEXT_PERIOD.end


def test_used_reaches_the_hard_stop_and_allowed_turns_false() -> None:
    store = InMemoryUsageStore()
    open_account(store)
    read = reader(store)
    counted(store, [event(f"c{i}", value=10, timestamp=NOW - timedelta(minutes=i)) for i in range(9)], NOW)
    assert read.entitlement(CUSTOMER, "api_calls", NOW).allowed is True  # 90 < 100
    assert read.consume(CUSTOMER, "api_calls", 10, NOW).used == LIMIT
    at_limit = read.entitlement(CUSTOMER, "api_calls", NOW)
    assert (at_limit.used, at_limit.allowed) == (LIMIT, False)
    with pytest.raises(ConflictError) as refused:
        read.consume(CUSTOMER, "api_calls", 1, NOW)
    assert refused.value.code == "limit_exceeded"
    assert refused.value.details == {"used": LIMIT, "limit": LIMIT, "quantity": 1}


def test_a_soft_cap_meter_without_a_limit_record_answers_from_the_component() -> None:
    store = InMemoryUsageStore()
    open_account(store, limits=False)
    view = reader(store).entitlement(CUSTOMER, "requests", NOW)
    assert (view.allowed, view.used, view.limit, view.policy.value) == (True, 0, LIMIT, "soft_cap")
    with pytest.raises(NotFoundError) as no_record:
        reader(store).consume(CUSTOMER, "requests", 1, NOW)
    assert no_record.value.code == "entitlement_not_found"


def test_unknown_meters_meters_outside_the_plan_and_customers_without_a_current_period_are_404() -> None:
    store = InMemoryUsageStore()
    open_account(store, limits=False)
    extra = Meter(meter_id="extra", aggregation=Aggregation.SUM)
    read = EntitlementReader(store, {**METERS, "extra": extra}.get)
    cases = [
        ("nope", NOW, "unknown_meter"),
        ("extra", NOW, "meter_not_in_plan"),
        ("api_calls", NEXT_PERIOD.end + timedelta(days=1), "no_current_period"),
    ]
    for meter, at, code in cases:
        with pytest.raises(NotFoundError) as raised:
            read.entitlement(CUSTOMER, meter, at)
        assert raised.value.code == code
    with pytest.raises(NotFoundError) as nobody:
        read.entitlement("bcus_nobody", "api_calls", NOW)
    assert nobody.value.code == "customer_not_found"


def test_a_unique_count_entitlement_reads_its_distinct_values() -> None:
    store = CountingStore()
    open_account(store)
    counted(
        store,
        [
            event(
                f"u{i}", meter="active_users", properties={"user_id": f"u{i % 3}"}, timestamp=NOW - timedelta(minutes=i)
            )
            for i in range(9)
        ],
        NOW,
    )
    read = reader(store)
    read.entitlement(CUSTOMER, "active_users", NOW)
    store.reads.clear()
    view = read.entitlement(CUSTOMER, "active_users", NOW)
    assert view.used == 3 and store.reads == ["period", "unique_count"]


def test_eight_concurrent_consumers_take_exactly_the_units_left() -> None:
    store = InMemoryUsageStore()
    open_account(store)
    read = reader(store)
    counted(store, [event(f"c{i}", value=1, timestamp=NOW - timedelta(minutes=i)) for i in range(37)], NOW)
    taken: list[int] = []
    refused: list[int] = []
    lock = threading.Lock()

    def consumer() -> None:
        for _ in range(20):
            try:
                read.consume(CUSTOMER, "api_calls", 3, NOW)
                with lock:
                    taken.append(3)
            except ConflictError:
                with lock:
                    refused.append(3)

    threads = [threading.Thread(target=consumer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # 63 units were left: 21 consumptions of 3 fit, none more
    assert sum(taken) == 63 and len(refused) == 160 - 21
    assert read.entitlement(CUSTOMER, "api_calls", NOW).used == LIMIT


def test_a_week_of_hours_is_the_longest_hourly_range() -> None:
    start = datetime(2026, 12, 1, tzinfo=UTC)
    assert (
        UsageQuery.model_validate(
            {"meter": "m", "from": start.isoformat(), "to": (start + timedelta(days=7)).isoformat(), "window": "hour"}
        ).window
        is WindowKind.HOUR
    )


def test_a_keyed_consume_retried_takes_nothing_more_even_past_the_limit() -> None:
    store = InMemoryUsageStore()
    open_account(store)
    read = reader(store)
    counted(store, [event(f"c{i}", value=10, timestamp=NOW - timedelta(minutes=i)) for i in range(9)], NOW)
    first = read.consume(CUSTOMER, "api_calls", 10, NOW, key="k")
    # The retry (the limit is now reached) answers as the first did, and takes nothing
    assert read.consume(CUSTOMER, "api_calls", 10, NOW, key="k") == first
    assert read.entitlement(CUSTOMER, "api_calls", NOW).used == LIMIT
    with pytest.raises(PermanentError) as reused:
        read.consume(CUSTOMER, "api_calls", 3, NOW, key="k")
    assert reused.value.code == "idempotency_key_reused"
    with pytest.raises(ConflictError):
        read.consume(CUSTOMER, "api_calls", 1, NOW, key="other")
