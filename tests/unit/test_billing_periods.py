"""Calendar periods: the end lands on the anchor day (clamped to short months) and never drifts."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing_core.periods import Interval, add_interval


def test_month_ends_clamp_without_drifting() -> None:
    start = datetime(2027, 1, 31, 9, 30, tzinfo=UTC)
    ends = [start]
    for _ in range(3):
        ends.append(add_interval(ends[-1], Interval.MONTH, anchor_day=31))
    assert [(e.month, e.day) for e in ends] == [(1, 31), (2, 28), (3, 31), (4, 30)]
    assert (
        add_interval(datetime(2028, 2, 29, tzinfo=UTC), Interval.YEAR, anchor_day=29).date().isoformat() == "2029-02-28"
    )


@given(
    start=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC)),
    anchor=st.integers(1, 31),
    count=st.integers(1, 40),
    interval=st.sampled_from(list(Interval)),
)
def test_n_steps_equal_one_jump_and_land_on_the_anchor(
    start: datetime, anchor: int, count: int, interval: Interval
) -> None:
    stepped = start
    for _ in range(count):
        stepped = add_interval(stepped, interval, anchor)
    assert stepped == add_interval(start, interval, anchor, count)
    assert stepped.day == min(anchor, calendar.monthrange(stepped.year, stepped.month)[1])
    assert stepped > start and stepped.time() == start.time()


def test_an_anchor_day_is_a_day_of_a_month() -> None:
    start = datetime(2027, 1, 15, tzinfo=UTC)
    assert add_interval(start, Interval.MONTH, anchor_day=1).day == 1
    for anchor_day in (0, 32):
        with pytest.raises(ValueError, match="anchor_day"):
            add_interval(start, Interval.MONTH, anchor_day=anchor_day)
