"""The scheduled walk reporting provider-billed usage (usage/provider_reports.py) over fakes: which hours, the
time budget and resuming, two runs at once, a late event sending only the difference."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from itertools import count as counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing_core.errors import ConfigurationError, RetryableError
from billing_core.usage.accounts import AccountPeriod, UsageAccount
from billing_core.usage.aggregation import periods_named_by
from billing_core.usage.corrections import Correction, CorrectionKind, correction_id_for
from billing_core.usage.model import Aggregation, BatchDocument, DocumentPeriod, Meter, UsageEvent, WindowKind
from billing_core.usage.provider_reports import ProviderUsageReporter, closed_hours
from billing_core.usage.reporting import UsageReport, report_id_for
from billing_core.usage.windows import WindowKey
from tests.fakes.usage import InMemoryUsageStore
from tests.fakes.usage_reports import DedupingProvider, InMemoryUsageReportStore

CALLS = Meter(meter_id="api_calls", aggregation=Aggregation.SUM)
REQUESTS = Meter(meter_id="requests", aggregation=Aggregation.COUNT)
PEAK = Meter(meter_id="peak_seats", aggregation=Aggregation.MAX)
PROVIDER_CUSTOMER = "cus_Provider1"
INTERNAL_CUSTOMER = "bcus_0123456789abcdef01234567"
START = datetime(2026, 12, 10, 10, 30, tzinfo=UTC)
END = datetime(2027, 1, 10, 10, 30, tzinfo=UTC)
NOW = datetime(2026, 12, 10, 15, 30, tzinfo=UTC)  # closed: 10:30-11, 11-12, 12-13, 13-14, 14-15
_ids = counter()


def account(customer: str, mode: str) -> UsageAccount:
    return UsageAccount(
        customer_id=customer,
        billing_mode=mode,
        provider="stripe",
        provider_customer_id=customer if mode == "provider" else "cus_Internal",
        currency=None if mode == "provider" else "EUR",
        periods=(AccountPeriod(start=START, end=END, subscription_id="sub_1"),),
        version=1,
        updated_at=START,
    )


def counted(
    store: InMemoryUsageStore, customer: str, *values_at: tuple[int, datetime], meter: Meter = CALLS
) -> list[UsageEvent]:
    events = [
        UsageEvent(
            event_id=f"e{next(_ids)}",
            customer_id=customer,
            meter=meter.meter_id,
            value=value,
            timestamp=at,
            properties={},
        )
        for value, at in values_at
    ]
    document = BatchDocument.of(events, [meter], NOW, [DocumentPeriod(customer_id=customer, start=START, end=END)])
    assert store.write_batch(document) == {}
    store.count([document], periods_named_by([document]), NOW)
    return events


def cancelled(store: InMemoryUsageStore, event: UsageEvent) -> None:
    """A correction cancelling the event (its value out of its windows), counted."""
    marker = store.marker(event.key)
    assert marker is not None
    correction = Correction(
        batch_id=correction_id_for(event.key, 0),
        kind=CorrectionKind.CANCEL,
        sequence=0,
        event=event,
        meter=CALLS,
        period=DocumentPeriod(customer_id=event.customer_id, start=START, end=END),
        corrected_at=NOW,
        actor="support",
        reason="a test",
    )
    assert store.write_correction(correction, marker)
    store.count_corrections([correction], NOW)


class World:
    def __init__(self, meters: Sequence[Meter] = (CALLS,)) -> None:
        self.usage = InMemoryUsageStore()
        self.reports = InMemoryUsageReportStore()
        self.provider = DedupingProvider()
        self.meters = meters
        self.hour_reads = 0
        assert self.usage.put_account(account(PROVIDER_CUSTOMER, "provider"))
        assert self.usage.put_account(account(INTERNAL_CUSTOMER, "internal"))
        original = self.usage.windows_shards

        def reading(windows: Sequence[WindowKey]):  # type: ignore[no-untyped-def]
            if all(window.kind.value == "hour" for window in windows):  # closed hours (the open one rides along)
                self.hour_reads += len(windows)
            return original(windows)

        self.usage.windows_shards = reading  # type: ignore[method-assign]

    def reporter(self, sender: object | None = None) -> ProviderUsageReporter:
        return ProviderUsageReporter(
            usage=self.usage,
            accounts=self.usage,
            reports=self.reports,
            cursors=self.reports,
            sender=sender or self.provider,  # type: ignore[arg-type]
            provider="stripe",
            meters=lambda now: self.meters,
        )

    def reported(self, meter: str = "api_calls") -> dict[datetime, int]:
        windows: dict[datetime, int] = {}
        for report in self.provider.events.values():
            if report.meter == meter:
                windows[report.window_start] = windows.get(report.window_start, 0) + report.value
        return windows


def at(hour: int, minute: int = 10) -> datetime:
    return datetime(2026, 12, 10, hour, minute, tzinfo=UTC)


def test_closed_hours_cut_by_the_period_and_now() -> None:
    # Given a period starting at 10:30, When its closed hours at 15:30 are listed
    period = AccountPeriod(start=START, end=END, subscription_id="sub_1")
    hours = closed_hours(period, since=START, now=NOW)
    # Then the first is the half hour inside the period, keyed by its clock hour, and 15:00 is still open
    assert (hours[0].key_start.hour, hours[0].start, hours[0].end) == (10, START, at(11, 0))
    assert [h.start.hour for h in hours] == [10, 11, 12, 13, 14]
    # And a period's last hour closes at the period's end, not at the clock hour's
    last = closed_hours(period, since=END - timedelta(hours=1), now=END)
    assert [(h.start, h.end) for h in last] == [(END - timedelta(minutes=30), END)]


def test_each_closed_hour_of_a_provider_billed_customer_is_reported_once_with_its_total() -> None:
    # Given usage in three closed hours and the open one, for a provider-billed and an internal customer
    world = World()
    counted(world.usage, PROVIDER_CUSTOMER, (3, at(10, 45)), (4, at(10, 50)), (5, at(12)), (7, at(14)), (9, at(15)))
    counted(world.usage, INTERNAL_CUSTOMER, (100, at(12)))
    # When the reporter runs
    summary = world.reporter().run(NOW)
    # Then each closed hour with usage is one meter event with the hour's total; the open hour waits
    assert world.reported() == {at(10, 30): 7, at(12, 0): 5, at(14, 0): 7}
    assert summary.reports_sent == 3 and summary.accounts == 1 and not summary.out_of_time
    # And the internal customer's usage is billed on our invoices, never reported
    assert {r.provider_customer_id for r in world.provider.events.values()} == {PROVIDER_CUSTOMER}
    # And the identifiers are the outbox's: (customer, meter, window start, sequence 1)
    assert report_id_for(PROVIDER_CUSTOMER, "api_calls", at(12, 0), 1) in world.provider.events


def test_a_second_run_reports_only_the_hours_closed_since_and_reads_no_old_hour() -> None:
    world = World()
    counted(world.usage, PROVIDER_CUSTOMER, (5, at(12)), (9, at(15)))
    world.reporter().run(NOW)
    reads_before = world.hour_reads
    # When the same run happens again with nothing new
    assert world.reporter().run(NOW).reports_sent == 0
    # Then it reads no closed hour (the cursor, the period total and the open hour say nothing is owed)
    assert world.hour_reads == reads_before
    # When 15:00 closes
    summary = world.reporter().run(at(16, 5))
    # Then only that hour is read and reported
    assert world.hour_reads == reads_before + 1
    assert summary.reports_sent == 1 and world.reported()[at(15, 0)] == 9
    assert len(world.provider.sent) == 2


def test_a_late_event_behind_the_cursor_sends_only_the_difference_under_the_next_sequence() -> None:
    world = World()
    counted(world.usage, PROVIDER_CUSTOMER, (5, at(11)), (7, at(13)))
    world.reporter().run(NOW)
    # Given a late event counted into 11:00 after that hour was reported
    counted(world.usage, PROVIDER_CUSTOMER, (2, at(11, 40)))
    # When the reporter runs again (no new hour closed)
    summary = world.reporter().run(NOW + timedelta(minutes=10))
    # Then the period is read again and 11:00 sends the difference, 2, as sequence 2; 13:00 sends nothing
    assert summary.rescanned_periods == 1 and summary.reports_sent == 1
    assert world.provider.events[report_id_for(PROVIDER_CUSTOMER, "api_calls", at(11, 0), 2)].value == 2
    assert world.reported() == {at(11, 0): 7, at(13, 0): 7}
    # And the run after that reads nothing again
    reads = world.hour_reads
    world.reporter().run(NOW + timedelta(minutes=20))
    assert world.hour_reads == reads


def test_out_of_time_stops_between_reports_and_the_next_run_resumes_where_it_stopped() -> None:
    world = World()
    counted(world.usage, PROVIDER_CUSTOMER, *[(hour, at(hour, 40)) for hour in (10, 11, 12, 13, 14)])
    asked = counter()
    # When the budget allows two reports (asked before the account, then before each report)
    summary = world.reporter().run(NOW, out_of_time=lambda: next(asked) >= 3)
    # Then the run stops, says so, and two hours are reported
    assert summary.out_of_time and summary.reports_sent == 2
    assert sorted(world.reported()) == [at(10, 30), at(11, 0)]
    # When the next run has time
    summary = world.reporter().run(NOW)
    # Then it reports the other three, and nothing twice
    assert summary.reports_sent == 3
    assert world.reported() == {at(10, 30): 10, at(11, 0): 11, at(12, 0): 12, at(13, 0): 13, at(14, 0): 14}
    assert len(world.provider.sent) == len(set(world.provider.sent)) == 5


def test_two_runs_at_once_count_every_window_once_at_the_provider() -> None:
    # Given a run whose first send is slow: a whole second run happens while it is in flight
    world = World()
    counted(world.usage, PROVIDER_CUSTOMER, *[(hour, at(hour, 40)) for hour in (10, 11, 12, 13, 14)])
    second_done: list[object] = []

    class SlowFirstSend:
        def send(self, report: UsageReport) -> None:
            if not second_done:
                second_done.append(world.reporter().run(NOW))
            world.provider.send(report)

    # When both finish
    world.reporter(SlowFirstSend()).run(NOW)
    # Then the first window's identifier reached the provider twice (both runs sent the written report) and
    # counted once; every window is counted once, each (window, sequence) written once
    assert len(world.provider.sent) == 6 and len(world.provider.events) == 5
    assert world.reported() == {at(10, 30): 10, at(11, 0): 11, at(12, 0): 12, at(13, 0): 13, at(14, 0): 14}
    assert all(report.sequence == 1 for report in world.reports.reports.values())


def test_a_failed_send_stops_that_walk_and_the_next_run_sends_the_same_identifier() -> None:
    world = World()
    counted(world.usage, PROVIDER_CUSTOMER, (5, at(11)), (7, at(13)))
    world.provider.fail_next = RetryableError("provider 503", code="provider_unavailable")
    summary = world.reporter().run(NOW)
    assert summary.failed == 1 and world.reported() == {}
    # When the next run goes through
    world.reporter().run(NOW)
    # Then the written report went out under its first identifier, nothing else
    assert world.reported() == {at(11, 0): 5, at(13, 0): 7}
    assert all(report.sequence == 1 for report in world.reports.reports.values())


def test_a_configuration_error_stops_the_run() -> None:
    world = World()
    counted(world.usage, PROVIDER_CUSTOMER, (5, at(11)))
    world.provider.fail_next = ConfigurationError("invalid Stripe API key", code="provider_authentication")
    with pytest.raises(ConfigurationError):
        world.reporter().run(NOW)


def test_count_meters_are_reported_and_max_meters_are_not() -> None:
    world = World(meters=(REQUESTS, PEAK))
    counted(world.usage, PROVIDER_CUSTOMER, (5, at(11)), (6, at(11, 30)), meter=REQUESTS)
    counted(world.usage, PROVIDER_CUSTOMER, (50, at(11)), meter=PEAK)
    world.reporter().run(NOW)
    assert world.reported("requests") == {at(11, 0): 2}
    assert world.reported("peak_seats") == {}


def test_hours_stripe_no_longer_accepts_are_not_reported() -> None:
    world = World()
    counted(world.usage, PROVIDER_CUSTOMER, (5, at(11)))
    # When the first run happens 36 days later
    world.reporter().run(NOW + timedelta(days=36))
    # Then the hour, older than Stripe's 35 days, is not sent
    assert world.reported() == {}


def test_a_decrease_sends_nothing_and_a_late_increase_elsewhere_is_still_found() -> None:
    world = World()
    _, thirteen = counted(world.usage, PROVIDER_CUSTOMER, (5, at(11)), (7, at(13)))
    world.reporter().run(NOW)
    # Given 13:00's event cancelled (the period total falls from 12 to 5) and a run in between
    cancelled(world.usage, thirteen)
    assert world.reporter().run(NOW + timedelta(minutes=5)).reports_sent == 0
    # When a late event of 4 is counted into 11:00 (the period total 9: still below the 12 first reported)
    counted(world.usage, PROVIDER_CUSTOMER, (4, at(11, 50)))
    summary = world.reporter().run(NOW + timedelta(minutes=10))
    # Then it is found and sent; the decrease is not (Stripe adds meter events up)
    assert summary.reports_sent == 1
    assert world.reported() == {at(11, 0): 9, at(13, 0): 7}


# Hours of the period's first day, as (hour, minute): usage lands anywhere from 10:30 to 21:59.
moments = st.tuples(st.integers(10, 21), st.integers(0, 59)).filter(lambda hm: hm >= (10, 30))
steps = st.lists(
    st.one_of(
        st.tuples(st.just("event"), moments, st.integers(1, 9)),
        st.tuples(st.just("run"), st.integers(0, 6), st.integers(0, 5)),  # (minutes later, reports allowed)
    ),
    max_size=25,
)


def budget_of(reports: int) -> Callable[[], bool]:
    asked = counter()
    return lambda: next(asked) >= reports


@settings(max_examples=150, deadline=None)
@given(steps)
def test_any_interleaving_of_usage_and_bounded_runs_reports_every_closed_hour_exactly(
    script: list[Any],
) -> None:
    """Usage counted at any time into any hour so far (late ones too), runs of any budget at any moment: after a
    last run with time, every closed hour's total is at the provider, each delta under one identifier."""
    world = World()
    clock = at(10, 30)
    for step in script:
        if step[0] == "event":
            (hour, minute), value = step[1], step[2]
            moment = at(hour, minute)
            clock = max(clock, moment + timedelta(minutes=1))
            counted(world.usage, PROVIDER_CUSTOMER, (value, moment))
        else:
            clock += timedelta(minutes=step[1] * 20)
            world.reporter().run(clock, out_of_time=budget_of(step[2]))
    final = max(clock, at(22, 0)) + timedelta(minutes=5)
    world.reporter().run(final)
    expected: dict[datetime, int] = {}
    for hour in closed_hours(AccountPeriod(start=START, end=END, subscription_id="sub_1"), since=START, now=final):
        key = WindowKey(PROVIDER_CUSTOMER, "api_calls", START, WindowKind.HOUR, hour.key_start)
        value = sum(shard.tally.value_sum for shard in world.usage.window_shards(key))
        if value:
            expected[hour.start] = value
    assert world.reported() == expected
    assert len(world.provider.events) == len(world.reports.reports)  # every written report reached it, once


def test_a_run_out_of_time_leaves_no_account_behind_the_next_run_starts_after_the_last_one_done() -> None:
    # Given three provider-billed customers with usage, and runs with time for one account each
    world = World()
    others = ["cus_Provider2", "cus_Provider3"]
    for customer in others:
        assert world.usage.put_account(account(customer, "provider"))
    for customer in [PROVIDER_CUSTOMER, *others]:
        counted(world.usage, customer, (1, at(11)))

    def one_account() -> Callable[[], bool]:
        asked = counter()  # asked before each account and before each report: account, report, next account
        return lambda: next(asked) >= 2

    # When three such runs happen
    firsts = []
    for _ in range(3):
        before = set(world.provider.events)
        summary = world.reporter().run(NOW, out_of_time=one_account())
        assert summary.out_of_time
        (new,) = set(world.provider.events) - before
        firsts.append(world.provider.events[new].provider_customer_id)
    # Then each run served the next customer in turn, so every customer was reported
    assert firsts == sorted([PROVIDER_CUSTOMER, *others])
