"""Windows and counter keys (#12, ADR 0025): an event counts into its UTC hour, its UTC day and its billing
period; the period is part of every key; the shard of a batch is stable (SHA-256, not Python's hash) and spread
over all shards."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing_core.usage.model import WindowKind
from billing_core.usage.windows import (
    SHARDS,
    BillingPeriod,
    CounterKey,
    counter_keys,
    day_window,
    hour_window,
    period_window,
    shard_of,
    windows_of,
)
from tests.support import ROOT
from tests.unit.usage_samples import CUSTOMER, PERIOD

moments = st.datetimes(
    min_value=datetime(2000, 1, 2),
    max_value=datetime(2100, 1, 1),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=-7)), timezone(timedelta(hours=5, minutes=30))]),
)


def test_an_event_counts_into_its_utc_hour_day_and_period() -> None:
    # Given an event at 09:45 in UTC-07:00 (16:45 UTC)
    moment = datetime(2026, 12, 1, 9, 45, 12, tzinfo=timezone(timedelta(hours=-7)))
    # When its windows are computed
    hour, day, period = windows_of(moment, PERIOD)
    # Then they are the UTC hour and day, and the whole period
    assert (hour.kind, hour.start, hour.end) == (
        WindowKind.HOUR,
        datetime(2026, 12, 1, 16, tzinfo=UTC),
        datetime(2026, 12, 1, 17, tzinfo=UTC),
    )
    assert (day.kind, day.start, day.end) == (
        WindowKind.DAY,
        datetime(2026, 12, 1, tzinfo=UTC),
        datetime(2026, 12, 2, tzinfo=UTC),
    )
    assert (period.kind, period.start, period.end) == (WindowKind.PERIOD, PERIOD.start, PERIOD.end)


@given(moments)
def test_every_moment_lies_in_its_hour_and_day(moment: datetime) -> None:
    # Given any moment in any offset
    # When its hour and day windows are computed
    hour, day = hour_window(moment), day_window(moment)
    # Then it lies inside both, the hour inside the day, both in UTC
    assert hour.start <= moment < hour.end and day.start <= moment < day.end
    assert day.start <= hour.start and hour.end <= day.end
    assert hour.start.tzinfo is UTC and day.start.tzinfo is UTC


def test_a_period_holds_its_start_and_not_its_end() -> None:
    # Given a billing period
    # When moments at its bounds are placed
    # Then its start belongs to it and its end to the next one
    assert period_window(PERIOD.start, PERIOD).start == PERIOD.start
    with pytest.raises(ValueError, match="outside the billing period"):
        period_window(PERIOD.end, PERIOD)
    with pytest.raises(ValueError, match="ends after it starts"):
        BillingPeriod(PERIOD.end, PERIOD.start)
    with pytest.raises(ValueError, match="timezone"):
        BillingPeriod(datetime(2026, 1, 1), datetime(2026, 2, 1))


def test_an_hour_that_straddles_a_period_bound_is_two_counters() -> None:
    # Given a period that ends at 10:30 and the next one, and events at 10:15 and 10:45 of that day
    before, after = PERIOD.end - timedelta(minutes=15), PERIOD.end + timedelta(minutes=15)
    following = BillingPeriod(PERIOD.end, PERIOD.end + timedelta(days=31))
    # When their counter keys are computed
    first = counter_keys(CUSTOMER, "api_calls", before, PERIOD, shard=3)
    second = counter_keys(CUSTOMER, "api_calls", after, following, shard=3)
    # Then both hours start at 10:00, yet the keys differ by their period
    assert first[0].start == second[0].start == datetime(2026, 12, 15, 10, tzinfo=UTC)
    assert first[0] != second[0] and first[0].period_start != second[0].period_start
    assert [key.kind for key in first] == [WindowKind.HOUR, WindowKind.DAY, WindowKind.PERIOD]
    assert {key.shard for key in first} == {3}


def test_a_counter_key_names_its_window_without_the_shard() -> None:
    # Given the same window in two shards
    a = CounterKey(CUSTOMER, "api_calls", PERIOD.start, WindowKind.DAY, datetime(2026, 12, 1, tzinfo=UTC), 0)
    b = CounterKey(CUSTOMER, "api_calls", PERIOD.start, WindowKind.DAY, datetime(2026, 12, 1, tzinfo=UTC), 15)
    # When their windows are compared, Then they are one window
    assert a != b and a.window == b.window


def test_a_shard_is_the_same_in_another_interpreter() -> None:
    # Given batch ids and their shards here
    ids = [f"ubat_{index:032x}" for index in range(20)]
    here = [shard_of(batch_id) for batch_id in ids]
    # When another Python process (another hash seed) computes them
    code = f"from billing_core.usage.windows import shard_of; print([shard_of(i) for i in {ids!r}])"
    there = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(ROOT / "layers" / "billing_core"), "PYTHONHASHSEED": "12345"},
    ).stdout
    # Then they are the same
    assert there.strip() == str(here)


def test_shards_spread_batches_over_every_shard() -> None:
    # Given 1,600 batch ids
    counts = Counter(shard_of(f"ubat_{index:032x}") for index in range(1600))
    # When they are sharded, Then every one of the 16 shards gets some, none more than twice its share
    assert set(counts) == set(range(SHARDS))
    assert max(counts.values()) < 2 * 1600 / SHARDS
    # And a shard count below one is refused
    with pytest.raises(ValueError, match="at least one shard"):
        shard_of("ubat_x", 0)
